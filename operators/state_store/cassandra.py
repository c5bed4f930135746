"""Airflow's state store (AIP-103) on Cassandra: the server-side and the worker-side backend.

``CassandraStoreBackend`` is a ``[state_store] backend``: the execution API stores every
``context["task_state_store"]`` / ``context["asset_state_store"]`` key there, so common.ai's
``durable=True`` journals live in Cassandra. ``CassandraWorkerStoreBackend`` is a
``[workers] state_store_backend``: the worker writes the value to Cassandra itself and Airflow
records only a reference to it.

Semantics follow Airflow's ``MetastoreBackend``: ``get``/``set``/``delete`` match
``(dag_id, run_id, task_id, map_index, key)`` exactly; ``clear`` of a task scope removes its
``map_index`` only, or every map index with ``all_map_indices=True``; ``expires_at`` becomes the
write's TTL (``None``: the key never expires); asset keys never expire. Differences, because
Cassandra is not the metadata database: a task key written for a run that does not exist is
stored rather than refused, and keys are not removed with their DAG run (they expire by TTL,
or ``clear`` removes them).

Tables: ``config/cassandra/010_state_store.cql``. One partition per task of a DAG run and one
per asset, so no partition grows without bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import weakref
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote

from airflow.sdk.state import AssetScope, TaskScope
from airflow.sdk.state import BaseStoreBackend as WorkerStoreBackendBase
from airflow.state import AssetScope as ServerAssetScope
from airflow.state import BaseStoreBackend as ServerStoreBackendBase
from airflow.state import TaskScope as ServerTaskScope

from include.errors import NotJSONError
from include.state._values import check_size, dump_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cassandra.cluster import ResponseFuture
    from cassandra.query import PreparedStatement
    from pydantic import JsonValue
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from include.state.session import CassandraClient

log = logging.getLogger(__name__)

#: The longest TTL Cassandra accepts (20 years); a later ``expires_at`` is stored without one.
MAX_TTL_S = 630_720_000

#: The Airflow connection both backends use unless given another.
DEFAULT_CONN_ID = "cassandra_default"

_REF_SCHEME = "cassandra:"
_NOT_A_REF = "is not a Cassandra state reference (cassandra:task/... or cassandra:asset/...)"

# The API server hands out ``airflow.state`` scopes and checks ``[state_store] backend`` against
# ``airflow.state.BaseStoreBackend``; workers use the task SDK's copies of the same classes.
StoreScope = TaskScope | AssetScope | ServerTaskScope | ServerAssetScope
_TASK_SCOPES = (TaskScope, ServerTaskScope)
_ASSET_SCOPES = (AssetScope, ServerAssetScope)


class _Target(NamedTuple):
    """Where one scope's keys live: a table, and the values of its partition key (and map index)."""

    kind: str  # "task" or "asset"
    partition: tuple[Any, ...]


def ttl_seconds(expires_at: datetime | None, *, now: datetime | None = None) -> int:
    """Return the Cassandra TTL for ``expires_at``: 0 (no TTL) for ``None``, else at least 1.

    A naive datetime is taken as UTC (Airflow resolves ``expires_at`` in UTC). An
    ``expires_at`` in the past gives 1 second: the key is gone almost at once, as a
    garbage collection pass would remove it. One beyond Cassandra's 20-year limit is
    stored without a TTL, which keeps it longer than asked, never shorter.

    :param expires_at: when the key may be deleted, or ``None`` for never.
    :param now: the current time (tests pass one); default: now in UTC.
    """
    if expires_at is None:
        return 0
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    current = now or datetime.now(tz=UTC)
    seconds = math.ceil((expires_at - current).total_seconds())
    if seconds > MAX_TTL_S:
        return 0
    return max(1, seconds)


def asset_identity(scope: AssetScope | ServerAssetScope) -> str:
    """Return the partition key of an asset scope: ``id:<asset_id>``, ``name:<name>`` or ``uri:<uri>``.

    The execution API (server side) passes ``asset_id``; workers pass ``name`` or ``uri``.
    """
    if scope.asset_id is not None:
        return f"id:{scope.asset_id}"
    if scope.name:
        return f"name:{scope.name}"
    if scope.uri:
        return f"uri:{scope.uri}"
    raise ValueError("AssetScope needs asset_id, name or uri")


def _check_key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a state store key must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError("a state store key must not be empty")
    return key


class _CassandraStateTables:
    """The Cassandra side of both backends: statements, checks, and the eight operations.

    :param client: a ``CassandraClient`` to use instead of the connection's (tests, benchmarks).
    :param cassandra_conn_id: the Airflow connection to reach Cassandra with.
    """

    task_table = "task_state_store"
    asset_table = "asset_state_store"

    def __init__(
        self, client: CassandraClient | None = None, *, cassandra_conn_id: str = DEFAULT_CONN_ID
    ) -> None:
        self.cassandra_conn_id = cassandra_conn_id
        self._client = client
        self._lock = threading.Lock()
        self._cql: dict[str, str] = {}
        self._prepared: dict[str, PreparedStatement] = {}
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WriteCoalescer] = (
            weakref.WeakKeyDictionary()
        )

    # -- connection and statements ---------------------------------------------------------

    @property
    def client(self) -> CassandraClient:
        """The Cassandra client, made from the connection on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from operators.hooks.cassandra import CassandraHook

                    self._client = CassandraHook(cassandra_conn_id=self.cassandra_conn_id).get_conn()
        return self._client

    def _statement(self, name: str) -> str:
        """Return the CQL of statement ``name`` for this backend's tables and keyspace."""
        cql = self._cql.get(name)
        if cql is None:
            cql = self._build_cql(name)
            self._cql[name] = cql
        return cql

    def _build_cql(self, name: str) -> str:
        ks = self.client.keyspace
        task = f"{ks}.{self.task_table}"
        asset = f"{ks}.{self.asset_table}"
        task_pk = "dag_id = ? AND run_id = ? AND task_id = ?"
        statements = {
            "task.get": f"SELECT value FROM {task} WHERE {task_pk} AND map_index = ? AND key = ?",
            "task.set": f"INSERT INTO {task} (dag_id, run_id, task_id, map_index, key, value) "
            "VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
            "task.delete": f"DELETE FROM {task} WHERE {task_pk} AND map_index = ? AND key = ?",
            "task.clear": f"DELETE FROM {task} WHERE {task_pk} AND map_index = ?",
            "task.clear_all": f"DELETE FROM {task} WHERE {task_pk}",
            "asset.get": f"SELECT value FROM {asset} WHERE asset = ? AND key = ?",
            "asset.set": f"INSERT INTO {asset} (asset, key, value) VALUES (?, ?, ?)",
            "asset.delete": f"DELETE FROM {asset} WHERE asset = ? AND key = ?",
            "asset.clear": f"DELETE FROM {asset} WHERE asset = ?",
        }
        return statements[name]

    @staticmethod
    def _target(scope: StoreScope) -> _Target:
        if isinstance(scope, _TASK_SCOPES):
            return _Target("task", (scope.dag_id, scope.run_id, scope.task_id, scope.map_index))
        if isinstance(scope, _ASSET_SCOPES):
            return _Target("asset", (asset_identity(scope),))
        raise TypeError(f"scope must be a TaskScope or an AssetScope, got {type(scope).__name__}")

    def _check_value(self, value: str, key: str) -> None:
        """Refuse a value that is not JSON text or is larger than ``max_value_bytes``.

        :raises TypeError: if ``value`` is not a str.
        :raises ValueTooLargeError: if it is larger than the connection's ``max_value_bytes``.
        :raises NotJSONError: if it is not a JSON document.
        """
        if not isinstance(value, str):
            raise TypeError(
                f"state store value for key {key!r} must be JSON text (str), got {type(value).__name__}"
            )
        what = f"state store value for key {key!r}"
        check_size(value, max_bytes=self.client.settings.max_value_bytes, what=what)
        try:
            json.loads(value)
        except ValueError as exc:
            raise NotJSONError(f"{what} is not a JSON document ({exc}); nothing was written") from exc

    def _get_params(self, scope: StoreScope, key: str) -> tuple[str, tuple[Any, ...]]:
        target = self._target(scope)
        return f"{target.kind}.get", (*target.partition, _check_key(key))

    def _set_params(
        self, scope: StoreScope, key: str, value: str, expires_at: datetime | None
    ) -> tuple[str, tuple[Any, ...]]:
        target = self._target(scope)
        _check_key(key)
        self._check_value(value, key)
        if target.kind == "asset":
            # Like the metastore backend: asset keys have no expiry.
            return "asset.set", (*target.partition, key, value)
        return "task.set", (*target.partition, key, value, ttl_seconds(expires_at))

    def _delete_params(self, scope: StoreScope, key: str) -> tuple[str, tuple[Any, ...]]:
        target = self._target(scope)
        return f"{target.kind}.delete", (*target.partition, _check_key(key))

    def _clear_params(self, scope: StoreScope, all_map_indices: bool) -> tuple[str, tuple[Any, ...]]:
        target = self._target(scope)
        if target.kind == "task" and all_map_indices:
            return "task.clear_all", target.partition[:3]
        return f"{target.kind}.clear", target.partition

    # -- BaseStoreBackend, synchronous -----------------------------------------------------

    def _run(self, name: str, params: Sequence[Any]) -> Any:
        return self.client.execute(self._statement(name), params)

    def get(self, scope: StoreScope, key: str, *, session: Session | None = None) -> str | None:
        """Return the stored JSON text of ``key``, or ``None`` when there is none (or it expired)."""
        row = self._run(*self._get_params(scope, key)).one()
        return None if row is None else row[0]

    def set(
        self,
        scope: StoreScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        """Write or overwrite ``key`` with the JSON text ``value``; ``expires_at`` becomes its TTL.

        :raises NotJSONError: if ``value`` is not JSON text; nothing is written.
        :raises ValueTooLargeError: if ``value`` is larger than ``max_value_bytes``; nothing is written.
        """
        self._run(*self._set_params(scope, key, value, expires_at))

    def delete(self, scope: StoreScope, key: str, *, session: Session | None = None) -> None:
        """Delete ``key``; no-op if it does not exist."""
        self._run(*self._delete_params(scope, key))

    def clear(
        self, scope: StoreScope, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        """Delete every key of ``scope`` (of every map index with ``all_map_indices``)."""
        self._run(*self._clear_params(scope, all_map_indices))

    # -- BaseStoreBackend, asynchronous ----------------------------------------------------

    async def _client_and_statement(self, name: str) -> tuple[CassandraClient, PreparedStatement]:
        client = self._client if self._client is not None else await asyncio.to_thread(lambda: self.client)
        prepared = self._prepared.get(name)
        if prepared is None:
            # Preparing and a first connect block: keep them off the event loop, once per statement.
            prepared = await asyncio.to_thread(client.prepare, self._statement(name))
            self._prepared[name] = prepared
        return client, prepared

    async def _arun(self, name: str, params: Sequence[Any]) -> list[Any]:
        """Run a statement with the driver's ``execute_async``, retried and translated like ``execute``."""
        client, prepared = await self._client_and_statement(name)
        return await _execute_with_retries(client, prepared.bind(params))

    async def _awrite(self, name: str, params: Sequence[Any], size: int) -> None:
        """Write through this event loop's :class:`_WriteCoalescer` (batched under load)."""
        client, prepared = await self._client_and_statement(name)
        loop = asyncio.get_running_loop()
        writers = self._writers
        writer = writers.get(loop)
        if writer is None:
            writer = writers[loop] = _WriteCoalescer(client, loop)
        # The row a write touches (its primary key): two writes of one row never share a batch.
        row = (name, *params[:5]) if name == "task.set" else (name, *params[:2])
        await writer.submit(prepared.bind(params), size, row)

    async def aget(self, scope: StoreScope, key: str, *, session: AsyncSession | None = None) -> str | None:
        """Async ``get``: the driver's own async I/O, the event loop is never blocked on Cassandra."""
        rows = await self._arun(*self._get_params(scope, key))
        return rows[0][0] if rows else None

    async def aset(
        self,
        scope: StoreScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        """Async ``set``; refuses non-JSON and over-size values before writing, as ``set`` does."""
        if self._client is None:
            await asyncio.to_thread(lambda: self.client)
        name, params = self._set_params(scope, key, value, expires_at)
        await self._awrite(name, params, len(value))

    async def adelete(self, scope: StoreScope, key: str, *, session: AsyncSession | None = None) -> None:
        """Async ``delete``."""
        await self._arun(*self._delete_params(scope, key))

    async def aclear(
        self, scope: StoreScope, *, all_map_indices: bool = False, session: AsyncSession | None = None
    ) -> None:
        """Async ``clear``."""
        await self._arun(*self._clear_params(scope, all_map_indices))

    def cleanup(self) -> None:
        """Nothing to do: Cassandra drops expired keys itself (TTL)."""


async def _wrap_future(future: ResponseFuture) -> list[Any]:
    """Await a driver ``ResponseFuture`` from asyncio; return the first page of rows."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()

    def _ok(rows: Any) -> None:
        loop.call_soon_threadsafe(_resolve, done, list(rows or ()), None)

    def _err(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_resolve, done, None, exc)

    future.add_callbacks(_ok, _err)
    return await done


def _resolve(done: asyncio.Future[list[Any]], rows: list[Any] | None, exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(rows or [])


async def _execute_with_retries(client: CassandraClient, statement: Any) -> list[Any]:
    """``execute_async`` one statement, retrying timeouts and unavailability like ``CassandraClient``.

    :raises StateStoreUnavailableError: unreachable or unavailable after the retries.
    :raises StateStoreTimeoutError: timed out after the retries.
    :raises StateStoreQueryError: Cassandra refused the statement.
    """
    from include.state.session import driver_error_classes, translate_driver_error

    retryable, driver_errors = driver_error_classes()
    session = client.session
    timeout = client.settings.request_timeout
    attempt = 0
    while True:
        try:
            return await _wrap_future(session.execute_async(statement, timeout=timeout))
        except retryable as exc:
            if attempt >= client.settings.max_retries:
                raise translate_driver_error(exc, client.settings, attempts=attempt + 1) from exc
            await asyncio.sleep(client.backoff(attempt))
            attempt += 1
        except driver_errors as exc:
            raise translate_driver_error(exc, client.settings, attempts=attempt + 1) from exc


class _PendingWrite(NamedTuple):
    statement: Any  # a BoundStatement
    size: int
    row: tuple[Any, ...]
    done: asyncio.Future[None]


class _WriteCoalescer:
    """Group commit for one event loop: concurrent writes go to Cassandra as unlogged batches.

    A write is sent at once while fewer than ``max_in_flight`` requests are outstanding, so an
    idle backend adds no latency. Under load, the writes that queue up while requests are in
    flight leave together as one ``UNLOGGED`` batch: one request and one reply for up to
    ``max_batch`` writes instead of one each, which is what the driver's CPU and Cassandra's
    per-request work are spent on (``bench/state_store.py``). Each write is still its own
    single-row mutation with its own TTL: an unlogged batch adds no atomicity and takes none
    away. Two writes of the same row never share a batch (they would share its timestamp, and
    Cassandra would resolve the tie by value, not by order). Every caller awaits its own
    write; a failed batch is retried like a single statement, and a batch Cassandra refuses is
    re-sent statement by statement, so an error reaches only the write that caused it.

    :param client: the Cassandra client.
    :param loop: the event loop the callers await on.
    """

    #: Requests outstanding at once; writes beyond wait and are batched.
    max_in_flight = 2
    #: Writes per batch: Cassandra warns about unlogged batches over 10 partitions.
    max_batch = 10
    #: Value bytes per batch: under Cassandra's 5 KiB ``batch_size_warn_threshold``.
    max_batch_bytes = 4096

    def __init__(self, client: CassandraClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.in_flight = 0
        self.queue: deque[_PendingWrite] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, statement: Any, size: int, row: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue one bound write; the returned future resolves when Cassandra acknowledged it."""
        done: asyncio.Future[None] = self.loop.create_future()
        self.queue.append(_PendingWrite(statement, size, row, done))
        self._pump()
        return done

    def _pump(self) -> None:
        while self.queue and self.in_flight < self.max_in_flight:
            group = self._take()
            self.in_flight += 1
            task = self.loop.create_task(self._send(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_PendingWrite]:
        group = [self.queue.popleft()]
        rows = {group[0].row}
        size = group[0].size
        while self.queue and len(group) < self.max_batch:
            nxt = self.queue[0]
            if nxt.row in rows or size + nxt.size > self.max_batch_bytes:
                break
            group.append(self.queue.popleft())
            rows.add(nxt.row)
            size += nxt.size
        return group

    async def _send(self, group: list[_PendingWrite]) -> None:
        from cassandra.query import BatchStatement, BatchType

        from include.errors import StateStoreQueryError

        try:
            if len(group) == 1:
                await _execute_with_retries(self.client, group[0].statement)
            else:
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for write in group:
                    batch.add(write.statement)
                try:
                    await _execute_with_retries(self.client, batch)
                except StateStoreQueryError:
                    # Refused as a batch: send each write alone so only the culprit fails.
                    await asyncio.gather(*(self._send_alone(write) for write in group))
                    return
        except BaseException as exc:
            for write in group:
                if not write.done.done():
                    write.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for write in group:
                if not write.done.done():
                    write.done.set_result(None)
        finally:
            self.in_flight -= 1
            self._pump()

    async def _send_alone(self, write: _PendingWrite) -> None:
        try:
            await _execute_with_retries(self.client, write.statement)
        except Exception as exc:
            if not write.done.done():
                write.done.set_exception(exc)
        else:
            if not write.done.done():
                write.done.set_result(None)


class CassandraStoreBackend(_CassandraStateTables, ServerStoreBackendBase):
    """Task and asset state in Cassandra: ``[state_store] backend`` of Airflow 3.3.

    Set ``AIRFLOW__STATE_STORE__BACKEND=operators.state_store.cassandra.CassandraStoreBackend``
    on the API server (and wherever the execution API runs, such as ``airflow dags test``).
    It connects on first use through the ``cassandra_default`` connection (the keyspace is
    the connection's schema) and refuses, before writing, a value that is not JSON or is
    larger than the connection's ``max_value_bytes``. The ``session`` arguments Airflow
    passes are SQLAlchemy sessions of the metadata database and are not used.

    :param client: a ``CassandraClient`` to use instead of the connection's (tests, benchmarks).
    :param cassandra_conn_id: the Airflow connection to reach Cassandra with.
    """


class CassandraWorkerStoreBackend(_CassandraStateTables, WorkerStoreBackendBase):
    """Task and asset state values in Cassandra, by reference: ``[workers] state_store_backend``.

    The worker writes each value to Cassandra (``task_state_payload`` / ``asset_state_payload``)
    and Airflow's store keeps a deterministic reference to it (``cassandra:task/...``), so the
    value never travels through the API server. ``delete``/``clear`` (which Airflow calls on the
    worker after removing the reference) remove the values. Values carry no TTL: the worker is
    not told the key's ``expires_at``; they go with ``delete``/``clear`` (``clear_on_success``).

    :param client: a ``CassandraClient`` to use instead of the connection's (tests, benchmarks).
    :param cassandra_conn_id: the Airflow connection to reach Cassandra with.
    """

    task_table = "task_state_payload"
    asset_table = "asset_state_payload"

    def serialize_task_state_store_to_ref(self, *, value: JsonValue, key: str, scope: TaskScope) -> str:
        """Write ``value`` to Cassandra and return its reference.

        :raises NotJSONError: if ``value`` is not JSON-serialisable; nothing is written.
        :raises ValueTooLargeError: if it is larger than ``max_value_bytes``; nothing is written.
        """
        return self._write_ref(scope, key, value)

    def deserialize_task_state_store_from_ref(self, stored: str) -> JsonValue:
        """Read the value a reference points to; ``None`` if it is gone."""
        return self._read_ref(stored)

    def serialize_asset_state_store_to_ref(self, *, value: JsonValue, key: str, scope: AssetScope) -> str:
        """Write ``value`` to Cassandra and return its reference (see the task variant)."""
        return self._write_ref(scope, key, value)

    def deserialize_asset_state_store_from_ref(self, stored: str) -> JsonValue:
        """Read the value a reference points to; ``None`` if it is gone."""
        return self._read_ref(stored)

    def _write_ref(self, scope: StoreScope, key: str, value: JsonValue) -> str:
        text = dump_json(value, max_bytes=self.client.settings.max_value_bytes, what=f"state value {key!r}")
        self.set(scope, key, text)
        return state_ref(scope, key)

    def _read_ref(self, stored: str) -> JsonValue:
        scope, key = parse_state_ref(stored)
        text = self.get(scope, key)
        return None if text is None else json.loads(text)


def state_ref(scope: StoreScope, key: str) -> str:
    """Return the deterministic reference of ``key`` in ``scope`` (``cassandra:task/...``)."""
    if isinstance(scope, _TASK_SCOPES):
        parts = ["task", scope.dag_id, scope.run_id, scope.task_id, str(scope.map_index), key]
    elif isinstance(scope, _ASSET_SCOPES):
        parts = ["asset", asset_identity(scope), key]
    else:
        raise TypeError(f"scope must be a TaskScope or an AssetScope, got {type(scope).__name__}")
    return _REF_SCHEME + "/".join(quote(part, safe="") for part in parts)


def parse_state_ref(ref: str) -> tuple[StoreScope, str]:
    """Return the scope and key a ``state_ref`` reference names.

    :raises ValueError: if ``ref`` is not a reference this backend wrote.
    """
    if not isinstance(ref, str) or not ref.startswith(_REF_SCHEME):
        raise ValueError(f"{ref!r} {_NOT_A_REF}")
    parts = [unquote(part) for part in ref[len(_REF_SCHEME) :].split("/")]
    if parts[0] == "task" and len(parts) == 6:
        dag_id, run_id, task_id, map_index, key = parts[1:]
        return TaskScope(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=int(map_index)), key
    if parts[0] == "asset" and len(parts) == 3:
        kind, _, ident = parts[1].partition(":")
        if kind == "id":
            return AssetScope(asset_id=int(ident)), parts[2]
        if kind == "name":
            return AssetScope(name=ident), parts[2]
        if kind == "uri":
            return AssetScope(uri=ident), parts[2]
    raise ValueError(f"{ref!r} {_NOT_A_REF}")
