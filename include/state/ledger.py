"""The event dedupe ledger: claim an event id once, across triggerers and retries.

``claim`` is an ``INSERT ... IF NOT EXISTS`` (a lightweight transaction at the configured
serial consistency) with a TTL: exactly one of several concurrent claimers of an id gets
``True``. Each attempt writes a random token (the ``owner uuid`` column), so a claim whose
reply was lost and was retried still recognises its own row. A claim may name who holds it
(``owner``, the ``claimed_by`` column of ``config/cassandra/008_ledger_owner.cql``): a second
claim by the same owner is granted again, one by anyone else is not. ``claim_batch`` makes many
claims at once with the driver's ``execute_concurrent`` (the Kafka watcher claims a polled
batch of events that way). ``release`` undoes a claim whose processing failed before the asset
event was stored, so the redelivered event is processed.

Async code (a trigger) wraps these calls with ``asgiref.sync.sync_to_async``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from include.state._values import check_key
from include.state.session import CassandraClient, consistency_level


class LedgerEntry(BaseModel):
    """A claimed event id.

    :param event_id: the event's id.
    :param topic: the topic it came from.
    :param partition: its Kafka partition, if known.
    :param offset: its Kafka offset, if known.
    :param claimed_at: when it was claimed (UTC).
    :param owner: who holds the claim, when the claimer named one (``None`` for claims made
        without an owner and for rows written before the ``claimed_by`` column existed).
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    topic: str | None
    partition: int | None
    offset: int | None
    claimed_at: datetime | None
    owner: str | None = None


class ClaimRequest(NamedTuple):
    """One claim of :meth:`EventLedger.claim_batch`: an event id, where it came from, who claims it.

    Give a ``topic`` (a Kafka watcher's claim), an ``owner`` (e.g. a DAG run's) or both.
    """

    event_id: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    owner: str | None = None


def check_claim(event_id: str, topic: str | None, owner: str | None) -> None:
    """Refuse a claim without an event id, or with neither a topic nor an owner.

    :raises TypeError: if ``event_id`` is not a string, ``topic`` or ``owner`` is neither a
        string nor ``None``, or both are ``None``.
    :raises ValueError: if ``event_id``, ``topic`` or ``owner`` is empty or too long.
    """
    check_key(event_id, what="event_id")
    if topic is None and owner is None:
        raise TypeError(
            f"topic must be a str when no owner is given, got NoneType: a claim of {event_id!r} "
            "needs a topic, an owner (who holds it) or both"
        )
    if topic is not None:
        check_key(topic, what="topic")
    if owner is not None:
        check_key(owner, what="owner")


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

    def _insert_cql(self) -> str:
        return (
            f"INSERT INTO {self._table} "
            "(event_id, topic, kafka_partition, kafka_offset, owner, claimed_by, claimed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, toTimestamp(now())) IF NOT EXISTS USING TTL ?"
        )

    def prepare(self) -> None:
        """Connect and prepare the claim statement now rather than on the first claim.

        :raises StateStoreUnavailableError: Cassandra unreachable after the retries.
        """
        self.client.prepare(self._insert_cql())

    def claim(
        self,
        event_id: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        owner: str | None = None,
    ) -> bool:
        """Claim ``event_id``: ``True`` the first time, or when ``owner`` already holds it; else ``False``.

        :param event_id: the key to claim (an event id, or a derived key such as a run claim's).
        :param topic: the topic the event came from (a Kafka watcher's claim).
        :param partition: its Kafka partition.
        :param offset: its Kafka offset.
        :param owner: who claims it (e.g. ``run/<run_id>``); a later claim by the same owner is
            granted again. Give a topic, an owner or both.
        :raises TypeError: if ``event_id`` is not a string, ``topic`` or ``owner`` is not a string
            or ``None``, or neither is given.
        :raises ValueError: if a value is empty or longer than 512 characters.
        :raises StateStoreUnavailableError: Cassandra unreachable after the retries.
        """
        check_claim(event_id, topic, owner)
        token = uuid.uuid4()
        row = self.client.execute(
            self._insert_cql(),
            (event_id, topic, partition, offset, token, owner, self.ttl_s),
            serial=True,
        ).one()
        return _granted(row, token, owner)

    def claim_batch(self, claims: Sequence[ClaimRequest]) -> list[LedgerEntry | None]:
        """Claim many event ids at once; per claim, ``None`` if it was granted, else who holds it.

        Granted means as for :meth:`claim`: first claimed now, or already held by the request's
        ``owner``. The lightweight transactions run concurrently (the driver's
        ``execute_concurrent``, each on its own partition), so a batch costs about one round of
        Paxos instead of one per id. A refused claim returns the row Cassandra answered with
        (``IF NOT EXISTS`` returns the existing row), with no second read. A claim that failed
        is retried alone with :meth:`claim`'s bounded retries, its error raised if those fail too.
        Claim one id once per batch: two requests for one id race, either may win.

        :raises TypeError: if an event id, topic or owner is not a string, or a request has
            neither topic nor owner.
        :raises ValueError: if a value is empty or longer than 512 characters.
        :raises StateStoreUnavailableError: Cassandra unreachable after the retries.
        """
        from cassandra.concurrent import execute_concurrent

        for request in claims:
            check_claim(request.event_id, request.topic, request.owner)
        if not claims:
            return []
        statement = self.client.prepare(self._insert_cql())
        serial = consistency_level(self.client.settings.serial_consistency)
        tokens = [uuid.uuid4() for _ in claims]
        bound = []
        for request, token in zip(claims, tokens, strict=True):
            stmt = statement.bind(
                (
                    request.event_id,
                    request.topic,
                    request.partition,
                    request.offset,
                    token,
                    request.owner,
                    self.ttl_s,
                )
            )
            stmt.serial_consistency_level = serial
            bound.append((stmt, ()))
        results = execute_concurrent(
            self.client.session, bound, concurrency=min(len(bound), 64), raise_on_first_error=False
        )
        outcomes: list[LedgerEntry | None] = []
        for request, token, (ok, result) in zip(claims, tokens, results, strict=True):
            if not ok:
                # One failed attempt: claim it alone, with the client's retries and error translation.
                granted = self.claim(
                    request.event_id,
                    topic=request.topic,
                    partition=request.partition,
                    offset=request.offset,
                    owner=request.owner,
                )
                outcomes.append(None if granted else self.get(request.event_id))
                continue
            row = result.one()
            outcomes.append(None if _granted(row, token, request.owner) else _entry(row))
        return outcomes

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
            f"SELECT event_id, topic, kafka_partition, kafka_offset, claimed_at, claimed_by "
            f"FROM {self._table} WHERE event_id = ?",
            (event_id,),
            consistency=self.client.settings.serial_consistency,
        ).one()
        return None if row is None else _entry(row)


def _granted(row: Any, token: uuid.UUID, owner: str | None) -> bool:
    """Whether an ``IF NOT EXISTS`` claim's answer grants it to this attempt (or to ``owner``)."""
    if row.applied:
        return True
    # Not applied: someone holds it; or our own earlier attempt applied before a timeout; or
    # the same owner claimed it before.
    return bool(row.owner == token or (owner is not None and row.claimed_by == owner))


def _entry(row: Any) -> LedgerEntry:
    claimed_at = row.claimed_at
    return LedgerEntry(
        event_id=row.event_id,
        topic=row.topic,
        partition=row.kafka_partition,
        offset=row.kafka_offset,
        claimed_at=claimed_at.replace(tzinfo=UTC) if claimed_at else None,
        owner=row.claimed_by,
    )
