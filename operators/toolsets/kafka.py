"""The ``kafka`` toolset: an agent publishes an event to Kafka, only after a human approves it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_ai.toolsets import FunctionToolset


class KafkaPublishToolset(FunctionToolset[Any]):
    """``publish_event(topic, event_type, payload)``, every call held for human approval.

    Each tool is marked ``requires_approval`` (pydantic-ai's API), so common.ai's
    ``AgentOperator`` parks the task in ``awaiting_input`` before the call runs: the pending
    call, with its arguments, is on Airflow's Required Actions page, and no worker slot is
    held. On approval the event is validated against the topic's registered payload model
    (``config/kafka/payloads.yaml``) and produced with the idempotent producer; on
    rejection the agent is told and carries on. Topics outside ``topics`` are refused.

    Tool approval cannot be combined with ``durable=True`` (common.ai's rule): give a durable
    agent a separate ``ApprovalOperator`` task instead.

    :param topics: the topics the agent may publish to.
    :param kafka_config_id: the Kafka connection.
    :param source: the envelope's ``source``.
    """

    def __init__(
        self,
        topics: Sequence[str],
        *,
        kafka_config_id: str = "kafka_default",
        source: str = "agentflow-agent",
    ) -> None:
        if not topics:
            raise ValueError("KafkaPublishToolset needs at least one topic it may publish to")
        super().__init__(id="kafka")
        self.add_function(self.publish_event, requires_approval=True)
        self.topics = list(topics)
        self.kafka_config_id = kafka_config_id
        self.source = source

    def publish_event(
        self, topic: str, event_type: str, payload: dict[str, Any], correlation_id: str | None = None
    ) -> dict[str, Any]:
        """Publish an event to a Kafka topic (a human approves it first).

        :param topic: the topic.
        :param event_type: the event type registered for the topic, e.g. ``support.reply.created``.
        :param payload: the event payload, matching the topic's schema.
        :param correlation_id: the event this one answers.
        """
        import uuid
        from datetime import UTC, datetime

        from pydantic_ai import ModelRetry

        from include.errors import InvalidEventError
        from include.events.registry import load_registry, validate_message
        from include.events.schemas import EventEnvelope
        from operators.events import IdempotentKafkaProducerHook, publish_events

        if topic not in self.topics:
            raise ModelRetry(f"topic {topic!r} is not allowed; allowed: {', '.join(self.topics)}")
        envelope = EventEnvelope(
            event_type=event_type,
            event_id=str(uuid.uuid4()),
            timestamp=datetime.now(UTC),
            source=self.source,
            correlation_id=correlation_id,
            payload=payload,
        )
        try:
            envelope = validate_message(topic, envelope.model_dump_json().encode(), registry=load_registry())
        except InvalidEventError as err:
            raise ModelRetry(f"the event does not match the schema of {topic}: {err}") from err
        producer = IdempotentKafkaProducerHook(kafka_config_id=self.kafka_config_id).get_producer()
        publish_events(producer, topic, [envelope])
        return {"published": True, "topic": topic, "event_id": envelope.event_id}
