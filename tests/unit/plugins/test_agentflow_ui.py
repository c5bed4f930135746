"""The agentflow_ui plugin inside Airflow's own api-server app, on the embedded state.

The app is Airflow's ``create_app(apps="core")``: the plugin is found in the plugins folder
and mounted by Airflow, tokens are minted by Airflow's SimpleAuthManager, and the metadata
DB (SQLite, migrated, DAGs serialised) answers the permission checks. The agent runs come
from the embedded SQLite state (no ``cassandra_conn_id`` connection defined here), seeded
by the tests as the agent operator would.

Every route of the plugin's FastAPI app is enumerated: each must refuse a call without
credentials (401), with an invalid token (403) and from a user without permissions (403),
so a new route without auth fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic_ai.messages import (
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from include.state.embedded import EmbeddedState, EmbeddedStateSettings
from include.state.runs import AgentRunSummary

AIRFLOW = str(Path(sys.executable).parent / "airflow")
DAG_ID = "support_ticket_triage"
OTHER_DAG = "knowledge_ingest"
EVIL = "<script>window.__pwned = 1</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def state_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-state") / "agentflow_state.db"


@pytest.fixture(scope="module")
def airflow_app(state_path: Path) -> Iterator[Any]:
    """Airflow's api-server app on a migrated SQLite DB with the project's DAGs serialised."""
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        proc = subprocess.run(
            [AIRFLOW, *args], env=dict(os.environ), capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, f"airflow {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    saved = {k: os.environ.get(k) for k in ("AIRFLOW__AGENTFLOW_UI__CASSANDRA_CONN_ID", "AGENTFLOW_STATE_DB")}
    os.environ["AIRFLOW__AGENTFLOW_UI__CASSANDRA_CONN_ID"] = "agentflow_ui_unit_no_such_connection"
    os.environ["AGENTFLOW_STATE_DB"] = str(state_path)
    from airflow.api_fastapi.app import create_app, purge_cached_app

    try:
        yield create_app(apps="core")
    finally:
        purge_cached_app()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def plugin_app(airflow_app: Any) -> Any:
    """The plugin's FastAPI app, as Airflow's plugin manager registered it."""
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    found = [entry for entry in apps if entry["url_prefix"] == "/agentflow"]
    assert len(found) == 1, apps
    return found[0]["app"]


def _token(role: str | None, username: str = "tester") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role)))


@pytest.fixture(scope="module")
def anonymous(airflow_app: Any) -> Iterator[TestClient]:
    with TestClient(airflow_app) as client:
        yield client


@pytest.fixture(scope="module")
def admin(airflow_app: Any) -> Iterator[TestClient]:
    with TestClient(airflow_app, headers={"Authorization": f"Bearer {_token('admin')}"}) as client:
        yield client


def _messages(prompt: str, answer: str) -> list[dict[str, Any]]:
    when = datetime(2026, 3, 4, 9, tzinfo=UTC)
    messages = [
        ModelRequest(parts=[UserPromptPart(prompt, timestamp=when)], instructions="Answer the customer."),
        ModelResponse(
            parts=[ToolCallPart("search_knowledge", {"query": "refund <b>policy</b>", "k": 3}, "call-1")],
            model_name="scripted",
            timestamp=when,
        ),
        ModelRequest(
            parts=[ToolReturnPart("search_knowledge", [{"id": "kb-7", "text": "</pre><b>x"}], "call-1")]
        ),
        ModelResponse(parts=[TextPart(answer)], model_name="scripted", timestamp=when),
    ]
    return ModelMessagesTypeAdapter.dump_python(messages, mode="json")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def seeded(state_path: Path, airflow_app: Any) -> dict[str, AgentRunSummary]:
    """Runs and audit records as the agent operator records them, in the embedded state."""
    state = EmbeddedState(EmbeddedStateSettings(path=state_path))
    now = datetime.now(UTC).replace(microsecond=0)
    if now.hour == 0 and now.minute < 5:  # keep every run on today's date
        now += timedelta(minutes=5)
    runs = {
        "done": AgentRunSummary(
            dag_id=DAG_ID,
            run_id="manual__2026-03-04T09:00:00+00:00",
            task_id="draft_reply",
            session_id="customer-42",
            model="scripted-model",
            status="success",
            started_at=now - timedelta(seconds=3),
            finished_at=now - timedelta(seconds=1),
            latency_ms=2345,
            input_tokens=1234,
            output_tokens=567,
            requests=2,
            tool_calls=1,
            guardrail_hits=1,
        ),
        "waiting": AgentRunSummary(
            dag_id=DAG_ID,
            run_id="asset_triggered__waiting",
            task_id="draft_reply",
            map_index=2,
            model="scripted-model",
            status="awaiting_approval",
            started_at=now - timedelta(seconds=2),
            finished_at=now,
            latency_ms=1000,
        ),
        "other": AgentRunSummary(
            dag_id=OTHER_DAG,
            run_id="manual__other",
            task_id="summarise",
            status="failed",
            error="boom",
            started_at=now - timedelta(seconds=9),
            finished_at=now - timedelta(seconds=8),
            latency_ms=1000,
        ),
    }
    store = state.agent_runs()
    store.record(
        runs["done"], _messages(EVIL + " my mail is [REDACTED:EMAIL_ADDRESS]", "Refund sent. " + EVIL)
    )
    store.record(runs["waiting"], _messages("please approve", "waiting"))
    store.record(runs["other"], [])
    audit = state.audit()
    run_id = runs["done"].run_id
    audit.record(dag_id=DAG_ID, kind="guardrail_hit", name="pii.email", run_id=run_id, outcome="redacted")
    audit.record(
        dag_id=DAG_ID, kind="approval", name="send_reply", run_id=run_id, actor="alice", outcome="approved"
    )
    audit.record(dag_id=DAG_ID, kind="tool_call", name="search_knowledge", run_id="another-run")
    return runs


# -- auth --------------------------------------------------------------------------------


def _concrete(route: APIRoute) -> str:
    return "/agentflow" + re.sub(r"\{[^}]+\}", "x", route.path)


def test_every_route_refuses_anonymous_invalid_and_unauthorised_calls(
    plugin_app: Any, anonymous: TestClient
) -> None:
    routes = list(plugin_app.routes)
    assert routes, "the plugin app has no routes"
    assert all(isinstance(r, APIRoute) for r in routes), [r for r in routes if not isinstance(r, APIRoute)]
    checked = []
    no_role = {"Authorization": f"Bearer {_token(None, 'nobody')}"}
    forged = {"Authorization": "Bearer not.a.jwt"}
    for route in routes:
        for method in sorted(route.methods):
            path = _concrete(route)
            assert anonymous.request(method, path).status_code == 401, (method, path)
            assert anonymous.request(method, path, headers=forged).status_code == 403, (method, path)
            refused = anonymous.request(method, path, headers=no_role)
            assert refused.status_code == 403, (method, path, refused.text)
            checked.append((method, route.path))
    # The pages and the JSON API are all there (and all checked above).
    assert {p for _, p in checked} >= {
        "/api/runs",
        "/api/runs/{dag_id}/{run_id}",
        "/api/runs/{dag_id}/{run_id}/{task_id}",
        "/api/sessions/{session_id}",
        "/api/events",
        "/ui/runs",
        "/ui/runs/{dag_id}/{run_id}",
        "/ui/runs/{dag_id}/{run_id}/{task_id}",
        "/ui/sessions/{session_id}",
        "/ui/events",
    }


def test_the_ui_cookie_authenticates_pages(airflow_app: Any, seeded: dict[str, AgentRunSummary]) -> None:
    """The Airflow UI's iframe sends the ``_token`` cookie, not a bearer header."""
    with TestClient(airflow_app, cookies={"_token": _token("viewer")}) as client:
        page = client.get("/agentflow/ui/runs")
    assert page.status_code == 200, page.text
    assert seeded["done"].run_id in page.text


# -- pages and API -----------------------------------------------------------------------


def test_runs_page_lists_the_days_runs_with_their_numbers(
    admin: TestClient, seeded: dict[str, AgentRunSummary]
) -> None:
    page = admin.get("/agentflow/ui/runs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # no script may run
    rows = re.findall(r'<tr class="run">(.*?)</tr>', page.text, flags=re.S)
    assert len(rows) == 3
    waiting, done, other = rows  # newest first
    assert "awaiting_approval" in waiting
    for value in ("scripted-model", ">1234<", ">567<", ">1<", "2.35 s", "success"):
        assert value in done, value
    assert "failed" in other

    only = admin.get("/agentflow/ui/runs", params={"dag_id": OTHER_DAG})
    assert len(re.findall(r'<tr class="run">', only.text)) == 1
    yesterday = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    assert "No agent run finished" in admin.get("/agentflow/ui/runs", params={"day": yesterday}).text


def test_runs_api(admin: TestClient, seeded: dict[str, AgentRunSummary]) -> None:
    body = admin.get("/agentflow/api/runs", params={"dag_id": DAG_ID}).json()
    assert [r["run_id"] for r in body["runs"]] == [seeded["waiting"].run_id, seeded["done"].run_id]
    assert body["runs"][1]["input_tokens"] == 1234
    bad = admin.get("/agentflow/api/runs", params={"day": "yesterday"})
    assert bad.status_code == 400
    assert "YYYY-MM-DD" in bad.json()["detail"]
    assert admin.get("/agentflow/api/runs", params={"limit": 0}).status_code == 422


def test_run_page_renders_the_transcript_inert_with_redactions_marked(
    admin: TestClient, seeded: dict[str, AgentRunSummary]
) -> None:
    run = seeded["done"]
    page = admin.get(f"/agentflow/ui/runs/{DAG_ID}/{run.run_id}/draft_reply")
    assert page.status_code == 200, page.text
    text = page.text
    assert "<script" not in text  # no script element at all, and the transcript's is escaped
    assert "<img" not in text
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert '<mark class="redacted" title="redacted by a guardrail">[REDACTED:EMAIL_ADDRESS]</mark>' in text
    assert 'id="input-tokens">1234<' in text
    assert 'id="output-tokens">567<' in text
    # the tool call with its arguments and its result, escaped
    assert "tool <code>search_knowledge</code>" in text
    assert "refund &lt;b&gt;policy&lt;/b&gt;" in text
    assert "&lt;/pre&gt;&lt;b&gt;x" in text
    # the run's audit records, not another run's
    audit = re.findall(r'<tr class="audit-(\w+)">', text)
    assert sorted(audit) == ["approval", "guardrail_hit"]
    assert "alice" in text
    assert "approved" in text
    assert "pending-approval" not in text
    assert f"/agentflow/ui/sessions/{run.session_id}" in text


def test_dag_run_view_shows_its_agent_task(admin: TestClient, seeded: dict[str, AgentRunSummary]) -> None:
    run = seeded["done"]
    page = admin.get(f"/agentflow/ui/runs/{DAG_ID}/{run.run_id}")
    assert page.status_code == 200
    assert 'id="input-tokens">1234<' in page.text


def test_waiting_run_links_to_required_actions(admin: TestClient, seeded: dict[str, AgentRunSummary]) -> None:
    run = seeded["waiting"]
    page = admin.get(f"/agentflow/ui/runs/{DAG_ID}/{run.run_id}/draft_reply", params={"map_index": 2})
    assert page.status_code == 200
    link = re.search(
        r'<p class="notice" id="pending-approval">.*?<a href="([^"]+)" target="_top">', page.text, re.S
    )
    assert link is not None
    assert (
        link.group(1)
        == f"/dags/{DAG_ID}/runs/asset_triggered__waiting/tasks/draft_reply/mapped/2/required_actions"
    )
    api = admin.get(f"/agentflow/api/runs/{DAG_ID}/{run.run_id}/draft_reply", params={"map_index": 2}).json()
    assert api["required_actions_url"] == link.group(1)


def test_run_api_returns_the_transcript_as_json(
    admin: TestClient, seeded: dict[str, AgentRunSummary]
) -> None:
    run = seeded["done"]
    response = admin.get(f"/agentflow/api/runs/{DAG_ID}/{run.run_id}/draft_reply")
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["summary"]["output_tokens"] == 567
    assert body["transcript"][0]["parts"][0]["content"].startswith("<script>")
    assert {r["kind"] for r in body["audit"]} == {"approval", "guardrail_hit"}
    tasks = admin.get(f"/agentflow/api/runs/{DAG_ID}/{run.run_id}").json()["tasks"]
    assert [t["task_id"] for t in tasks] == ["draft_reply"]


@pytest.mark.parametrize(
    "path",
    [
        "/agentflow/api/runs/support_ticket_triage/no-such-run/draft_reply",
        "/agentflow/api/runs/support_ticket_triage/no-such-run",
        "/agentflow/api/runs/support_ticket_triage/manual__2026-03-04T09:00:00+00:00/no_such_task",
        "/agentflow/api/sessions/no-such-session",
    ],
)
def test_unknown_ids_are_404_json_with_a_message(
    admin: TestClient, seeded: dict[str, AgentRunSummary], path: str
) -> None:
    response = admin.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert detail.startswith("no ")
    assert "no-such" in detail or "no_such_task" in detail


def test_unknown_run_page_is_a_404_page_not_a_stack_trace(
    admin: TestClient, seeded: dict[str, AgentRunSummary]
) -> None:
    response = admin.get(f"/agentflow/ui/runs/{DAG_ID}/<b>nope&amp;/draft_reply")
    assert response.status_code == 404
    assert "no agent run recorded" in response.text
    assert "&lt;b&gt;nope&amp;amp;" in response.text
    assert "Traceback" not in response.text


def test_session_page_shows_the_stored_turns(admin: TestClient, state_path: Path) -> None:
    state = EmbeddedState(EmbeddedStateSettings(path=state_path))
    messages = ModelMessagesTypeAdapter.validate_python(_messages("hi <i>there</i>", "hello"))
    state.memory().append("customer-42", messages, run_id="manual__2026-03-04T09:00:00+00:00")
    page = admin.get("/agentflow/ui/sessions/customer-42")
    assert page.status_code == 200
    assert "hi &lt;i&gt;there&lt;/i&gt;" in page.text
    assert (
        admin.get("/agentflow/api/sessions/customer-42").json()["turns"][0]["run_id"].startswith("manual__")
    )
