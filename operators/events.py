"""The DAG side of Kafka events: typed triggering events, and idempotent publishing.

* :func:`triggering_events` gives a task the events that started its run (through
  ``AssetWatcher`` s with :class:`~operators.triggers.kafka_events.KafkaEventTrigger`) as
  validated :class:`~include.events.EventEnvelope` s.
* :class:`IdempotentKafkaProducerHook` is the apache-kafka provider's producer hook with
  ``enable.idempotence=true`` and ``acks=all`` forced on; :func:`publish_events` produces
  envelopes through it and waits for every delivery report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
from confluent_kafka import KafkaException

from include.errors import EventPublishError
from include.events.schemas import EventEnvelope

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)

# Consumer-only settings a shared Kafka connection carries; a producer would warn on each.
_CONSUMER_ONLY_KEYS = frozenset(
    {
        "group.id",
        "group.instance.id",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "auto.offset.reset",
        "session.timeout.ms",
        "max.poll.interval.ms",
        "enable.partition.eof",
        "isolation.level",
        "fetch.min.bytes",
        "partition.assignment.strategy",
    }
)
IDEMPOTENT_PRODUCER_CONFIG = {"enable.idempotence": True, "acks": "all"}


class IdempotentKafkaProducerHook(KafkaProducerHook):
    """The provider's producer hook with an idempotent producer (``acks=all``).

    Reads the connection's extras like :class:`KafkaProducerHook`, drops consumer-only
    settings, and forces ``enable.idempotence=true`` and ``acks=all`` so retries inside the
    client never duplicate or reorder a message.

    :param kafka_config_id: the Kafka connection id.
    """

    def _get_client(self, config: dict[str, Any]) -> Producer:
        from confluent_kafka import Producer

        settings = {k: v for k, v in config.items() if k not in _CONSUMER_ONLY_KEYS}
        settings.update(IDEMPOTENT_PRODUCER_CONFIG)
        return Producer(settings)


def publish_events(
    producer: Producer,
    topic: str,
    events: Iterable[EventEnvelope],
    *,
    key: str | None = None,
    timeout: float = 30.0,
) -> int:
    """Produce ``events`` to ``topic`` as JSON and wait until every one is acknowledged.

    Each message is keyed by ``key``, else the event's ``session_id``, else its ``event_id``
    (events of one session stay in order on one partition).

    :param producer: a confluent-kafka producer, e.g. from :class:`IdempotentKafkaProducerHook`.
    :param topic: the topic.
    :param events: the envelopes.
    :param key: the message key for all of them.
    :param timeout: seconds to wait for the delivery reports.
    :return: how many were delivered.
    :raises EventPublishError: a message was refused or not acknowledged in time.
    """
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures.append(f"{msg.topic()}: {err}")

    count = 0
    try:
        for event in events:
            producer.produce(
                topic,
                value=event.model_dump_json().encode(),
                key=(key or event.session_id or event.event_id).encode(),
                headers=[("event_type", event.event_type.encode()), ("event_id", event.event_id.encode())],
                on_delivery=on_delivery,
            )
            producer.poll(0)
            count += 1
        remaining = producer.flush(timeout)
    except (BufferError, KafkaException) as err:
        raise EventPublishError(f"could not produce events to {topic}: {err}") from err
    if remaining or failures:
        raise EventPublishError(
            f"{len(failures) + remaining} of {count} event(s) to {topic} not delivered: "
            + "; ".join(failures[:5] or [f"{remaining} still queued after {timeout}s"])
        )
    return count


def triggering_events(
    context: Mapping[str, Any],
    asset: Any = None,
    *,
    event_type: str | None = None,
    claim: bool = False,
    cassandra_conn_id: str = "cassandra_default",
) -> list[EventEnvelope]:
    """Return the Kafka events that started this run, as validated envelopes, oldest first.

    Reads ``context["triggering_asset_events"]`` (what a ``KafkaEventTrigger`` watcher
    stored as each asset event's ``extra["payload"]``: ``{"envelopes": [...]}`` for a batch of
    events, or ``{"envelope": ...}`` for asset events stored by watchers before batching).
    Asset events that did not come from a Kafka event watcher (a manual asset event, an
    upstream task) are skipped. An ``event_id`` present twice (the same event folded into one
    run) is returned once.

    With ``claim=True`` only the events this run owns are returned: each is claimed in the
    Cassandra ledger under ``(dag_id, event_id)`` with this ``run_id`` as owner
    (:func:`include.events.claims.claim_for_run`), so an event redelivered after a
    triggerer crash and folded into a second run is processed by one run only, while a
    retry of this task (same run) gets the same events again.

    :param context: the task's context.
    :param asset: only the events of this asset (``Asset`` or ``AssetRef``); all if ``None``.
    :param event_type: only events of this type.
    :param claim: claim the events for this run and return only those it owns.
    :param cassandra_conn_id: the Cassandra connection of the ledger (with ``claim=True``); when
        it is not defined, the embedded SQLite ledger (``operators.hooks.cassandra.state_backend``).
    :raises pydantic.ValidationError: a stored envelope is malformed.
    :raises ValueError: ``claim=True`` without ``dag_run`` (or ``ti``) in the context.
    :raises StateStoreUnavailableError: ``claim=True`` and Cassandra is unreachable.
    """
    accessor = context.get("triggering_asset_events") or {}
    groups = [accessor[asset]] if asset is not None else [accessor[a] for a in accessor]
    seen: set[str] = set()
    envelopes: list[EventEnvelope] = []
    for asset_events in groups:
        for asset_event in asset_events:
            payload = (getattr(asset_event, "extra", None) or {}).get("payload")
            if isinstance(payload, dict) and isinstance(payload.get("envelopes"), list):
                stored = payload["envelopes"]
            elif isinstance(payload, dict) and "envelope" in payload:
                stored = [payload["envelope"]]
            else:
                log.info("Skipping a triggering asset event that did not come from a Kafka event watcher")
                continue
            for raw in stored:
                envelope = EventEnvelope.model_validate(raw)
                if envelope.event_id in seen or (
                    event_type is not None and envelope.event_type != event_type
                ):
                    continue
                seen.add(envelope.event_id)
                envelopes.append(envelope)
    envelopes.sort(key=lambda e: e.timestamp)
    if claim and envelopes:
        owned = set(_claim_for_this_run(context, [e.event_id for e in envelopes], cassandra_conn_id))
        envelopes = [e for e in envelopes if e.event_id in owned]
    return envelopes


def _claim_for_this_run(
    context: Mapping[str, Any], event_ids: list[str], cassandra_conn_id: str
) -> list[str]:
    """Claim ``event_ids`` for the context's run in the ledger; return those it owns."""
    from include.events.claims import claim_for_run
    from operators.hooks.cassandra import state_backend

    source = context.get("dag_run") or context.get("ti")
    dag_id = getattr(source, "dag_id", None)
    run_id = getattr(source, "run_id", None)
    if not dag_id or not run_id:
        raise ValueError("triggering_events(claim=True) needs the task context (dag_run or ti with run_id)")
    backend = state_backend(cassandra_conn_id)  # Cassandra, or the embedded file without the connection
    try:
        owned = claim_for_run(backend.event_ledger(), dag_id, run_id, event_ids)
    finally:
        backend.close()
    if len(owned) < len(event_ids):
        log.info("Run %s owns %d of its %d triggering event(s)", run_id, len(owned), len(event_ids))
    return owned
