"""The event registry and validate_message: every kind of bad input gets its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.errors import ConfigurationError, InvalidEventError
from include.events import (
    LIFECYCLE_EVENTS,
    EventEnvelope,
    SupportTicket,
    WorkflowStarted,
    load_registry,
    make_event,
    parse_payload,
    validate_message,
)

GOOD = {
    "event_type": "support.ticket.created",
    "event_id": "evt-1",
    "timestamp": "2026-11-21T09:30:00Z",
    "source": "helpdesk",
    "payload": {"ticket_id": "T-1", "customer_id": "c-1", "subject": "Hi", "body": "Help"},
}


def _raw(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_good_event_is_returned_with_its_payload_normalised() -> None:
    envelope = validate_message("support.tickets", _raw())
    assert isinstance(envelope, EventEnvelope)
    assert envelope.event_id == "evt-1"
    assert envelope.payload["channel"] == "web"
    assert isinstance(parse_payload(envelope, "support.tickets"), SupportTicket)


def test_a_str_value_is_accepted() -> None:
    assert validate_message("support.tickets", _raw().decode()).event_id == "evt-1"


@pytest.mark.parametrize(
    ("raw", "reason", "detail"),
    [
        (b"", "empty", "no value"),
        (None, "empty", "no value"),
        (b"   \n", "empty", "whitespace"),
        (b"\x00\x9f\xff\xfe", "not_json", "UTF-8"),
        (b"\x89PNG\r\n\x1a\n", "not_json", "UTF-8"),
        (b"{not json", "not_json", "not JSON"),
        (b"[1, 2]", "schema", "JSON object"),
        (b'"a string"', "schema", "JSON object"),
        (json.dumps({"hello": "world", "event_id": "x"}).encode(), "schema", "event_type"),
        (_raw(event_id=None), "missing_event_id", "event_id"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "event_id"}).encode(), "missing_event_id", "None"),
        (_raw(event_id=""), "missing_event_id", "event_id"),
        (_raw(event_id=42), "missing_event_id", "42"),
        (_raw(timestamp="yesterday"), "schema", "timestamp"),
        (_raw(unexpected=1), "schema", "unexpected"),
        (_raw(event_type="support.ticket.deleted"), "schema", "not registered"),
        (_raw(payload={"ticket_id": "T-1"}), "schema", "payload.customer_id"),
        (_raw(payload={**GOOD["payload"], "channel": "fax"}), "schema", "payload.channel"),  # type: ignore[dict-item]
    ],
)
def test_bad_input_names_its_reason(raw: bytes | None, reason: str, detail: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        validate_message("support.tickets", raw)
    assert caught.value.reason == reason
    assert detail in caught.value.detail
    assert caught.value.topic == "support.tickets"


def test_a_huge_message_is_too_large_before_it_is_parsed() -> None:
    raw = _raw(payload={**GOOD["payload"], "body": "x" * 300_000})  # type: ignore[dict-item]
    with pytest.raises(InvalidEventError) as caught:
        validate_message("support.tickets", raw)
    assert caught.value.reason == "too_large"
    assert "262144" in caught.value.detail


def test_the_limit_is_per_topic() -> None:
    raw = make_event(
        "system.health_check",
        LIFECYCLE_EVENTS["system.health_check"][1](
            component="kafka", status="healthy", details={"x": "y" * 70_000}
        ),
        source="t",
    ).model_dump_json()
    with pytest.raises(InvalidEventError, match="65536"):
        validate_message("system.events", raw)


def test_an_unregistered_topic_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not in the event registry"):
        validate_message("nobody.listens", _raw())


def test_every_lifecycle_event_is_registered_on_its_topic() -> None:
    registry = load_registry()
    for event_type, (topic, model) in LIFECYCLE_EVENTS.items():
        assert registry.spec(topic).payloads[event_type] is model


def test_a_lifecycle_event_round_trips_through_validation() -> None:
    envelope = make_event(
        "workflow.started",
        WorkflowStarted(dag_id="d", run_id="r", triggering_event_ids=["e"]),
        source="airflow",
    )
    back = validate_message("workflow.events", envelope.model_dump_json().encode())
    assert back == envelope


def test_patterns_match_and_exact_names_win(tmp_path: Path) -> None:
    path = tmp_path / "payloads.yaml"
    path.write_text(
        "defaults: {max_message_bytes: 1000}\n"
        "topics:\n"
        "  'it.*': {payloads: {a.b: include.events.schemas.SupportTicket}}\n"
        "  it.exact: {max_message_bytes: 10, payloads: {a.b: include.events.schemas.SupportTicket}}\n"
    )
    registry = load_registry(path)
    assert registry.spec("it.anything").max_message_bytes == 1000
    assert registry.spec("it.exact").max_message_bytes == 10


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("nothing: here\n", "topics"),
        ("topics: {t: {max_message_bytes: 3}}\n", "payloads"),
        ("topics: {t: {payloads: {a: include.events.schemas.Nope}}}\n", "cannot import"),
        ("topics: {t: {payloads: {a: include.events.schemas.make_event}}}\n", "not a pydantic model"),
        ("topics: {t: {max_message_bytes: 0, payloads: {a: include.events.schemas.SupportTicket}}}\n", "> 0"),
    ],
)
def test_a_malformed_registry_is_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "payloads.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=match):
        load_registry(path)


def test_a_missing_registry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_registry(tmp_path / "nope.yaml")


def test_invalid_event_error_refuses_unknown_reasons() -> None:
    with pytest.raises(ValueError, match="unknown invalid-event reason"):
        InvalidEventError("because", "x")
