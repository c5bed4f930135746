"""Command-line helpers: ``python -m operators.cli result DAG_ID TASK_ID``.

Used by ``make demo`` to print what the flagship DAG's last run returned, read from the
metadata database through Airflow's own models.
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


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the result as indented JSON, or the error on one line."""
    parser = argparse.ArgumentParser(prog="python -m operators.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    result = sub.add_parser("result", help="print a task's return value from the DAG's latest run")
    result.add_argument("dag_id")
    result.add_argument("task_id")
    args = parser.parse_args(argv)
    try:
        run_id, state, value = latest_result(args.dag_id, args.task_id)
    except LookupError as err:
        sys.stderr.write(f"{err}\n")
        return 1
    sys.stdout.write(f"{args.dag_id} run {run_id}: {state}\n{json.dumps(value, indent=2)}\n")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
