"""A trigger that waits for the reply event correlated with an earlier event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from include.errors import EventStreamError, InvalidEventError

if TYPE_CHECKING:
    from confluent_kafka import Consumer

log = logging.getLogger(__name__)


class _ReaderConsumerHook(KafkaConsumerHook):
    """The provider's consumer hook as a group-less reader: a private group, never committing."""

    def _get_client(self, config: dict[str, Any]) -> Consumer:
        reader = {
            **config,
            "group.id": f"agentflow-reply-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        return super()._get_client(reader)


class KafkaReplyTrigger(BaseTrigger):
    """Fire when an event with ``correlation_id`` appears on ``topic`` (at or after ``since_ms``).

    Reads every partition from the offsets at ``since_ms`` with a private consumer group
    that never commits, so it does not disturb any watcher. Messages that are not valid
    events for the topic, or that answer another event, are skipped. Fires
    ``{"status": "success", "envelope": ..., "kafka": {...}}`` once, then ends.

    :param topic: the reply topic; must be in the event registry.
    :param correlation_id: the ``event_id`` the reply answers.
    :param since_ms: read messages from this time on (epoch milliseconds).
    :param kafka_config_id: the Kafka connection id.
    :param event_type: only replies of this type; any if ``None``.
    :param poll_timeout: seconds per consumer ``poll``.
    :param registry_path: the event registry YAML; the shipped one if ``None``.
    """

    def __init__(
        self,
        *,
        topic: str,
        correlation_id: str,
        since_ms: int,
        kafka_config_id: str = "kafka_default",
        event_type: str | None = None,
        poll_timeout: float = 1.0,
        registry_path: str | None = None,
    ) -> None:
        super().__init__()
        self.topic = topic
        self.correlation_id = correlation_id
        self.since_ms = since_ms
        self.kafka_config_id = kafka_config_id
        self.event_type = event_type
        self.poll_timeout = poll_timeout
        self.registry_path = registry_path
        self._consumer: Consumer | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "topic": self.topic,
                "correlation_id": self.correlation_id,
                "since_ms": self.since_ms,
                "kafka_config_id": self.kafka_config_id,
                "event_type": self.event_type,
                "poll_timeout": self.poll_timeout,
                "registry_path": self.registry_path,
            },
        )

    def _open(self) -> Consumer:
        from confluent_kafka import TopicPartition

        consumer = _ReaderConsumerHook(topics=[self.topic], kafka_config_id=self.kafka_config_id).get_conn
        metadata = consumer.list_topics(self.topic, timeout=30)
        topic_meta = metadata.topics.get(self.topic)
        if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
            consumer.close()
            detail = topic_meta.error if topic_meta is not None else "no metadata"
            raise EventStreamError(f"reply topic {self.topic!r} is not available: {detail}")
        wanted = [TopicPartition(self.topic, p, self.since_ms) for p in sorted(topic_meta.partitions)]
        starts = consumer.offsets_for_times(wanted, timeout=30)
        # A partition with nothing at or after since_ms answers -1: start at its end.
        consumer.assign(
            [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -1) for tp in starts]
        )
        return consumer

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from include.events.registry import load_registry, validate_message

        registry = await sync_to_async(load_registry)(self.registry_path)
        registry.spec(self.topic)
        self._consumer = consumer = await sync_to_async(self._open)()
        poll = sync_to_async(consumer.poll)
        self.log.info("Waiting for a reply to %s on %s", self.correlation_id, self.topic)
        while True:
            message = await poll(self.poll_timeout)
            if message is None:
                continue
            if message.error():
                raise EventStreamError(f"Kafka consumer error on {self.topic}: {message.error()}")
            try:
                envelope = validate_message(self.topic, message.value(), registry=registry)
            except InvalidEventError as err:
                self.log.debug("Skipping %s@%s: %s", message.partition(), message.offset(), err)
                continue
            if envelope.correlation_id != self.correlation_id:
                continue
            if self.event_type is not None and envelope.event_type != self.event_type:
                continue
            yield TriggerEvent(
                {
                    "status": "success",
                    "envelope": envelope.model_dump(mode="json"),
                    "kafka": {
                        "topic": message.topic(),
                        "partition": message.partition(),
                        "offset": message.offset(),
                    },
                }
            )
            return

    async def cleanup(self) -> None:
        """Close the consumer; safe to call more than once."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await sync_to_async(consumer.close)()
