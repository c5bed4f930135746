"""Helpers for tests that run DAGs with the real `airflow dags test` in a throw-away AIRFLOW_HOME.

A person's approval (Airflow HITL) is given the way ``make demo`` gives it: ``python -m
operators.cli approve`` answers through Airflow's REST API over the same metadata database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def embedded_env(home: Path, dags_folder: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow on a fresh SQLite metadata DB in ``home``, migrated, pools imported.

    Connections and Airflow settings of the calling environment are dropped; the agent state
    is the embedded SQLite file ``home/state.db`` unless ``extra`` gives connections.

    :param home: the AIRFLOW_HOME (created).
    :param dags_folder: the DAG folder.
    :param extra: more variables (``AIRFLOW_CONN_*`` connections, settings).
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "AGENTFLOW_STATE_DB"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES=r"airflow\..* include\..*",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AGENTFLOW_STATE_DB=str(home / "state.db"),
        **extra,
    )
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    pools = str(ROOT / "config" / "pools.json")
    subprocess.run([AIRFLOW, "pools", "import", pools], env=env, check=True, capture_output=True, timeout=120)
    return env


def extractive_llm() -> str:
    """The ``agentflow_llm`` connection of the embedded default: the no-LLM extractive policy."""
    return json.dumps(
        {"conn_type": "pydanticai_extractive", "extra": {"search_tool": "search_knowledge", "k": 3}}
    )


def dags_test(
    env: dict[str, str], dag_id: str, conf: dict[str, Any] | None = None, *, decision: str | None = None
) -> str:
    """Run ``airflow dags test``; answer its approvals with ``decision`` (``None``: none expected).

    Returns the run's log. The run never outlives the call, also when the approver fails.
    """
    test = subprocess.Popen(
        [AIRFLOW, "dags", "test", dag_id, "-c", json.dumps(conf or {})],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        if decision is not None:
            approver = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "operators.cli",
                    "approve",
                    dag_id,
                    "--option",
                    decision,
                    "--timeout",
                    "300",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
                cwd=ROOT,
            )
            assert approver.returncode == 0, approver.stderr
            assert f": {decision}" in approver.stdout, approver.stdout
        output, _ = test.communicate(timeout=900)
    finally:
        test.kill()
    return output


def task_states(env: dict[str, str], dag_id: str) -> dict[tuple[str, int], str]:
    """``(task_id, map_index) -> state`` of the DAG's latest run in the SQLite metadata DB."""
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        [run_id] = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        rows = db.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        ).fetchall()
    return {(task_id, map_index): state for task_id, map_index, state in rows}


def read_topic(bootstrap: str, topic: str, *, timeout: float = 60.0, idle_s: int = 5) -> list[dict[str, Any]]:
    """Every JSON event on ``topic`` from the start, read until idle for ``idle_s`` polls or ``timeout``."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[dict[str, Any]] = []
    deadline, idle = time.monotonic() + timeout, 0
    try:
        while time.monotonic() < deadline and idle < idle_s:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1
                continue
            idle = 0
            if message.error() is None:
                found.append(json.loads(message.value()))
    finally:
        consumer.close()
    return found
