"""Unit tests of the Cassandra state-store backends: TTLs, references, refusals before writing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from airflow.sdk.state import AssetScope as WorkerAssetScope
from airflow.sdk.state import TaskScope as WorkerTaskScope
from airflow.state import AssetScope, BaseStoreBackend, TaskScope

from include.errors import NotJSONError, ValueTooLargeError
from include.state.settings import CassandraSettings
from operators.state_store.cassandra import (
    MAX_TTL_S,
    CassandraStoreBackend,
    CassandraWorkerStoreBackend,
    asset_identity,
    parse_state_ref,
    state_ref,
    ttl_seconds,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def client() -> mock.Mock:
    fake = mock.Mock()
    fake.keyspace = "agentflow"
    fake.settings = CassandraSettings(max_value_bytes=32)
    return fake


def test_server_backend_is_what_airflow_state_accepts() -> None:
    assert issubclass(CassandraStoreBackend, BaseStoreBackend)


@pytest.mark.parametrize(
    ("expires_at", "ttl"),
    [
        (None, 0),
        (NOW + timedelta(hours=1), 3600),
        (NOW + timedelta(seconds=1.2), 2),
        (NOW - timedelta(days=1), 1),
        (NOW + timedelta(seconds=MAX_TTL_S + 10), 0),
        ((NOW + timedelta(minutes=1)).replace(tzinfo=None), 60),
    ],
)
def test_ttl_seconds(expires_at: datetime | None, ttl: int) -> None:
    assert ttl_seconds(expires_at, now=NOW) == ttl


def test_asset_identity_prefers_id_then_name_then_uri() -> None:
    assert asset_identity(AssetScope(asset_id=3, name="n")) == "id:3"
    assert asset_identity(WorkerAssetScope(name="n", uri="u")) == "name:n"
    assert asset_identity(WorkerAssetScope(uri="s3://b/k")) == "uri:s3://b/k"


@pytest.mark.parametrize(
    ("scope", "key"),
    [
        (WorkerTaskScope("d/1", "manual__2026-01-01T00:00:00+00:00", "t", 4), "a/b c"),
        (WorkerAssetScope(uri="s3://bucket/x?y=1"), "cursor"),
        (WorkerAssetScope(name="orders"), "k"),
        (AssetScope(asset_id=12), "k"),
    ],
)
def test_state_ref_round_trips(scope: object, key: str) -> None:
    ref = state_ref(scope, key)  # type: ignore[arg-type]
    assert ref.startswith("cassandra:")
    parsed_scope, parsed_key = parse_state_ref(ref)
    assert parsed_key == key
    assert state_ref(parsed_scope, parsed_key) == ref


@pytest.mark.parametrize("ref", ["s3://bucket/key", "cassandra:task/only/three", "cassandra:asset/x:1/k"])
def test_parse_state_ref_refuses_what_it_did_not_write(ref: str) -> None:
    with pytest.raises(ValueError, match="not a Cassandra state reference"):
        parse_state_ref(ref)


def test_set_refuses_non_json_and_oversize_values_without_writing(client: mock.Mock) -> None:
    backend = CassandraStoreBackend(client)
    scope = TaskScope("d", "r", "t")
    with pytest.raises(NotJSONError):
        backend.set(scope, "k", "{oops")
    with pytest.raises(ValueTooLargeError):
        backend.set(scope, "k", '"' + "x" * 40 + '"')
    with pytest.raises(ValueError, match="empty"):
        backend.set(scope, "", "1")
    client.execute.assert_not_called()


def test_set_binds_the_ttl_and_clear_all_map_indices_drops_the_map_index(client: mock.Mock) -> None:
    backend = CassandraStoreBackend(client)
    scope = TaskScope("d", "r", "t", map_index=2)
    backend.set(scope, "k", "1", expires_at=datetime.now(UTC) + timedelta(hours=2))
    cql, params = client.execute.call_args.args
    assert "USING TTL ?" in cql
    assert params[:6] == ("d", "r", "t", 2, "k", "1")
    assert 7190 <= params[6] <= 7200
    backend.clear(scope, all_map_indices=True)
    cql, params = client.execute.call_args.args
    assert "map_index" not in cql
    assert params == ("d", "r", "t")
    backend.clear(scope)
    cql, params = client.execute.call_args.args
    assert params == ("d", "r", "t", 2)


def test_worker_backend_refuses_non_json_values(client: mock.Mock) -> None:
    backend = CassandraWorkerStoreBackend(client)
    with pytest.raises(NotJSONError):
        backend.serialize_task_state_store_to_ref(
            value={"x": float("nan")}, key="k", scope=WorkerTaskScope("d", "r", "t")
        )
    client.execute.assert_not_called()
