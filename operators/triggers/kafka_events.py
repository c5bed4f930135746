"""The exactly-once Kafka watcher: validated events, a dead-letter topic with reasons, a dedupe ledger.

Built on the apache-kafka provider's shared-stream trigger (Airflow 3.3 ack mode): one Kafka
consumer per topic set in the triggerer however many ``AssetWatcher`` s use it, offsets
committed only after the asset events derived from a message are stored.

On top of it, :class:`KafkaEventStreamProducer` (the broker side, one per consumer):

* validates each message once with :func:`include.events.validate_message` against the
  topic's registered models (``config/kafka/payloads.yaml``);
* claims each valid event's ``event_id`` in the Cassandra ledger
  (``EventLedger.claim``); an id already claimed by another message (another
  topic/partition/offset) is a duplicate, while the same message redelivered after a
  crash is processed again (its asset event may never have been stored);
* re-publishes messages the watchers reject to ``<topic>.dlq`` with headers giving the
  reason, the detail and the original topic, partition, offset and timestamp, flushed and
  checked before the offset is committed past them;
* reports the consumer lag per partition as the ``agentflow.kafka.consumer_lag`` gauge.

:class:`KafkaEventTrigger` (the subscriber side, one per watcher) turns valid events into
``TriggerEvent({"envelope": ..., "kafka": ...})``, rejects invalid ones (so they go to the
dead-letter topic) and acknowledges duplicates without firing (so they are dropped).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, cast

from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
from airflow.providers.apache.kafka.triggers.shared_stream import (
    KafkaSharedStreamProducer,
    KafkaSharedStreamTrigger,
)
from airflow.sdk.observability.stats import Stats
from airflow.triggers.base import TriggerEvent
from airflow.triggers.shared_stream import reject_shared_stream_event
from asgiref.sync import sync_to_async

from include.errors import EventPublishError, EventStreamError, InvalidEventError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from include.events.registry import EventRegistry

log = logging.getLogger(__name__)

CONSUMER_LAG_METRIC = "agentflow.kafka.consumer_lag"
EVENTS_METRIC = "agentflow.kafka.events"
DLQ_HEADER_PREFIX = "agentflow.dlq."
_LAG_REPORT_INTERVAL_S = 1.0
_DLQ_FLUSH_TIMEOUT_S = 30.0

Disposition = Literal["valid", "invalid", "duplicate"]


class EventLedgerProtocol(Protocol):
    """What the watcher needs from ``include.state.ledger.EventLedger``."""

    def claim(
        self, event_id: str, *, topic: str, partition: int | None = None, offset: int | None = None
    ) -> bool:
        """Return True the first time ``event_id`` is claimed, False if it was claimed before."""
        ...

    def get(self, event_id: str) -> Any:
        """Return the claim (with ``topic``, ``partition``, ``offset``) of ``event_id``, or None."""
        ...


def _claim(ledger: EventLedgerProtocol, event_id: str, topic: str, partition: int, offset: int) -> bool:
    """Claim ``event_id`` for this message; True unless another message claimed it first.

    A message redelivered after a crash or a seek-back carries the same topic, partition and
    offset as its own earlier claim: that is the same message again, not a duplicate.
    """
    if ledger.claim(event_id, topic=topic, partition=partition, offset=offset):
        return True
    entry = ledger.get(event_id)
    return entry is not None and (entry.topic, entry.partition, entry.offset) == (topic, partition, offset)


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
    shared-stream manager; its ``advance`` (the provider's) commits each partition's offsets
    only once every watcher has resolved the messages and their asset events are stored.

    :param topics: topics to consume; each must be in the event registry.
    :param kafka_config_id: Kafka connection (must set ``enable.auto.commit=false``).
    :param poll_timeout: seconds per consumer ``poll``.
    :param cassandra_conn_id: Cassandra connection of the dedupe ledger; ``None`` turns
        deduplication off (at-least-once).
    :param registry_path: the event registry YAML; the shipped one if ``None``.
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
        dlq_suffix: str = ".dlq",
    ) -> None:
        # ``dlq_topic`` only has to be set for the provider's ``advance`` to dead-letter
        # rejected messages; ``_send_to_dlq`` routes each to its own topic's DLQ.
        super().__init__(
            topics=topics,
            kafka_config_id=kafka_config_id,
            poll_timeout=poll_timeout,
            dlq_topic=f"<topic>{dlq_suffix}",
        )
        self.cassandra_conn_id = cassandra_conn_id
        self.registry_path = registry_path
        self.dlq_suffix = dlq_suffix
        self.lag: dict[tuple[str, int], int] = {}
        self._ledger: EventLedgerProtocol | None = None
        self._cassandra_hook: Any = None
        self._lag_reported_at: dict[tuple[str, int], float] = {}

    def _load_registry(self) -> EventRegistry:
        from include.events.registry import load_registry

        registry = load_registry(self.registry_path)
        for topic in self.topics:
            registry.spec(topic)  # ConfigurationError now rather than a DLQ full of "schema"
        return registry

    def _open_ledger(self) -> EventLedgerProtocol:
        from operators.hooks.cassandra import CassandraHook

        hook = CassandraHook(cassandra_conn_id=cast("str", self.cassandra_conn_id))
        self._cassandra_hook = hook
        return cast("EventLedgerProtocol", hook.event_ledger())

    async def open_stream(self) -> AsyncIterator[tuple[EventRecord, EventBrokerPayload]]:  # type: ignore[override]
        """Open the consumer (and the ledger) lazily and yield one validated record per message.

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
        poll = sync_to_async(consumer.poll)
        log.info(
            "Kafka event watcher consuming %s (ledger: %s, dead letters to <topic>%s)",
            ",".join(self.topics),
            self.cassandra_conn_id or "off",
            self.dlq_suffix,
        )
        while True:
            message = await poll(self.poll_timeout)
            if message is None:
                continue
            if message.error():
                raise EventStreamError(f"Kafka consumer error on {','.join(self.topics)}: {message.error()}")
            yield await self._process(message, registry)

    async def _process(
        self, message: Message, registry: EventRegistry
    ) -> tuple[EventRecord, EventBrokerPayload]:
        from include.events.registry import validate_message

        topic = cast("str", message.topic())
        partition = cast("int", message.partition())
        offset = cast("int", message.offset())
        ts_type, ts_ms = message.timestamp()
        timestamp_ms = ts_ms if ts_type else None
        self._report_lag(topic, partition, offset)
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
            Stats.incr(EVENTS_METRIC, tags={"topic": topic, "disposition": "invalid", "reason": err.reason})
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
            return record, payload
        disposition: Disposition = "valid"
        if self._ledger is not None:
            claimed = await sync_to_async(_claim)(self._ledger, envelope.event_id, topic, partition, offset)
            if not claimed:
                disposition = "duplicate"
                log.info(
                    "Dropping duplicate event %s at %s[%s]@%s (already claimed in the ledger)",
                    envelope.event_id,
                    topic,
                    partition,
                    offset,
                )
        Stats.incr(EVENTS_METRIC, tags={"topic": topic, "disposition": disposition})
        record = EventRecord(
            topic, partition, offset, timestamp_ms, disposition, envelope.model_dump(mode="json")
        )
        return record, EventBrokerPayload(topic, partition, offset, timestamp_ms=timestamp_ms)

    def _report_lag(self, topic: str, partition: int, offset: int) -> None:
        """Gauge ``high watermark - next offset`` for the partition, at most once a second."""
        if self._consumer is None:
            return
        from confluent_kafka import TopicPartition

        try:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        except Exception:  # the cache is filled by the fetcher; a miss only skips one sample
            return
        if high is None or high < 0:
            return
        lag = max(0, high - offset - 1)
        self.lag[(topic, partition)] = lag
        now = time.monotonic()
        if now - self._lag_reported_at.get((topic, partition), 0.0) >= _LAG_REPORT_INTERVAL_S:
            self._lag_reported_at[(topic, partition)] = now
            Stats.gauge(CONSUMER_LAG_METRIC, lag, tags={"topic": topic, "partition": str(partition)})

    def _send_to_dlq(self, topic: str, payloads: list[Any]) -> None:
        """Re-publish rejected messages to ``<their topic><dlq_suffix>`` with reason headers.

        Waits for every delivery report: the provider's ``advance`` commits past these
        offsets as soon as this returns.

        :raises EventPublishError: a message was not delivered (the batch is then redelivered).
        """
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
        """Flush the dead-letter producer, close the consumer and the ledger's connection; best effort."""
        await super().aclose()
        hook, self._cassandra_hook, self._ledger = self._cassandra_hook, None, None
        if hook is not None:
            try:
                await sync_to_async(hook.close)()
            except Exception:
                log.warning("Failed to close the Cassandra connection of the event ledger", exc_info=True)


class KafkaEventTrigger(KafkaSharedStreamTrigger):
    """Watch Kafka topics for valid, first-seen events: the trigger of an ``AssetWatcher``.

    Fires ``TriggerEvent({"envelope": <EventEnvelope as JSON>, "kafka": {topic, partition,
    offset, timestamp_ms}})`` once per valid event whose ``event_id`` the ledger had not
    seen. Malformed messages go to ``<topic>.dlq`` with their reason; duplicates are
    acknowledged and dropped. Watchers with the same topics and connections share one
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
        """Fire for valid first-seen events, reject invalid ones, let duplicates pass silently."""
        async for record in shared_stream:
            if not isinstance(record, EventRecord):
                raise TypeError(
                    f"KafkaEventTrigger expects EventRecords from its stream, got {type(record).__name__}"
                )
            if record.disposition == "invalid":
                # Terminal: the producer dead-letters it, then commits past it.
                reject_shared_stream_event()
                continue
            if record.disposition == "duplicate":
                continue  # resolved without an event: acknowledged, committed, dropped
            envelope = cast("dict[str, Any]", record.envelope)
            if self.event_types is not None and envelope["event_type"] not in self.event_types:
                continue
            yield TriggerEvent(
                {
                    "envelope": envelope,
                    "kafka": {
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "timestamp_ms": record.timestamp_ms,
                    },
                }
            )

    async def cleanup(self) -> None:
        """Nothing to close here: the shared producer owns the clients and the manager closes it."""
