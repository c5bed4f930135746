"""Produce a result event to Kafka from a task, idempotently."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

# Event ids derived from the task instance are UUID5s in this namespace, so a retried task
# re-produces the same event_id and consumers (our watcher's ledger) drop the repeat.
EVENT_ID_NAMESPACE = uuid.UUID("5b0c3f0e-3c57-4f4b-9a8e-6a1f0f3c2d11")


class ProduceEventOperator(BaseOperator):
    """Produce one event (our JSON envelope) to a Kafka topic with an idempotent producer.

    The envelope is validated against the topic's registered payload model before it is
    sent, so nothing this operator produces would be dead-lettered by our own watchers.
    Unless ``event_id`` is given it is derived from the task instance (DAG, run, task, map
    index, topic), so a retry produces the same id and a deduplicating consumer drops it.
    Returns the produced envelope (JSON) as XCom.

    :param topic: the topic; must be in the event registry.
    :param event_type: the event type; must be registered for the topic.
    :param payload: the payload (a dict, or a pydantic model's ``model_dump()``).
    :param source: the ``source`` of the envelope.
    :param event_id: the event id; derived from the task instance if ``None``.
    :param correlation_id: the event this one answers (e.g. the ticket event's id).
    :param session_id: the session the event belongs to.
    :param key: the message key; the session id, else the event id, if ``None``.
    :param kafka_config_id: the Kafka connection id.
    :param registry_path: the event registry YAML; the shipped one if ``None``.
    :param delivery_timeout: seconds to wait for the broker's acknowledgement.
    """

    template_fields: Sequence[str] = ("payload", "event_id", "correlation_id", "session_id", "key", "topic")
    template_fields_renderers = {"payload": "json"}
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        topic: str,
        event_type: str,
        payload: dict[str, Any] | str,
        source: str = "agentflow",
        event_id: str | None = None,
        correlation_id: str | None = None,
        session_id: str | None = None,
        key: str | None = None,
        kafka_config_id: str = "kafka_default",
        registry_path: str | None = None,
        delivery_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.topic = topic
        self.event_type = event_type
        self.payload = payload
        self.source = source
        self.event_id = event_id
        self.correlation_id = correlation_id
        self.session_id = session_id
        self.key = key
        self.kafka_config_id = kafka_config_id
        self.registry_path = registry_path
        self.delivery_timeout = delivery_timeout

    def _default_event_id(self, context: Context) -> str:
        ti = context["ti"]
        name = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}/{self.topic}/{self.event_type}"
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))

    def execute(self, context: Context) -> dict[str, Any]:
        import json
        from datetime import UTC, datetime

        from include.events.registry import load_registry, validate_message
        from include.events.schemas import EventEnvelope
        from operators.events import IdempotentKafkaProducerHook, publish_events

        payload = json.loads(self.payload) if isinstance(self.payload, str) else self.payload
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a JSON object (dict), got {type(payload).__name__}")
        envelope = EventEnvelope(
            event_type=self.event_type,
            event_id=self.event_id or self._default_event_id(context),
            timestamp=datetime.now(UTC),
            source=self.source,
            session_id=self.session_id,
            correlation_id=self.correlation_id,
            payload=payload,
        )
        # The same check our watchers apply: InvalidEventError names what is wrong.
        envelope = validate_message(
            self.topic, envelope.model_dump_json().encode(), registry=load_registry(self.registry_path)
        )
        producer = IdempotentKafkaProducerHook(kafka_config_id=self.kafka_config_id).get_producer()
        publish_events(producer, self.topic, [envelope], key=self.key, timeout=self.delivery_timeout)
        self.log.info("Produced %s %s to %s", envelope.event_type, envelope.event_id, self.topic)
        return envelope.model_dump(mode="json")
