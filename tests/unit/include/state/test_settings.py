"""CassandraSettings: defaults, connection fields and extras, refusals."""

from __future__ import annotations

import pytest

from include.errors import ConfigurationError
from include.state.settings import CassandraSettings


def test_defaults() -> None:
    settings = CassandraSettings()
    assert settings.consistency == "LOCAL_QUORUM"
    assert settings.serial_consistency == "SERIAL"
    assert settings.replication == {"class": "SimpleStrategy", "replication_factor": 1}
    assert settings.replication_cql() == "{'class': 'SimpleStrategy', 'replication_factor': '1'}"
    assert settings.vector_dimension == 384


def test_from_connection_fields() -> None:
    settings = CassandraSettings.from_connection_fields(
        host="c1, c2,c3",
        port=9142,
        schema="AgentFlow_Prod",
        login="svc",
        password="s3cret",
        extra={
            "local_dc": "dc1",
            "consistency": "local_one",
            "serial_consistency": "LOCAL_SERIAL",
            "max_retries": 5,
            "replication": {"class": "NetworkTopologyStrategy", "dc1": "3", "dc2": 2},
            "memory_ttl_s": 60,
        },
    )
    assert settings.contact_points == ("c1", "c2", "c3")
    assert (settings.port, settings.keyspace, settings.username) == (9142, "agentflow_prod", "svc")
    assert settings.consistency == "LOCAL_ONE"
    assert settings.serial_consistency == "LOCAL_SERIAL"
    assert settings.replication == {"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 2}
    assert settings.memory_ttl_s == 60
    assert "s3cret" not in repr(settings)


def test_empty_fields_keep_defaults() -> None:
    settings = CassandraSettings.from_connection_fields(None, None, None, None, None, None)
    assert settings == CassandraSettings()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"consistncy": "ONE"}, "unknown Cassandra connection extra ['consistncy']"),
        ({"consistency": "SERIAL"}, "consistency"),
        ({"serial_consistency": "QUORUM"}, "SERIAL or LOCAL_SERIAL"),
        ({"replication": {"class": "SimpleStrategy"}}, "replication_factor"),
        ({"replication": {"class": "NetworkTopologyStrategy"}}, "a factor per data centre"),
        ({"replication": {"class": "LocalStrategy"}}, "must be SimpleStrategy or NetworkTopologyStrategy"),
        ({"replication": {"class": "NetworkTopologyStrategy", "dc1": 0}}, "at least 1"),
        ({"max_retries": -1}, "max_retries"),
        ({"vector_dimension": 0}, "vector_dimension"),
    ],
)
def test_bad_extras_are_refused(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match="Cassandra connection") as info:
        CassandraSettings.from_connection_fields("h", 9042, "agentflow", None, None, extra)
    assert message in str(info.value)


def test_bad_keyspace_and_password_without_login() -> None:
    with pytest.raises(ConfigurationError, match="keyspace"):
        CassandraSettings.from_connection_fields("h", None, "drop table;", None, None, {})
    with pytest.raises(ConfigurationError, match="password was given without a username"):
        CassandraSettings.from_connection_fields("h", None, None, None, "pw", {})
