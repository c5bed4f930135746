"""The project's error taxonomy: every error we raise on purpose derives from AgentFlowError.

Errors from confluent-kafka, cassandra-driver and OpenVINO are translated into a subclass
at the boundary where we call them, with the original kept as ``__cause__``. It lives in
``include`` (no Airflow) so both ``include`` and ``operators`` raise the same classes;
``operators.exceptions`` re-exports it.
"""

from __future__ import annotations


class AgentFlowError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigurationError(AgentFlowError, ValueError):
    """A connection, a configuration file or an operator argument is missing or invalid."""


class StateStoreError(AgentFlowError):
    """Reading or writing the Cassandra state (memory, knowledge, ledger, audit) failed.

    Driver errors are translated into a subclass, with the driver's error as ``__cause__``.
    """


class StateStoreUnavailableError(StateStoreError):
    """Cassandra could not be reached or had too few replicas, after the bounded retries.

    The message names the contact points that were tried.
    """


class StateStoreTimeoutError(StateStoreUnavailableError):
    """Cassandra did not answer in time (read, write or client timeout), after the bounded retries."""


class StateStoreQueryError(StateStoreError):
    """Cassandra refused a statement (invalid request, missing table, unauthorized)."""


class SchemaMigrationError(StateStoreError):
    """Applying the CQL schema failed, or another migrator held the lock for too long."""


class StateValueError(StateStoreError, ValueError):
    """A value was refused before anything was written."""


class NotJSONError(StateValueError):
    """A value that must be stored as JSON is not JSON-serialisable."""


class ValueTooLargeError(StateValueError):
    """A value is larger than the configured limit (``max_value_bytes``)."""


class InvalidEventError(AgentFlowError, ValueError):
    """A message on a topic is not a valid event; the watcher sends it to the dead-letter topic.

    :param reason: a machine-readable code, one of ``INVALID_EVENT_REASONS``.
    :param detail: what exactly was wrong, for the log and the dead-letter headers.
    :param topic: the topic the message came from, if known.
    """

    def __init__(self, reason: str, detail: str, *, topic: str | None = None) -> None:
        if reason not in INVALID_EVENT_REASONS:
            raise ValueError(f"unknown invalid-event reason {reason!r}; use one of {INVALID_EVENT_REASONS}")
        self.reason = reason
        self.detail = detail
        self.topic = topic
        where = f" on {topic}" if topic else ""
        super().__init__(f"invalid event{where} ({reason}): {detail}")


INVALID_EVENT_REASONS = ("empty", "too_large", "not_json", "missing_event_id", "schema")
"""Why a message was refused: ``empty`` (no bytes), ``too_large`` (over the topic's limit),
``not_json`` (binary or unparsable), ``missing_event_id``, ``schema`` (envelope or payload
does not match the topic's registered models)."""


class EventPublishError(AgentFlowError):
    """Producing an event to Kafka failed (the confluent-kafka error is the ``__cause__``)."""


class EventStreamError(AgentFlowError):
    """Consuming events from Kafka failed (the consumer reported an error)."""
