"""Typed events that start and come out of agent DAGs."""

from __future__ import annotations

from include.events.schemas import EventEnvelope, SupportTicket, TicketReply, TriageResult

__all__ = ["EventEnvelope", "SupportTicket", "TicketReply", "TriageResult"]
