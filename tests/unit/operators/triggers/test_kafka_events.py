"""KafkaEventTrigger and its shared-stream producer, without a broker (the Kafka client is faked)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import pytest
from airflow.triggers.base import TriggerEvent

from include.errors import ConfigurationError, EventPublishError
from include.events.registry import load_registry
from include.state.ledger import ClaimRequest, LedgerEntry
from operators.triggers.kafka_events import (
    DLQ_HEADER_PREFIX,
    EventBatch,
    EventBatchPayload,
    EventBrokerPayload,
    EventRecord,
    KafkaEventStreamProducer,
    KafkaEventTrigger,
    PartitionSpan,
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


async def _stream(*batches: Any) -> AsyncIterator[Any]:
    for batch in batches:
        yield batch


def _record(disposition: str, event_type: str = "support.ticket.created", offset: int = 0) -> EventRecord:
    envelope = (
        {**TICKET, "event_type": event_type, "event_id": f"e-{offset}"} if disposition != "invalid" else None
    )
    return EventRecord("t", 0, offset, 1, disposition, envelope, "schema" if envelope is None else None)  # type: ignore[arg-type]


def _batch(*records: EventRecord) -> EventBatch:
    return EventBatch(records)


@pytest.mark.asyncio
async def test_the_filter_fires_once_per_batch_for_its_valid_events_only() -> None:
    trigger = KafkaEventTrigger(topics=["t"])
    first = _batch(_record("valid", offset=0), _record("invalid", offset=1), _record("duplicate", offset=2))
    second = _batch(_record("valid", offset=3), _record("valid", offset=4))
    events = [e async for e in trigger.filter_shared_stream(_stream(first, second))]
    assert events == [
        TriggerEvent(
            {
                "envelopes": [{**TICKET, "event_id": "e-0"}],
                "kafka": [{"topic": "t", "partition": 0, "offset": 0, "timestamp_ms": 1}],
            }
        ),
        TriggerEvent(
            {
                "envelopes": [{**TICKET, "event_id": "e-3"}, {**TICKET, "event_id": "e-4"}],
                "kafka": [
                    {"topic": "t", "partition": 0, "offset": 3, "timestamp_ms": 1},
                    {"topic": "t", "partition": 0, "offset": 4, "timestamp_ms": 1},
                ],
            }
        ),
    ]


@pytest.mark.asyncio
async def test_a_batch_without_valid_events_fires_nothing() -> None:
    trigger = KafkaEventTrigger(topics=["t"])
    nothing = _batch(_record("invalid", offset=1), _record("duplicate", offset=2))
    assert [e async for e in trigger.filter_shared_stream(_stream(nothing))] == []


@pytest.mark.asyncio
async def test_the_filter_honours_event_types() -> None:
    trigger = KafkaEventTrigger(topics=["t"], event_types=["other.type"])
    batch = _batch(_record("valid", offset=0), _record("valid", "other.type", offset=1))
    events = [e async for e in trigger.filter_shared_stream(_stream(batch))]
    assert [env["event_type"] for e in events for env in e.payload["envelopes"]] == ["other.type"]


@pytest.mark.asyncio
async def test_the_filter_refuses_foreign_stream_items() -> None:
    trigger = KafkaEventTrigger(topics=["t"])
    with pytest.raises(TypeError, match="EventBatch"):
        [e async for e in trigger.filter_shared_stream(_stream("raw bytes"))]


def test_batches_keep_the_read_order_across_partitions_within_the_byte_bound() -> None:
    producer = KafkaEventStreamProducer(topics=["t"])
    producer.max_batch_bytes = 25
    processed = [
        (EventRecord("t", 0, 5, 1, "valid", {}, size=10), EventBrokerPayload("t", 0, 5)),
        (EventRecord("t", 1, 7, 1, "valid", {}, size=10), EventBrokerPayload("t", 1, 7)),
        (
            EventRecord("t", 0, 6, 1, "invalid", None, "empty"),
            EventBrokerPayload("t", 0, 6, b"", reason="empty"),
        ),
        (EventRecord("t", 0, 8, 1, "valid", {}, size=10), EventBrokerPayload("t", 0, 8)),
        (EventRecord("t", 0, 9, 1, "valid", {}, size=10), EventBrokerPayload("t", 0, 9)),
    ]
    batches = producer._batches(processed)
    assert [[(r.partition, r.offset) for r in b.records] for b, _ in batches] == [
        [(0, 5), (1, 7), (0, 6)],
        [(0, 8), (0, 9)],
    ]
    assert [(p.spans, [d.offset for d in p.dead]) for _, p in batches] == [
        ((PartitionSpan("t", 0, 5, 6), PartitionSpan("t", 1, 7, 7)), [6]),
        ((PartitionSpan("t", 0, 8, 9),), []),
    ]


def test_one_advance_lane_for_the_whole_consumer() -> None:
    producer = KafkaEventStreamProducer(topics=["a", "b"])
    one = EventBatchPayload((PartitionSpan("a", 0, 1, 2),))
    other = EventBatchPayload((PartitionSpan("b", 3, 1, 2),))
    assert producer.get_advance_lane(one) == producer.get_advance_lane(other)


class Outcome(NamedTuple):
    acked: int = 0
    rejected: int = 0
    failed: int = 0


class Item(NamedTuple):
    broker_payload: EventBatchPayload
    outcome: Outcome


class Broker:
    """The consumer's commit/seek and the DLQ producer, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


def _broker_producer() -> tuple[KafkaEventStreamProducer, Broker]:
    producer = KafkaEventStreamProducer(topics=["t"])
    broker = Broker()
    producer._commit = lambda topic, partition, offset: broker.calls.append(("commit", partition, offset))  # type: ignore[method-assign]
    producer._seek = lambda topic, partition, offset: broker.calls.append(("seek", partition, offset))  # type: ignore[method-assign]
    producer._send_to_dlq = lambda topic, payloads: broker.calls.append(  # type: ignore[method-assign]
        ("dlq", [(p.partition, p.offset) for p in payloads])
    )
    return producer, broker


def _payload(*spans: tuple[int, int, int], dead: tuple[EventBrokerPayload, ...] = ()) -> EventBatchPayload:
    """A batch's broker payload from (partition, first, last) spans of topic ``t``."""
    return EventBatchPayload(tuple(PartitionSpan("t", *span) for span in spans), dead)


@pytest.mark.asyncio
async def test_advance_dead_letters_then_commits_past_acknowledged_batches() -> None:
    producer, broker = _broker_producer()
    dead = EventBrokerPayload("t", 0, 6, b"x", reason="empty")
    await producer.advance(
        [
            Item(_payload((0, 5, 8), dead=(dead,)), Outcome(acked=1)),  # type: ignore[list-item]
            Item(_payload((0, 9, 9)), Outcome(acked=2)),  # type: ignore[list-item]
        ]
    )
    assert broker.calls == [("dlq", [(0, 6)]), ("commit", 0, 10)]


@pytest.mark.asyncio
async def test_advance_holds_a_failed_batch_at_its_first_offset() -> None:
    producer, broker = _broker_producer()
    await producer.advance(
        [
            Item(_payload((0, 0, 4)), Outcome(acked=1)),  # type: ignore[list-item]
            Item(_payload((0, 5, 9)), Outcome(failed=1)),  # type: ignore[list-item]
            Item(_payload((0, 10, 12)), Outcome(acked=1)),  # type: ignore[list-item]
        ]
    )
    assert broker.calls == [("commit", 0, 5), ("seek", 0, 5)]
    broker.calls.clear()
    # A later batch cannot commit past the held floor until the held batch is re-read.
    await producer.advance([Item(_payload((0, 13, 20)), Outcome(acked=1))])  # type: ignore[list-item]
    assert broker.calls == [("commit", 0, 5)]
    broker.calls.clear()
    await producer.advance([Item(_payload((0, 5, 9)), Outcome(acked=1))])  # type: ignore[list-item]
    assert broker.calls == [("commit", 0, 10)]


@pytest.mark.asyncio
async def test_advance_decides_each_partition_of_multi_partition_batches() -> None:
    """A failed batch holds only its own partitions; the others commit past later batches."""
    producer, broker = _broker_producer()
    dead_1 = EventBrokerPayload("t", 1, 4, b"x", reason="empty")
    dead_2 = EventBrokerPayload("t", 2, 5, b"y", reason="empty")
    await producer.advance(
        [
            Item(_payload((0, 0, 4), (1, 0, 2)), Outcome(acked=1)),  # type: ignore[list-item]
            Item(_payload((0, 5, 9), (2, 0, 3)), Outcome(failed=1)),  # type: ignore[list-item]
            Item(_payload((1, 3, 5), (2, 4, 6), (0, 10, 12), dead=(dead_1, dead_2)), Outcome(acked=1)),  # type: ignore[list-item]
        ]
    )
    # Partition 1's malformed message is dead-lettered and committed past; partition 2's is
    # behind the failed batch and comes back with it.
    assert broker.calls == [
        ("dlq", [(1, 4)]),
        ("commit", 0, 5),
        ("seek", 0, 5),
        ("commit", 1, 6),
        ("seek", 2, 0),
    ]


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
    """The EventLedger's batch interface: claim once per event id; a refused claim returns its holder."""

    def __init__(self) -> None:
        self.claims: dict[str, tuple[str, int | None, int | None]] = {}
        self.batches: list[int] = []

    def claim_batch(self, claims: list[ClaimRequest]) -> list[Any]:
        self.batches.append(len(claims))
        out: list[Any] = []
        for c in claims:
            if c.event_id in self.claims:
                topic, partition, offset = self.claims[c.event_id]
                out.append(
                    LedgerEntry(
                        event_id=c.event_id, topic=topic, partition=partition, offset=offset, claimed_at=None
                    )
                )
            else:
                self.claims[c.event_id] = (c.topic, c.partition, c.offset)
                out.append(None)
        return out

    def get(self, event_id: str) -> Any:
        return self.claims.get(event_id)


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the watcher sends to ``operators.metrics.events``."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("operators.metrics.events", lambda topic, **kw: calls.append({"topic": topic, **kw}))
    return calls


@pytest.mark.asyncio
async def test_the_producer_validates_and_dedupes_a_batch_with_one_ledger_call(
    emitted: list[dict[str, Any]],
) -> None:
    producer = KafkaEventStreamProducer(topics=["support.tickets"])
    producer._ledger = ledger = FakeLedger()
    registry = load_registry()
    ticket = json.dumps(TICKET).encode()
    out = await producer._process_batch(
        [FakeMessage(ticket), FakeMessage(b"\xff\x00", offset=8), FakeMessage(ticket, offset=9)],  # type: ignore[list-item]
        registry,
    )
    assert ledger.batches == [1]  # one claim call; e-1's second message in the batch is not claimed
    (first, payload), (bad, bad_payload), (repeat, _) = out
    assert first.disposition == "valid"
    assert first.envelope is not None
    assert first.envelope["event_id"] == "e-1"
    assert payload.value is None  # valid messages are not kept for the DLQ
    assert repeat.disposition == "duplicate"  # another offset claimed e-1 first
    assert (bad.disposition, bad.reason) == ("invalid", "not_json")
    assert (bad_payload.value, bad_payload.key, bad_payload.reason) == (b"\xff\x00", b"k", "not_json")
    assert [r.offset for r, _ in out] == [7, 8, 9]  # the stream keeps the partition's order
    redelivered = await producer._process_batch([FakeMessage(ticket)], registry)  # type: ignore[list-item]
    assert redelivered[0][0].disposition == "valid"  # same offset: the same message again
    other = {**TICKET, "event_id": "e-2"}
    two = await producer._process_batch(
        [FakeMessage(json.dumps(other).encode(), offset=20), FakeMessage(ticket, offset=21)],  # type: ignore[list-item]
        registry,
    )
    assert [r.disposition for r, _ in two] == ["valid", "duplicate"]
    assert ledger.claims["e-2"] == ("support.tickets", 2, 20)
    assert list(ledger.claims) == ["e-1", "e-2"]
    assert [(c["topic"], c["consumed"], c["duplicates"]) for c in emitted] == [
        ("support.tickets", 3, 1),
        ("support.tickets", 1, 0),
        ("support.tickets", 2, 1),
    ]
    assert producer._flow.take() == {"support.tickets": [6, 0, 2]}


@pytest.mark.asyncio
async def test_without_a_ledger_repeated_ids_pass(emitted: list[dict[str, Any]]) -> None:
    producer = KafkaEventStreamProducer(topics=["support.tickets"], cassandra_conn_id=None)
    ticket = json.dumps(TICKET).encode()
    out = await producer._process_batch([FakeMessage(ticket), FakeMessage(ticket, offset=8)], load_registry())  # type: ignore[list-item]
    assert [r.disposition for r, _ in out] == ["valid", "valid"]


class FakeConsumer:
    """``poll`` returns the first fetched message; ``consume`` takes more without waiting."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages
        self.calls: list[tuple[str, Any]] = []

    def poll(self, timeout: float) -> Any:
        self.calls.append(("poll", timeout))
        return self.messages.pop(0) if self.messages else None

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.calls.append(("consume", (num_messages, timeout)))
        taken, self.messages = self.messages[:num_messages], self.messages[num_messages:]
        return taken


def test_a_read_waits_for_one_message_only_and_is_bounded() -> None:
    producer = KafkaEventStreamProducer(topics=["t"])
    producer.max_read = 3
    producer._consumer = consumer = FakeConsumer(list(range(5)))  # type: ignore[assignment]
    assert producer._read_batch(0.5) == [0, 1, 2]
    assert consumer.calls == [("poll", 0.5), ("consume", (2, 0))]
    assert producer._read_batch(0.5) == [3, 4]
    consumer.calls.clear()
    assert producer._read_batch(0.05) == []
    assert consumer.calls == [("poll", 0.05)]


def _valid(partition: int, offset: int) -> tuple[EventRecord, EventBrokerPayload]:
    return (
        EventRecord("t", partition, offset, 1, "valid", {}, size=10),
        EventBrokerPayload("t", partition, offset),
    )


class Clock:
    """``time.monotonic`` for the watcher's pacing, moved by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr("operators.triggers.kafka_events.time.monotonic", lambda: self.now)


def _offsets(released: list[tuple[EventBatch, EventBatchPayload]]) -> list[list[int]]:
    return [[r.offset for r in b.records] for b, _ in released]


def test_an_idle_watcher_releases_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    producer = KafkaEventStreamProducer(topics=["t"])
    producer._hold([_valid(0, 0), _valid(1, 3)])
    assert _offsets(producer._release()) == [[0, 3]]  # one batch across partitions
    assert producer._in_flight == 1
    # Long after the last sync seen, with nothing in flight, the phase is unknown: at once again.
    producer._advanced_at, producer._in_flight = clock.now, 0
    clock.now += producer.phase_horizon + 0.5
    producer._hold([_valid(0, 1)])
    assert _offsets(producer._release()) == [[1]]


def test_after_a_short_pause_the_first_messages_wait_for_the_window_of_the_next_sync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Released at once, they would go alone into the sync before the window, and what
    follows them would wait for a full interval after their release, then for a sync."""
    clock = Clock(monkeypatch)
    producer = KafkaEventStreamProducer(topics=["t"])
    producer._saw_sync(clock.now)  # the last sync seen; nothing in flight since
    clock.now += 4.3
    producer._hold([_valid(0, 0)])
    assert producer._release() == []  # the fifth sync after it is 0.7 s away
    clock.now += 0.54  # 0.16 s before it
    producer._hold([_valid(1, 5)])
    assert producer._release() == []
    clock.now += 0.02  # 0.14 s before it
    assert _offsets(producer._release()) == [[0, 5]]


def test_the_sync_period_is_measured_over_consecutive_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    producer = KafkaEventStreamProducer(topics=["t"])
    for gap in (0.0, 1.03, 0.99, 1.04, 1.02):  # a loaded runner: ~1.02 s a sync, with jitter
        clock.now += gap
        producer._saw_sync(clock.now)
    assert producer._sync_period == pytest.approx(1.02)
    clock.now += 3.5  # a pause: not consecutive, so the period stands and a new run starts
    producer._saw_sync(clock.now)
    assert producer._sync_period == pytest.approx(1.02)
    assert producer._syncs_since == (clock.now, 0)
    # Dated by that period, 5 syncs on: 5.10 s after the last, so its window opens at 4.95 s.
    producer._hold([_valid(0, 0)])
    clock.now += 4.94
    assert producer._release() == []
    clock.now += 0.02
    assert len(producer._release()) == 1


@pytest.mark.asyncio
async def test_a_busy_watcher_releases_once_just_before_each_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    producer, _ = _broker_producer()
    producer._hold([_valid(0, 0)])
    (first,) = producer._release()  # idle: at once
    producer._hold([_valid(0, 1), _valid(1, 7)])
    clock.now += 0.9
    # No sync seen yet: the one that takes the first batch comes within a second of its
    # release, so the second waits that long rather than risk sharing it.
    assert producer._release() == []
    clock.now += 0.2
    assert _offsets(producer._release()) == [[1, 7]]
    producer._hold([_valid(0, 2)])
    clock.now += 0.05
    assert producer._release() == []  # one release per sync
    # A sync confirms the first batch: the next one is expected sync_interval after it.
    clock.now += 0.1
    await producer.advance([Item(first[1], Outcome(acked=1))])  # type: ignore[list-item]
    assert producer._in_flight == 1
    clock.now += 0.8
    assert producer._release() == []  # 0.8 s after the sync
    clock.now += 0.06
    assert _offsets(producer._release()) == [[2]]
    assert producer._in_flight == 2


def test_without_a_sync_seen_since_a_release_the_next_waits_a_full_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a short pause the phase is known, but nothing confirms the sync took the release."""
    clock = Clock(monkeypatch)
    producer = KafkaEventStreamProducer(topics=["t"])
    producer._advanced_at = clock.now  # the last sync seen, with nothing in flight since
    clock.now += 0.9
    producer._hold([_valid(0, 0)])
    assert _offsets(producer._release()) == [[0]]  # the window before the expected sync
    producer._hold([_valid(0, 1)])
    clock.now += 0.95  # the next window, but no sync has been seen since the release
    assert producer._release() == []
    clock.now += 0.15  # more than sync_interval after the release: that sync has gone
    assert _offsets(producer._release()) == [[1]]


def test_a_late_sync_gets_one_batch_not_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded triggerer syncs later than a second after the last: the batch released for the
    expected sync waits with it, and the next window passes without a second release."""
    clock = Clock(monkeypatch)
    producer = KafkaEventStreamProducer(topics=["t"])
    producer._advanced_at, producer._in_flight = clock.now, 1  # a sync; one batch awaits its confirmation
    clock.now += 0.9
    producer._hold([_valid(0, 0)])
    assert _offsets(producer._release()) == [[0]]
    clock.now += 1.0  # the next window, and still no sync since the release
    producer._hold([_valid(0, 1)])
    assert producer._release() == []
    assert producer._in_flight == producer.max_in_flight == 2


@pytest.mark.asyncio
async def test_a_batch_nobody_fired_for_does_not_date_the_next_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """It resolves as soon as the watchers read it, not at a sync."""
    clock = Clock(monkeypatch)
    producer, _ = _broker_producer()
    dup = EventRecord("t", 0, 0, 1, "duplicate", {}, size=10)
    ((_, payload),) = producer._batches([(dup, EventBrokerPayload("t", 0, 0))])
    assert payload.fires is False
    await producer.advance([Item(payload, Outcome(acked=1))])  # type: ignore[list-item]
    assert producer._advanced_at is None
    ((_, payload),) = producer._batches([_valid(0, 1)])
    await producer.advance([Item(payload, Outcome(acked=1))])  # type: ignore[list-item]
    assert producer._advanced_at == clock.now


def test_in_flight_batches_hold_back_until_the_hold_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    producer = KafkaEventStreamProducer(topics=["t"])
    producer.max_in_flight, producer.max_batch = 1, 3
    producer._in_flight, producer._released_at = 1, clock.now
    clock.now += 0.9  # the sync is due, but max_in_flight batches await storage
    producer._hold([_valid(0, i) for i in range(2)])
    assert producer._release() == []
    producer._hold([_valid(0, i) for i in range(2, 7)])
    assert _offsets(producer._release()) == [[0, 1, 2], [3, 4, 5], [6]]
    assert producer._in_flight == 4


class FakeCounters:
    def __init__(self, fail: bool = False) -> None:
        self.added: list[tuple[str, int, int, int]] = []
        self.fail = fail

    def add(self, topic: str, *, consumed: int = 0, dlq: int = 0, duplicates: int = 0) -> None:
        if self.fail:
            raise ConnectionError("cassandra down")
        self.added.append((topic, consumed, dlq, duplicates))


@pytest.mark.asyncio
async def test_event_flow_counts_are_written_in_batches_and_kept_when_the_write_fails() -> None:
    producer = KafkaEventStreamProducer(topics=["a"])
    producer._flow_counters = counters = FakeCounters()  # type: ignore[assignment]
    producer._flow.add("a", consumed=3, duplicates=1)
    producer._flow.add("a", consumed=2, dlq=1)
    await producer._flush_flow()  # within the interval: nothing written yet
    assert counters.added == []
    await producer._flush_flow(force=True)
    assert counters.added == [("a", 5, 1, 1)]
    producer._flow.add("a", consumed=1)
    producer._flow_counters = FakeCounters(fail=True)  # type: ignore[assignment]
    await producer._flush_flow(force=True)
    producer._flow_counters = counters  # type: ignore[assignment]
    producer._flow.add("a", consumed=1)
    await producer._flush_flow(force=True)
    assert counters.added == [("a", 5, 1, 1), ("a", 2, 0, 0)]  # nothing lost to the failure


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


def test_dead_letters_go_to_each_topics_own_dlq(emitted: list[dict[str, Any]]) -> None:
    producer = KafkaEventStreamProducer(topics=["a", "b"])
    producer._dlq_producer = fake = FakeProducer()  # type: ignore[assignment]
    producer._send_to_dlq(
        "ignored", [EventBrokerPayload("a", 0, 1, b"1", reason="empty"), EventBrokerPayload("b", 0, 2, b"2")]
    )
    assert [(topic, value) for topic, value, _ in fake.sent] == [("a.dlq", b"1"), ("b.dlq", b"2")]
    assert emitted == [{"topic": "a", "dlq": 1}, {"topic": "b", "dlq": 1}]
    assert producer._flow.take() == {"a": [0, 1, 0], "b": [0, 1, 0]}


def test_a_failed_dead_letter_raises_so_the_offset_is_not_committed(emitted: list[dict[str, Any]]) -> None:
    producer = KafkaEventStreamProducer(topics=["a"])
    producer._dlq_producer = FakeProducer(fail=True)  # type: ignore[assignment]
    with pytest.raises(EventPublishError, match="broker down"):
        producer._send_to_dlq("ignored", [EventBrokerPayload("a", 0, 1, b"1", reason="empty")])
    assert emitted == []  # not counted: it is not on the DLQ


def test_an_unregistered_topic_fails_the_stream_before_consuming() -> None:
    producer = KafkaEventStreamProducer(topics=["support.tickets", "not.registered"])
    with pytest.raises(ConfigurationError, match=r"not\.registered"):
        producer._load_registry()


@pytest.mark.asyncio
async def test_consumer_lag_is_reported_per_topic(emitted: list[dict[str, Any]]) -> None:
    class Consumer:
        def get_watermark_offsets(self, tp: Any, cached: bool) -> tuple[int, int]:
            assert cached
            return (0, 110)

    producer = KafkaEventStreamProducer(topics=["support.tickets"], cassandra_conn_id=None)
    producer._consumer = Consumer()  # type: ignore[assignment]
    ticket = json.dumps(TICKET).encode()
    await producer._process_batch(
        [FakeMessage(ticket, offset=98), FakeMessage(ticket, offset=99)], load_registry()
    )  # type: ignore[list-item]
    assert producer.lag == {("support.tickets", 2): 10}  # 110 - (99 + 1)
    assert emitted == [{"topic": "support.tickets", "consumed": 2, "duplicates": 0, "lag": 10}]


@pytest.mark.asyncio
async def test_cleanup_is_idempotent() -> None:
    trigger = KafkaReplyTrigger(topic="support.replies", correlation_id="c", since_ms=0)
    await trigger.cleanup()
    await trigger.cleanup()
    await KafkaEventTrigger(topics=["t"]).cleanup()


def test_a_redelivered_message_is_dead_lettered_once(emitted: list[dict[str, Any]]) -> None:
    producer = KafkaEventStreamProducer(topics=["a"])
    producer._dlq_producer = fake = FakeProducer()  # type: ignore[assignment]
    producer._ledger = ledger = FakeLedger()
    dead = [
        EventBrokerPayload("a", 0, 7, b"x", reason="not_json"),
        EventBrokerPayload("a", 0, 8, b"y", reason="empty"),
    ]
    producer._send_to_dlq("a", dead)
    producer._send_to_dlq("a", [dead[1], EventBrokerPayload("a", 0, 9, b"z", reason="empty")])
    assert [value for _, value, _ in fake.sent] == [b"x", b"y", b"z"]
    assert set(ledger.claims) == {"dlq/a/0/7", "dlq/a/0/8", "dlq/a/0/9"}
