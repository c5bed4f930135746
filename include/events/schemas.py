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


# --- Outbound lifecycle events (agent.events, workflow.events, system.events) ---------------


class _LifecyclePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentExecuted(_LifecyclePayload):
    """Payload of ``agent.executed``: an agent task finished.

    :param dag_id: the DAG the agent ran in.
    :param run_id: the DAG run.
    :param task_id: the agent task.
    :param try_number: the attempt that succeeded.
    :param duration_s: how long the task ran, if known.
    """

    dag_id: str
    run_id: str
    task_id: str
    try_number: int | None = None
    duration_s: float | None = None


class AgentFailed(_LifecyclePayload):
    """Payload of ``agent.failed``: an agent task attempt failed.

    :param dag_id: the DAG the agent ran in.
    :param run_id: the DAG run.
    :param task_id: the agent task.
    :param try_number: the attempt that failed.
    :param error: the error, as text.
    """

    dag_id: str
    run_id: str
    task_id: str
    try_number: int | None = None
    error: str | None = None


class WorkflowStarted(_LifecyclePayload):
    """Payload of ``workflow.started``: a DAG run started.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param run_type: how it was started (``manual``, ``scheduled``, ``asset_triggered``...).
    :param triggering_event_ids: the ``event_id`` s of the Kafka events that started it.
    """

    dag_id: str
    run_id: str
    run_type: str | None = None
    triggering_event_ids: list[str] = Field(default_factory=list)


class WorkflowStepCompleted(_LifecyclePayload):
    """Payload of ``workflow.step_completed``: a task instance succeeded.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param task_id: the task.
    :param map_index: the mapped index, -1 when not mapped.
    :param try_number: the attempt that succeeded.
    :param duration_s: how long it ran, if known.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int | None = None
    duration_s: float | None = None


class WorkflowCompleted(_LifecyclePayload):
    """Payload of ``workflow.completed``: a DAG run succeeded.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param duration_s: start to end, if known.
    """

    dag_id: str
    run_id: str
    duration_s: float | None = None


class WorkflowFailed(_LifecyclePayload):
    """Payload of ``workflow.failed``: a DAG run failed.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param reason: why, as Airflow reported it.
    """

    dag_id: str
    run_id: str
    reason: str | None = None


class SystemHealthCheck(_LifecyclePayload):
    """Payload of ``system.health_check``: a component's health.

    :param component: what was checked (``kafka``, ``cassandra``, ``triggerer``...).
    :param status: the outcome.
    :param details: anything else worth reporting (latencies, versions).
    """

    component: str = Field(min_length=1)
    status: Literal["healthy", "degraded", "unhealthy"]
    details: dict[str, Any] = Field(default_factory=dict)


LIFECYCLE_EVENTS: dict[str, tuple[str, type[BaseModel]]] = {
    "agent.executed": ("agent.events", AgentExecuted),
    "agent.failed": ("agent.events", AgentFailed),
    "workflow.started": ("workflow.events", WorkflowStarted),
    "workflow.step_completed": ("workflow.events", WorkflowStepCompleted),
    "workflow.completed": ("workflow.events", WorkflowCompleted),
    "workflow.failed": ("workflow.events", WorkflowFailed),
    "system.health_check": ("system.events", SystemHealthCheck),
}
"""Outbound event type -> (its topic, its payload model)."""


def make_event(
    event_type: str,
    payload: BaseModel,
    *,
    source: str,
    event_id: str | None = None,
    session_id: str | None = None,
    correlation_id: str | None = None,
) -> EventEnvelope:
    """Wrap ``payload`` in an envelope, now, with a fresh ``event_id`` unless one is given.

    :param event_type: the dotted event type.
    :param payload: the payload model.
    :param source: the producing system.
    :param event_id: a deterministic id (for idempotent re-publishing); a UUID4 if omitted.
    :param session_id: the session the event belongs to.
    :param correlation_id: the event this one answers or follows from.
    """
    return EventEnvelope(
        event_type=event_type,
        event_id=event_id or str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        source=source,
        session_id=session_id,
        correlation_id=correlation_id,
        payload=payload.model_dump(mode="json"),
    )
