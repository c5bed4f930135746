"""The exactly-once Kafka watcher: validated events, a dead-letter topic with reasons, a dedupe ledger.

Built on the apache-kafka provider's shared-stream trigger (Airflow 3.3 ack mode): one Kafka
consumer per topic set in the triggerer however many ``AssetWatcher`` s use it, offsets
committed only after the asset events derived from the messages are stored.

On top of it, :class:`KafkaEventStreamProducer` (the broker side, one per consumer):

* reads the messages the consumer has fetched in batches (a ``poll`` that returns as soon as
  one message is there, then up to ``max_batch`` more without waiting), so an idle topic
  adds no latency and a busy one pays the thread hop, the ledger round trip and the
  bookkeeping once per batch instead of once per message;
* validates each message once with :func:`include.events.validate_message` against the
  topic's registered models (``config/kafka/payloads.yaml``);
* claims the valid events' ``event_id`` s of a batch in the Cassandra ledger at once
  (``EventLedger.claim_batch``, concurrent lightweight transactions); an id already claimed
  by another message (another topic/partition/offset) is a duplicate, while the same
  message redelivered after a crash is processed again (its asset event may never have
  been stored);
* hands the watchers one :class:`EventBatch` at a time, holding the messages of every
  partition of the topic set: the shared stream's unit of acknowledgement, so a batch's
  offsets are committed together (per partition) once its asset event is stored, and a batch
  that was not is redelivered whole. An idle watcher sends each message at once; a busy one
  (a batch not yet stored) holds what it reads and releases it just before the trigger
  runner's next sync with the triggerer's supervisor, so each sync carries one asset event
  per watcher (see "Pacing" below);
* re-publishes the batch's malformed messages to ``<topic>.dlq`` with headers giving the
  reason, the detail and the original topic, partition, offset and timestamp, flushed and
  checked before the offset is committed past them;
* reports consumed, dead-lettered and duplicate counts and the consumer lag per topic
  through Airflow's ``Stats`` (:func:`operators.metrics.events`), and adds the counts to the
  Cassandra event-flow counters the UI reads (:class:`include.state.eventflow.EventFlowCounters`)
  every few seconds, not once per message.

:class:`KafkaEventTrigger` (the subscriber side, one per watcher) fires one
``TriggerEvent({"envelopes": [...], "kafka": [...]})`` per batch that holds valid, first-seen
events of its event types, and nothing for a batch that holds none (it is acknowledged, so
its duplicates are dropped and its malformed messages dead-lettered); the run's tasks read
every event with :func:`operators.events.triggering_events`.

Pacing. Produce-to-run latency is set by two Airflow loops, and the watcher is paced to both:

* the trigger runner sends its trigger events to the triggerer's supervisor once per loop,
  about once a second (``TriggerRunner.arun``), and the supervisor stores each one in a
  metadata-DB transaction of its own; so per-message trigger events bound the events/s a
  watcher can turn into asset events, and only one batch per sync adds no wait;
* the scheduler gives an asset-triggered run the asset events stored up to the creation of
  the DAG's queue row, which the first event after the previous run creates and later ones
  leave alone (apache/airflow#56050): of several asset events stored in one sync only the
  first gets into the next run, the others wait a sync for the run after.

So the watcher holds what it reads and releases it all as one batch ``release_lead``
seconds before the runner's next sync, which it dates from the last ``advance`` of a batch
with valid events (the manager calls it right after a sync brings the store confirmations)
and the sync period it measured over consecutive ones; ``phase_horizon`` seconds after that
advance the date is too stale, and an idle watcher releases at once. While a batch is in
flight and no sync has been seen since its release, the next waits a sync interval after
that release, so a late sync or a misjudged one costs latency, never a second batch in a
sync: that would leave the second without a run until a later event, however long that
takes. ``bench/RESULTS.md`` has the measurements.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, cast

from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
from airflow.providers.apache.kafka.triggers.shared_stream import (
    KafkaSharedStreamProducer,
    KafkaSharedStreamTrigger,
)
from airflow.triggers.base import TriggerEvent
from asgiref.sync import sync_to_async

from include.errors import EventPublishError, EventStreamError, InvalidEventError

if TYPE_CHECKING:
    from airflow.triggers.shared_stream import AdvanceItem
    from confluent_kafka import KafkaError, Message

    from include.events.registry import EventRegistry
    from include.state.eventflow import EventFlowCounters
    from include.state.ledger import ClaimRequest

log = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "agentflow.dlq."
_DLQ_FLUSH_TIMEOUT_S = 30.0
#: Seconds between two writes of the event-flow counters to Cassandra.
FLOW_FLUSH_INTERVAL_S = 5.0
#: The consumer's poll timeout while messages are held back for a batch in flight.
_HELD_POLL_S = 0.05
#: After a pause, how much longer than a sync interval the second release waits.
_SYNC_MARGIN_S = 0.05

Disposition = Literal["valid", "invalid", "duplicate"]


class EventLedgerProtocol(Protocol):
    """What the watcher needs from ``include.state.ledger.EventLedger``."""

    def claim_batch(self, claims: Sequence[ClaimRequest]) -> list[Any]:
        """Claim each event id; per claim ``None`` if granted, else the entry holding it (with
        ``topic``, ``partition``, ``offset``)."""
        ...

    def get(self, event_id: str) -> Any:
        """The entry of a claimed key, or ``None``."""
        ...


def _dlq_key(payload: Any) -> str:
    """The ledger key recording that one Kafka message was dead-lettered."""
    return f"dlq/{payload.topic}/{payload.partition}/{payload.offset}"


def _is_duplicate(holder: Any, topic: str, partition: int, offset: int) -> bool:
    """Whether a refused claim belongs to another message.

    A message redelivered after a crash or a seek-back carries the same topic, partition and
    offset as its own earlier claim: that is the same message again, not a duplicate.
    """
    if holder is None:
        return False
    return (holder.topic, holder.partition, holder.offset) != (topic, partition, offset)


class _Flow:
    """Event-flow counts per topic since they were last written to the counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the DLQ count comes from advance's worker thread
        self.counts: dict[str, list[int]] = {}  # topic -> [consumed, dlq, duplicates]
        self.flushed_at = time.monotonic()

    def add(self, topic: str, consumed: int = 0, dlq: int = 0, duplicates: int = 0) -> None:
        with self.lock:
            counts = self.counts.setdefault(topic, [0, 0, 0])
            counts[0] += consumed
            counts[1] += dlq
            counts[2] += duplicates

    def take(self) -> dict[str, list[int]]:
        with self.lock:
            taken, self.counts = {t: c for t, c in self.counts.items() if any(c)}, {}
            self.flushed_at = time.monotonic()
            return taken


class EventRecord(NamedTuple):
    """What every watcher sharing a consumer receives for one Kafka message.

    ``envelope`` is the validated envelope as JSON-ready dict for ``valid`` records, else
    ``None``; ``reason`` / ``detail`` say why an ``invalid`` one was refused.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    disposition: Disposition
    envelope: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None
    size: int = 0  # the message's bytes (what a batch's size is counted in)


class EventBrokerPayload(NamedTuple):
    """The broker-side payload of one message, kept until its offset is committed.

    Field-compatible with the provider's ``KafkaBrokerPayload`` (``topic``, ``partition``,
    ``offset``, ``value``, ``key``); ``value`` and ``key`` are kept only for invalid
    messages, the only ones that may be re-published to the dead-letter topic.
    """

    topic: str
    partition: int
    offset: int
    value: Any = None
    key: Any = None
    timestamp_ms: int | None = None
    reason: str | None = None
    detail: str | None = None
    headers: Any = None


class EventBatch(NamedTuple):
    """What every watcher sharing a consumer receives for one batch of messages.

    ``records`` hold one entry per message (valid, duplicate or invalid), each partition's in
    offset order; a batch may span every partition of the consumer's topics.
    """

    records: tuple[EventRecord, ...]


class PartitionSpan(NamedTuple):
    """The offsets of one partition's messages in a batch: ``first`` to ``last``, inclusive."""

    topic: str
    partition: int
    first: int
    last: int


class EventBatchPayload(NamedTuple):
    """The broker side of one :class:`EventBatch`, kept until its offsets are committed.

    ``spans`` give each partition's offsets in the batch (a commit goes past ``last``, a
    redelivery seeks back to ``first``); ``dead`` holds the malformed messages to dead-letter;
    ``fires`` says whether it holds a valid event (a watcher may fire, and the confirmation of
    its store arrives with a sync of the trigger runner).
    """

    spans: tuple[PartitionSpan, ...]
    dead: tuple[EventBrokerPayload, ...] = ()
    fires: bool = True


def trigger_payload(records: Sequence[EventRecord]) -> dict[str, Any]:
    """The ``TriggerEvent`` payload of valid records: their envelopes and where each came from."""
    return {
        "envelopes": [record.envelope for record in records],
        "kafka": [
            {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp_ms": record.timestamp_ms,
            }
            for record in records
        ],
    }


def dlq_headers(payload: EventBrokerPayload) -> list[tuple[str, str | bytes | None]]:
    """The headers a dead-lettered message carries: why, and where it came from."""
    fields = {
        "reason": payload.reason or "rejected",
        "detail": payload.detail or "",
        "original_topic": payload.topic,
        "original_partition": str(payload.partition),
        "original_offset": str(payload.offset),
        "original_timestamp": "" if payload.timestamp_ms is None else str(payload.timestamp_ms),
    }
    headers: list[tuple[str, str | bytes | None]] = [
        (DLQ_HEADER_PREFIX + name, value.encode()) for name, value in fields.items()
    ]
    # Keep the producer's own headers after ours, so nothing the producer sent is lost.
    return headers + [(str(k), v) for k, v in (payload.headers or [])]


class KafkaEventStreamProducer(KafkaSharedStreamProducer):
    """The broker side of :class:`KafkaEventTrigger`: consume, validate, dedupe, dead-letter, commit.

    One instance per shared stream (topic set and connections), created by the triggerer's
    shared-stream manager; its ``advance`` (the provider's, for batches) commits each
    partition's offsets only once every watcher has resolved a batch and its asset events are
    stored, after the batch's malformed messages are on their dead-letter topics.

    :param topics: topics to consume; each must be in the event registry.
    :param kafka_config_id: Kafka connection (must set ``enable.auto.commit=false``).
    :param poll_timeout: seconds per consumer ``poll``.
    :param cassandra_conn_id: Cassandra connection of the dedupe ledger; ``None`` turns
        deduplication off (at-least-once).
    :param registry_path: the event registry YAML; the shipped one if ``None``.
    :param dlq_suffix: the dead-letter topic of ``t`` is ``t + dlq_suffix``.
    """

    #: The most messages read, validated and claimed together.
    max_read = 500
    #: The most messages in one batch (so one asset event); a watcher holding this many
    #: releases them without waiting for the runner's sync.
    max_batch = 2000
    #: The most message bytes in one batch.
    max_batch_bytes = 1_000_000
    #: Batches handed out and not yet confirmed stored before the watcher stops releasing. Two
    #: is one per sync: a store is confirmed a sync after it, so a busy watcher has one batch
    #: awaiting its confirmation and releases the next; a sync that comes late (a loaded
    #: triggerer) then does not get a second batch (apache/airflow#56050), and a triggerer
    #: that stores more slowly than messages arrive gets fewer, bigger batches.
    max_in_flight = 2
    #: The trigger runner's sync period: ``TriggerRunner.arun`` sleeps 1 s between syncs.
    sync_interval = 1.0
    #: How long before the runner's expected next sync the watcher releases what it holds.
    release_lead = 0.15
    #: Seconds after the last sync seen during which the watcher still dates the next sync from
    #: it (an idle runner's period drifts a few ms a sync from the one measured); after that,
    #: an idle watcher releases at once.
    phase_horizon = 10.0

    def __init__(
        self,
        *,
        topics: Sequence[str],
        kafka_config_id: str = "kafka_default",
        poll_timeout: float = 1.0,
        cassandra_conn_id: str | None = "cassandra_default",
        registry_path: str | None = None,
        dlq_suffix: str = ".dlq",
    ) -> None:
        # No ``dlq_topic``: ``advance`` dead-letters each batch's malformed messages itself, and
        # ``_send_to_dlq`` routes each to its own topic's DLQ.
        super().__init__(topics=topics, kafka_config_id=kafka_config_id, poll_timeout=poll_timeout)
        self.cassandra_conn_id = cassandra_conn_id
        self.registry_path = registry_path
        self.dlq_suffix = dlq_suffix
        self.lag: dict[tuple[str, int], int] = {}
        self._ledger: EventLedgerProtocol | None = None
        self._flow_counters: EventFlowCounters | None = None
        self._cassandra_hook: Any = None
        self._flow = _Flow()
        self._held: list[tuple[EventRecord, EventBrokerPayload]] = []
        self._in_flight = 0
        self._released_at = 0.0  # time.monotonic() of the last release
        self._advanced_at: float | None = None  # time.monotonic() of the last advance that dates a sync
        self._sync_period = self.sync_interval  # measured over consecutive syncs
        self._syncs_since = (0.0, 0)  # the first of the current run of consecutive syncs, and how many since

    def _load_registry(self) -> EventRegistry:
        from include.events.registry import load_registry

        registry = load_registry(self.registry_path)
        for topic in self.topics:
            registry.spec(topic)  # ConfigurationError now rather than a DLQ full of "schema"
        return registry

    def _open_ledger(self) -> EventLedgerProtocol:
        from include.state.eventflow import EventFlowCounters
        from operators.hooks.cassandra import CassandraHook

        hook = CassandraHook(cassandra_conn_id=cast("str", self.cassandra_conn_id))
        self._cassandra_hook = hook
        self._flow_counters = EventFlowCounters(hook.get_conn())
        ledger = hook.event_ledger()
        ledger.prepare()  # connect and prepare now, not while the first batch waits
        return cast("EventLedgerProtocol", ledger)

    # The blocking calls of the stream (poll, ledger, counters) run in the event loop's thread
    # pool (``thread_sensitive=False``), not asgiref's one process-wide thread that every
    # trigger's ``sync_to_async`` shares: there they queued behind other triggers' polls
    # (p50 produce-to-fired 0.10 s instead of 0.01 s next to one polling neighbour). The
    # consumer is only ever called by this loop, one call at a time; librdkafka allows the
    # provider's commit and seek from another thread meanwhile.
    def _read_batch(self, timeout: float) -> list[Message]:
        """Wait up to ``timeout`` seconds for one message, then take up to ``max_read`` already fetched."""
        consumer = cast("Any", self._consumer)
        first = consumer.poll(timeout)
        if first is None:
            return []
        return [first, *consumer.consume(num_messages=self.max_read - 1, timeout=0)]

    async def open_stream(self) -> AsyncIterator[tuple[EventBatch, EventBatchPayload]]:  # type: ignore[override]
        """Open the consumer (and the ledger) lazily; yield an :class:`EventBatch` per released batch.

        :raises ConfigurationError: a topic is not in the registry, or auto-commit is on.
        :raises EventStreamError: the consumer reported an error.
        """
        registry = await sync_to_async(self._load_registry)()
        if self.cassandra_conn_id is not None and self._ledger is None:
            self._ledger = await sync_to_async(self._open_ledger)()
        hook = KafkaConsumerHook(topics=self.topics, kafka_config_id=self.kafka_config_id)
        await self._ensure_manual_commit(hook)
        consumer = await sync_to_async(hook.get_consumer)()
        self._consumer = consumer
        read_batch = sync_to_async(self._read_batch, thread_sensitive=False)
        log.info(
            "Kafka event watcher consuming %s (ledger: %s, dead letters to <topic>%s)",
            ",".join(self.topics),
            self.cassandra_conn_id or "off",
            self.dlq_suffix,
        )
        while True:
            # While messages are held for the runner's next sync, look back soon.
            messages = await read_batch(self.poll_timeout if not self._held else _HELD_POLL_S)
            for message in messages:
                if message.error():
                    raise EventStreamError(
                        f"Kafka consumer error on {','.join(self.topics)}: {message.error()}"
                    )
            if messages:
                self._hold(await self._process_batch(messages, registry))
            for item in self._release():
                yield item
            await self._flush_flow()

    def _hold(self, processed: Sequence[tuple[EventRecord, EventBrokerPayload]]) -> None:
        """Keep processed messages until :meth:`_release` hands them out."""
        self._held.extend(processed)

    def _release(self) -> list[tuple[EventBatch, EventBatchPayload]]:
        """Hand out what is held, as one batch, when the trigger runner is about to sync.

        At once when nothing dates the next sync (no batch in flight and no ``advance`` in
        the last ``phase_horizon`` seconds: an idle watcher adds no wait). Otherwise once per
        sync, ``release_lead`` seconds before it (:meth:`_sync_due`; with no sync seen since
        the last release, a sync interval after it), while fewer than ``max_in_flight``
        batches are in flight; and at once whenever ``max_batch`` messages are held. So each
        sync carries one batch, whatever the message rate, and the first messages after a
        pause go with the first sync rather than ahead of it, alone.
        """
        if not self._held:
            return []
        now = time.monotonic()
        paced = self._in_flight > 0 or self._phase_known(now)
        wait = self._in_flight >= self.max_in_flight or not self._sync_due(now)
        if paced and wait and len(self._held) < self.max_batch:
            return []
        held, self._held = self._held, []
        batches = self._batches(held)
        log.debug("Releasing %d message(s) in %d batch(es)", len(held), len(batches))
        self._in_flight += len(batches)
        self._released_at = now
        return batches

    def _phase_known(self, now: float) -> bool:
        """Whether an ``advance`` (so a sync) was seen recently enough to date the next sync."""
        return self._advanced_at is not None and now - self._advanced_at < self.phase_horizon

    def _sync_due(self, now: float) -> bool:
        """Whether the runner's next sync is expected within ``release_lead`` seconds, and nothing
        was released for it yet.

        Syncs come every measured sync period after the last ``advance`` of a batch with
        valid events (called on a sync's store confirmations). With no such advance since the
        last release of a batch still in flight, or within ``phase_horizon``, the sync that
        took that release came at an unknown moment after it: the next release waits
        ``sync_interval`` after it, so two batches do not share a sync (apache/airflow#56050
        would leave the second without a run until a later event). A wrong guess costs
        latency (a batch waits one more sync), never an event.
        """
        if now - self._released_at < self.release_lead:
            return False
        anchor = self._advanced_at
        if anchor is None or not self._phase_known(now) or (self._in_flight and anchor < self._released_at):
            # No sync seen since the last release (or lately): wait until it has surely gone.
            return now - self._released_at > self.sync_interval + _SYNC_MARGIN_S
        return (now - anchor) % self._sync_period >= self._sync_period - self.release_lead

    def _saw_sync(self, now: float) -> None:
        """Date the runner's syncs from one seen at ``now``; measure their period over a run of
        consecutive ones (a second apart, give or take half: the runner sleeps ``sync_interval``
        between syncs and works a few ms, more when it stores many events)."""
        first, count = self._syncs_since
        last = self._advanced_at
        if last is not None and 0.5 * self.sync_interval < now - last < 1.5 * self.sync_interval:
            count += 1
            if count >= 3:  # a mean over several: one gap's jitter is tens of ms
                period = (now - first) / count
                self._sync_period = min(max(period, self.sync_interval), 1.5 * self.sync_interval)
            self._syncs_since = (first, count)
        else:
            self._syncs_since = (now, 0)
        self._advanced_at = now

    def _batches(
        self, processed: Sequence[tuple[EventRecord, EventBrokerPayload]]
    ) -> list[tuple[EventBatch, EventBatchPayload]]:
        """Cut processed messages, in the order read, into batches of at most ``max_batch``
        messages and ``max_batch_bytes``."""
        chunks: list[list[tuple[EventRecord, EventBrokerPayload]]] = [[]]
        size = 0
        for record, payload in processed:
            full = size + record.size > self.max_batch_bytes or len(chunks[-1]) >= self.max_batch
            if chunks[-1] and full:
                chunks.append([])
                size = 0
            chunks[-1].append((record, payload))
            size += record.size
        out: list[tuple[EventBatch, EventBatchPayload]] = []
        for chunk in chunks:
            spans: dict[tuple[str, int], PartitionSpan] = {}
            for record, _ in chunk:
                lane = (record.topic, record.partition)
                span = spans.get(lane)
                spans[lane] = (
                    PartitionSpan(record.topic, record.partition, record.offset, record.offset)
                    if span is None
                    else span._replace(last=record.offset)
                )
            records = tuple(record for record, _ in chunk)
            dead = tuple(payload for record, payload in chunk if record.disposition == "invalid")
            fires = any(record.disposition == "valid" for record in records)
            out.append((EventBatch(records), EventBatchPayload(tuple(spans.values()), dead, fires)))
        return out

    def get_advance_lane(self, broker_payload: Any) -> Hashable:
        """One lane for the whole consumer: a batch spans partitions, so batches advance in order."""
        return tuple(self.topics)

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Commit each partition's resolved prefix of batches; hold and seek back what was not stored.

        The provider's ``advance``, per partition of multi-partition batches: for each
        partition, the batches every watcher resolved, up to the first that failed (its asset
        event was not stored in time) or that no watcher took, are committed past their last
        offset, after their malformed messages were dead-lettered (and flushed); from that
        first held batch on, the partition is held at its first offset there and the consumer
        seeks back to it, so it and everything after are redelivered. The held floor is the
        provider's (``_resolve_floor``, per partition), carried across calls. Each
        partition's messages are in offset order across batches, so this is the provider's
        per-partition decision exactly.

        :raises EventPublishError: dead-lettering failed (nothing is committed; redelivered).
        """
        if any(cast("EventBatchPayload", item.broker_payload).fires for item in batch):
            # A stored event's confirmation came with a sync: the next one is due a second on.
            # (A batch no watcher fired for resolves as soon as it is read, not at a sync.)
            self._saw_sync(time.monotonic())
        log.debug("Advancing %d batch(es); %d in flight", len(batch), self._in_flight)
        # Resolved (stored, failed or refused): no longer in flight, whatever happens below.
        self._in_flight = max(0, self._in_flight - len(batch))
        start: dict[tuple[str, int], int] = {}
        commit_through: dict[tuple[str, int], int] = {}
        held: dict[tuple[str, int], int] = {}
        to_dlq: list[EventBrokerPayload] = []
        for item in batch:
            payload = cast("EventBatchPayload", item.broker_payload)
            outcome = item.outcome
            stored = not (outcome.failed > 0 or (outcome.acked == 0 and outcome.rejected == 0))
            for span in payload.spans:
                lane = (span.topic, span.partition)
                start.setdefault(lane, span.first)
                if lane in held:
                    continue
                if not stored:
                    held[lane] = span.first
                    continue
                commit_through[lane] = span.last
                to_dlq.extend(p for p in payload.dead if (p.topic, p.partition) == lane)
        if to_dlq:
            await sync_to_async(self._send_to_dlq)(to_dlq[0].topic, to_dlq)
        for lane, first in start.items():
            through, held_offset = commit_through.get(lane), held.get(lane)
            floor = self._resolve_floor(lane, first, through, held_offset)
            if through is not None:
                target = through + 1 if floor is None else min(through + 1, floor)
                await sync_to_async(self._commit)(lane[0], lane[1], target)
            if held_offset is not None:
                await sync_to_async(self._seek)(lane[0], lane[1], floor if floor is not None else held_offset)

    async def _process_batch(
        self, messages: Sequence[Message], registry: EventRegistry
    ) -> list[tuple[EventRecord, EventBrokerPayload]]:
        """Validate a batch, claim its valid event ids together, and report its counts and lag.

        In the event loop's thread pool, like the poll: validating a few hundred messages on
        the loop would hold up the trigger runner's syncs, which the watcher's pacing relies on.
        """
        return await sync_to_async(self._process, thread_sensitive=False)(messages, registry)

    def _process(
        self, messages: Sequence[Message], registry: EventRegistry
    ) -> list[tuple[EventRecord, EventBrokerPayload]]:
        from include.events.registry import validate_message
        from include.state.ledger import ClaimRequest

        out: list[tuple[EventRecord, EventBrokerPayload]] = []
        valid: list[tuple[int, Any]] = []  # (index in out, envelope)
        consumed: dict[str, int] = {}
        last_offset: dict[tuple[str, int], int] = {}
        for message in messages:
            topic = cast("str", message.topic())
            partition = cast("int", message.partition())
            offset = cast("int", message.offset())
            ts_type, ts_ms = message.timestamp()
            timestamp_ms = ts_ms if ts_type else None
            consumed[topic] = consumed.get(topic, 0) + 1
            last_offset[(topic, partition)] = offset
            value = message.value()
            try:
                envelope = validate_message(topic, value, registry=registry)
            except InvalidEventError as err:
                log.warning(
                    "Dead-lettering %s[%s]@%s to %s%s: %s (%s)",
                    topic,
                    partition,
                    offset,
                    topic,
                    self.dlq_suffix,
                    err.reason,
                    err.detail,
                )
                record = EventRecord(
                    topic, partition, offset, timestamp_ms, "invalid", None, err.reason, err.detail
                )
                payload = EventBrokerPayload(
                    topic,
                    partition,
                    offset,
                    value=value,
                    key=message.key(),
                    timestamp_ms=timestamp_ms,
                    reason=err.reason,
                    detail=err.detail,
                    headers=message.headers(),
                )
                out.append((record, payload))
                continue
            valid.append((len(out), envelope))
            record = EventRecord(
                topic, partition, offset, timestamp_ms, "valid", None, size=len(value or b"")
            )
            out.append((record, EventBrokerPayload(topic, partition, offset, timestamp_ms=timestamp_ms)))
        # Only an id's first message in the batch is claimed: the concurrent claims of two
        # messages with one id would race, and the earlier message must win. Later ones in the
        # batch are duplicates of it, whatever its claim says.
        first_of: dict[str, int] = {}
        for n, (_, envelope) in enumerate(valid):
            first_of.setdefault(envelope.event_id, n)
        holders: dict[int, Any] = {}
        if self._ledger is not None and first_of:
            requests = [
                ClaimRequest(event_id, out[i][0].topic, out[i][0].partition, out[i][0].offset)
                for event_id, i in ((e, valid[n][0]) for e, n in first_of.items())
            ]
            claimed = self._ledger.claim_batch(requests)
            holders = dict(zip(first_of.values(), claimed, strict=True))
        duplicates: dict[str, int] = {}
        for n, (i, envelope) in enumerate(valid):
            record, payload = out[i]
            disposition: Disposition = "valid"
            repeated = self._ledger is not None and first_of[envelope.event_id] != n
            if repeated or _is_duplicate(holders.get(n), record.topic, record.partition, record.offset):
                disposition = "duplicate"
                duplicates[record.topic] = duplicates.get(record.topic, 0) + 1
                log.info(
                    "Dropping duplicate event %s at %s[%s]@%s (already claimed in the ledger)",
                    envelope.event_id,
                    record.topic,
                    record.partition,
                    record.offset,
                )
            out[i] = (
                record._replace(disposition=disposition, envelope=envelope.model_dump(mode="json")),
                payload,
            )
        for topic, count in consumed.items():
            self._flow.add(topic, consumed=count, duplicates=duplicates.get(topic, 0))
        self._report(consumed, duplicates, last_offset)
        return out

    def _report(
        self, consumed: dict[str, int], duplicates: dict[str, int], last_offset: dict[tuple[str, int], int]
    ) -> None:
        """Emit a batch's counts and each topic's lag (``high watermark - next offset``, summed)."""
        from operators.metrics import events

        self._update_lag(last_offset)
        for topic, count in consumed.items():
            lag = [lag for (t, _), lag in self.lag.items() if t == topic]
            events(topic, consumed=count, duplicates=duplicates.get(topic, 0), lag=sum(lag) if lag else None)

    def _update_lag(self, last_offset: dict[tuple[str, int], int]) -> None:
        if self._consumer is None:
            return
        from confluent_kafka import TopicPartition

        for (topic, partition), offset in last_offset.items():
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except Exception:  # the cache is filled by the fetcher; a miss only skips one sample
                continue
            if high is not None and high >= 0:
                self.lag[(topic, partition)] = max(0, high - offset - 1)

    async def _flush_flow(self, *, force: bool = False) -> None:
        """Add the counts gathered since the last write to the event-flow counters, every few seconds.

        A failed write is logged and its counts are kept for the next one: the counters serve
        the UI and must not stop the watcher.
        """
        counters = self._flow_counters
        if counters is None:
            return
        if not force and time.monotonic() - self._flow.flushed_at < FLOW_FLUSH_INTERVAL_S:
            return
        taken = self._flow.take()
        if not taken:
            return

        def write() -> None:
            for topic, (consumed, dlq, duplicates) in taken.items():
                counters.add(topic, consumed=consumed, dlq=dlq, duplicates=duplicates)
                taken[topic] = [0, 0, 0]

        try:
            await sync_to_async(write, thread_sensitive=False)()
        except Exception:
            log.warning("Writing the event-flow counters failed; keeping the counts", exc_info=True)
            for topic, (consumed, dlq, duplicates) in taken.items():
                self._flow.add(topic, consumed, dlq, duplicates)

    def _send_to_dlq(self, topic: str, payloads: list[Any]) -> None:
        """Re-publish rejected messages to ``<their topic><dlq_suffix>`` with reason headers.

        Waits for every delivery report: the provider's ``advance`` commits past these
        offsets as soon as this returns.

        :raises EventPublishError: a message was not delivered (the batch is then redelivered).
        """
        ledger = self._ledger
        if ledger is not None:
            # A message redelivered after a crash or a held commit was dead-lettered already:
            # the ledger remembers each one sent (recorded after delivery, so none is lost).
            fresh = [p for p in payloads if ledger.get(_dlq_key(p)) is None]
            if len(fresh) < len(payloads):
                log.info(
                    "%d redelivered message(s) were dead-lettered already; not again",
                    len(payloads) - len(fresh),
                )
            payloads = fresh
            if not payloads:
                return
        if self._dlq_producer is None:
            self._dlq_producer = KafkaProducerHook(kafka_config_id=self.kafka_config_id).get_producer()
        producer = self._dlq_producer
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(f"{msg.topic()}: {err}")

        for payload in cast("list[EventBrokerPayload]", payloads):
            producer.produce(
                payload.topic + self.dlq_suffix,
                value=payload.value,
                key=payload.key,
                headers=dlq_headers(payload),
                on_delivery=on_delivery,
            )
        remaining = producer.flush(_DLQ_FLUSH_TIMEOUT_S)
        if remaining or failures:
            raise EventPublishError(
                f"dead-lettering {len(payloads)} message(s) failed ({remaining} undelivered): "
                + "; ".join(failures[:5])
            )
        if ledger is not None:
            from include.state.ledger import ClaimRequest

            ledger.claim_batch([ClaimRequest(_dlq_key(p), p.topic, p.partition, p.offset) for p in payloads])
        from operators.metrics import events

        dead: dict[str, int] = {}
        for payload in cast("list[EventBrokerPayload]", payloads):
            dead[payload.topic] = dead.get(payload.topic, 0) + 1
        for dead_topic, count in dead.items():
            self._flow.add(dead_topic, dlq=count)
            events(dead_topic, dlq=count)
        for payload in cast("list[EventBrokerPayload]", payloads):
            log.info(
                "Dead-lettered %s[%s]@%s to %s%s (reason %s)",
                payload.topic,
                payload.partition,
                payload.offset,
                payload.topic,
                self.dlq_suffix,
                payload.reason,
            )

    async def aclose(self) -> None:
        """Flush the dead-letter producer, close the consumer, write the last event-flow counts and
        close the ledger's connection; best effort."""
        await super().aclose()
        await self._flush_flow(force=True)
        hook, self._cassandra_hook, self._ledger = self._cassandra_hook, None, None
        self._flow_counters = None
        if hook is not None:
            try:
                await sync_to_async(hook.close)()
            except Exception:
                log.warning("Failed to close the Cassandra connection of the event ledger", exc_info=True)


class KafkaEventTrigger(KafkaSharedStreamTrigger):
    """Watch Kafka topics for valid, first-seen events: the trigger of an ``AssetWatcher``.

    Fires ``TriggerEvent({"envelopes": [<EventEnvelope as JSON>, ...], "kafka": [{topic,
    partition, offset, timestamp_ms}, ...]})`` once per batch of a partition's messages that
    holds valid events of its ``event_types`` whose ``event_id`` the ledger had not seen (one
    asset event per batch; read them with :func:`operators.events.triggering_events`).
    Malformed messages go to ``<topic>.dlq`` with their reason; duplicates are acknowledged
    and dropped. Watchers with the same topics and connections share one
    consumer; give watchers of different topic sets Kafka connections with distinct
    ``group.id`` s only if they must not share partitions.

    :param topics: topics to watch; each must be in the event registry.
    :param kafka_config_id: Kafka connection; its extras must set ``enable.auto.commit=false``.
    :param poll_timeout: seconds per consumer ``poll``.
    :param cassandra_conn_id: Cassandra connection of the dedupe ledger; ``None`` turns
        deduplication off (at-least-once).
    :param registry_path: the event registry YAML; the shipped ``config/kafka/payloads.yaml``
        (or ``AGENTFLOW_EVENT_REGISTRY``) if ``None``.
    :param event_types: fire only for these event types (others are acknowledged and
        skipped by this watcher); all if ``None``.
    :param dlq_suffix: the dead-letter topic of ``t`` is ``t + dlq_suffix``.
    """

    def __init__(
        self,
        *,
        topics: Sequence[str],
        kafka_config_id: str = "kafka_default",
        poll_timeout: float = 1.0,
        cassandra_conn_id: str | None = "cassandra_default",
        registry_path: str | None = None,
        event_types: Sequence[str] | None = None,
        dlq_suffix: str = ".dlq",
    ) -> None:
        if not topics:
            raise ValueError("KafkaEventTrigger needs at least one topic")
        if not dlq_suffix:
            raise ValueError("dlq_suffix must not be empty: the dead-letter topic would be the topic itself")
        super().__init__(topics=topics, kafka_config_id=kafka_config_id, poll_timeout=poll_timeout)
        self.cassandra_conn_id = cassandra_conn_id
        self.registry_path = registry_path
        self.event_types = sorted(event_types) if event_types is not None else None
        self.dlq_suffix = dlq_suffix

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "topics": self.topics,
                "kafka_config_id": self.kafka_config_id,
                "poll_timeout": self.poll_timeout,
                "cassandra_conn_id": self.cassandra_conn_id,
                "registry_path": self.registry_path,
                "event_types": self.event_types,
                "dlq_suffix": self.dlq_suffix,
            },
        )

    def shared_stream_key(self) -> Hashable:
        """Watchers on the same topics, connections, registry and DLQ naming share one consumer."""
        return (
            "agentflow-kafka-events",
            tuple(self.topics),
            self.kafka_config_id,
            self.cassandra_conn_id,
            self.registry_path,
            self.dlq_suffix,
        )

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> KafkaEventStreamProducer:
        return KafkaEventStreamProducer(
            topics=kwargs["topics"],
            kafka_config_id=kwargs["kafka_config_id"],
            poll_timeout=kwargs["poll_timeout"],
            cassandra_conn_id=kwargs.get("cassandra_conn_id", "cassandra_default"),
            registry_path=kwargs.get("registry_path"),
            dlq_suffix=kwargs.get("dlq_suffix", ".dlq"),
        )

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Fire once per batch holding valid first-seen events of this watcher's types; nothing otherwise.

        A batch without such events is acknowledged without an event: its duplicates are
        dropped and its malformed messages dead-lettered by the producer before the commit.
        """
        async for batch in shared_stream:
            if not isinstance(batch, EventBatch):
                raise TypeError(
                    f"KafkaEventTrigger expects EventBatches from its stream, got {type(batch).__name__}"
                )
            records = [
                record
                for record in batch.records
                if record.disposition == "valid"
                and (
                    self.event_types is None
                    or cast("dict[str, Any]", record.envelope)["event_type"] in self.event_types
                )
            ]
            if records:
                yield TriggerEvent(trigger_payload(records))

    async def cleanup(self) -> None:
        """Nothing to close here: the shared producer owns the clients and the manager closes it."""
