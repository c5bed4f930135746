"""SIGKILL a durable agent task after N tool calls; the retry finishes without redoing them.

Real Airflow in subprocesses (``airflow tasks test`` in a throw-away AIRFLOW_HOME with a SQLite
metadata DB), the execution API's ``[state_store] backend`` set to ``CassandraStoreBackend``, so
common.ai's durable journal lives in the real Cassandra. The DAG is
``tests/integration/dags/durable_resume.py``; its model is the ``pydanticai_scripted``
connection, which calls ``record_step(1..M)`` one per turn. Each call appends a line to a file:
those are the side effects counted. Steps after N wait for a gate file, so the kill lands
after N journaled tool calls and before step N+1 has any effect.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.conftest import REPO_ROOT

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration

DAG_ID = "durable_resume"
TASK_ID = "agent"
KILL_AFTER = 3
STEPS = 5
DURABLE_PREFIX = "__commonai_durable__"
AIRFLOW_BIN = str(Path(sys.executable).parent / "airflow")
SCHEMA = REPO_ROOT / "config" / "cassandra" / "010_state_store.cql"
CASSANDRA_CONN = {
    "conn_type": "cassandra",
    "host": "127.0.0.1",
    "port": 9042,
    "schema": "agentflow",
    "extra": {"local_dc": "datacenter1"},
}


def apply_state_store_schema(session: Session) -> None:
    """Apply ``config/cassandra/010_state_store.cql`` (idempotent: IF NOT EXISTS)."""
    text = "\n".join(line for line in SCHEMA.read_text().splitlines() if not line.lstrip().startswith("--"))
    for statement in filter(None, (part.strip() for part in text.split(";"))):
        session.execute(statement)


def journal_rows(session: Session, run_id: str) -> dict[str, Any]:
    """The durable journal keys of the task in Cassandra, with their decoded values."""
    rows = session.execute(
        "SELECT key, value FROM agentflow.task_state_store "
        "WHERE dag_id = %s AND run_id = %s AND task_id = %s",
        (DAG_ID, run_id, TASK_ID),
    )
    return {row.key: json.loads(row.value) for row in rows if row.key.startswith(DURABLE_PREFIX)}


def tool_steps(rows: dict[str, Any]) -> list[dict[str, Any]]:
    return [value for value in rows.values() if isinstance(value, dict) and value.get("kind") == "tool"]


def side_effects(workdir: Path) -> list[tuple[int, int]]:
    """``(step, pid)`` of every ``record_step`` call that took effect, in order."""
    path = workdir / "side_effects.log"
    if not path.exists():
        return []
    return [(int(step), int(pid)) for step, pid in (line.split() for line in path.read_text().splitlines())]


@pytest.fixture
def airflow_env(tmp_path: Path, cassandra_session: Session) -> dict[str, str]:
    """Environment of an Airflow with a fresh SQLite DB, our DAG folder and the Cassandra backend."""
    apply_state_store_schema(cassandra_session)
    home = tmp_path / "airflow"
    workdir = tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    turns: list[Any] = [[{"tool": "record_step", "args": {"step": step}}] for step in range(1, STEPS + 1)]
    turns.append({"output": "all steps done"})
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "DURABLE_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "tests" / "integration" / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__STATE_STORE__BACKEND": "operators.state_store.cassandra.CassandraStoreBackend",
            "AIRFLOW_CONN_CASSANDRA_DEFAULT": json.dumps(CASSANDRA_CONN),
            "AIRFLOW_CONN_SCRIPTED_LLM": json.dumps(
                {"conn_type": "pydanticai_scripted", "extra": {"turns": turns}}
            ),
            "DURABLE_TEST_DIR": str(workdir),
            "DURABLE_TEST_BLOCK_AFTER": str(KILL_AFTER),
        }
    )
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        run_airflow(env, *args)
    return env


def run_airflow(env: dict[str, str], *args: str) -> None:
    """Run one ``airflow`` CLI command to completion; fail the test on a non-zero exit."""
    proc = subprocess.run(
        [AIRFLOW_BIN, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (
        f"airflow {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


def test_sigkill_after_n_tool_calls_then_retry_does_not_repeat_them(
    airflow_env: dict[str, str], cassandra_session: Session
) -> None:
    workdir = Path(airflow_env["DURABLE_TEST_DIR"])
    run_id = f"durable_{uuid.uuid4().hex[:12]}"
    # The DAG run both attempts belong to (``tasks test`` on an unknown run id would make a
    # temporary run per attempt).
    run_airflow(airflow_env, "dags", "trigger", DAG_ID, "--run-id", run_id)
    command = [AIRFLOW_BIN, "tasks", "test", DAG_ID, TASK_ID, run_id]

    # Attempt 1: runs N tool calls, journals them in Cassandra, then waits in step N+1.
    first_log = workdir / "attempt1.log"
    with open(first_log, "w") as out:
        first = subprocess.Popen(
            command,
            env=airflow_env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            done = side_effects(workdir)
            journaled = tool_steps(journal_rows(cassandra_session, run_id))
            if len(done) >= KILL_AFTER and len(journaled) >= KILL_AFTER:
                break
            assert first.poll() is None, f"attempt 1 ended early:\n{first_log.read_text()[-5000:]}"
            assert time.monotonic() < deadline, (
                f"no {KILL_AFTER} journaled tool calls:\n{first_log.read_text()[-5000:]}"
            )
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    # What the killed task left: N side effects, made by the killed process, and N tool
    # results in the Cassandra journal (the same rows the retry must replay).
    assert side_effects(workdir) == [(step, first.pid) for step in range(1, KILL_AFTER + 1)]
    journal = journal_rows(cassandra_session, run_id)
    assert len(tool_steps(journal)) == KILL_AFTER
    receipts = json.dumps([step["payload"] for step in tool_steps(journal)])
    for step in range(1, KILL_AFTER + 1):
        assert f"receipt-{step}" in receipts

    # Attempt 2 (the retry, same DAG run and task instance): replays the journal, runs the rest.
    (workdir / "gate").touch()
    second = subprocess.run(
        command, env=airflow_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-5000:]
    assert "new_state=success" in output, output[-5000:]
    replayed = re.search(r"Durable: replayed \d+ steps \((\d+) model, (\d+) tool", output)
    assert replayed is not None, output[-5000:]
    assert int(replayed.group(2)) == KILL_AFTER

    effects = side_effects(workdir)
    assert [step for step, _ in effects] == list(range(1, STEPS + 1)), "a tool call ran twice or never"
    assert {pid for step, pid in effects if step <= KILL_AFTER} == {first.pid}
    assert first.pid not in {pid for step, pid in effects if step > KILL_AFTER}

    # On success common.ai deletes the journal: nothing of it is left in Cassandra.
    assert journal_rows(cassandra_session, run_id) == {}
