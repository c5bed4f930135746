"""Publish workflow and agent lifecycle events to Kafka from Airflow's listener hooks.

Registered by the ``agentflow_events`` plugin (``plugins/agentflow_events.py``). DAG-run
hooks run in the scheduler, task-instance hooks in the task's process; both publish our
envelope (``include.events``) with an idempotent producer (``acks=all``,
``enable.idempotence=true``):

=========================  ===========================  ===================
hook                       event                        topic
=========================  ===========================  ===================
``on_dag_run_running``     ``workflow.started``         ``workflow.events``
``on_dag_run_success``     ``workflow.completed``       ``workflow.events``
``on_dag_run_failed``      ``workflow.failed``          ``workflow.events``
``on_task_instance_success``  ``workflow.step_completed`` (+ ``agent.executed`` for agent tasks)
``on_task_instance_failed``   ``agent.failed`` for agent tasks
=========================  ===========================  ===================

Event ids are derived from what happened (DAG, run, task, try), so a hook that fires twice
publishes the same id twice and a deduplicating consumer keeps one. Off unless
``[agentflow_events] enabled = True`` (``AIRFLOW__AGENTFLOW_EVENTS__ENABLED``): ``make demo``
runs without a broker. ``kafka_config_id`` (default ``kafka_default``) and ``source``
(default ``airflow``) are read from the same section.
"""

from __future__ import annotations

import atexit
import logging
import os
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl

from include.events.schemas import (
    LIFECYCLE_EVENTS,
    AgentExecuted,
    AgentFailed,
    EventEnvelope,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStepCompleted,
    make_event,
)

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer
    from pydantic import BaseModel

log = logging.getLogger(__name__)

CONFIG_SECTION = "agentflow_events"
EVENT_ID_NAMESPACE = uuid.UUID("0d5b7c0a-8f1e-4e0b-bb8e-2f7a3c1d9e42")
AGENT_OPERATOR_NAMES = frozenset({"AgentOperator"})
_FLUSH_AT_EXIT_S = 10.0

_producer: Producer | None = None


def _reset_after_fork() -> None:
    # confluent-kafka producers are not fork-safe: a forked child builds its own.
    global _producer
    _producer = None


os.register_at_fork(after_in_child=_reset_after_fork)


def _conf(key: str, fallback: str) -> str:
    from airflow.configuration import conf

    return str(conf.get(CONFIG_SECTION, key, fallback=fallback))


def enabled() -> bool:
    """Whether lifecycle events are published (``[agentflow_events] enabled``)."""
    return _conf("enabled", "False").strip().lower() in {"true", "1", "yes"}


def _get_producer() -> Producer:
    global _producer
    if _producer is None:
        from operators.events import IdempotentKafkaProducerHook

        producer = IdempotentKafkaProducerHook(
            kafka_config_id=_conf("kafka_config_id", "kafka_default")
        ).get_producer()
        atexit.register(producer.flush, _FLUSH_AT_EXIT_S)
        _producer = producer
    return _producer


def _on_delivery(err: KafkaError | None, msg: Message) -> None:
    if err is not None:
        log.error("Lifecycle event to %s was not delivered: %s", msg.topic(), err)


def event_id_for(*parts: object) -> str:
    """The deterministic event id of a lifecycle event: a UUID5 of what happened."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "/".join(str(p) for p in parts)))


def build_event(event_type: str, payload: BaseModel, *, event_id: str, session_id: str) -> EventEnvelope:
    """Wrap a lifecycle payload in our envelope.

    :raises ValueError: ``event_type`` is not a lifecycle event or the payload is of the wrong model.
    """
    topic_model = LIFECYCLE_EVENTS.get(event_type)
    if topic_model is None or not isinstance(payload, topic_model[1]):
        raise ValueError(f"{event_type!r} is not a lifecycle event with a {type(payload).__name__} payload")
    return make_event(
        event_type, payload, source=_conf("source", "airflow"), event_id=event_id, session_id=session_id
    )


def publish(envelope: EventEnvelope) -> None:
    """Enqueue ``envelope`` on its lifecycle topic; delivery completes in the background.

    A listener must not break the scheduler or the task it reports on, so failures are
    logged (with the traceback) and counted, never raised.
    """
    topic = LIFECYCLE_EVENTS[envelope.event_type][0]
    try:
        producer = _get_producer()
        producer.produce(
            topic,
            value=envelope.model_dump_json().encode(),
            key=(envelope.session_id or envelope.event_id).encode(),
            headers=[("event_type", envelope.event_type.encode())],
            on_delivery=_on_delivery,
        )
        producer.poll(0)
    except Exception:
        from airflow.sdk.observability.stats import Stats

        Stats.incr("agentflow.events.publish_failed", tags={"event_type": envelope.event_type})
        log.exception("Could not publish %s %s to %s", envelope.event_type, envelope.event_id, topic)


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _triggering_event_ids(dag_run: Any) -> list[str]:
    ids: list[str] = []
    try:
        for asset_event in getattr(dag_run, "consumed_asset_events", None) or []:
            envelope = ((asset_event.extra or {}).get("payload") or {}).get("envelope") or {}
            if isinstance(envelope.get("event_id"), str):
                ids.append(envelope["event_id"])
    except Exception:  # a detached ORM object cannot lazy-load: the ids are optional
        log.debug("Could not read the triggering asset events of %s", dag_run, exc_info=True)
    return ids


def _is_agent_task(task_instance: Any) -> bool:
    task = getattr(task_instance, "task", None)
    return task is not None and any(c.__name__ in AGENT_OPERATOR_NAMES for c in type(task).__mro__)


def _session(dag_id: str, run_id: str) -> str:
    return f"{dag_id}/{run_id}"


class LifecycleListener:
    """Airflow listener publishing ``workflow.*`` and ``agent.*`` events (see the module docs)."""

    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        if not enabled():
            return
        payload = WorkflowStarted(
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            run_type=str(getattr(dag_run, "run_type", "") or "") or None,
            triggering_event_ids=_triggering_event_ids(dag_run),
        )
        self._emit("workflow.started", payload, dag_run.dag_id, dag_run.run_id)

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        if not enabled():
            return
        payload = WorkflowCompleted(
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            duration_s=_duration(getattr(dag_run, "start_date", None), getattr(dag_run, "end_date", None)),
        )
        self._emit("workflow.completed", payload, dag_run.dag_id, dag_run.run_id)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        if not enabled():
            return
        payload = WorkflowFailed(dag_id=dag_run.dag_id, run_id=dag_run.run_id, reason=msg or None)
        self._emit("workflow.failed", payload, dag_run.dag_id, dag_run.run_id)

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        if not enabled():
            return
        ti = task_instance
        duration = _duration(getattr(ti, "start_date", None), getattr(ti, "end_date", None))
        step = WorkflowStepCompleted(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=getattr(ti, "map_index", -1),
            try_number=getattr(ti, "try_number", None),
            duration_s=duration,
        )
        parts = (ti.task_id, step.map_index, step.try_number)
        self._emit("workflow.step_completed", step, ti.dag_id, ti.run_id, *parts)
        if _is_agent_task(ti):
            agent = AgentExecuted(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                try_number=step.try_number,
                duration_s=duration,
            )
            self._emit("agent.executed", agent, ti.dag_id, ti.run_id, *parts)

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        if not enabled() or not _is_agent_task(task_instance):
            return
        ti = task_instance
        payload = AgentFailed(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            try_number=getattr(ti, "try_number", None),
            error=str(error)[:2000] if error is not None else None,
        )
        parts = (ti.task_id, getattr(ti, "map_index", -1), payload.try_number)
        self._emit("agent.failed", payload, ti.dag_id, ti.run_id, *parts)

    @staticmethod
    def _emit(event_type: str, payload: BaseModel, dag_id: str, run_id: str, *parts: object) -> None:
        envelope = build_event(
            event_type,
            payload,
            event_id=event_id_for(event_type, dag_id, run_id, *parts),
            session_id=_session(dag_id, run_id),
        )
        publish(envelope)


lifecycle_listener = LifecycleListener()
