"""The audit trail: append-only records of what agents did, per DAG and UTC day.

Records are model calls, tool calls, approvals and guardrail hits. Each is one new row with
a time-based id in partition ``(dag_id, day)``, newest first, living ``audit_ttl_s``
(default 90 days); nothing updates or deletes a record. ``read`` serves the UI: one DAG,
one day, newest first, bounded by ``limit``, optionally one run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from include.state._values import check_key, dump_json
from include.state.session import CassandraClient

#: The most records one read returns.
MAX_READ = 5000


class AuditKind(StrEnum):
    """What an audit record is about."""

    MODEL_CALL = "model_call"
    TOOL_CALL = "tool_call"
    APPROVAL = "approval"
    GUARDRAIL_HIT = "guardrail_hit"


class AuditRecord(BaseModel):
    """One audit record.

    :param dag_id: the DAG.
    :param day: the UTC day it was recorded.
    :param record_id: its time-based id.
    :param at: when it was recorded (UTC).
    :param kind: what it is about.
    :param name: the model, tool, approval or guardrail name.
    :param run_id: the DAG run.
    :param task_id: the task.
    :param map_index: the task's map index.
    :param try_number: the task's try.
    :param actor: who acted (a user for approvals, the agent otherwise).
    :param outcome: e.g. ``ok``, ``error``, ``approved``, ``rejected``, ``blocked``.
    :param detail: any JSON details (secrets must be masked before recording).
    """

    model_config = ConfigDict(frozen=True)

    dag_id: str
    day: date
    record_id: UUID
    at: datetime
    kind: AuditKind
    name: str
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    actor: str | None = None
    outcome: str | None = None
    detail: Any = None


class AuditTrail:
    """Append and read audit records in ``<keyspace>.audit_trail``.

    :param client: the Cassandra client (its settings give the TTL and size limit).
    :param ttl_s: how long records live; default ``settings.audit_ttl_s``.
    """

    def __init__(self, client: CassandraClient, *, ttl_s: int | None = None) -> None:
        self.client = client
        self.ttl_s = int(ttl_s if ttl_s is not None else client.settings.audit_ttl_s)
        if self.ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {self.ttl_s}")
        self._table = f"{client.keyspace}.audit_trail"

    def record(
        self,
        *,
        dag_id: str,
        kind: AuditKind | str,
        name: str,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int | None = None,
        try_number: int | None = None,
        actor: str | None = None,
        outcome: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Append one record and return it.

        :raises ValueError: an unknown ``kind`` or an empty ``dag_id``/``name``.
        :raises NotJSONError: ``detail`` is not JSON-serialisable; nothing is written.
        :raises ValueTooLargeError: ``detail`` is larger than ``max_value_bytes``.
        """
        from cassandra.util import uuid_from_time

        check_key(dag_id, what="dag_id", max_len=250)
        check_key(name, what="name")
        audit_kind = AuditKind(kind)
        text = (
            dump_json(dict(detail), max_bytes=self.client.settings.max_value_bytes, what="the audit detail")
            if detail is not None
            else None
        )
        when = at.astimezone(UTC) if at is not None else datetime.now(UTC)
        record = AuditRecord(
            dag_id=dag_id,
            day=when.date(),
            record_id=uuid_from_time(when),
            at=when,
            kind=audit_kind,
            name=name,
            run_id=run_id,
            task_id=task_id,
            map_index=map_index,
            try_number=try_number,
            actor=actor,
            outcome=outcome,
            detail=json.loads(text) if text is not None else None,
        )
        self.client.execute(
            f"INSERT INTO {self._table} (dag_id, day, record_id, run_id, task_id, map_index, try_number, "
            "kind, name, actor, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            (
                dag_id,
                record.day,
                record.record_id,
                run_id,
                task_id,
                map_index,
                try_number,
                audit_kind.value,
                name,
                actor,
                outcome,
                text,
                self.ttl_s,
            ),
        )
        return record

    def read(self, dag_id: str, day: date, limit: int = 100, run_id: str | None = None) -> list[AuditRecord]:
        """Return one DAG's records of one UTC day, newest first.

        :param limit: the most records (1 to ``MAX_READ``).
        :param run_id: only this run's records (filtered inside the one partition).
        :raises ValueError: a limit out of range.
        """
        from cassandra.util import datetime_from_uuid1

        check_key(dag_id, what="dag_id", max_len=250)
        if not 1 <= int(limit) <= MAX_READ:
            raise ValueError(f"limit must be 1 to {MAX_READ}, got {limit}")
        cql = (
            f"SELECT dag_id, day, record_id, run_id, task_id, map_index, try_number, kind, name, actor, "
            f"outcome, detail FROM {self._table} WHERE dag_id = ? AND day = ?"
        )
        params: list[object] = [dag_id, day]
        if run_id is not None:
            # Filtering inside one partition: bounded by the partition, no index needed.
            cql += " AND run_id = ?"
            params.append(run_id)
        cql += " LIMIT ?" + (" ALLOW FILTERING" if run_id is not None else "")
        params.append(int(limit))
        return [
            AuditRecord(
                dag_id=row.dag_id,
                day=row.day.date() if hasattr(row.day, "date") else row.day,
                record_id=row.record_id,
                at=datetime_from_uuid1(row.record_id).replace(tzinfo=UTC),
                kind=AuditKind(row.kind),
                name=row.name,
                run_id=row.run_id,
                task_id=row.task_id,
                map_index=row.map_index,
                try_number=row.try_number,
                actor=row.actor,
                outcome=row.outcome,
                detail=json.loads(row.detail) if row.detail is not None else None,
            )
            for row in self.client.execute(cql, params)
        ]
