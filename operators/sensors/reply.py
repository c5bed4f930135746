"""A deferrable sensor that waits for the reply event correlated with an earlier event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from include.errors import EventStreamError
from operators.triggers.reply import KafkaReplyTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class KafkaReplySensor(BaseSensorOperator):
    """Wait, without holding a worker slot, for the event on ``topic`` that answers ``correlation_id``.

    Defers to :class:`~operators.triggers.reply.KafkaReplyTrigger`, which reads the topic
    from ``since`` (default: the start of this DAG run) with a private, non-committing
    consumer. Returns the reply envelope (JSON) as XCom; times out after ``timeout``.

    :param topic: the reply topic; must be in the event registry.
    :param correlation_id: the ``event_id`` being answered (templated).
    :param event_type: only replies of this type; any if ``None``.
    :param since: read replies produced at or after this time; the DAG run's start if ``None``.
    :param kafka_config_id: the Kafka connection id.
    :param poll_timeout: seconds per consumer ``poll`` in the triggerer.
    :param registry_path: the event registry YAML; the shipped one if ``None``.
    """

    template_fields: Sequence[str] = ("topic", "correlation_id", "event_type")

    def __init__(
        self,
        *,
        topic: str,
        correlation_id: str,
        event_type: str | None = None,
        since: datetime | None = None,
        kafka_config_id: str = "kafka_default",
        poll_timeout: float = 1.0,
        registry_path: str | None = None,
        timeout: float = 60 * 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(timeout=timeout, **kwargs)
        self.topic = topic
        self.correlation_id = correlation_id
        self.event_type = event_type
        self.since = since
        self.kafka_config_id = kafka_config_id
        self.poll_timeout = poll_timeout
        self.registry_path = registry_path

    def _since_ms(self, context: Context) -> int:
        since = self.since
        if since is None:
            dag_run = context.get("dag_run")
            since = getattr(dag_run, "start_date", None) or datetime.now().astimezone() - timedelta(minutes=5)
        return int(since.timestamp() * 1000)

    def execute(self, context: Context) -> None:
        self.defer(
            trigger=KafkaReplyTrigger(
                topic=self.topic,
                correlation_id=self.correlation_id,
                since_ms=self._since_ms(context),
                kafka_config_id=self.kafka_config_id,
                event_type=self.event_type,
                poll_timeout=self.poll_timeout,
                registry_path=self.registry_path,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the reply envelope.

        :raises EventStreamError: the trigger ended without a reply.
        """
        if not event or event.get("status") != "success":
            raise EventStreamError(f"no reply to {self.correlation_id} on {self.topic}: {event!r}")
        self.log.info(
            "Reply %s to %s arrived on %s", event["envelope"]["event_id"], self.correlation_id, self.topic
        )
        return event["envelope"]
