"""KafkaEventTrigger and its shared-stream producer, without a broker (the Kafka client is faked)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent

from include.errors import ConfigurationError, EventPublishError
from include.events.registry import load_registry
from operators.triggers.kafka_events import (
    DLQ_HEADER_PREFIX,
    EventBrokerPayload,
    EventRecord,
    KafkaEventStreamProducer,
    KafkaEventTrigger,
    dlq_headers,
)
from operators.triggers.reply import KafkaReplyTrigger

TICKET = {
    "event_type": "support.ticket.created",
    "event_id": "e-1",
    "timestamp": "2026-11-21T09:30:00Z",
    "source": "t",
    "payload": {"ticket_id": "T", "customer_id": "c", "subject": "s", "body": "b"},
}


def _roundtrip(trigger: Any) -> Any:
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    return cls(**kwargs)


def test_serialize_round_trips() -> None:
    trigger = KafkaEventTrigger(
        topics=["b", "a"],
        kafka_config_id="k",
        cassandra_conn_id=None,
        registry_path="/r.yaml",
        event_types=["x"],
    )
    again = _roundtrip(trigger)
    assert type(again) is KafkaEventTrigger
    assert again.serialize() == trigger.serialize()
    assert trigger.serialize()[0] == "operators.triggers.kafka_events.KafkaEventTrigger"


def test_reply_trigger_serialize_round_trips() -> None:
    trigger = KafkaReplyTrigger(topic="support.replies", correlation_id="c", since_ms=5, event_type="x")
    assert _roundtrip(trigger).serialize() == trigger.serialize()


def test_watchers_of_the_same_topics_in_any_order_share_a_key() -> None:
    a = KafkaEventTrigger(topics=["x", "y"])
    b = KafkaEventTrigger(topics=["y", "x"], event_types=["only.this"])  # filters don't split the consumer
    c = KafkaEventTrigger(topics=["x", "y"], cassandra_conn_id="other")
    assert a.shared_stream_key() == b.shared_stream_key()
    assert a.shared_stream_key() != c.shared_stream_key()


def test_the_producer_is_built_from_the_serialized_kwargs() -> None:
    trigger = KafkaEventTrigger(topics=["t"], kafka_config_id="k", cassandra_conn_id=None, dlq_suffix=".dead")
    producer = KafkaEventTrigger.create_shared_stream_producer(trigger.serialize()[1])
    assert isinstance(producer, KafkaEventStreamProducer)
    assert (producer.topics, producer.kafka_config_id, producer.cassandra_conn_id) == (["t"], "k", None)
    assert producer.dlq_suffix == ".dead"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"topics": []}, "at least one topic"), ({"topics": ["t"], "dlq_suffix": ""}, "dlq_suffix")],
)
def test_misuse_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KafkaEventTrigger(**kwargs)


async def _stream(*records: EventRecord) -> AsyncIterator[EventRecord]:
    for record in records:
        yield record


def _record(disposition: str, event_type: str = "support.ticket.created", offset: int = 0) -> EventRecord:
    envelope = {**TICKET, "event_type": event_type} if disposition != "invalid" else None
    return EventRecord("t", 0, offset, 1, disposition, envelope, "schema" if envelope is None else None)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_the_filter_fires_for_valid_events_only(monkeypatch: pytest.MonkeyPatch) -> None:
    rejected: list[int] = []
    monkeypatch.setattr(
        "operators.triggers.kafka_events.reject_shared_stream_event", lambda: rejected.append(1)
    )
    trigger = KafkaEventTrigger(topics=["t"])
    records = [_record("valid", offset=0), _record("invalid", offset=1), _record("duplicate", offset=2)]
    events = [e async for e in trigger.filter_shared_stream(_stream(*records))]
    assert events == [
        TriggerEvent(
            {"envelope": TICKET, "kafka": {"topic": "t", "partition": 0, "offset": 0, "timestamp_ms": 1}}
        )
    ]
    assert rejected == [1]  # the invalid one, so the producer dead-letters it


@pytest.mark.asyncio
async def test_the_filter_honours_event_types() -> None:
    trigger = KafkaEventTrigger(topics=["t"], event_types=["other.type"])
    events = [
        e
        async for e in trigger.filter_shared_stream(_stream(_record("valid"), _record("valid", "other.type")))
    ]
    assert [e.payload["envelope"]["event_type"] for e in events] == ["other.type"]


@pytest.mark.asyncio
async def test_the_filter_refuses_foreign_stream_items() -> None:
    trigger = KafkaEventTrigger(topics=["t"])
    with pytest.raises(TypeError, match="EventRecord"):
        [e async for e in trigger.filter_shared_stream(_stream("raw bytes"))]  # type: ignore[arg-type]


class FakeMessage:
    def __init__(self, value: bytes | None, offset: int = 7, key: bytes | None = b"k") -> None:
        self._value, self._offset, self._key = value, offset, key

    def topic(self) -> str:
        return "support.tickets"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes]] | None:
        return [("trace", b"abc")]


class FakeLedger:
    """The EventLedger's interface: claim once per event id; get returns the claim."""

    def __init__(self) -> None:
        self.claims: dict[str, tuple[str, int | None, int | None]] = {}

    def claim(
        self, event_id: str, *, topic: str, partition: int | None = None, offset: int | None = None
    ) -> bool:
        if event_id in self.claims:
            return False
        self.claims[event_id] = (topic, partition, offset)
        return True

    def get(self, event_id: str) -> Any:
        if event_id not in self.claims:
            return None
        topic, partition, offset = self.claims[event_id]
        return type("Entry", (), {"topic": topic, "partition": partition, "offset": offset})()


@pytest.mark.asyncio
async def test_the_producer_validates_and_dedupes_each_message_once() -> None:
    producer = KafkaEventStreamProducer(topics=["support.tickets"])
    producer._ledger = ledger = FakeLedger()
    registry = load_registry()
    first, payload = await producer._process(FakeMessage(json.dumps(TICKET).encode()), registry)  # type: ignore[arg-type]
    assert first.disposition == "valid"
    assert first.envelope is not None
    assert first.envelope["event_id"] == "e-1"
    assert payload.value is None  # valid messages are not kept for the DLQ
    redelivered, _ = await producer._process(FakeMessage(json.dumps(TICKET).encode()), registry)  # type: ignore[arg-type]
    assert redelivered.disposition == "valid"  # same offset: the same message again
    repeat, _ = await producer._process(FakeMessage(json.dumps(TICKET).encode(), offset=8), registry)  # type: ignore[arg-type]
    assert repeat.disposition == "duplicate"
    bad, bad_payload = await producer._process(FakeMessage(b"\xff\x00", offset=9), registry)  # type: ignore[arg-type]
    assert (bad.disposition, bad.reason) == ("invalid", "not_json")
    assert (bad_payload.value, bad_payload.key, bad_payload.reason) == (b"\xff\x00", b"k", "not_json")
    assert list(ledger.claims) == ["e-1"]


def test_dlq_headers_carry_the_reason_and_the_origin() -> None:
    payload = EventBrokerPayload(
        "support.tickets",
        2,
        9,
        b"x",
        b"k",
        1_700_000_000_000,
        "schema",
        "payload.body: required",
        [("trace", b"a")],
    )
    headers = dict(dlq_headers(payload))
    assert headers[DLQ_HEADER_PREFIX + "reason"] == b"schema"
    assert headers[DLQ_HEADER_PREFIX + "detail"] == b"payload.body: required"
    assert headers[DLQ_HEADER_PREFIX + "original_topic"] == b"support.tickets"
    assert headers[DLQ_HEADER_PREFIX + "original_partition"] == b"2"
    assert headers[DLQ_HEADER_PREFIX + "original_offset"] == b"9"
    assert headers[DLQ_HEADER_PREFIX + "original_timestamp"] == b"1700000000000"
    assert headers["trace"] == b"a"


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, Any, list[Any]]] = []
        self.fail = fail
        self._callbacks: list[Any] = []

    def produce(self, topic: str, value: Any, key: Any, headers: Any, on_delivery: Any) -> None:
        self.sent.append((topic, value, headers))
        self._callbacks.append((on_delivery, topic))

    def flush(self, timeout: float) -> int:
        for callback, topic in self._callbacks:
            msg = type("M", (), {"topic": staticmethod(lambda t=topic: t)})()
            callback("broker down" if self.fail else None, msg)
        self._callbacks.clear()
        return 0


def test_dead_letters_go_to_each_topics_own_dlq() -> None:
    producer = KafkaEventStreamProducer(topics=["a", "b"])
    producer._dlq_producer = fake = FakeProducer()  # type: ignore[assignment]
    producer._send_to_dlq(
        "ignored", [EventBrokerPayload("a", 0, 1, b"1", reason="empty"), EventBrokerPayload("b", 0, 2, b"2")]
    )
    assert [(topic, value) for topic, value, _ in fake.sent] == [("a.dlq", b"1"), ("b.dlq", b"2")]


def test_a_failed_dead_letter_raises_so_the_offset_is_not_committed() -> None:
    producer = KafkaEventStreamProducer(topics=["a"])
    producer._dlq_producer = FakeProducer(fail=True)  # type: ignore[assignment]
    with pytest.raises(EventPublishError, match="broker down"):
        producer._send_to_dlq("ignored", [EventBrokerPayload("a", 0, 1, b"1", reason="empty")])


def test_an_unregistered_topic_fails_the_stream_before_consuming() -> None:
    producer = KafkaEventStreamProducer(topics=["support.tickets", "not.registered"])
    with pytest.raises(ConfigurationError, match=r"not\.registered"):
        producer._load_registry()


def test_consumer_lag_is_reported_as_a_gauge(monkeypatch: pytest.MonkeyPatch) -> None:
    gauges: list[tuple[str, float, dict[str, str]]] = []
    monkeypatch.setattr(
        "operators.triggers.kafka_events.Stats.gauge",
        lambda name, value, tags=None: gauges.append((name, value, tags)),
    )

    class Consumer:
        def get_watermark_offsets(self, tp: Any, cached: bool) -> tuple[int, int]:
            assert cached
            return (0, 110)

    producer = KafkaEventStreamProducer(topics=["t"])
    producer._consumer = Consumer()  # type: ignore[assignment]
    producer._report_lag("t", 0, 99)
    producer._report_lag("t", 0, 100)  # within the interval: recorded, not re-reported
    assert producer.lag == {("t", 0): 9}
    assert gauges == [("agentflow.kafka.consumer_lag", 10, {"topic": "t", "partition": "0"})]


@pytest.mark.asyncio
async def test_cleanup_is_idempotent() -> None:
    trigger = KafkaReplyTrigger(topic="support.replies", correlation_id="c", since_ms=0)
    await trigger.cleanup()
    await trigger.cleanup()
    await KafkaEventTrigger(topics=["t"]).cleanup()
