"""ProduceEventOperator: validation before producing, deterministic ids (the producer is faked)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from include.errors import InvalidEventError
from include.events import validate_message
from operators.events import IDEMPOTENT_PRODUCER_CONFIG, IdempotentKafkaProducerHook
from operators.operators.produce import ProduceEventOperator

TICKET = {"ticket_id": "T", "customer_id": "c", "subject": "s", "body": "b"}


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        self.sent.append((topic, value))
        on_delivery(None, None)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(IdempotentKafkaProducerHook, "get_producer", lambda self: fake)
    return fake


def _context(run_id: str = "r1") -> Any:
    return {"ti": SimpleNamespace(dag_id="d", run_id=run_id, task_id="t", map_index=-1)}


def _operator(**kwargs: Any) -> ProduceEventOperator:
    kwargs.setdefault("payload", TICKET)
    return ProduceEventOperator(
        task_id="t", topic="support.tickets", event_type="support.ticket.created", **kwargs
    )


def test_it_produces_a_valid_envelope_with_a_deterministic_id(producer: FakeProducer) -> None:
    first = _operator().execute(_context())
    retry = _operator().execute(_context())
    other_run = _operator().execute(_context("r2"))
    assert first["event_id"] == retry["event_id"] != other_run["event_id"]
    topic, value = producer.sent[0]
    assert topic == "support.tickets"
    assert validate_message(topic, value).event_id == first["event_id"]


def test_a_payload_that_would_be_dead_lettered_is_never_produced(producer: FakeProducer) -> None:
    with pytest.raises(InvalidEventError) as caught:
        _operator(payload={"ticket_id": "T"}).execute(_context())
    assert caught.value.reason == "schema"
    assert producer.sent == []


def test_a_json_string_payload_is_accepted(producer: FakeProducer) -> None:
    import json

    assert _operator(payload=json.dumps(TICKET), event_id="fixed").execute(_context())["event_id"] == "fixed"


def test_the_producer_is_idempotent_with_acks_all(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, Any] = {}
    monkeypatch.setattr("confluent_kafka.Producer", lambda config: captured.update(config))
    IdempotentKafkaProducerHook()._get_client({"bootstrap.servers": "x:1", "group.id": "g", "acks": "1"})
    assert captured == {"bootstrap.servers": "x:1", **IDEMPOTENT_PRODUCER_CONFIG}
