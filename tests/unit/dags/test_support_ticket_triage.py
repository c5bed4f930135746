"""The flagship DAG end to end under `airflow dags test`, on the embedded default (no service).

The approval step waits for a person (Airflow HITL); the test answers it the way
``make demo`` does: ``python -m operators.cli approve`` sends the decision through
Airflow's REST API (``PATCH .../hitlDetails``) over the same metadata database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dags.support_ticket_triage import SAMPLE_TICKET, triage_dag
from include.state.embedded import EmbeddedState, EmbeddedStateSettings
from tests.airflow_runs import ROOT, dags_test, embedded_env, extractive_llm, task_states


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    return embedded_env(home, ROOT / "dags", AIRFLOW_CONN_AGENTFLOW_LLM=extractive_llm())


def _dags_test(env: dict[str, str], ticket: dict[str, Any], decision: str | None) -> str:
    return dags_test(env, "support_ticket_triage", {"ticket": ticket}, decision=decision)


def _latest_states(env: dict[str, str]) -> dict[str, str]:
    return {task: state for (task, _), state in task_states(env, "support_ticket_triage").items()}


def test_sample_ticket_is_triaged_approved_and_audited(airflow_home: dict[str, str]) -> None:
    output = _dags_test(airflow_home, SAMPLE_TICKET, "Approve")
    assert "state=success" in output, output[-3000:]
    assert "Tool call sequence: search_knowledge -> final_result" in output
    assert "Triage of ticket T-1001: category=billing" in output
    assert "Drafted without an LLM" in output
    assert "No kafka_default connection: reply" in output
    states = _latest_states(airflow_home)
    assert states["triage.classify_ticket"] == states["triage.publish_reply"] == "success"
    state = EmbeddedState(EmbeddedStateSettings(path=Path(airflow_home["AGENTFLOW_STATE_DB"])))
    audit = state.audit().read("support_ticket_triage", datetime.now(UTC).date(), limit=1000)
    approvals = [r for r in audit if r.kind == "approval"]
    assert [(r.outcome, r.actor) for r in approvals] == [("approved", "admin")]
    # The customer's e-mail address in the ticket never reached the model or the transcript.
    assert any(r.kind == "guardrail_hit" and r.name == "pii.email" for r in audit)
    runs = state.agent_runs().list_runs(datetime.now(UTC).date(), dag_id="support_ticket_triage")
    summary, transcript = state.agent_runs().get(
        "support_ticket_triage", runs[0].run_id, "triage.draft_reply", runs[0].map_index
    )
    assert summary.session_id == "customer-42"
    assert summary.tool_calls == 1
    assert "jane.doe@example.com" not in json.dumps(transcript)


def test_a_rejected_reply_is_not_published(airflow_home: dict[str, str]) -> None:
    output = _dags_test(airflow_home, SAMPLE_TICKET, "Reject")
    states = _latest_states(airflow_home)
    assert states["triage.approve_reply"] == "success", output[-3000:]
    assert states["triage.publish_reply"] == "skipped"


def test_bad_ticket_fails_in_validation_without_retry(airflow_home: dict[str, str]) -> None:
    bad = {**SAMPLE_TICKET, "payload": {**SAMPLE_TICKET["payload"], "body": ""}}
    output = _dags_test(airflow_home, bad, None)
    assert "state=failed" in output, output[-3000:]
    assert "invalid support ticket" in output
    assert "validation error for SupportTicket" in output
    assert "at least 1 character" in output
    # The agent never ran: no model was called for a bad event.
    assert "Tool call" not in output


def test_read_tickets_names_the_bad_field() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    read = triage_dag.get_task("read_tickets").python_callable
    with pytest.raises(AirflowFailException, match="event_id"):
        read(params={"ticket": {**SAMPLE_TICKET, "event_id": ""}})
    bad_payload = {**SAMPLE_TICKET["payload"], "channel": "fax"}
    with pytest.raises(AirflowFailException, match="channel"):
        read(params={"ticket": {**SAMPLE_TICKET, "payload": bad_payload}})
    [result] = read(params={"ticket": SAMPLE_TICKET})
    assert result["ticket"]["ticket_id"] == "T-1001"
    assert result["envelope"]["event_id"] == "evt-demo-0001"
