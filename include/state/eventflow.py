"""Event-flow counters per Kafka topic and UTC day: consumed, dead-lettered, duplicate messages.

The Kafka watcher (``operators.triggers.kafka_events``) adds its counts in batches, a few
seconds' worth at a time, and the UI reads one topic's day. The table is
``config/cassandra/007_event_flow.cql``: Cassandra counters, one partition per
``(topic, day)``. Counter increments are not idempotent, so an increment retried after a
timeout may be counted twice: the figures are for display, not for accounting (the ledger
and the DLQ are the records).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from include.state._values import check_key
from include.state.session import CassandraClient

#: The counters of one topic's day, in the order ``read`` returns them.
FLOW_COUNTERS = ("consumed", "dlq", "duplicates")


class EventFlowCounters:
    """The watcher's event flow in ``<keyspace>.event_flow``, per topic and UTC day.

    :param client: the Cassandra client.
    """

    def __init__(self, client: CassandraClient) -> None:
        self.client = client
        self._table = f"{client.keyspace}.event_flow"

    def add(
        self, topic: str, *, consumed: int = 0, dlq: int = 0, duplicates: int = 0, day: date | None = None
    ) -> None:
        """Add counts to ``topic``'s counters of ``day`` (default: today in UTC); all zero writes nothing.

        :param topic: the Kafka topic the messages were consumed from.
        :param consumed: messages read from the topic (valid, dead-lettered and duplicate alike).
        :param dlq: messages sent to the topic's dead-letter topic.
        :param duplicates: valid messages dropped because their event id was already claimed.
        :param day: the UTC day to count them in.
        :raises TypeError: if ``topic`` is not a string or a count is not an int.
        :raises ValueError: if ``topic`` is empty or too long, or a count is negative.
        :raises StateStoreUnavailableError: Cassandra unreachable after the retries.
        """
        check_key(topic, what="topic")
        counts = {"consumed": consumed, "dlq": dlq, "duplicates": duplicates}
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (counters only grow), got {value}")
        if not any(counts.values()):
            return
        self.client.execute(
            f"UPDATE {self._table} SET consumed = consumed + ?, dlq = dlq + ?, "
            "duplicates = duplicates + ? WHERE topic = ? AND day = ?",
            (consumed, dlq, duplicates, topic, day or datetime.now(UTC).date()),
        )

    def read(self, topic: str, day: date) -> dict[str, int]:
        """Return ``{"consumed": n, "dlq": n, "duplicates": n}`` of ``topic`` on ``day`` (zeros if none).

        :raises TypeError: if ``topic`` is not a string or ``day`` is not a date.
        :raises ValueError: if ``topic`` is empty or too long.
        """
        check_key(topic, what="topic")
        if not isinstance(day, date) or isinstance(day, datetime):
            raise TypeError(f"day must be a datetime.date, got {type(day).__name__}")
        row = self.client.execute(
            f"SELECT consumed, dlq, duplicates FROM {self._table} WHERE topic = ? AND day = ?", (topic, day)
        ).one()
        if row is None:
            return dict.fromkeys(FLOW_COUNTERS, 0)
        return {"consumed": row.consumed or 0, "dlq": row.dlq or 0, "duplicates": row.duplicates or 0}
