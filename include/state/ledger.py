"""The event dedupe ledger: claim an event id once, across triggerers and retries.

``claim`` is an ``INSERT ... IF NOT EXISTS`` (a lightweight transaction at the configured
serial consistency) with a TTL: exactly one of several concurrent claimers of an id gets
``True``. Each claim carries a random owner id, so a claim whose reply was lost and was
retried still recognises its own row. ``release`` undoes a claim whose processing failed
before the asset event was stored, so the redelivered event is processed.

Async code (a trigger) wraps these calls with ``asgiref.sync.sync_to_async``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from include.state._values import check_key
from include.state.session import CassandraClient


class LedgerEntry(BaseModel):
    """A claimed event id.

    :param event_id: the event's id.
    :param topic: the topic it came from.
    :param partition: its Kafka partition, if known.
    :param offset: its Kafka offset, if known.
    :param claimed_at: when it was claimed (UTC).
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    topic: str | None
    partition: int | None
    offset: int | None
    claimed_at: datetime | None


class EventLedger:
    """Claims of event ids in ``<keyspace>.event_ledger``.

    :param client: the Cassandra client (its settings give the TTL and consistency).
    :param ttl_s: how long a claim lives; default ``settings.ledger_ttl_s``.
    """

    def __init__(self, client: CassandraClient, *, ttl_s: int | None = None) -> None:
        self.client = client
        self.ttl_s = int(ttl_s if ttl_s is not None else client.settings.ledger_ttl_s)
        if self.ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {self.ttl_s}")
        self._table = f"{client.keyspace}.event_ledger"

    def claim(
        self, event_id: str, *, topic: str, partition: int | None = None, offset: int | None = None
    ) -> bool:
        """Claim ``event_id``: ``True`` the first time, ``False`` if it was already claimed.

        :raises TypeError: if ``event_id`` or ``topic`` is not a string.
        :raises ValueError: if either is empty or longer than 512 characters.
        :raises StateStoreUnavailableError: Cassandra unreachable after the retries.
        """
        check_key(event_id, what="event_id")
        check_key(topic, what="topic")
        owner = uuid.uuid4()
        row = self.client.execute(
            f"INSERT INTO {self._table} (event_id, topic, kafka_partition, kafka_offset, owner, claimed_at) "
            "VALUES (?, ?, ?, ?, ?, toTimestamp(now())) IF NOT EXISTS USING TTL ?",
            (event_id, topic, partition, offset, owner, self.ttl_s),
            serial=True,
        ).one()
        if row.applied:
            return True
        # Not applied: someone holds it, or our own earlier attempt applied before a timeout.
        return bool(row.owner == owner)

    def release(self, event_id: str) -> bool:
        """Forget the claim of ``event_id`` so it can be claimed again.

        Returns whether a claim existed. Call it only when the event's processing failed
        before its result was stored.
        """
        check_key(event_id, what="event_id")
        row = self.client.execute(
            f"DELETE FROM {self._table} WHERE event_id = ? IF EXISTS", (event_id,), serial=True
        ).one()
        return bool(row.applied)

    def get(self, event_id: str) -> LedgerEntry | None:
        """Return the claim of ``event_id`` (a linearizable read), or ``None``."""
        check_key(event_id, what="event_id")
        row = self.client.execute(
            f"SELECT event_id, topic, kafka_partition, kafka_offset, claimed_at FROM {self._table} "
            "WHERE event_id = ?",
            (event_id,),
            consistency=self.client.settings.serial_consistency,
        ).one()
        if row is None:
            return None
        return LedgerEntry(
            event_id=row.event_id,
            topic=row.topic,
            partition=row.kafka_partition,
            offset=row.kafka_offset,
            claimed_at=row.claimed_at.replace(tzinfo=UTC) if row.claimed_at else None,
        )
