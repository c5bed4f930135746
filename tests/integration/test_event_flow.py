"""Event-flow counters (``include.state.eventflow``) on a real Cassandra 5 node: the UI's figures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from include.state.eventflow import EventFlowCounters
from include.state.session import CassandraClient
from include.state.settings import CassandraSettings

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration

SETTINGS = CassandraSettings(
    contact_points=("127.0.0.1",), port=9042, keyspace="agentflow", local_dc="datacenter1"
)


@pytest.fixture(scope="module")
def client(cassandra_session: Session) -> Iterator[CassandraClient]:
    # The launcher's migrator applied config/cassandra/007_event_flow.cql to this keyspace.
    with CassandraClient(SETTINGS) as client:
        yield client


@pytest.fixture
def counters(client: CassandraClient) -> EventFlowCounters:
    return EventFlowCounters(client)


@pytest.fixture
def topic() -> str:
    return f"it.flow.{uuid.uuid4().hex[:10]}"


def test_a_topic_never_counted_reads_zeros(counters: EventFlowCounters, topic: str) -> None:
    assert counters.read(topic, datetime.now(UTC).date()) == {"consumed": 0, "dlq": 0, "duplicates": 0}


def test_adds_accumulate_per_topic_and_utc_day(counters: EventFlowCounters, topic: str) -> None:
    today = datetime.now(UTC).date()
    counters.add(topic, consumed=10, dlq=1, duplicates=2)
    counters.add(topic, consumed=5, duplicates=1)
    counters.add(topic, dlq=3)
    counters.add(topic)  # all zero: nothing written, nothing changed
    counters.add(topic + ".other", consumed=7)
    counters.add(topic, consumed=4, day=today - timedelta(days=1))
    assert counters.read(topic, today) == {"consumed": 15, "dlq": 4, "duplicates": 3}
    assert counters.read(topic + ".other", today) == {"consumed": 7, "dlq": 0, "duplicates": 0}
    assert counters.read(topic, today - timedelta(days=1)) == {"consumed": 4, "dlq": 0, "duplicates": 0}


def test_the_table_is_one_partition_per_topic_and_day(cassandra_session: Session) -> None:
    rows = cassandra_session.execute(
        "SELECT column_name, kind, type FROM system_schema.columns "
        "WHERE keyspace_name = 'agentflow' AND table_name = 'event_flow'"
    )
    columns = {row.column_name: (row.kind, row.type) for row in rows}
    assert columns == {
        "topic": ("partition_key", "text"),
        "day": ("partition_key", "date"),
        "consumed": ("regular", "counter"),
        "dlq": ("regular", "counter"),
        "duplicates": ("regular", "counter"),
    }


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"consumed": -1}, ValueError, "consumed must be >= 0"),
        ({"consumed": 2, "dlq": 1.5}, TypeError, "dlq must be an int"),
        ({"duplicates": True}, TypeError, "duplicates must be an int"),
    ],
)
def test_bad_counts_are_refused_before_writing(
    counters: EventFlowCounters, topic: str, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        counters.add(topic, **kwargs)
    assert counters.read(topic, datetime.now(UTC).date()) == {"consumed": 0, "dlq": 0, "duplicates": 0}


def test_bad_topic_or_day_is_refused(counters: EventFlowCounters) -> None:
    with pytest.raises(ValueError, match="topic"):
        counters.add("", consumed=1)
    with pytest.raises(TypeError, match="topic"):
        counters.read(None, date.today())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"datetime\.date"):
        counters.read("t", "2026-11-21")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"datetime\.date"):
        counters.read("t", datetime.now(UTC))
