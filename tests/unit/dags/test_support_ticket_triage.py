"""The flagship DAG end to end under `airflow dags test`, on the embedded default (no service)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dags.support_ticket_triage import SAMPLE_TICKET, triage_dag

AIRFLOW = str(Path(sys.executable).parent / "airflow")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def _dags_test(env: dict[str, str], ticket: dict) -> subprocess.CompletedProcess[str]:
    conf = json.dumps({"ticket": ticket})
    return subprocess.run(
        [AIRFLOW, "dags", "test", "support_ticket_triage", "-c", conf],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_sample_ticket_is_triaged(airflow_home: dict[str, str]) -> None:
    run = _dags_test(airflow_home, SAMPLE_TICKET)
    output = run.stdout + run.stderr
    assert "state=success" in output, output[-3000:]
    assert "Tool call sequence: search_knowledge -> final_result" in output
    assert "Triage of ticket T-1001: category=billing" in output


def test_bad_ticket_fails_in_validation_without_retry(airflow_home: dict[str, str]) -> None:
    bad = {**SAMPLE_TICKET, "payload": {**SAMPLE_TICKET["payload"], "body": ""}}
    run = _dags_test(airflow_home, bad)
    output = run.stdout + run.stderr
    assert "state=failed" in output, output[-3000:]
    assert "invalid support ticket event" in output
    assert "validation error for SupportTicket" in output
    assert "at least 1 character" in output
    # The agent never ran: no model was called for a bad event.
    assert "Tool call" not in output


def test_validate_ticket_names_the_bad_field() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    validate = triage_dag.get_task("validate_ticket").python_callable
    with pytest.raises(AirflowFailException, match="event_id"):
        validate(params={"ticket": {**SAMPLE_TICKET, "event_id": ""}})
    bad_payload = {**SAMPLE_TICKET["payload"], "channel": "fax"}
    with pytest.raises(AirflowFailException, match="channel"):
        validate(params={"ticket": {**SAMPLE_TICKET, "payload": bad_payload}})
    result = validate(params={"ticket": SAMPLE_TICKET})
    assert result["ticket"]["ticket_id"] == "T-1001"
    assert result["envelope"]["event_id"] == "evt-demo-0001"
