"""The Cassandra state-store backends against a real Cassandra 5 node: Airflow's contract.

The contract is ``BaseStoreBackend``'s (airflow/_shared/state) as Airflow's own
``MetastoreBackend`` implements it: exact ``(dag_id, run_id, task_id, map_index, key)`` matching,
values returned verbatim, ``clear`` per map index or across all of them, ``expires_at`` as
expiry, asset scopes apart from task scopes, the async twins behaving as the sync methods.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from airflow.sdk.state import AssetScope as WorkerAssetScope
from airflow.sdk.state import TaskScope as WorkerTaskScope
from airflow.state import AssetScope, TaskScope

from include.errors import NotJSONError, StateStoreUnavailableError, ValueTooLargeError
from include.state.session import CassandraClient
from include.state.settings import CassandraSettings
from operators.state_store.cassandra import CassandraStoreBackend, CassandraWorkerStoreBackend
from tests.integration.test_durable_resume import apply_state_store_schema

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration

SETTINGS = CassandraSettings(
    contact_points=("127.0.0.1",), port=9042, keyspace="agentflow", local_dc="datacenter1"
)


@pytest.fixture(scope="module")
def client(cassandra_session: Session) -> Iterator[CassandraClient]:
    apply_state_store_schema(cassandra_session)
    with CassandraClient(SETTINGS) as client:
        yield client


@pytest.fixture
def backend(client: CassandraClient) -> CassandraStoreBackend:
    return CassandraStoreBackend(client)


@pytest.fixture
def scope() -> TaskScope:
    """A task scope no other test uses."""
    return TaskScope(dag_id=f"it_{uuid.uuid4().hex[:10]}", run_id="manual__1", task_id="t", map_index=-1)


def ttl_of(session: Session, scope: TaskScope, key: str) -> int | None:
    row = session.execute(
        "SELECT TTL(value) AS ttl FROM agentflow.task_state_store "
        "WHERE dag_id = %s AND run_id = %s AND task_id = %s AND map_index = %s AND key = %s",
        (scope.dag_id, scope.run_id, scope.task_id, scope.map_index, key),
    ).one()
    assert row is not None, f"no row for {key!r}"
    return row.ttl


# -- task scope --------------------------------------------------------------------------


def test_get_of_a_missing_key_is_none(backend: CassandraStoreBackend, scope: TaskScope) -> None:
    assert backend.get(scope, "nothing") is None


def test_set_then_get_returns_the_json_text_verbatim(
    backend: CassandraStoreBackend, scope: TaskScope
) -> None:
    value = '{"job_id": "é-42",  "n": [1, 2.5, null], "ok": true}'
    backend.set(scope, "job", value)
    assert backend.get(scope, "job") == value
    backend.set(scope, "job", '"second"')
    assert backend.get(scope, "job") == '"second"'


def test_delete_removes_one_key_and_is_a_no_op_when_missing(
    backend: CassandraStoreBackend, scope: TaskScope
) -> None:
    backend.set(scope, "a", "1")
    backend.set(scope, "b", "2")
    backend.delete(scope, "a")
    backend.delete(scope, "never-set")
    assert backend.get(scope, "a") is None
    assert backend.get(scope, "b") == "2"


def test_keys_match_dag_run_task_and_map_index_exactly(
    backend: CassandraStoreBackend, scope: TaskScope
) -> None:
    backend.set(scope, "k", '"base"')
    others = [
        TaskScope(dag_id=scope.dag_id + "x", run_id=scope.run_id, task_id=scope.task_id),
        TaskScope(dag_id=scope.dag_id, run_id=scope.run_id + "x", task_id=scope.task_id),
        TaskScope(dag_id=scope.dag_id, run_id=scope.run_id, task_id=scope.task_id + "x"),
        TaskScope(dag_id=scope.dag_id, run_id=scope.run_id, task_id=scope.task_id, map_index=0),
    ]
    for other in others:
        assert backend.get(other, "k") is None
    assert backend.get(scope, "k") == '"base"'


def test_clear_removes_only_the_scopes_map_index(backend: CassandraStoreBackend, scope: TaskScope) -> None:
    mapped = [TaskScope(scope.dag_id, scope.run_id, scope.task_id, map_index=i) for i in (-1, 0, 1)]
    for s in mapped:
        backend.set(s, "k1", json.dumps(s.map_index))
        backend.set(s, "k2", json.dumps(s.map_index))
    backend.clear(mapped[1])
    assert backend.get(mapped[1], "k1") is None
    assert backend.get(mapped[1], "k2") is None
    assert backend.get(mapped[0], "k1") == "-1"
    assert backend.get(mapped[2], "k2") == "1"


def test_clear_all_map_indices_wipes_every_mapped_instance_of_the_task_only(
    backend: CassandraStoreBackend, scope: TaskScope
) -> None:
    mapped = [TaskScope(scope.dag_id, scope.run_id, scope.task_id, map_index=i) for i in (-1, 0, 7)]
    sibling = TaskScope(scope.dag_id, scope.run_id, scope.task_id + "_sibling", map_index=0)
    for s in [*mapped, sibling]:
        backend.set(s, "k", "true")
    backend.clear(mapped[2], all_map_indices=True)
    assert [backend.get(s, "k") for s in mapped] == [None, None, None]
    assert backend.get(sibling, "k") == "true"


def test_expires_at_becomes_the_cassandra_ttl(
    backend: CassandraStoreBackend, scope: TaskScope, cassandra_session: Session
) -> None:
    backend.set(scope, "hour", "1", expires_at=datetime.now(UTC) + timedelta(hours=1))
    ttl = ttl_of(cassandra_session, scope, "hour")
    assert ttl is not None
    assert 3590 <= ttl <= 3600
    backend.set(scope, "forever", "1", expires_at=None)
    assert ttl_of(cassandra_session, scope, "forever") is None
    # Overwriting without expires_at makes the key permanent again, as the metastore's NULL does.
    backend.set(scope, "hour", "2", expires_at=None)
    assert ttl_of(cassandra_session, scope, "hour") is None


def test_a_key_is_gone_after_its_expires_at(backend: CassandraStoreBackend, scope: TaskScope) -> None:
    backend.set(scope, "short", '"x"', expires_at=datetime.now(UTC) + timedelta(seconds=2))
    assert backend.get(scope, "short") == '"x"'
    deadline = time.monotonic() + 10
    while backend.get(scope, "short") is not None:
        assert time.monotonic() < deadline, "the key outlived its expires_at by 8 s"
        time.sleep(0.25)


# -- asset scope -------------------------------------------------------------------------


def test_asset_scope_set_get_delete_clear(backend: CassandraStoreBackend) -> None:
    asset = AssetScope(asset_id=int(uuid.uuid4().int % 2**31))
    other = AssetScope(asset_id=asset.asset_id + 1 if asset.asset_id is not None else 1)
    backend.set(asset, "watermark", '"2026-01-01"')
    backend.set(asset, "cursor", "17")
    backend.set(other, "cursor", "99")
    assert backend.get(asset, "watermark") == '"2026-01-01"'
    backend.delete(asset, "watermark")
    assert backend.get(asset, "watermark") is None
    backend.clear(asset, all_map_indices=True)  # the flag has no effect on assets
    assert backend.get(asset, "cursor") is None
    assert backend.get(other, "cursor") == "99"
    backend.clear(other)


def test_asset_and_task_state_are_separate(backend: CassandraStoreBackend, scope: TaskScope) -> None:
    name = f"asset_{uuid.uuid4().hex[:8]}"
    by_name = WorkerAssetScope(name=name)
    backend.set(by_name, "k", '"asset"')
    backend.set(scope, "k", '"task"')
    assert backend.get(by_name, "k") == '"asset"'
    assert backend.get(WorkerAssetScope(uri=name), "k") is None
    backend.clear(by_name)
    assert backend.get(scope, "k") == '"task"'


def test_asset_keys_never_expire_like_the_metastore(
    backend: CassandraStoreBackend, cassandra_session: Session
) -> None:
    asset = AssetScope(name=f"asset_{uuid.uuid4().hex[:8]}")
    backend.set(asset, "k", "1", expires_at=datetime.now(UTC) + timedelta(seconds=5))
    row = cassandra_session.execute(
        "SELECT TTL(value) AS ttl FROM agentflow.asset_state_store WHERE asset = %s AND key = 'k'",
        (f"name:{asset.name}",),
    ).one()
    assert row is not None
    assert row.ttl is None
    backend.clear(asset)


# -- bad input ---------------------------------------------------------------------------


def test_a_value_that_is_not_json_is_refused_before_writing(
    backend: CassandraStoreBackend, scope: TaskScope
) -> None:
    backend.set(scope, "k", '"kept"')
    with pytest.raises(NotJSONError, match="not a JSON document"):
        backend.set(scope, "k", "{not json")
    with pytest.raises(TypeError, match="JSON text"):
        backend.set(scope, "k", {"a": 1})  # type: ignore[arg-type]
    assert backend.get(scope, "k") == '"kept"'


def test_a_value_over_max_value_bytes_is_refused_before_writing(
    client: CassandraClient, scope: TaskScope
) -> None:
    small = CassandraStoreBackend(CassandraClient(SETTINGS.model_copy(update={"max_value_bytes": 64})))
    try:
        small.set(scope, "k", json.dumps("x" * 60))
        with pytest.raises(ValueTooLargeError, match="limit of 64 bytes"):
            small.set(scope, "k", json.dumps("y" * 70))
        assert small.get(scope, "k") == json.dumps("x" * 60)
    finally:
        small.client.close()


def test_an_unreachable_cassandra_fails_naming_the_contact_points(scope: TaskScope) -> None:
    dead = CassandraSettings(
        contact_points=("127.0.0.1",), port=1, connect_timeout=1, max_retries=1, retry_backoff=0.01
    )
    backend = CassandraStoreBackend(CassandraClient(dead))
    with pytest.raises(StateStoreUnavailableError, match=r"127\.0\.0\.1:1"):
        backend.set(scope, "k", "1")


# -- async twins -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_twins_follow_the_same_contract(
    backend: CassandraStoreBackend, scope: TaskScope, cassandra_session: Session
) -> None:
    mapped = TaskScope(scope.dag_id, scope.run_id, scope.task_id, map_index=3)
    assert await backend.aget(scope, "k") is None
    await asyncio.gather(
        backend.aset(scope, "k", '{"a": 1}', expires_at=datetime.now(UTC) + timedelta(minutes=10)),
        backend.aset(scope, "gone", "0"),
        backend.aset(mapped, "k", '"mapped"'),
    )
    assert await backend.aget(scope, "k") == '{"a": 1}'
    ttl = ttl_of(cassandra_session, scope, "k")
    assert ttl is not None
    assert 590 <= ttl <= 600
    await backend.adelete(scope, "gone")
    assert await backend.aget(scope, "gone") is None
    await backend.aclear(scope)
    assert await backend.aget(scope, "k") is None
    assert backend.get(mapped, "k") == '"mapped"'
    await backend.aclear(scope, all_map_indices=True)
    assert await backend.aget(mapped, "k") is None
    with pytest.raises(NotJSONError):
        await backend.aset(scope, "k", "nope")


# -- how Airflow loads it ----------------------------------------------------------------


def test_airflow_resolves_it_as_the_state_store_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.state import resolve_state_backend

    monkeypatch.setenv(
        "AIRFLOW__STATE_STORE__BACKEND", "operators.state_store.cassandra.CassandraStoreBackend"
    )
    assert resolve_state_backend() is CassandraStoreBackend


def test_the_default_instance_connects_through_cassandra_default(scope: TaskScope) -> None:
    backend = CassandraStoreBackend()  # as Airflow makes it: no arguments
    try:
        backend.set(scope, "k", '"via the hook"')
        assert backend.get(scope, "k") == '"via the hook"'
    finally:
        backend.client.close()


# -- worker-side backend -----------------------------------------------------------------


def test_worker_backend_keeps_values_by_reference(client: CassandraClient, scope: TaskScope) -> None:
    worker = CassandraWorkerStoreBackend(client)
    server = CassandraStoreBackend(client)
    task = WorkerTaskScope(scope.dag_id, scope.run_id, scope.task_id, map_index=2)
    value = {"transcript": ["a" * 1000, "b"], "n": 1}
    ref = worker.serialize_task_state_store_to_ref(value=value, key="journal", scope=task)
    assert ref == worker.serialize_task_state_store_to_ref(value=value, key="journal", scope=task)
    # What Airflow's store records is the reference; it must not clobber the value.
    server.set(TaskScope(scope.dag_id, scope.run_id, scope.task_id, 2), "journal", json.dumps({"ref": ref}))
    assert worker.deserialize_task_state_store_from_ref(ref) == value
    worker.delete(task, "journal")
    assert worker.deserialize_task_state_store_from_ref(ref) is None

    asset = WorkerAssetScope(uri=f"s3://bucket/{uuid.uuid4().hex}")
    asset_ref = worker.serialize_asset_state_store_to_ref(value=[1, 2], key="cursor", scope=asset)
    assert worker.deserialize_asset_state_store_from_ref(asset_ref) == [1, 2]
    worker.clear(asset)
    assert worker.deserialize_asset_state_store_from_ref(asset_ref) is None


def test_worker_backend_refuses_values_that_are_not_json(client: CassandraClient, scope: TaskScope) -> None:
    worker = CassandraWorkerStoreBackend(client)
    task = WorkerTaskScope(scope.dag_id, scope.run_id, scope.task_id)
    with pytest.raises(NotJSONError):
        worker.serialize_task_state_store_to_ref(value={"when": datetime.now(UTC)}, key="k", scope=task)  # type: ignore[dict-item]
    assert worker.get(task, "k") is None
