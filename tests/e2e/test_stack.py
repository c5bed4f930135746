"""`make up` starts a working Airflow on the full stack; `make down` leaves nothing running.

Drives the real thing: the launcher's services, Airflow's api-server, scheduler,
dag-processor, triggerer and a Celery worker, over the REST API. The flagship DAG is
started by a ticket event produced to Kafka, waits for a human approval that the test
gives through the REST API, and must finish on the CeleryExecutor with its reply on
``support.replies``.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.airflow_runs import read_topic
from tests.e2e import conftest
from tests.e2e.conftest import API, our_processes

pytestmark = pytest.mark.e2e

STACK = conftest.STACK


def test_make_up_prints_the_ui_address_and_login(stack: subprocess.CompletedProcess[str]) -> None:
    assert stack.returncode == 0, stack.stderr[-4000:]
    assert API in stack.stdout
    assert "admin" in stack.stdout


def test_health_is_healthy(client: httpx.Client) -> None:
    health = httpx.get(f"{API}/api/v2/monitor/health", timeout=30).json()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health


def test_our_provider_is_registered(client: httpx.Client) -> None:
    providers = client.get("/api/v2/providers", params={"limit": 1000})
    assert providers.status_code == 200, providers.text
    packages = {p["package_name"]: p for p in providers.json()["providers"]}
    assert "agentflow" in packages, sorted(packages)
    assert "apache-airflow-providers-common-ai" in packages


def test_anonymous_api_calls_are_refused(stack: subprocess.CompletedProcess[str]) -> None:
    assert httpx.get(f"{API}/api/v2/providers", timeout=30).status_code == 401


def _run_dag(client: httpx.Client, dag_id: str, timeout: float = 300) -> str:
    """Trigger ``dag_id`` through the REST API, wait for the run to end, return its run id."""
    deadline = time.monotonic() + 180
    while client.get(f"/api/v2/dags/{dag_id}").status_code != 200:  # wait for the dag-processor
        assert time.monotonic() < deadline, f"{dag_id} was never parsed"
        time.sleep(2)
    client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    run = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert run.status_code == 200, run.text
    run_id = run.json()["dag_run_id"]

    deadline = time.monotonic() + timeout
    state = "queued"
    while state not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run {run_id} still {state}"
        time.sleep(3)
        state = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
    assert state == "success", f"{dag_id} run {run_id} {state}"
    return run_id


def _return_value(client: httpx.Client, dag_id: str, run_id: str, task_id: str) -> Any:
    xcom = client.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    )
    assert xcom.status_code == 200, xcom.text
    return xcom.json()["value"]


def test_knowledge_ingest_runs_on_the_intel_worker_with_a_warm_model(client: httpx.Client) -> None:
    from include.inference.client import InferenceClient

    first = _return_value(client, "knowledge_ingest", _run_dag(client, "knowledge_ingest"), "report")
    assert first["chunks"] >= first["documents"] > 0
    assert first["written"] + first["unchanged"] == first["chunks"]
    server = InferenceClient(STACK / "inference" / "agentflow.sock")
    after_first = server.stats()
    assert after_first["loads"] == 1, after_first

    # A second task on the same worker: nothing new to write, and the model is not loaded again.
    second = _return_value(client, "knowledge_ingest", _run_dag(client, "knowledge_ingest"), "report")
    assert second["written"] == 0
    assert second["unchanged"] == first["chunks"]
    after_second = server.stats()
    assert after_second["loads"] == 1, after_second
    assert after_second["hits"] > after_first["hits"]


def test_flagship_dag_kafka_event_in_approval_through_the_rest_api_reply_out(client: httpx.Client) -> None:
    import uuid
    from datetime import UTC, datetime

    from tests.e2e.test_ui_browser import _produce_ticket, _run_for

    dag_id = "support_ticket_triage"
    event_id = f"evt-e2e-{uuid.uuid4()}"
    since = datetime.now(UTC)
    _produce_ticket(event_id)
    run_id = _run_for(client, event_id, since)

    # The run parks at the approval (no worker slot held) until a person answers.
    hitl = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/triage.approve_reply/0/hitlDetails"
    deadline = time.monotonic() + 300
    while client.get(hitl).status_code != 200:
        assert time.monotonic() < deadline, f"run {run_id} never asked for approval"
        assert client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"] != "failed"
        time.sleep(3)
    detail = client.get(hitl).json()
    assert "Proposed reply" in detail["body"]
    answer = client.patch(hitl, json={"chosen_options": ["Approve"], "params_input": {}})
    assert answer.status_code == 200, answer.text

    deadline = time.monotonic() + 300
    state = "running"
    while state not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run {run_id} still {state}"
        time.sleep(3)
        state = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
    assert state == "success", f"{dag_id} run {run_id} {state}"

    # The reply is on support.replies, correlated with the ticket event.
    [reply] = [
        e for e in read_topic("127.0.0.1:9092", "support.replies") if e.get("correlation_id") == event_id
    ]
    assert reply["event_type"] == "support.reply.created"
    assert reply["payload"]["ticket_id"] == f"T-{event_id}"
    assert reply["payload"]["result"]["category"] == "billing"

    # The lifecycle listener published the run's events to Kafka.
    events = _workflow_events(run_id, until={"workflow.completed", "agent.executed"}, timeout=120)
    types = [event["event_type"] for event in events]
    assert "workflow.started" in types
    assert "workflow.completed" in types
    steps = {e["payload"]["task_id"] for e in events if e["event_type"] == "workflow.step_completed"}
    assert {"read_tickets", "triage.draft_reply", "triage.approve_reply", "triage.publish_reply"} <= steps
    assert "agent.executed" in types


def _workflow_events(run_id: str, until: set[str], timeout: float) -> list[dict]:
    """Events on workflow.events and agent.events of ``run_id``, read until all ``until`` types came."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": "127.0.0.1:9092",
            "group.id": f"e2e-{run_id}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["workflow.events", "agent.events"])
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until <= {e["event_type"] for e in found}:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            event = json.loads(message.value())
            if event["payload"].get("run_id") == run_id:
                found.append(event)
    finally:
        consumer.close()
    return found


def test_make_down_leaves_nothing_running(stack: subprocess.CompletedProcess[str]) -> None:
    # Runs last in this module: stop explicitly here so the assertion sees the result.
    down = conftest.make("down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    deadline = time.monotonic() + 30
    while our_processes() and time.monotonic() < deadline:
        time.sleep(1)
    assert our_processes() == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{API}/api/v2/monitor/health", timeout=5)
