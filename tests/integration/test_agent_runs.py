"""One contract, two backends: agent runs on Cassandra 5 (the migrator's schema) and on SQLite.

The ``check_*`` functions live in ``tests/unit/include/state/test_runs.py`` (where the embedded
side also runs without services); here they run on a fresh Cassandra keyspace made by the
project's migrator (so ``config/cassandra/006_agent_runs.cql`` is exercised) and on a fresh
SQLite file, both reached through the accessors the rest of the code uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from include.state import CassandraClient, CassandraSettings, EmbeddedState, EmbeddedStateSettings
from include.state.embedded import EmbeddedAgentRunStore
from include.state.migrate import migrate
from include.state.runs import AgentRunStore
from tests.unit.include.state.test_runs import (
    MAX_VALUE_BYTES,
    MakeStore,
    check_agent_runs,
    check_transcript_limits,
)

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cassandra_client(cassandra_session: Session) -> Iterator[CassandraClient]:
    keyspace = f"af_runs_{uuid.uuid4().hex[:10]}"
    settings = CassandraSettings(
        contact_points=("127.0.0.1",),
        local_dc="datacenter1",
        keyspace=keyspace,
        request_timeout=60,
        max_value_bytes=MAX_VALUE_BYTES,
    )
    report = migrate(settings)
    assert 6 in report.applied
    try:
        with CassandraClient(settings) as client:
            yield client
    finally:
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


@pytest.fixture(params=["embedded", "cassandra"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    if request.param == "embedded":
        state = EmbeddedState(
            EmbeddedStateSettings(path=tmp_path / "agentflow_state.db", max_value_bytes=MAX_VALUE_BYTES)
        )
        assert isinstance(state.agent_runs(), EmbeddedAgentRunStore)  # the accessor the code uses
        return lambda **overrides: EmbeddedAgentRunStore(state, **overrides)
    client: CassandraClient = request.getfixturevalue("cassandra_client")
    # A fresh table per test: truncate what an earlier test of the module wrote.
    for table in ("agent_runs_by_hour", "agent_run_transcripts"):
        client.execute(f"TRUNCATE {client.keyspace}.{table}", timeout=60)
    return lambda **overrides: AgentRunStore(client, **overrides)


def test_agent_runs(make: MakeStore) -> None:
    check_agent_runs(make)


def test_transcript_limits(make: MakeStore) -> None:
    check_transcript_limits(make)


def test_cassandra_rows_carry_the_audit_ttl(cassandra_client: CassandraClient) -> None:
    from tests.unit.include.state.test_runs import at, summary

    store = AgentRunStore(cassandra_client)
    item = summary("ttl_dag", f"run-{uuid.uuid4().hex[:6]}", at(7))
    store.record(item, [])
    row = cassandra_client.execute(
        f"SELECT TTL(summary) AS ttl FROM {cassandra_client.keyspace}.agent_run_transcripts "
        "WHERE dag_id = ? AND run_id = ?",
        (item.dag_id, item.run_id),
    ).one()
    assert 0 < row.ttl <= cassandra_client.settings.audit_ttl_s
    assert row.ttl > cassandra_client.settings.audit_ttl_s - 600
