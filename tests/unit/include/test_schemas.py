from __future__ import annotations

import pytest
from pydantic import ValidationError

from include.events import EventEnvelope, SupportTicket, TicketReply, TriageResult

GOOD = {
    "event_type": "support.ticket.created",
    "event_id": "evt-1",
    "timestamp": "2026-11-21T09:30:00Z",
    "source": "helpdesk",
    "payload": {"ticket_id": "T-1", "customer_id": "c-1", "subject": "Hi", "body": "Help"},
}


def test_good_event_round_trips() -> None:
    envelope = EventEnvelope.model_validate(GOOD)
    ticket = SupportTicket.model_validate(envelope.payload)
    assert ticket.channel == "web"
    assert EventEnvelope.model_validate_json(envelope.model_dump_json()) == envelope


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_envelope_names_the_field(change: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        EventEnvelope.model_validate({**GOOD, **change})


def test_bad_ticket_names_the_field() -> None:
    with pytest.raises(ValidationError, match="body"):
        SupportTicket.model_validate({**GOOD["payload"], "body": ""})
    with pytest.raises(ValidationError, match="channel"):
        SupportTicket.model_validate({**GOOD["payload"], "channel": "fax"})


def test_reply_carries_the_correlation_id() -> None:
    result = TriageResult(category="billing", reply="ok", confidence=0.5, drafted_by="test")
    reply = TicketReply(correlation_id="evt-1", ticket_id="T-1", customer_id="c-1", result=result)
    assert reply.event_id != "evt-1"
    assert TicketReply.model_validate(reply.model_dump(mode="json")) == reply
