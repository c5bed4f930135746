"""`make up` starts a working Airflow on the full stack; `make down` leaves nothing running.

Drives the real thing: the launcher's services, Airflow's api-server, scheduler,
dag-processor, triggerer and a Celery worker, over the REST API. The flagship DAG is
triggered through the API and must finish on the CeleryExecutor.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STACK = Path(os.environ.get("AGENTFLOW_STACK_DIR", ROOT / ".stack"))
API = "http://127.0.0.1:8080"
PASSWORDS = STACK / "airflow" / "simple_auth_manager_passwords.json.generated"


def _our_processes() -> list[str]:
    """Command lines of live processes started from this checkout's stack or virtualenv."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(STACK) in cmdline or f"{ROOT}/.venv/bin/airflow" in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _make(target: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # Without the embedded settings tests/conftest.py exported: the stack reads its own.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[subprocess.CompletedProcess[str]]:
    up = _make("up", timeout=900)
    try:
        yield up
    finally:
        down = _make("down", timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="module")
def client(stack: subprocess.CompletedProcess[str]) -> Iterator[httpx.Client]:
    assert stack.returncode == 0, f"make up failed:\n{stack.stdout[-4000:]}\n{stack.stderr[-4000:]}"
    password = json.loads(PASSWORDS.read_text())["admin"]
    token = httpx.post(f"{API}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    assert token.status_code in (200, 201), token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    with httpx.Client(base_url=API, headers=headers, timeout=30) as client:
        yield client


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

    first = _return_value(client, "knowledge_ingest", _run_dag(client, "knowledge_ingest"), "ingest_corpus")
    assert first["chunks"] >= first["documents"] > 0
    assert first["written"] + first["unchanged"] == first["chunks"]
    server = InferenceClient(STACK / "inference" / "agentflow.sock")
    after_first = server.stats()
    assert after_first["loads"] == 1, after_first

    # A second task on the same worker: nothing new to write, and the model is not loaded again.
    second = _return_value(client, "knowledge_ingest", _run_dag(client, "knowledge_ingest"), "ingest_corpus")
    assert second["written"] == 0
    assert second["unchanged"] == first["chunks"]
    after_second = server.stats()
    assert after_second["loads"] == 1, after_second
    assert after_second["hits"] > after_first["hits"]


def test_flagship_dag_runs_on_the_celery_executor(client: httpx.Client) -> None:
    dag_id = "support_ticket_triage"
    run_id = _run_dag(client, dag_id)
    reply = _return_value(client, dag_id, run_id, "publish_reply")
    assert reply["correlation_id"] == "evt-demo-0001"
    assert reply["result"]["category"] == "billing"

    # The lifecycle listener published the run's events to Kafka.
    events = _workflow_events(run_id, until={"workflow.completed", "agent.executed"}, timeout=120)
    types = [event["event_type"] for event in events]
    assert "workflow.started" in types
    assert "workflow.completed" in types
    steps = {e["payload"]["task_id"] for e in events if e["event_type"] == "workflow.step_completed"}
    assert steps == {"validate_ticket", "draft_reply", "publish_reply"}
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
    down = _make("down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    deadline = time.monotonic() + 30
    while _our_processes() and time.monotonic() < deadline:
        time.sleep(1)
    assert _our_processes() == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{API}/api/v2/monitor/health", timeout=5)
