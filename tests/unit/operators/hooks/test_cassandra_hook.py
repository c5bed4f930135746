"""CassandraHook: settings from the connection, lazy connect, registration, accessors."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from airflow.sdk import Connection

from include.errors import ConfigurationError
from include.state import AuditTrail, CassandraClient, ConversationMemory, EventLedger, KnowledgeStore
from operators.hooks.cassandra import CassandraHook
from operators.provider_info import get_provider_info

EXTRA = {"local_dc": "dc1", "consistency": "QUORUM", "memory_ttl_s": 120, "vector_dimension": 8}


def _hook(extra: dict[str, object] | None = None) -> CassandraHook:
    conn = Connection(
        conn_id="cassandra_default",
        conn_type="agentflow_cassandra",
        host="n1,n2",
        port=9142,
        schema="state",
        login="svc",
        password="pw",
        extra=json.dumps(EXTRA if extra is None else extra),
    )
    hook = CassandraHook()
    hook.get_connection = mock.Mock(return_value=conn)  # type: ignore[method-assign]
    return hook


def test_identity() -> None:
    assert CassandraHook.conn_type == "agentflow_cassandra"
    assert CassandraHook.conn_name_attr == "cassandra_conn_id"
    assert CassandraHook.default_conn_name == "cassandra_default"
    assert CassandraHook().cassandra_conn_id == "cassandra_default"


def test_registered_in_provider_info() -> None:
    info = get_provider_info()
    assert {
        "hook-class-name": "operators.hooks.cassandra.CassandraHook",
        "connection-type": "agentflow_cassandra",
    } in info["connection-types"]
    assert any("operators.hooks.cassandra" in h["python-modules"] for h in info["hooks"])


def test_init_and_get_conn_do_no_io() -> None:
    with mock.patch("include.state.session._connect") as connect:
        hook = _hook()
        client = hook.get_conn()
        assert hook.get_conn() is client
        assert isinstance(client, CassandraClient)
        connect.assert_not_called()


def test_settings_from_fields_and_extras() -> None:
    settings = _hook().settings
    assert settings.contact_points == ("n1", "n2")
    assert (settings.port, settings.keyspace, settings.username, settings.password) == (
        9142,
        "state",
        "svc",
        "pw",
    )
    assert (settings.local_dc, settings.consistency, settings.memory_ttl_s) == ("dc1", "QUORUM", 120)
    assert settings.serial_consistency == "SERIAL"


def test_bad_extra_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown Cassandra connection extra"):
        _hook({"local_datacenter": "dc1"}).get_conn()


def test_accessors_share_the_client() -> None:
    hook = _hook()
    client = hook.get_conn()
    for accessor, cls in [
        (hook.event_ledger, EventLedger),
        (hook.memory, ConversationMemory),
        (hook.knowledge, KnowledgeStore),
        (hook.audit, AuditTrail),
    ]:
        thing = accessor()
        assert isinstance(thing, cls)
        assert thing.client is client
    assert hook.knowledge().dimension == 8
    assert hook.memory().ttl_s == 120


def test_default_connection_env_uses_this_type() -> None:
    """config/airflow/connections.env (loaded by tests/conftest.py) names this hook's type."""
    import os

    assert json.loads(os.environ["AIRFLOW_CONN_CASSANDRA_DEFAULT"])["conn_type"] == "agentflow_cassandra"


def test_test_connection_reports_unreachable_cluster() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = Connection(
        conn_id="c", conn_type="agentflow_cassandra", host="127.0.0.1", port=port, extra='{"max_retries": 0}'
    )
    hook = CassandraHook("c")
    hook.get_connection = mock.Mock(return_value=conn)  # type: ignore[method-assign]
    from include.errors import StateStoreUnavailableError

    with pytest.raises(StateStoreUnavailableError, match=f"127.0.0.1:{port}"):
        hook.test_connection()
