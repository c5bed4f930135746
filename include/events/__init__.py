"""Typed events that start and come out of agent DAGs."""

from __future__ import annotations

from include.events.registry import (
    EventRegistry,
    TopicSpec,
    load_registry,
    parse_payload,
    validate_message,
)
from include.events.schemas import (
    LIFECYCLE_EVENTS,
    AgentExecuted,
    AgentFailed,
    EventEnvelope,
    SupportTicket,
    SystemHealthCheck,
    TicketReply,
    TriageResult,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStepCompleted,
    make_event,
)

__all__ = [
    "LIFECYCLE_EVENTS",
    "AgentExecuted",
    "AgentFailed",
    "EventEnvelope",
    "EventRegistry",
    "SupportTicket",
    "SystemHealthCheck",
    "TicketReply",
    "TopicSpec",
    "TriageResult",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowStarted",
    "WorkflowStepCompleted",
    "load_registry",
    "make_event",
    "parse_payload",
    "validate_message",
]
