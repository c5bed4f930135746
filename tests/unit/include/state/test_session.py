"""CassandraClient against a fake driver session: statements, retries, error translation."""

from __future__ import annotations

import pytest
from cassandra import ConsistencyLevel, InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout
from cassandra.cluster import NoHostAvailable
from cassandra.query import SimpleStatement

from include.errors import (
    StateStoreQueryError,
    StateStoreTimeoutError,
    StateStoreUnavailableError,
)
from include.state.session import CassandraClient, open_session
from include.state.settings import CassandraSettings
from tests.unit.include.state.conftest import FakeSession


def test_params_are_prepared_once_and_bound(client: CassandraClient, fake_session: FakeSession) -> None:
    client.execute("SELECT * FROM t WHERE k = ?", ("a",))
    client.execute("SELECT * FROM t WHERE k = ?", ("b",))
    assert fake_session.prepared == ["SELECT * FROM t WHERE k = ?"]
    assert [s.values for s in fake_session.executed] == [("a",), ("b",)]


def test_text_without_params_runs_as_simple_statement(
    client: CassandraClient, fake_session: FakeSession
) -> None:
    client.execute("CREATE TABLE IF NOT EXISTS t (k text PRIMARY KEY)")
    assert fake_session.prepared == []
    assert isinstance(fake_session.executed[0], SimpleStatement)


def test_consistency_and_serial(client: CassandraClient, fake_session: FakeSession) -> None:
    client.execute("INSERT INTO t (k) VALUES (?) IF NOT EXISTS", ("a",), serial=True, consistency="ONE")
    statement = fake_session.executed[0]
    assert statement.consistency_level == ConsistencyLevel.ONE
    assert statement.serial_consistency_level == ConsistencyLevel.SERIAL
    with pytest.raises(ValueError, match="consistency 'most' is not one of"):
        client.execute("SELECT 1", (), consistency="most")


def test_retries_with_doubling_backoff_then_succeeds(
    client: CassandraClient, fake_session: FakeSession, sleeps: list[float]
) -> None:
    fake_session.failures = [OperationTimedOut("slow"), Unavailable("down"), WriteTimeout("w", write_type=5)]
    client.execute("SELECT 1")
    assert sleeps == [0.2, 0.4, 0.8]
    assert len(fake_session.executed) == 1


def test_gives_up_after_max_retries_naming_contact_points(
    client: CassandraClient, fake_session: FakeSession, sleeps: list[float]
) -> None:
    fake_session.failures = [NoHostAvailable("none", {"10.0.0.1:9042": OSError("refused")})] * 4
    with pytest.raises(StateStoreUnavailableError) as info:
        client.execute("SELECT 1")
    message = str(info.value)
    assert "10.0.0.1:9042, 10.0.0.2:9042" in message
    assert "after 4 attempts" in message
    assert isinstance(info.value.__cause__, NoHostAvailable)
    assert len(sleeps) == 3
    assert fake_session.executed == []


def test_timeouts_become_timeout_errors(client: CassandraClient, fake_session: FakeSession) -> None:
    fake_session.failures = [OperationTimedOut("slow")] * 4
    with pytest.raises(StateStoreTimeoutError, match="timed out after 4 attempts"):
        client.execute("SELECT 1")


def test_backoff_is_capped() -> None:
    settings = CassandraSettings(retry_backoff=1.0, retry_backoff_max=3.0)
    client = CassandraClient(settings, session=FakeSession())  # type: ignore[arg-type]
    assert [client.backoff(n) for n in range(4)] == [1.0, 2.0, 3.0, 3.0]


def test_invalid_request_is_not_retried(
    client: CassandraClient, fake_session: FakeSession, sleeps: list[float]
) -> None:
    fake_session.failures = [InvalidRequest("unconfigured table t")]
    with pytest.raises(StateStoreQueryError, match="unconfigured table t"):
        client.execute("SELECT * FROM t")
    assert sleeps == []


def test_close_leaves_a_given_session_open(client: CassandraClient, fake_session: FakeSession) -> None:
    client.execute("SELECT 1", ())
    client.close()
    assert client._prepared == {}


def test_open_session_on_a_closed_port_names_it() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = CassandraSettings(contact_points=("127.0.0.1",), port=port, connect_timeout=2)
    with pytest.raises(StateStoreUnavailableError, match=f"127.0.0.1:{port}"):
        open_session(settings)
