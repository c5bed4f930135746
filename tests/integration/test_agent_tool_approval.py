"""An agent's side effect waits for a human: approved, it reaches Kafka; rejected, it does not.

Real Airflow (``airflow dags test`` in a throw-away AIRFLOW_HOME), the real broker, and the
Cassandra state (memory, audit, run records). The DAG is
``tests/integration/dags/agent_tool_approval.py``: a scripted model (pydantic-ai
``FunctionModel``) calls ``KafkaPublishToolset.publish_event``; common.ai parks the task in
``awaiting_input`` with the call on the Required Actions page; ``python -m operators.cli
approve`` answers through Airflow's REST API (``PATCH .../hitlDetails``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.airflow_runs import dags_test, embedded_env, read_topic
from tests.integration.conftest import REPO_ROOT

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration

DAG_ID = "agent_tool_approval"


def _reply(correlation_id: str) -> dict[str, Any]:
    return {
        "correlation_id": correlation_id,
        "ticket_id": "T-77",
        "customer_id": "c-77",
        "result": {
            "category": "billing",
            "reply": "We received it.",
            "confidence": 0.9,
            "drafted_by": "agent",
        },
    }


def _env(tmp_path: Path, kafka_bootstrap: str, correlation_id: str) -> dict[str, str]:
    turns = [
        [
            {
                "tool": "publish_event",
                "args": {
                    "topic": "support.replies",
                    "event_type": "support.reply.created",
                    "payload": _reply(correlation_id),
                    "correlation_id": correlation_id,
                },
            }
        ],
        {"output": "done"},
    ]
    cassandra = {
        "host": "127.0.0.1",
        "port": 9042,
        "schema": "agentflow",
        "extra": {"local_dc": "datacenter1"},
    }
    return embedded_env(
        tmp_path / "airflow",
        REPO_ROOT / "tests" / "integration" / "dags",
        AIRFLOW_CONN_PUBLISH_LLM=json.dumps({"conn_type": "pydanticai_scripted", "extra": {"turns": turns}}),
        AIRFLOW_CONN_KAFKA_DEFAULT=json.dumps(
            {"conn_type": "kafka", "extra": {"bootstrap.servers": kafka_bootstrap}}
        ),
        AIRFLOW_CONN_CASSANDRA_DEFAULT=json.dumps({"conn_type": "agentflow_cassandra", **cassandra}),
    )


def _run_and_decide(env: dict[str, str], decision: str) -> str:
    return dags_test(env, DAG_ID, decision=decision)


def _replies_for(kafka_bootstrap: str, correlation_id: str) -> list[dict[str, Any]]:
    return [
        e for e in read_topic(kafka_bootstrap, "support.replies") if e.get("correlation_id") == correlation_id
    ]


def _audit(cassandra_session: Session, correlation_id: str) -> list[Any]:
    from datetime import UTC, datetime

    rows = cassandra_session.execute(
        "SELECT kind, name, outcome, detail FROM agentflow.audit_trail WHERE dag_id = %s AND day = %s",
        (DAG_ID, datetime.now(UTC).date()),
    )
    return [row for row in rows if correlation_id in (row.detail or "") or row.kind == "approval"]


def test_an_approved_call_publishes_and_a_rejected_one_does_not(
    tmp_path: Path, kafka_bootstrap: str, cassandra_session: Session
) -> None:
    approved_id, rejected_id = f"evt-{uuid.uuid4()}", f"evt-{uuid.uuid4()}"

    output = _run_and_decide(_env(tmp_path / "a", kafka_bootstrap, approved_id), "Approve")
    assert "state=success" in output, output[-3000:]
    [event] = _replies_for(kafka_bootstrap, approved_id)
    assert event["event_type"] == "support.reply.created"
    assert event["payload"]["ticket_id"] == "T-77"

    output = _run_and_decide(_env(tmp_path / "r", kafka_bootstrap, rejected_id), "Reject")
    assert "state=success" in output, output[-3000:]
    assert _replies_for(kafka_bootstrap, rejected_id) == []

    decisions = [
        (row.name, row.outcome) for row in _audit(cassandra_session, approved_id) if row.kind == "approval"
    ]
    assert ("tool approval", "approved") in decisions
    assert ("tool approval", "rejected") in decisions
    published = [row for row in _audit(cassandra_session, approved_id) if row.kind == "tool_call"]
    assert [(row.name, row.outcome) for row in published] == [("publish_event", "ok")]
