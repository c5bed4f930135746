"""Unit tests of the Cassandra state-store backends: TTLs, references, refusals before writing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.state import AssetScope as WorkerAssetScope
from airflow.sdk.state import TaskScope as WorkerTaskScope
from airflow.state import AssetScope, BaseStoreBackend, TaskScope
from cassandra.query import BatchStatement, BatchType, SimpleStatement

from include.errors import NotJSONError, StateStoreQueryError, StateStoreTimeoutError, ValueTooLargeError
from include.state.settings import CassandraSettings
from operators.state_store.cassandra import (
    MAX_TTL_S,
    CassandraStoreBackend,
    CassandraWorkerStoreBackend,
    _WriteCoalescer,
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


# -- group commit (the async write path), against a fake driver session -------------------


class FakeResponse:
    """A driver ``ResponseFuture`` the test completes by hand."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._callbacks: tuple[Any, Any] | None = None

    def add_callbacks(self, ok: Any, err: Any) -> None:
        self._callbacks = (ok, err)

    def finish(self, error: BaseException | None = None) -> None:
        assert self._callbacks is not None
        ok, err = self._callbacks
        if error is None:
            ok([])
        else:
            err(error)


class FakeSession:
    """``execute_async`` records each request; ``refuse`` decides which ones fail."""

    def __init__(self) -> None:
        self.requests: list[FakeResponse] = []

    def execute_async(self, statement: Any, timeout: float | None = None) -> FakeResponse:
        response = FakeResponse(statement)
        self.requests.append(response)
        return response

    def sizes(self) -> list[int]:
        return [len(r.statement) if isinstance(r.statement, BatchStatement) else 1 for r in self.requests]


def _write(n: int) -> SimpleStatement:
    return SimpleStatement(f"INSERT {n}")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _coalescer() -> tuple[_WriteCoalescer, FakeSession]:
    """A group-commit writer on the running loop, over a fake session, one request in flight."""
    session = FakeSession()
    fake = mock.Mock()
    fake.session = session
    fake.settings = CassandraSettings(max_retries=2, retry_backoff=0.0)
    fake.backoff.return_value = 0.0
    writer = _WriteCoalescer(fake, asyncio.get_running_loop())
    writer.max_in_flight = 1
    return writer, session


@pytest.mark.asyncio
async def test_writes_queued_behind_a_request_leave_as_one_unlogged_batch() -> None:
    writer, session = _coalescer()
    done = [writer.submit(_write(i), 10, ("row", i)) for i in range(5)]
    await _settle()
    assert session.sizes() == [1]  # an idle writer sends at once, alone
    session.requests[0].finish()
    await _settle()
    assert session.sizes() == [1, 4]
    batch = session.requests[1].statement
    assert batch.batch_type == BatchType.UNLOGGED
    assert done[0].done()
    assert not done[1].done()
    session.requests[1].finish()
    await asyncio.wait_for(asyncio.gather(*done), 5)


@pytest.mark.asyncio
async def test_two_writes_of_one_row_never_share_a_batch_and_batches_are_bounded() -> None:
    writer, session = _coalescer()
    writer.max_batch = 3
    rows = [0, 1, 1, 2, 3, 4, 5]
    done = [writer.submit(_write(i), 10, ("row", row)) for i, row in enumerate(rows)]
    for _ in range(4):
        await _settle()
        session.requests[-1].finish()
    await asyncio.wait_for(asyncio.gather(*done), 5)
    # [0] alone; then row 1, not its second write; then the second write of row 1 with rows 2, 3;
    # then rows 4, 5.
    assert session.sizes() == [1, 1, 3, 2]


@pytest.mark.asyncio
async def test_a_refused_batch_is_resent_one_by_one_and_fails_only_the_culprit() -> None:
    from cassandra import InvalidRequest

    writer, session = _coalescer()
    first = writer.submit(_write(0), 10, ("row", 0))
    rest = [writer.submit(_write(i), 10, ("row", i)) for i in (1, 2, 3)]
    await _settle()
    session.requests[0].finish()
    await _settle()
    session.requests[1].finish(InvalidRequest("bad batch"))  # the batch of 1, 2, 3
    await _settle()
    singles = session.requests[2:]
    assert [r.statement.query_string for r in singles] == ["INSERT 1", "INSERT 2", "INSERT 3"]
    singles[0].finish()
    singles[1].finish(InvalidRequest("bad value"))
    singles[2].finish()
    await first
    await rest[0]
    await rest[2]
    with pytest.raises(StateStoreQueryError, match="bad value"):
        await rest[1]


@pytest.mark.asyncio
async def test_a_timed_out_batch_is_retried_then_the_error_reaches_every_write() -> None:
    from cassandra import OperationTimedOut

    writer, session = _coalescer()
    done = writer.submit(_write(0), 10, ("row", 0))
    for attempt in range(3):  # max_retries=2: three attempts
        await _settle()
        assert len(session.requests) == attempt + 1
        session.requests[-1].finish(OperationTimedOut("slow"))
    with pytest.raises(StateStoreTimeoutError, match="after 3 attempts"):
        await done
    assert writer.in_flight == 0
