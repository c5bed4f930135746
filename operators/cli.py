"""Command-line helpers for ``make demo``.

* ``python -m operators.cli result DAG_ID TASK_ID``: print what a task of the DAG's latest
  run returned, read from the metadata database through Airflow's own models.
* ``python -m operators.cli approve DAG_ID [--option Approve]``: wait for the DAG's latest
  run to ask for a human decision (Airflow HITL, the Required Actions page) and answer it
  through Airflow's REST API (``PATCH .../hitlDetails``), served in this process by
  Airflow's own API app over the same metadata database, as the local ``admin`` user. The
  embedded demo has no API server; on the full stack, answer in the UI or the REST API.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def latest_result(dag_id: str, task_id: str) -> tuple[str, str, Any]:
    """Return ``(run_id, state, value)`` for the latest run of ``dag_id`` and ``task_id``'s return value.

    :raises LookupError: if the DAG has no run, or the task pushed no return value in it.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc()).limit(1)
        ).first()
        if run is None:
            raise LookupError(f"DAG {dag_id!r} has no run in this metadata database")
        row = session.scalars(
            XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, task_ids=task_id, key="return_value")
        ).first()
        if row is None:
            raise LookupError(f"task {task_id!r} of run {run.run_id!r} ({run.state}) returned no value")
        return run.run_id, str(run.state), XComModel.deserialize_value(row)


def _pending_requests(
    dag_id: str, since: Any
) -> tuple[str | None, str | None, list[tuple[str, int, str, dict[str, Any]]]]:
    """The latest run (after ``since``): its id, state and tasks waiting for a human."""
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_id, DagRun.run_after >= since)
            .order_by(DagRun.run_after.desc())
            .limit(1)
        ).first()
        if run is None:
            return None, None, []
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, HITLDetail.subject, HITLDetail.params)
            .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
            .where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run.run_id,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                HITLDetail.responded_at.is_(None),
            )
        ).all()
        # The form's defaults (e.g. common.ai's hidden request number) go back unchanged.
        pending: list[tuple[str, int, str, dict[str, Any]]] = [
            (
                str(task_id),
                int(map_index),
                str(subject),
                {name: (spec or {}).get("value") for name, spec in (params or {}).items()},
            )
            for task_id, map_index, subject, params in rows
        ]
        return run.run_id, str(run.state), pending


def approve_pending(dag_id: str, option: str, *, timeout_s: float, poll_s: float = 1.0) -> list[str]:
    """Answer every pending HITL request of the DAG's next run with ``option``, through the REST API.

    Waits up to ``timeout_s`` for a run started from now on (less 5 s) to ask; returns
    what was answered (nothing when that run ends without asking).

    :raises TimeoutError: nothing asked for a decision in time.
    :raises RuntimeError: the REST API refused the answer (its message is included).
    """
    import time
    from datetime import UTC, datetime, timedelta

    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    since = datetime.now(UTC) - timedelta(seconds=5)
    deadline = time.monotonic() + timeout_s
    while True:
        run_id, state, pending = _pending_requests(dag_id, since)
        if pending:
            break
        if state in ("success", "failed"):
            return []
        if time.monotonic() > deadline:
            raise TimeoutError(f"no pending approval in the latest run of {dag_id!r} after {timeout_s:.0f}s")
        time.sleep(poll_s)
    client = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    answered = []
    for task_id, map_index, subject, params_input in pending:
        response = client.patch(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
            json={"chosen_options": [option], "params_input": params_input},
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code != 200:
            raise RuntimeError(f"the REST API refused the answer for {task_id}[{map_index}]: {response.text}")
        answered.append(f"{task_id}[{map_index}] {subject!r}: {option}")
    return answered


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the result as indented JSON, or the error on one line."""
    parser = argparse.ArgumentParser(prog="python -m operators.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    result = sub.add_parser("result", help="print a task's return value from the DAG's latest run")
    result.add_argument("dag_id")
    result.add_argument("task_id")
    approve = sub.add_parser("approve", help="answer the pending approvals of the DAG's latest run")
    approve.add_argument("dag_id")
    approve.add_argument("--option", default="Approve", help="the option to choose (default Approve)")
    approve.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for a request")
    args = parser.parse_args(argv)
    if args.command == "approve":
        try:
            answered = approve_pending(args.dag_id, args.option, timeout_s=args.timeout)
        except (TimeoutError, RuntimeError) as err:
            sys.stderr.write(f"{err}\n")
            return 1
        sys.stdout.write("".join(f"answered through the REST API: {line}\n" for line in answered))
        return 0
    try:
        run_id, state, value = latest_result(args.dag_id, args.task_id)
    except LookupError as err:
        sys.stderr.write(f"{err}\n")
        return 1
    sys.stdout.write(f"{args.dag_id} run {run_id}: {state}\n{json.dumps(value, indent=2)}\n")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
