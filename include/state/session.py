"""Connecting to Cassandra and running statements with bounded retries and translated errors.

``open_session`` makes one cassandra-driver session from ``CassandraSettings``;
``CassandraClient`` wraps one lazily, caches prepared statements, applies the configured
consistency levels, retries timeouts and unavailability with a bounded exponential backoff,
and turns driver errors into ``include.errors`` classes (the driver's error stays the
``__cause__``). The driver is imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from include.errors import (
    StateStoreError,
    StateStoreQueryError,
    StateStoreTimeoutError,
    StateStoreUnavailableError,
)
from include.state.settings import CassandraSettings

if TYPE_CHECKING:
    from cassandra.cluster import ResultSet, Session
    from cassandra.query import PreparedStatement, Statement

log = logging.getLogger(__name__)

T = TypeVar("T")


def contact_points_text(settings: CassandraSettings) -> str:
    """Return the contact points as ``host:port, host:port`` for messages."""
    return ", ".join(f"{host}:{settings.port}" for host in settings.contact_points)


def consistency_level(name: str) -> int:
    """Return the driver's consistency-level value of a name such as ``LOCAL_QUORUM``.

    :raises ValueError: if the name is not a consistency level.
    """
    from cassandra import ConsistencyLevel

    try:
        return int(ConsistencyLevel.name_to_value[name.upper()])
    except KeyError:
        raise ValueError(
            f"consistency {name!r} is not one of {sorted(ConsistencyLevel.name_to_value)}"
        ) from None


def open_session(settings: CassandraSettings) -> Session:
    """Connect once to the cluster of ``settings`` and return a session (no keyspace selected).

    The caller owns the session's cluster: ``session.cluster.shutdown()`` closes it.

    :raises StateStoreUnavailableError: if no contact point answers; the message names them.
    :raises StateStoreError: on any other driver error while connecting.
    """
    try:
        return _connect(settings)
    except _driver_errors() as exc:
        raise translate_driver_error(exc, settings, attempts=1) from exc


def _connect(settings: CassandraSettings) -> Session:
    """Connect once; driver errors pass through untranslated (the cluster is shut down)."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.local_dc or "")),
        consistency_level=consistency_level(settings.consistency),
        serial_consistency_level=consistency_level(settings.serial_consistency),
        request_timeout=settings.request_timeout,
    )
    auth = (
        PlainTextAuthProvider(username=settings.username, password=settings.password or "")
        if settings.username
        else None
    )
    versioned: dict[str, Any] = (
        {"protocol_version": settings.protocol_version} if settings.protocol_version is not None else {}
    )
    cluster = Cluster(
        list(settings.contact_points),
        port=settings.port,
        **versioned,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=settings.connect_timeout,
        control_connection_timeout=settings.connect_timeout,
    )
    try:
        return cluster.connect()
    except BaseException:
        cluster.shutdown()
        raise


@functools.cache
def _retryable() -> tuple[type[BaseException], ...]:
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable

    return (OperationTimedOut, Unavailable, ReadTimeout, WriteTimeout, NoHostAvailable)


@functools.cache
def _driver_errors() -> tuple[type[BaseException], ...]:
    from cassandra import DriverException, RequestExecutionException, RequestValidationException
    from cassandra.cluster import NoHostAvailable
    from cassandra.protocol import ErrorMessage

    # Server errors without a driver class (SyntaxException, ...) arrive as ErrorMessage.
    return (
        DriverException,
        RequestExecutionException,
        RequestValidationException,
        NoHostAvailable,
        ErrorMessage,
    )


def driver_error_classes() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Return the driver's (retryable, other) error classes, imported once."""
    return _retryable(), _driver_errors()


def translate_driver_error(
    exc: BaseException, settings: CassandraSettings, *, attempts: int
) -> StateStoreError:
    """Return the ``include.errors`` class for a cassandra-driver error (not raised here).

    Unreachable, unavailable and timed-out errors name the contact points and how many
    attempts were made; anything the driver raised that is not one of ours becomes a
    ``StateStoreError``.
    """
    from cassandra import (
        OperationTimedOut,
        ReadTimeout,
        RequestValidationException,
        Unauthorized,
        Unavailable,
        WriteTimeout,
    )
    from cassandra.cluster import NoHostAvailable
    from cassandra.protocol import RequestValidationException as ServerValidationError

    where = f"Cassandra at {contact_points_text(settings)}"
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    if isinstance(exc, NoHostAvailable):
        reasons = "; ".join(f"{host}: {err}" for host, err in (exc.errors or {}).items()) or str(exc)
        return StateStoreUnavailableError(f"{where} is unreachable {tries}: {reasons}")
    if isinstance(exc, OperationTimedOut | ReadTimeout | WriteTimeout):
        return StateStoreTimeoutError(f"{where} timed out {tries}: {exc}")
    if isinstance(exc, Unavailable):
        return StateStoreUnavailableError(f"{where} has too few live replicas {tries}: {exc}")
    if isinstance(exc, RequestValidationException | ServerValidationError | Unauthorized):
        return StateStoreQueryError(f"{where} refused the statement: {exc}")
    return StateStoreError(f"{where} failed: {type(exc).__name__}: {exc}")


class CassandraClient:
    """A lazily connected Cassandra session with prepared statements, retries and our errors.

    Thread-safe: the driver's session is, and the connection and the statement cache are
    guarded by a lock.

    :param settings: where the cluster is and how to use it.
    :param session: an already connected session to use instead of connecting (it is not
        closed by ``close()``).
    :param sleep: the function that waits between retries (tests pass a recorder).
    """

    def __init__(
        self,
        settings: CassandraSettings,
        *,
        session: Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._session = session
        self._owns_session = session is None
        self._sleep = sleep
        self._lock = threading.Lock()
        self._prepared: dict[str, PreparedStatement] = {}

    @property
    def keyspace(self) -> str:
        """The keyspace of the project's tables."""
        return self.settings.keyspace

    @property
    def session(self) -> Session:
        """The driver session, connecting (with bounded retries) on first use.

        :raises StateStoreUnavailableError: if the cluster stays unreachable.
        """
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._with_retries(lambda: _connect(self.settings), "connect")
        return self._session

    def backoff(self, attempt: int) -> float:
        """Return the wait before retry number ``attempt`` (0-based): doubling, capped."""
        return float(min(self.settings.retry_backoff_max, self.settings.retry_backoff * (2**attempt)))

    def prepare(self, cql: str) -> PreparedStatement:
        """Return the prepared statement of ``cql``, preparing it once per client."""
        prepared = self._prepared.get(cql)
        if prepared is None:
            session = self.session
            prepared = self._with_retries(lambda: session.prepare(cql), "prepare")
            with self._lock:
                self._prepared.setdefault(cql, prepared)
        return prepared

    def execute(
        self,
        query: str | Statement | PreparedStatement,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        serial: bool = False,
        consistency: str | None = None,
        timeout: float | None = None,
    ) -> ResultSet:
        """Run one statement and return its result set.

        A CQL string with ``params`` is prepared (and cached); without ``params`` it runs as
        a simple statement (DDL). A prepared statement is bound to ``params``.

        :param query: CQL text, a prepared statement or any driver statement.
        :param params: positional or named bind values.
        :param serial: a lightweight transaction: its Paxos phase uses ``serial_consistency``.
        :param consistency: a consistency level name for this statement (``SERIAL`` or
            ``LOCAL_SERIAL`` make a linearizable read); default: the settings'.
        :param timeout: seconds for one attempt; default: ``request_timeout``.
        :raises StateStoreUnavailableError: unreachable or unavailable after the retries.
        :raises StateStoreTimeoutError: timed out after the retries.
        :raises StateStoreQueryError: Cassandra refused the statement.
        """
        from cassandra.query import PreparedStatement, SimpleStatement

        statement: Any
        if isinstance(query, str):
            statement = self.prepare(query) if params is not None else SimpleStatement(query)
        else:
            statement = query
        if isinstance(statement, PreparedStatement):
            statement = statement.bind(params if params is not None else ())
            params = None
        if consistency is not None:
            statement.consistency_level = consistency_level(consistency)
        if serial:
            statement.serial_consistency_level = consistency_level(self.settings.serial_consistency)
        session = self.session
        wait = self.settings.request_timeout if timeout is None else timeout
        return self._with_retries(lambda: session.execute(statement, params, timeout=wait), "execute")

    def _with_retries(self, call: Callable[[], T], what: str) -> T:
        retryable = _retryable()
        driver_errors = _driver_errors()
        attempt = 0
        while True:
            try:
                return call()
            except retryable as exc:
                if attempt >= self.settings.max_retries:
                    raise translate_driver_error(exc, self.settings, attempts=attempt + 1) from exc
                delay = self.backoff(attempt)
                log.warning(
                    "cassandra %s: %s: %s; retry %d/%d in %.2fs",
                    what,
                    type(exc).__name__,
                    exc,
                    attempt + 1,
                    self.settings.max_retries,
                    delay,
                )
            except driver_errors as exc:
                raise translate_driver_error(exc, self.settings, attempts=attempt + 1) from exc
            self._sleep(delay)
            attempt += 1

    def close(self) -> None:
        """Shut the cluster connection down (if this client opened it) and forget statements."""
        with self._lock:
            session, self._session = self._session, None
            self._prepared.clear()
        if session is not None and self._owns_session:
            session.cluster.shutdown()
        self._owns_session = True

    def __enter__(self) -> CassandraClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
