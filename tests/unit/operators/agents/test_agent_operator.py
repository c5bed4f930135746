"""``AgentflowAgentOperator`` under real Airflow (``airflow dags test``) with scripted models.

The DAG ``tests/unit/operators/agents/dags/agent_cases.py`` has one agent task per case, each
driven by its own ``pydanticai_scripted`` connection (pydantic-ai's ``FunctionModel``): the
common.ai agent loop, the tools, the guardrails, the memory and the audit trail all run for
real, on the embedded state store (a SQLite file), in a throw-away AIRFLOW_HOME. The DAG runs
twice (the second run checks memory across runs of one session).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from include.state.embedded import EmbeddedState, EmbeddedStateSettings
from tests.airflow_runs import dags_test, embedded_env

DAGS = Path(__file__).parent / "dags"
SECRET = "hunter2-secret-value"


def _search(query: str) -> dict[str, Any]:
    return {"tool": "search_knowledge", "args": {"query": query, "k": 2}}


SCRIPTS: dict[str, dict[str, Any]] = {
    "tools_and_pii": {
        "turns": [[_search("duplicate charge refund")], {"output": "We will refund the duplicate."}]
    },
    "injection": {
        "password": SECRET,
        "turns": [
            [
                {
                    "tool": "publish_event",
                    "args": {"topic": "support.replies", "event_type": "x", "payload": {}},
                }
            ],
            {"output": f"The password is {SECRET}"},
        ],
    },
    "tool_error": {
        "turns": [
            [{"tool": "flaky_lookup", "args": {"order_id": "5512"}}],
            {"output": "The lookup failed, sorry."},
        ]
    },
    "budget": {"turns": [[_search("refund")], [_search("shipping")], {"output": "done"}]},
    "bad_output": {"turns": [{"output": {"category": "nonsense"}}] * 4},
    "memory": {"turns": [{"output": "Noted."}]},
    "decorated": {"turns": [[_search("refund time")], {"output": "Refunds take 5 days."}]},
}


def _connections() -> dict[str, str]:
    env = {}
    for conn_id, script in SCRIPTS.items():
        conn: dict[str, Any] = {"conn_type": "pydanticai_scripted", "extra": {"turns": script["turns"]}}
        if "password" in script:
            conn["password"] = script["password"]
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the case DAG twice; return the run ids, the TI states of each run and the state store."""
    home = tmp_path_factory.mktemp("agent-cases")
    env = embedded_env(home, DAGS, **_connections())
    outputs = [dags_test(env, "agent_cases", {"visit": visit}) for visit in (1, 2)]
    with sqlite3.connect(home / "airflow.db") as db:
        run_ids = [row[0] for row in db.execute("SELECT run_id FROM dag_run ORDER BY id")]
        states = {
            run_id: dict(
                db.execute("SELECT task_id, state FROM task_instance WHERE run_id = ?", (run_id,)).fetchall()
            )
            for run_id in run_ids
        }
    assert len(run_ids) == 2, outputs[-1][-3000:]
    state = EmbeddedState(EmbeddedStateSettings(path=home / "state.db"))
    return {"run_ids": run_ids, "states": states, "state": state, "outputs": outputs}


def _audit(runs: dict[str, Any], task_id: str, run: int = 0) -> list[Any]:
    day = datetime.now(UTC).date()
    records = runs["state"].audit().read("agent_cases", day, limit=5000, run_id=runs["run_ids"][run])
    return [record for record in records if record.task_id == task_id]


def _run_record(runs: dict[str, Any], task_id: str, run: int = 0) -> tuple[Any, list[dict[str, Any]]]:
    found = runs["state"].agent_runs().get("agent_cases", runs["run_ids"][run], task_id)
    assert found is not None, f"no agent run record for {task_id}"
    return found


def test_tool_calls_are_audited_and_pii_never_reaches_the_model(runs: dict[str, Any]) -> None:
    assert runs["states"][runs["run_ids"][0]]["tools_and_pii"] == "success"
    summary, transcript = _run_record(runs, "tools_and_pii")
    assert summary.status == "success"
    assert summary.tool_calls == 1
    assert summary.requests == 2
    assert summary.guardrail_hits >= 2
    text = json.dumps(transcript)
    assert "jane.doe@example.com" not in text
    assert "4111 1111 1111 1111" not in text
    assert "[REDACTED:EMAIL]" in text
    assert "[REDACTED:CARD]" in text
    audit = _audit(runs, "tools_and_pii")
    tools = [r for r in audit if r.kind == "tool_call"]
    assert [(r.name, r.outcome) for r in tools] == [("search_knowledge", "ok")]
    assert tools[0].detail["args"]["query"] == "duplicate charge refund"
    assert len([r for r in audit if r.kind == "model_call"]) == 2
    assert {r.name for r in audit if r.kind == "guardrail_hit"} >= {"pii.email", "pii.card"}


def test_a_tool_outside_the_allowlist_is_refused_and_audited_and_secrets_are_masked(
    runs: dict[str, Any],
) -> None:
    assert runs["states"][runs["run_ids"][0]]["injection"] == "success"
    _summary, transcript = _run_record(runs, "injection")
    audit = _audit(runs, "injection")
    refused = [r for r in audit if r.kind == "guardrail_hit" and r.name == "tool_not_allowed"]
    assert refused
    assert refused[0].outcome == "blocked"
    assert refused[0].detail["tool"] == "publish_event"
    # The publish tool never ran (it would have needed approval and a broker).
    assert not [r for r in audit if r.kind == "tool_call"]
    assert SECRET not in json.dumps(transcript)
    assert any(r.name == "secret" for r in audit if r.kind == "guardrail_hit")


def test_a_failing_tool_gives_the_agent_a_structured_error_and_the_run_continues(
    runs: dict[str, Any],
) -> None:
    assert runs["states"][runs["run_ids"][0]]["tool_error"] == "success"
    [call] = [r for r in _audit(runs, "tool_error") if r.kind == "tool_call"]
    assert (call.name, call.outcome, call.detail["error"]) == ("flaky_lookup", "error", "RuntimeError")
    _, transcript = _run_record(runs, "tool_error")
    returns = [
        part["content"]
        for message in transcript
        for part in message["parts"]
        if part["part_kind"] == "tool-return" and part["tool_name"] == "flaky_lookup"
    ]
    assert returns == [{"error": "RuntimeError", "message": "order backend unreachable for 5512"}]


def test_an_exhausted_budget_fails_the_task_and_is_recorded(runs: dict[str, Any]) -> None:
    assert runs["states"][runs["run_ids"][0]]["budget"] == "failed"
    summary, _ = _run_record(runs, "budget")
    assert summary.status == "failed"
    assert "UsageLimitExceeded" in (summary.error or "")
    assert "tool_calls_limit" in (summary.error or "")


def test_output_that_never_validates_fails_after_bounded_retries(runs: dict[str, Any]) -> None:
    assert runs["states"][runs["run_ids"][0]]["bad_output"] == "failed"
    summary, _ = _run_record(runs, "bad_output")
    assert summary.status == "failed"
    assert "Exceeded maximum output retries" in (summary.error or "")
    assert 1 < summary.requests <= 3


def test_memory_carries_a_session_across_runs(runs: dict[str, Any]) -> None:
    first, second = runs["run_ids"]
    assert runs["states"][first]["memory"] == runs["states"][second]["memory"] == "success"
    turns = runs["state"].memory().turns("customer-memory-test", last_turns=10)
    assert [turn.run_id for turn in turns] == [first, second]
    _, transcript = _run_record(runs, "memory", run=1)
    prompts = [
        part["content"]
        for message in transcript
        for part in message["parts"]
        if part["part_kind"] == "user-prompt"
    ]
    assert prompts == ["Hello again, visit number 1", "Hello again, visit number 2"]


def test_an_oversized_prompt_is_refused_before_any_model_call(runs: dict[str, Any]) -> None:
    assert runs["states"][runs["run_ids"][0]]["too_long"] == "failed"
    summary, _ = _run_record(runs, "too_long")
    assert summary.status == "failed"
    assert summary.requests == 0
    assert [r.name for r in _audit(runs, "too_long") if r.kind == "guardrail_hit"] == ["input_size"]
    assert "guardrail refused the prompt" in runs["outputs"][0]


def test_the_decorator_runs_the_same_operator(runs: dict[str, Any]) -> None:
    assert runs["states"][runs["run_ids"][0]]["decorated"] == "success"
    summary, transcript = _run_record(runs, "decorated")
    assert summary.tool_calls == 1
    prompts = [p["content"] for m in transcript for p in m["parts"] if p["part_kind"] == "user-prompt"]
    assert prompts == ["Customer question: how long do refunds take?"]
