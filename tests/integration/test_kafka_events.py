"""The Kafka event watcher, the produce operator and the reply sensor against the real broker.

The watcher is driven the way the triggerer drives it: through Airflow's own
``SharedStreamManager`` (subscribe, ``filter_shared_stream``, ``bind_pending_event``), with
``confirm_persisted`` standing in for the supervisor storing the asset event. Each test
uses its own topics, consumer group and event registry.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from airflow.exceptions import TaskDeferred
from airflow.triggers.base import TriggerEvent
from airflow.triggers.shared_stream import SharedStreamManager
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from operators.triggers.kafka_events import DLQ_HEADER_PREFIX, KafkaEventTrigger

pytestmark = pytest.mark.integration


@dataclass
class Topics:
    """One test's topics, registry and Kafka connection."""

    bootstrap: str
    events: str
    dlq: str
    replies: str
    conn_id: str
    group: str
    registry: str
    extra: dict[str, Any] = field(default_factory=dict)


def _ticket(event_id: str | None, n: int = 0) -> bytes:
    event: dict[str, Any] = {
        "event_type": "support.ticket.created",
        "timestamp": "2026-11-21T09:30:00Z",
        "source": "it",
        "payload": {"ticket_id": f"T-{n}", "customer_id": "c-1", "subject": "Hi", "body": f"Help {n}"},
    }
    if event_id is not None:
        event["event_id"] = event_id
    return json.dumps(event).encode()


@pytest.fixture
def topics(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topics]:
    suffix = uuid.uuid4().hex[:10]
    events, replies = f"it.tickets.{suffix}", f"it.replies.{suffix}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics(
        [NewTopic(events, 1, 1), NewTopic(events + ".dlq", 1, 1), NewTopic(replies, 2, 1)]
    )
    for future in futures.values():
        future.result(30)
    registry = tmp_path / "payloads.yaml"
    registry.write_text(
        "topics:\n"
        "  'it.tickets.*':\n"
        "    payloads: {support.ticket.created: include.events.schemas.SupportTicket}\n"
        "  'it.replies.*':\n"
        "    payloads: {support.reply.created: include.events.schemas.TicketReply}\n"
    )
    conn_id = f"kafka_it_{suffix}"
    group = f"it-{suffix}"
    extra = {
        "bootstrap.servers": kafka_bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "kafka", "extra": extra}))
    yield Topics(kafka_bootstrap, events, events + ".dlq", replies, conn_id, group, str(registry), extra)
    for future in admin.delete_topics([events, events + ".dlq", replies]).values():
        future.result(30)


def _produce(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0


def _committed(t: Topics, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": t.bootstrap, "group.id": t.group})
    try:
        return consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        consumer.close()


def _read_all(t: Topics, topic: str, expected: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": t.bootstrap,
            "group.id": f"reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and not message.error():
                messages.append(message)
        # A little longer: nothing beyond the expected may arrive.
        end = time.monotonic() + 2
        while time.monotonic() < end:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages


class Watcher:
    """Subscribers of one ``SharedStreamManager``, as the triggerer runs them."""

    def __init__(self, confirm: bool = True) -> None:
        self.manager = SharedStreamManager(ack_timeout=60)
        self.confirm = confirm
        self.events: dict[int, list[TriggerEvent]] = {}
        self.unconfirmed: list[int] = []
        self.tasks: dict[int, tuple[asyncio.Task[None], Any]] = {}

    def start(self, trigger_id: int, trigger: KafkaEventTrigger) -> None:
        key = trigger.shared_stream_key()
        stream = self.manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
        self.events[trigger_id] = []

        async def consume() -> None:
            async for event in trigger.filter_shared_stream(stream):
                seq = self.manager.bind_pending_event(trigger_id=trigger_id, key=key)
                assert seq is not None, "a watcher event must be bound to its Kafka message"
                self.events[trigger_id].append(event)
                if self.confirm:
                    self.manager.confirm_persisted([seq])  # the supervisor stored the asset event
                else:
                    self.unconfirmed.append(seq)

        self.tasks[trigger_id] = (asyncio.create_task(consume()), key)

    def envelopes(self, trigger_id: int = 1) -> list[dict[str, Any]]:
        """The envelopes of every event the watcher fired, in order (one event per batch)."""
        return [env for e in self.events[trigger_id] for env in e.payload["envelopes"]]

    async def wait_for(self, trigger_id: int, count: int, timeout: float = 60) -> None:
        """Wait until the watcher has fired ``count`` envelopes (in however many batches)."""
        deadline = time.monotonic() + timeout
        while len(self.envelopes(trigger_id)) < count:
            task = self.tasks[trigger_id][0]
            if task.done():
                task.result()  # raises the watcher's error
            assert time.monotonic() < deadline, f"only {len(self.envelopes(trigger_id))} of {count} events"
            await asyncio.sleep(0.1)

    async def wait_committed(self, t: Topics, offset: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (got := await asyncio.to_thread(_committed, t, t.events)) < offset:
            for task, _ in self.tasks.values():
                if task.done():
                    task.result()
            assert time.monotonic() < deadline, f"committed offset {got}, expected {offset}"
            await asyncio.sleep(0.3)

    async def stop(self) -> None:
        for trigger_id, (task, key) in self.tasks.items():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.manager.unsubscribe(trigger_id, key)
        await self.manager.stop_all()

    def ids(self, trigger_id: int = 1) -> list[str]:
        return [envelope["event_id"] for envelope in self.envelopes(trigger_id)]


def _trigger(t: Topics, *, ledger: bool) -> KafkaEventTrigger:
    return KafkaEventTrigger(
        topics=[t.events],
        kafka_config_id=t.conn_id,
        poll_timeout=0.2,
        cassandra_conn_id="cassandra_default" if ledger else None,
        registry_path=t.registry,
    )


@pytest.mark.asyncio
async def test_valid_events_fire_once_and_malformed_ones_go_to_the_dlq(topics: Topics) -> None:
    bad: list[tuple[bytes | None, str]] = [
        (None, "empty"),
        (b"\x00\x9f\xff binary", "not_json"),
        (b"{not json", "not_json"),
        (_ticket("x") + b" " * 300_000, "too_large"),
        (json.dumps({"hello": "world", "event_id": "w-1"}).encode(), "schema"),
        (_ticket(None), "missing_event_id"),
        (json.dumps({**json.loads(_ticket("p-1")), "payload": {"ticket_id": "T"}}).encode(), "schema"),
    ]
    good = [f"ok-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    values: list[bytes | None] = []
    for i, event_id in enumerate(good):  # interleave: the watcher keeps running past each bad one
        values.append(_ticket(event_id, i))
        if i < len(bad):
            values.append(bad[i][0])
    values += [value for value, _ in bad[len(good) :]]
    values.append(_ticket(good[0], 99))  # no ledger here: a repeated id fires again (at-least-once)
    _produce(topics.bootstrap, topics.events, values)

    watcher = Watcher()
    watcher.start(1, _trigger(topics, ledger=False))
    try:
        await watcher.wait_for(1, len(good) + 1)
        await watcher.wait_committed(topics, len(values))
    finally:
        await watcher.stop()

    assert watcher.ids() == [*good, good[0]]
    first = watcher.events[1][0].payload
    assert first["envelopes"][0]["payload"]["channel"] == "web"  # validated, defaults filled in
    assert first["kafka"][0] == {
        "topic": topics.events,
        "partition": 0,
        "offset": 0,
        "timestamp_ms": first["kafka"][0]["timestamp_ms"],
    }
    for event in watcher.events[1]:  # each envelope comes with the offset of its own message
        for envelope, where in zip(event.payload["envelopes"], event.payload["kafka"], strict=True):
            assert json.loads(values[where["offset"]] or b"")["event_id"] == envelope["event_id"]

    dead = _read_all(topics, topics.dlq, len(bad))
    assert len(dead) == len(bad)
    reasons = []
    for message in dead:
        headers = {k: v.decode() for k, v in message.headers()}
        reasons.append(headers[DLQ_HEADER_PREFIX + "reason"])
        assert headers[DLQ_HEADER_PREFIX + "original_topic"] == topics.events
        assert headers[DLQ_HEADER_PREFIX + "original_partition"] == "0"
        offset = int(headers[DLQ_HEADER_PREFIX + "original_offset"])
        assert message.value() == values[offset]  # the original bytes, unchanged
        assert int(headers[DLQ_HEADER_PREFIX + "original_timestamp"]) > 0
        assert headers[DLQ_HEADER_PREFIX + "detail"]
    assert sorted(reasons) == sorted(reason for _, reason in bad)


@pytest.mark.asyncio
async def test_offsets_are_committed_only_after_the_asset_event_is_stored(topics: Topics) -> None:
    _produce(topics.bootstrap, topics.events, [_ticket(f"c-{i}", i) for i in range(2)])
    watcher = Watcher(confirm=False)
    watcher.start(1, _trigger(topics, ledger=False))
    try:
        await watcher.wait_for(1, 2)
        first = list(watcher.unconfirmed)  # the asset event(s) of the first two messages
        _produce(topics.bootstrap, topics.events, [_ticket("c-2", 2)])  # a later batch
        await watcher.wait_for(1, 3)
        await asyncio.sleep(3)  # several poll rounds: nothing may be committed yet
        assert await asyncio.to_thread(_committed, topics, topics.events) < 0
        watcher.manager.confirm_persisted(first)
        # Only the first batch's asset event is stored: commit through its messages, not the third.
        await watcher.wait_committed(topics, 2)
        await asyncio.sleep(2)
        assert await asyncio.to_thread(_committed, topics, topics.events) == 2
    finally:
        await watcher.stop()
    # A new watcher in the same group (a restarted triggerer) gets only the unconfirmed event.
    again = Watcher()
    again.start(1, _trigger(topics, ledger=False))
    try:
        await again.wait_for(1, 1)
        await asyncio.sleep(1)
    finally:
        await again.stop()
    assert again.ids() == ["c-2"]


@pytest.mark.asyncio
async def test_watchers_of_the_same_topics_share_one_consumer(
    topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[dict[str, Any]] = []
    factory = KafkaEventTrigger.create_shared_stream_producer.__func__  # type: ignore[attr-defined]

    def counting(cls: type[KafkaEventTrigger], kwargs: dict[str, Any]) -> Any:
        created.append(kwargs)
        return factory(cls, kwargs)

    monkeypatch.setattr(KafkaEventTrigger, "create_shared_stream_producer", classmethod(counting))
    _produce(topics.bootstrap, topics.events, [_ticket(f"s-{i}", i) for i in range(4)])
    watcher = Watcher()
    watcher.start(1, _trigger(topics, ledger=False))
    watcher.start(2, _trigger(topics, ledger=False))
    try:
        await watcher.wait_for(1, 4)
        await watcher.wait_for(2, 4)
        await watcher.wait_committed(topics, 4)
    finally:
        await watcher.stop()
    assert len(created) == 1
    assert watcher.ids(1) == watcher.ids(2) == [f"s-{i}" for i in range(4)]


@pytest.mark.asyncio
async def test_duplicate_event_ids_are_dropped_through_the_ledger(topics: Topics) -> None:
    run = uuid.uuid4().hex[:8]
    ids = [f"d-{run}-{i}" for i in range(6)]
    values = [_ticket(event_id, i) for i, event_id in enumerate(ids)]
    values += [_ticket(ids[1], 100), _ticket(ids[4], 101), _ticket(ids[1], 102)]  # repeats
    _produce(topics.bootstrap, topics.events, values)
    watcher = Watcher()
    watcher.start(1, _trigger(topics, ledger=True))
    try:
        await watcher.wait_for(1, len(ids))
        await watcher.wait_committed(topics, len(values))  # duplicates acknowledged, committed past
    finally:
        await watcher.stop()
    assert watcher.ids() == ids
    assert _read_all(topics, topics.dlq, 0, timeout=1) == []  # dropped, not dead-lettered


@pytest.mark.asyncio
async def test_a_message_redelivered_after_a_crash_is_not_mistaken_for_a_duplicate(topics: Topics) -> None:
    event_id = f"r-{uuid.uuid4().hex[:8]}"
    _produce(topics.bootstrap, topics.events, [_ticket(event_id)])
    crashed = Watcher(confirm=False)  # claimed in the ledger, but the asset event was never stored
    crashed.start(1, _trigger(topics, ledger=True))
    try:
        await crashed.wait_for(1, 1)
    finally:
        await crashed.stop()
    assert await asyncio.to_thread(_committed, topics, topics.events) < 0
    restarted = Watcher()
    restarted.start(1, _trigger(topics, ledger=True))
    try:
        await restarted.wait_for(1, 1)
        await restarted.wait_committed(topics, 1)
    finally:
        await restarted.stop()
    assert restarted.ids() == [event_id]


def _context(run_id: str) -> dict[str, Any]:
    class TI:
        dag_id, task_id, map_index = "it_dag", "produce", -1

    ti = TI()
    ti.run_id = run_id  # type: ignore[attr-defined]
    return {"ti": ti}


@pytest.mark.asyncio
async def test_produce_operator_and_reply_sensor(topics: Topics) -> None:
    from include.events import TicketReply, TriageResult
    from operators.operators.produce import ProduceEventOperator
    from operators.sensors.reply import KafkaReplySensor

    ticket_id = f"t-{uuid.uuid4().hex[:8]}"
    reply = TicketReply(
        correlation_id=ticket_id,
        ticket_id="T-1",
        customer_id="c-1",
        result=TriageResult(category="billing", reply="Refunded.", confidence=0.9, drafted_by="it"),
    )
    operator = ProduceEventOperator(
        task_id="produce",
        topic=topics.replies,
        event_type="support.reply.created",
        payload=reply.model_dump(mode="json"),
        correlation_id=ticket_id,
        kafka_config_id=topics.conn_id,
        registry_path=topics.registry,
    )
    since = time.time() - 1
    # Another reply first (not ours): the sensor must skip it.
    other = ProduceEventOperator(
        task_id="produce",
        topic=topics.replies,
        event_type="support.reply.created",
        payload=reply.model_dump(mode="json"),
        correlation_id="someone-else",
        kafka_config_id=topics.conn_id,
        registry_path=topics.registry,
    )
    await asyncio.to_thread(other.execute, _context("run-0"))
    produced = await asyncio.to_thread(operator.execute, _context("run-1"))
    again = await asyncio.to_thread(operator.execute, _context("run-1"))  # a retry: same event id
    assert produced["event_id"] == again["event_id"]

    sensor = KafkaReplySensor(
        task_id="await_reply",
        topic=topics.replies,
        correlation_id=ticket_id,
        since=__import__("datetime").datetime.fromtimestamp(since).astimezone(),
        kafka_config_id=topics.conn_id,
        registry_path=topics.registry,
        poll_timeout=0.2,
        timeout=60,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    events = []
    try:
        async with asyncio.timeout(60):
            async for event in trigger.run():
                events.append(event)
    finally:
        await trigger.cleanup()
    assert len(events) == 1
    envelope = sensor.execute_complete({}, events[0].payload)  # type: ignore[arg-type]
    assert envelope["event_id"] == produced["event_id"]
    assert envelope["correlation_id"] == ticket_id
    assert TicketReply.model_validate(envelope["payload"]).result.reply == "Refunded."


def _run_context(dag_id: str, run_id: str, event_ids: list[str]) -> dict[str, Any]:
    """A task context whose run was triggered by asset events carrying ``event_ids``."""

    class AssetEvent:
        def __init__(self, event_id: str) -> None:
            envelope = json.loads(_ticket(event_id))
            self.extra = {"payload": {"envelope": envelope, "kafka": {}}}

    class DagRun:
        pass

    dag_run = DagRun()
    dag_run.dag_id, dag_run.run_id = dag_id, run_id  # type: ignore[attr-defined]
    return {"dag_run": dag_run, "triggering_asset_events": {"tickets": [AssetEvent(e) for e in event_ids]}}


def test_each_event_is_claimed_by_one_run_and_re_claimed_by_its_retry(services: None) -> None:
    from operators.events import triggering_events

    dag_id = f"it_claims_{uuid.uuid4().hex[:8]}"
    ids = [f"rc-{uuid.uuid4().hex[:8]}-{i}" for i in range(4)]
    first = triggering_events(_run_context(dag_id, "run-a", ids[:3]), claim=True)
    # The crash window: ids[2] redelivered and folded into a second run with a new event.
    second = triggering_events(_run_context(dag_id, "run-b", ids[2:]), claim=True)
    retry = triggering_events(_run_context(dag_id, "run-a", ids[:3]), claim=True)
    other_dag = triggering_events(_run_context(dag_id + "_other", "run-a", ids), claim=True)
    assert [e.event_id for e in first] == ids[:3]
    assert [e.event_id for e in second] == ids[3:]
    assert [e.event_id for e in retry] == ids[:3]
    assert [e.event_id for e in other_dag] == ids


def test_batched_and_single_asset_events_give_each_event_once_to_one_run(services: None) -> None:
    """A watcher's batch asset event (``envelopes``) and one of the older shape (``envelope``)."""
    from operators.events import triggering_events

    dag_id = f"it_batches_{uuid.uuid4().hex[:8]}"
    ids = [f"bt-{uuid.uuid4().hex[:8]}-{i}" for i in range(4)]

    class AssetEvent:
        def __init__(self, payload: dict[str, Any]) -> None:
            self.extra = {"payload": payload}

    def context(run_id: str) -> dict[str, Any]:
        context = _run_context(dag_id, run_id, [])
        batch = {"envelopes": [json.loads(_ticket(e)) for e in ids[:3]], "kafka": [{}, {}, {}]}
        single = {"envelope": json.loads(_ticket(ids[3])), "kafka": {}}
        refold = {"envelopes": [json.loads(_ticket(ids[1]))], "kafka": [{}]}  # one event twice
        context["triggering_asset_events"] = {
            "tickets": [AssetEvent(batch), AssetEvent(single), AssetEvent(refold)]
        }
        return context

    assert sorted(e.event_id for e in triggering_events(context("run-a"), claim=True)) == sorted(ids)
    assert triggering_events(context("run-b"), claim=True) == []
    assert len(triggering_events(context("run-b"))) == 4  # without claim: every event, once


def test_concurrent_runs_claim_disjoint_events_in_cassandra(services: None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from operators.events import triggering_events

    dag_id = f"it_claims_{uuid.uuid4().hex[:8]}"
    ids = [f"cc-{uuid.uuid4().hex[:8]}-{i}" for i in range(20)]

    def run(n: int) -> list[str]:
        return [e.event_id for e in triggering_events(_run_context(dag_id, f"run-{n}", ids), claim=True)]

    with ThreadPoolExecutor(4) as pool:
        owned = [event_id for result in pool.map(run, range(4)) for event_id in result]
    assert sorted(owned) == sorted(ids)


@pytest.mark.asyncio
async def test_the_watcher_adds_its_event_flow_to_the_cassandra_counters(topics: Topics) -> None:
    from datetime import UTC, datetime

    from include.state.eventflow import EventFlowCounters
    from operators.hooks.cassandra import CassandraHook

    run = uuid.uuid4().hex[:8]
    values = [_ticket(f"f-{run}-{i}", i) for i in range(3)]
    values += [b"{not json", None, _ticket(f"f-{run}-1", 9)]  # two for the DLQ, one duplicate
    _produce(topics.bootstrap, topics.events, values)
    watcher = Watcher()
    watcher.start(1, _trigger(topics, ledger=True))
    try:
        await watcher.wait_for(1, 3)
        await watcher.wait_committed(topics, len(values))
    finally:
        await watcher.stop()  # closing the stream writes the counts not yet written
    hook = CassandraHook("cassandra_default")
    try:
        flow = EventFlowCounters(hook.get_conn()).read(topics.events, datetime.now(UTC).date())
    finally:
        hook.close()
    assert flow == {"consumed": 6, "dlq": 2, "duplicates": 1}


@pytest.fixture
def ledger(services: None) -> Iterator[Any]:
    from operators.hooks.cassandra import CassandraHook

    hook = CassandraHook("cassandra_default")
    try:
        yield hook.event_ledger()
    finally:
        hook.close()


def test_a_claim_names_its_owner_and_the_same_owner_may_claim_again(ledger: Any) -> None:
    key = f"own-{uuid.uuid4().hex[:8]}"
    assert ledger.claim(key, owner="run/a") is True
    assert ledger.claim(key, owner="run/a") is True  # a retry of the same run
    assert ledger.claim(key, owner="run/b") is False
    assert ledger.claim(key, topic="t") is False  # no owner: a plain first-claim-wins
    entry = ledger.get(key)
    assert (entry.owner, entry.topic) == ("run/a", None)
    with pytest.raises(TypeError, match="needs a topic, an owner"):
        ledger.claim(key)
    with pytest.raises(ValueError, match="owner must be 1 to 512"):
        ledger.claim(key, owner="")


def test_run_claims_written_before_the_owner_column_are_still_their_runs(
    ledger: Any, cassandra_session: Any
) -> None:
    from include.events.claims import claim_for_run, claim_key, claim_owner

    dag_id = f"it_legacy_{uuid.uuid4().hex[:8]}"
    # How run claims were written before 008_ledger_owner.cql: the owner in topic, no claimed_by.
    cassandra_session.execute(
        "INSERT INTO agentflow.event_ledger (event_id, topic, owner, claimed_at) "
        "VALUES (%s, %s, uuid(), toTimestamp(now())) USING TTL 600",
        (claim_key(dag_id, "e1"), claim_owner("run-old")),
    )
    assert claim_for_run(ledger, dag_id, "run-new", ["e1", "e2"]) == ["e2"]
    assert claim_for_run(ledger, dag_id, "run-old", ["e1", "e2"]) == ["e1"]
    assert ledger.get(claim_key(dag_id, "e2")).owner == claim_owner("run-new")


def test_claim_batch_grants_once_and_returns_the_holder(ledger: Any) -> None:
    from include.state.ledger import ClaimRequest

    run = uuid.uuid4().hex[:8]
    first = ledger.claim_batch([ClaimRequest(f"b-{run}-{i}", "t", 0, i) for i in range(20)])
    assert first == [None] * 20
    again = ledger.claim_batch(
        [
            ClaimRequest(f"b-{run}-0", "t", 0, 0),
            ClaimRequest(f"b-{run}-1", "t", 0, 99),
            ClaimRequest(f"b-{run}-x", "t", 0, 5),
        ]
    )
    assert again[0] is not None
    assert (again[0].topic, again[0].partition, again[0].offset) == ("t", 0, 0)
    assert again[1] is not None
    assert again[1].offset == 1
    assert again[2] is None
    assert ledger.claim_batch([]) == []
