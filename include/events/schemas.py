"""Pydantic models of the events on the wire (JSON) and of the agents' structured output."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["billing", "shipping", "returns", "account", "technical", "other"]


class EventEnvelope(BaseModel):
    """The envelope every event on our topics carries; ``payload`` is validated per topic.

    :param event_type: what happened, dotted (``support.ticket.created``).
    :param event_id: unique per event; the dedupe key.
    :param timestamp: when the producer created the event (UTC).
    :param source: the producing system.
    :param session_id: the conversation or customer the event belongs to, if any.
    :param correlation_id: ties replies to the event that caused them.
    :param payload: the event body.
    """

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(min_length=1, max_length=200)
    event_id: str = Field(min_length=1, max_length=200)
    timestamp: datetime
    source: str = Field(min_length=1, max_length=200)
    session_id: str | None = Field(default=None, max_length=200)
    correlation_id: str | None = Field(default=None, max_length=200)
    payload: dict[str, Any]


class SupportTicket(BaseModel):
    """A customer's support ticket, the payload of ``support.ticket.created`` events.

    :param ticket_id: the ticketing system's id.
    :param customer_id: the customer; conversation memory is keyed by it.
    :param subject: the ticket's subject line.
    :param body: the customer's message.
    :param channel: where the ticket came in.
    """

    model_config = ConfigDict(extra="forbid")

    ticket_id: str = Field(min_length=1, max_length=100)
    customer_id: str = Field(min_length=1, max_length=100)
    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)
    channel: Literal["email", "chat", "web", "phone"] = "web"


class TriageResult(BaseModel):
    """What the triage agent returns: a category and a drafted reply with its sources.

    :param category: the ticket's category.
    :param reply: the drafted reply to the customer.
    :param sources: ids of the knowledge passages the reply is based on.
    :param confidence: the drafter's confidence in the category, 0..1.
    :param drafted_by: the model or policy that drafted the reply.
    """

    category: Category
    reply: str = Field(min_length=1)
    sources: list[str] = Field(default_factory=list)
    confidence: float = Field(ge=0.0, le=1.0)
    drafted_by: str


class TicketReply(BaseModel):
    """The reply event produced to ``support.replies``.

    :param event_id: this reply's own id.
    :param correlation_id: the ``event_id`` of the ticket event it answers.
    :param ticket_id: the ticket answered.
    :param customer_id: the customer answered.
    :param result: the triage result.
    :param created_at: when the reply was produced.
    """

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    correlation_id: str
    ticket_id: str
    customer_id: str
    result: TriageResult
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
