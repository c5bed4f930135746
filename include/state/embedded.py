"""The embedded default: the ledger, memory, knowledge and audit in one SQLite file.

When no Cassandra connection is configured (``make demo`` on a bare machine), these classes
stand in for ``EventLedger``, ``ConversationMemory``, ``KnowledgeStore`` and ``AuditTrail``
with the same public methods and semantics:

* ledger: ``claim`` is an ``INSERT OR IGNORE`` on the ``event_id`` primary key inside a
  ``BEGIN IMMEDIATE`` transaction, so exactly one of several concurrent claimers (threads
  or processes) gets ``True``; a claim lives ``ttl_s`` and an expired one can be claimed again.
* memory: pydantic-ai's JSON per turn, the same bucket horizon and bounded reads
  (``last_turns``, ``token_budget``), rows living ``ttl_s`` from their write.
* knowledge: upsert keyed by content hash (only new or changed chunks are written, in one
  transaction); ``search`` computes exact cosine similarity with numpy over the stored
  float32 vectors, on Cassandra's ``similarity_cosine`` scale ``(1 + cos) / 2``, with the
  same ``category``/``source`` filters.
* audit: append-only records per DAG and UTC day, newest first, living ``ttl_s``.

The values are checked exactly as for Cassandra (``include.state._values``): nothing is
written on bad input. The file is ``$AGENTFLOW_STATE_DB`` if set, else
``$AIRFLOW_HOME/agentflow_state.db`` (``~/airflow`` when ``AIRFLOW_HOME`` is unset). Each
operation opens its own SQLite connection (WAL journal, busy timeout), so one
``EmbeddedState`` serves many threads, and several processes share the file. Searching reads
every candidate vector: this is for a single machine and a small corpus, not a cluster.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from include.errors import StateStoreError, StateStoreTimeoutError
from include.state._values import check_byte_count, check_key, check_vector, dump_json
from include.state.audit import MAX_READ, AuditKind, AuditRecord
from include.state.knowledge import FILTER_COLUMNS, MAX_K, KnowledgeChunk, KnowledgeHit, UpsertResult
from include.state.ledger import ClaimRequest, LedgerEntry, check_claim
from include.state.memory import CHARS_PER_TOKEN, MAX_TURNS, MemoryTurn, encode_messages
from include.state.settings import CassandraSettings

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage

    from include.state.runs import AgentRunSummary

#: The environment variable naming the SQLite file.
STATE_DB_ENV = "AGENTFLOW_STATE_DB"
#: The file's name inside ``AIRFLOW_HOME``.
STATE_DB_NAME = "agentflow_state.db"
#: The schema version kept in SQLite's ``user_version``.
SCHEMA_VERSION = 1

_DEFAULTS = CassandraSettings()
_UUID_EPOCH_100NS = 0x01B21DD213814000  # 1582-10-15 to 1970-01-01, in 100 ns

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS event_ledger (
        event_id TEXT PRIMARY KEY, topic TEXT NOT NULL, kafka_partition INTEGER, kafka_offset INTEGER,
        owner TEXT NOT NULL, claimed_at_us INTEGER NOT NULL, expires_at REAL NOT NULL,
        claimed_by TEXT)""",
    "CREATE INDEX IF NOT EXISTS event_ledger_expiry ON event_ledger (expires_at)",
    """CREATE TABLE IF NOT EXISTS conversation_memory (
        session_id TEXT NOT NULL, bucket INTEGER NOT NULL, at_us INTEGER NOT NULL,
        turn_id TEXT NOT NULL UNIQUE, run_id TEXT, messages TEXT NOT NULL, tokens INTEGER NOT NULL,
        expires_at REAL NOT NULL, turn_key TEXT)""",
    "CREATE INDEX IF NOT EXISTS conversation_memory_turns ON conversation_memory (session_id, at_us)",
    "CREATE INDEX IF NOT EXISTS conversation_memory_expiry ON conversation_memory (expires_at)",
    """CREATE TABLE IF NOT EXISTS knowledge_chunks (
        content_hash TEXT PRIMARY KEY, content TEXT NOT NULL, title TEXT, source TEXT, category TEXT,
        metadata TEXT NOT NULL, embedding BLOB NOT NULL, ingested_at_us INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS knowledge_chunks_category ON knowledge_chunks (category)",
    "CREATE INDEX IF NOT EXISTS knowledge_chunks_source ON knowledge_chunks (source)",
    """CREATE TABLE IF NOT EXISTS audit_trail (
        dag_id TEXT NOT NULL, day TEXT NOT NULL, at_us INTEGER NOT NULL, record_id TEXT NOT NULL UNIQUE,
        run_id TEXT, task_id TEXT, map_index INTEGER, try_number INTEGER, kind TEXT NOT NULL,
        name TEXT NOT NULL, actor TEXT, outcome TEXT, detail TEXT, expires_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_trail_partition ON audit_trail (dag_id, day, at_us)",
    "CREATE INDEX IF NOT EXISTS audit_trail_expiry ON audit_trail (expires_at)",
)


_columns_checked: set[tuple[str, str, str]] = set()
_columns_lock = threading.Lock()


def _ensure_column(conn: sqlite3.Connection, path: Path, table: str, column: str) -> None:
    """Add the TEXT ``column`` to ``table`` of a file made before it existed; once per file and
    process. New files get it from ``_SCHEMA``."""
    key = (str(path), table, column)
    if key in _columns_checked:
        return
    with _columns_lock:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        _columns_checked.add(key)


def default_state_path() -> Path:
    """Return ``$AGENTFLOW_STATE_DB``, else ``$AIRFLOW_HOME/agentflow_state.db`` (``~/airflow``)."""
    explicit = os.environ.get(STATE_DB_ENV)
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("AIRFLOW_HOME") or "~/airflow"
    return Path(home).expanduser() / STATE_DB_NAME


class EmbeddedStateSettings(BaseModel):
    """Where the embedded state lives and the limits it applies (Cassandra's defaults).

    :param path: the SQLite file; default :func:`default_state_path`.
    :param busy_timeout_s: how long a write waits for another writer's lock.
    :param vector_dimension: the dimension of knowledge embeddings.
    :param max_value_bytes: the largest JSON value or text one row may hold.
    :param memory_ttl_s: how long conversation turns live.
    :param memory_bucket_s: the span of one memory bucket (the read horizon's granularity).
    :param ledger_ttl_s: how long an event id stays claimed.
    :param audit_ttl_s: how long audit records live.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Field(default_factory=default_state_path)
    busy_timeout_s: float = Field(default=30.0, gt=0)
    vector_dimension: int = Field(default=_DEFAULTS.vector_dimension, ge=1, le=8192)
    max_value_bytes: int = Field(default=_DEFAULTS.max_value_bytes, ge=1, le=64_000_000)
    memory_ttl_s: int = Field(default=_DEFAULTS.memory_ttl_s, ge=1)
    memory_bucket_s: int = Field(default=_DEFAULTS.memory_bucket_s, ge=1)
    ledger_ttl_s: int = Field(default=_DEFAULTS.ledger_ttl_s, ge=1)
    audit_ttl_s: int = Field(default=_DEFAULTS.audit_ttl_s, ge=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _to_us(when: datetime) -> int:
    """Return an aware datetime as whole microseconds since the UNIX epoch."""
    return (when - _EPOCH) // _MICROSECOND


def _from_us(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def time_uuid(when: datetime) -> uuid.UUID:
    """Return a version-1 UUID for ``when`` (random clock sequence and node), like a ``timeuuid``."""
    stamp = _to_us(when) * 10 + _UUID_EPOCH_100NS
    clock_seq = random.getrandbits(14)
    node = random.getrandbits(48) | 0x010000000000  # multicast bit: not a real MAC address
    return uuid.UUID(
        fields=(
            stamp & 0xFFFFFFFF,
            (stamp >> 32) & 0xFFFF,
            ((stamp >> 48) & 0x0FFF) | 0x1000,
            0x80 | (clock_seq >> 8),
            clock_seq & 0xFF,
            node,
        )
    )


class EmbeddedState:
    """One SQLite file holding the embedded ledger, memory, knowledge and audit.

    Nothing is opened when it is built; the schema is created on the first operation. The
    accessors mirror ``CassandraHook``'s.

    :param settings: the file and limits; default ``EmbeddedStateSettings()``.
    """

    def __init__(self, settings: EmbeddedStateSettings | None = None) -> None:
        self.settings = settings or EmbeddedStateSettings()
        self.path = self.settings.path
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EmbeddedState(path={str(self.path)!r})"

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.settings.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")  # waits for other processes creating it too
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
                self._use_wal(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            finally:
                conn.close()
            self._schema_ready = True

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (readers do not block the writer), retrying while it is busy.

        SQLite answers a journal-mode change with "locked" at once, without waiting on the
        busy timeout, while another connection uses the file; the mode persists in the file,
        so once any process has set it the others find it set.
        """
        deadline = time.monotonic() + self.settings.busy_timeout_s
        while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return  # "wal", or the mode the file system allows (e.g. "delete"): both work
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """Yield a connection; with ``write`` inside one ``BEGIN IMMEDIATE`` transaction.

        The transaction commits when the block ends and rolls back on any error.

        :raises StateStoreTimeoutError: another writer held the file longer than ``busy_timeout_s``.
        :raises StateStoreError: any other SQLite error (the file is named in the message).
        """
        try:
            self._ensure_schema()
            conn = self._open()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")
            yield conn
            if write:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise self._translate(exc) from exc
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        finally:
            conn.close()

    def _translate(self, exc: sqlite3.Error) -> StateStoreError:
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
            return StateStoreTimeoutError(
                f"the embedded state {self.path} is locked by another writer "
                f"(waited up to busy_timeout_s={self.settings.busy_timeout_s} s): {message}"
            )
        return StateStoreError(f"the embedded state {self.path} failed: {type(exc).__name__}: {message}")

    def event_ledger(self) -> EmbeddedEventLedger:
        """The event dedupe ledger in this file."""
        return EmbeddedEventLedger(self)

    def memory(self) -> EmbeddedConversationMemory:
        """Conversation memory in this file."""
        return EmbeddedConversationMemory(self)

    def knowledge(self) -> EmbeddedKnowledgeStore:
        """The knowledge store in this file."""
        return EmbeddedKnowledgeStore(self)

    def audit(self) -> EmbeddedAuditTrail:
        """The audit trail in this file."""
        return EmbeddedAuditTrail(self)

    def agent_runs(self) -> EmbeddedAgentRunStore:
        """Agent run summaries and transcripts in this file."""
        return EmbeddedAgentRunStore(self)

    def close(self) -> None:
        """Nothing to close (every operation closes its connection); mirrors ``CassandraHook.close``."""


class EmbeddedEventLedger:
    """``EventLedger`` in SQLite: claims of event ids with a TTL, exactly once.

    A claim may name its ``owner`` (the ``claimed_by`` column): the same owner's later claim is
    granted again, as in Cassandra. A file made before that column existed gets it on first use
    (``ALTER TABLE ... ADD COLUMN``); its rows keep no owner. A claim without a topic stores
    ``''`` there (the column is ``NOT NULL`` in files of every version) and reads back ``None``.

    :param state: the embedded state (its settings give the TTL).
    :param ttl_s: how long a claim lives; default ``settings.ledger_ttl_s``.
    :param clock: returns the current UNIX time (tests pass their own).
    """

    def __init__(
        self, state: EmbeddedState, *, ttl_s: int | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.state = state
        self.ttl_s = int(ttl_s if ttl_s is not None else state.settings.ledger_ttl_s)
        if self.ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {self.ttl_s}")
        self.clock = clock

    def _ensure_owner_column(self, conn: sqlite3.Connection) -> None:
        """Add ``claimed_by`` to a ledger table made before it existed."""
        _ensure_column(conn, self.state.path, "event_ledger", "claimed_by")

    def claim(
        self,
        event_id: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        owner: str | None = None,
    ) -> bool:
        """Claim ``event_id``: ``True`` the first time or when ``owner`` holds it, else ``False``.

        :raises TypeError: if ``event_id`` is not a string, ``topic`` or ``owner`` is not a string
            or ``None``, or neither is given.
        :raises ValueError: if a value is empty or longer than 512 characters.
        :raises StateStoreTimeoutError: the file stayed locked by another writer.
        """
        check_claim(event_id, topic, owner)
        with self.state.connect(write=True) as conn:
            self._ensure_owner_column(conn)
            conn.execute("DELETE FROM event_ledger WHERE expires_at <= ?", (self.clock(),))
            return self._claim(conn, event_id, topic, partition, offset, owner)

    def _claim(
        self,
        conn: sqlite3.Connection,
        event_id: str,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        owner: str | None,
    ) -> bool:
        now = self.clock()
        cursor = conn.execute(
            "INSERT OR IGNORE INTO event_ledger (event_id, topic, kafka_partition, kafka_offset, owner, "
            "claimed_by, claimed_at_us, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                topic or "",
                partition,
                offset,
                uuid.uuid4().hex,
                owner,
                _to_us(datetime.fromtimestamp(now, UTC)),
                now + self.ttl_s,
            ),
        )
        if cursor.rowcount == 1:
            return True
        if owner is None:
            return False
        row = conn.execute("SELECT claimed_by FROM event_ledger WHERE event_id = ?", (event_id,)).fetchone()
        return row is not None and row[0] == owner

    def claim_batch(self, claims: Sequence[ClaimRequest]) -> list[LedgerEntry | None]:
        """Claim many event ids in one transaction; per claim, ``None`` if granted, else who holds it.

        :raises TypeError: if an event id, topic or owner is not a string, or a request has
            neither topic nor owner.
        :raises ValueError: if a value is empty or longer than 512 characters.
        :raises StateStoreTimeoutError: the file stayed locked by another writer.
        """
        for request in claims:
            check_claim(request.event_id, request.topic, request.owner)
        outcomes: list[LedgerEntry | None] = []
        with self.state.connect(write=True) as conn:
            self._ensure_owner_column(conn)
            conn.execute("DELETE FROM event_ledger WHERE expires_at <= ?", (self.clock(),))
            for r in claims:
                granted = self._claim(conn, r.event_id, r.topic, r.partition, r.offset, r.owner)
                outcomes.append(None if granted else self._read(conn, r.event_id))
        return outcomes

    def release(self, event_id: str) -> bool:
        """Forget the live claim of ``event_id``; return whether one existed."""
        check_key(event_id, what="event_id")
        with self.state.connect(write=True) as conn:
            cursor = conn.execute(
                "DELETE FROM event_ledger WHERE event_id = ? AND expires_at > ?", (event_id, self.clock())
            )
            return cursor.rowcount == 1

    def get(self, event_id: str) -> LedgerEntry | None:
        """Return the live claim of ``event_id``, or ``None``."""
        check_key(event_id, what="event_id")
        with self.state.connect() as conn:
            self._ensure_owner_column(conn)
            return self._read(conn, event_id)

    def _read(self, conn: sqlite3.Connection, event_id: str) -> LedgerEntry | None:
        row = conn.execute(
            "SELECT topic, kafka_partition, kafka_offset, claimed_at_us, claimed_by FROM event_ledger "
            "WHERE event_id = ? AND expires_at > ?",
            (event_id, self.clock()),
        ).fetchone()
        if row is None:
            return None
        return LedgerEntry(
            event_id=event_id,
            topic=row[0] or None,
            partition=row[1],
            offset=row[2],
            claimed_at=_from_us(row[3]),
            owner=row[4],
        )


def _adapter() -> Any:
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    return ModelMessagesTypeAdapter


class EmbeddedConversationMemory:
    """``ConversationMemory`` in SQLite: pydantic-ai message history per session.

    Reads see the turns whose bucket lies between the TTL horizon and one bucket ahead (as
    Cassandra's bucket walk does) and whose TTL, counted from the write, has not run out.

    :param state: the embedded state (its settings give TTL, bucket span and size limit).
    :param ttl_s: how long turns live; default ``settings.memory_ttl_s``.
    :param bucket_s: the bucket span; default ``settings.memory_bucket_s``.
    :param clock: returns the current UNIX time (tests pass their own).
    """

    def __init__(
        self,
        state: EmbeddedState,
        *,
        ttl_s: int | None = None,
        bucket_s: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = state.settings
        self.state = state
        self.ttl_s = int(ttl_s if ttl_s is not None else settings.memory_ttl_s)
        self.bucket_s = int(bucket_s if bucket_s is not None else settings.memory_bucket_s)
        if self.ttl_s < 1 or self.bucket_s < 1:
            raise ValueError("ttl_s and bucket_s must be at least 1 second")
        self.clock = clock

    def bucket_of(self, unix_s: float) -> int:
        """Return the bucket a turn at ``unix_s`` belongs to."""
        return int(unix_s // self.bucket_s)

    def append(
        self,
        session_id: str,
        messages: Sequence[ModelMessage] | str | bytes,
        *,
        run_id: str | None = None,
        turn_key: str | None = None,
        tokens: int | None = None,
        at: datetime | None = None,
    ) -> MemoryTurn:
        """Store one turn and return it (see ``ConversationMemory.append``); with ``turn_key``, it
        replaces the session's earlier turns with that key, in the same transaction.

        :raises NotJSONError: the messages do not serialise; nothing is written.
        :raises ValueTooLargeError: larger than ``max_value_bytes``; nothing is written.
        """
        check_key(session_id, what="session_id")
        text = encode_messages(messages, max_bytes=self.state.settings.max_value_bytes)
        count = int(tokens) if tokens is not None else math.ceil(len(text) / CHARS_PER_TOKEN)
        if count < 0:
            raise ValueError(f"tokens must not be negative, got {count}")
        now = self.clock()
        when = at.astimezone(UTC) if at is not None else datetime.fromtimestamp(now, UTC)
        turn_id = time_uuid(when)
        with self.state.connect(write=True) as conn:
            _ensure_column(conn, self.state.path, "conversation_memory", "turn_key")
            conn.execute("DELETE FROM conversation_memory WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO conversation_memory (session_id, bucket, at_us, turn_id, run_id, turn_key, "
                "messages, tokens, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    self.bucket_of(when.timestamp()),
                    _to_us(when),
                    str(turn_id),
                    run_id,
                    turn_key,
                    text,
                    count,
                    now + self.ttl_s,
                ),
            )
            if turn_key is not None:
                conn.execute(
                    "DELETE FROM conversation_memory WHERE session_id = ? AND turn_key = ? AND turn_id != ?",
                    (session_id, turn_key, str(turn_id)),
                )
        return MemoryTurn(
            session_id=session_id,
            turn_id=turn_id,
            at=_from_us(_to_us(when)),
            run_id=run_id,
            tokens=count,
            messages=_adapter().validate_json(text),
        )

    def turns(
        self, session_id: str, *, last_turns: int | None = 20, token_budget: int | None = None
    ) -> list[MemoryTurn]:
        """Return the newest turns, oldest first, within ``last_turns`` and ``token_budget``.

        :raises ValueError: on a limit below 1 or above ``MAX_TURNS``, or a negative budget.
        """
        check_key(session_id, what="session_id")
        limit = MAX_TURNS if last_turns is None else int(last_turns)
        if not 1 <= limit <= MAX_TURNS:
            raise ValueError(f"last_turns must be 1 to {MAX_TURNS}, got {last_turns}")
        if token_budget is not None and token_budget < 0:
            raise ValueError(f"token_budget must not be negative, got {token_budget}")
        now = self.clock()
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT turn_id, at_us, run_id, messages, tokens FROM conversation_memory "
                "WHERE session_id = ? AND bucket BETWEEN ? AND ? AND expires_at > ? "
                "ORDER BY at_us DESC, rowid DESC LIMIT ?",
                (session_id, self.bucket_of(now - self.ttl_s), self.bucket_of(now) + 1, now, limit),
            ).fetchall()
        adapter = _adapter()
        newest_first: list[MemoryTurn] = []
        spent = 0
        for turn_id, at_us, run_id, text, cost in rows:
            if token_budget is not None and spent + cost > token_budget:
                break
            spent += cost
            newest_first.append(
                MemoryTurn(
                    session_id=session_id,
                    turn_id=uuid.UUID(turn_id),
                    at=_from_us(at_us),
                    run_id=run_id,
                    tokens=cost,
                    messages=adapter.validate_json(text),
                )
            )
        return newest_first[::-1]

    def load(
        self, session_id: str, *, last_turns: int | None = 20, token_budget: int | None = None
    ) -> list[ModelMessage]:
        """Return the message history to pass as ``message_history``: the turns' messages in order."""
        return [
            m
            for turn in self.turns(session_id, last_turns=last_turns, token_budget=token_budget)
            for m in turn.messages
        ]

    def clear(self, session_id: str) -> None:
        """Delete every turn of ``session_id``."""
        check_key(session_id, what="session_id")
        with self.state.connect(write=True) as conn:
            conn.execute("DELETE FROM conversation_memory WHERE session_id = ?", (session_id,))


def _float32_blob(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


class EmbeddedKnowledgeStore:
    """``KnowledgeStore`` in SQLite: chunks keyed by content hash, exact cosine search (numpy).

    :param state: the embedded state (its settings give the dimension and size limit).
    """

    def __init__(self, state: EmbeddedState) -> None:
        self.state = state
        self.dimension = state.settings.vector_dimension

    def check_vector(self, vector: Sequence[float], what: str = "the vector") -> list[float]:
        """Return ``vector`` as floats if it has the configured dimension, finite and non-zero.

        :raises TypeError: if it is not a sequence.
        :raises ValueError: otherwise, saying what is wrong.
        """
        return check_vector(vector, self.dimension, what)

    def upsert(self, chunks: Sequence[KnowledgeChunk]) -> UpsertResult:
        """Store chunks keyed by content hash, writing only what is new or changed (one transaction).

        Every chunk is checked before anything is written.

        :raises ValueError: a vector of the wrong dimension, non-finite or all zeros.
        :raises ValueTooLargeError: a chunk larger than ``max_value_bytes``.
        """
        max_bytes = self.state.settings.max_value_bytes
        checked: dict[str, tuple[KnowledgeChunk, bytes]] = {}
        for index, chunk in enumerate(chunks):
            vector = self.check_vector(chunk.embedding, f"chunk {index}'s embedding")
            size = len(chunk.content.encode("utf-8")) + sum(
                len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in chunk.metadata.items()
            )
            check_byte_count(size, max_bytes=max_bytes, what=f"chunk {index} (text and metadata)")
            checked[chunk.content_hash] = (chunk, _float32_blob(vector))
        result = UpsertResult()
        now_us = _to_us(datetime.now(UTC))
        with self.state.connect(write=True) as conn:
            for key, (chunk, blob) in checked.items():
                row = conn.execute(
                    "SELECT title, source, category, metadata, embedding FROM knowledge_chunks "
                    "WHERE content_hash = ?",
                    (key,),
                ).fetchone()
                if row is not None and row == (
                    chunk.title,
                    chunk.source,
                    chunk.category,
                    json.dumps(chunk.metadata, sort_keys=True),
                    blob,
                ):
                    result.unchanged.append(key)
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO knowledge_chunks (content_hash, content, title, source, "
                    "category, metadata, embedding, ingested_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        chunk.content,
                        chunk.title,
                        chunk.source,
                        chunk.category,
                        json.dumps(chunk.metadata, sort_keys=True),
                        blob,
                        now_us,
                    ),
                )
                result.written.append(key)
        return result

    def search(
        self, vector: Sequence[float], k: int = 5, filters: Mapping[str, str] | None = None
    ) -> list[KnowledgeHit]:
        """Return the ``k`` chunks nearest to ``vector`` (cosine), best first.

        The score is ``(1 + cos) / 2`` (Cassandra's ``similarity_cosine``); ties go to the
        smaller content hash.

        :param vector: the query embedding.
        :param k: how many neighbours (1 to ``MAX_K``).
        :param filters: equality filters on ``category`` and/or ``source``.
        :raises ValueError: a bad vector, ``k`` or filter column.
        """
        import numpy as np

        query = self.check_vector(vector, "the query vector")
        if not 1 <= int(k) <= MAX_K:
            raise ValueError(f"k must be 1 to {MAX_K}, got {k}")
        where: list[str] = []
        params: list[object] = []
        for column, value in sorted((filters or {}).items()):
            if column not in FILTER_COLUMNS:
                raise ValueError(f"cannot filter on {column!r}; filterable: {list(FILTER_COLUMNS)}")
            if not isinstance(value, str):
                raise TypeError(f"filter {column} must be a str, got {type(value).__name__}")
            where.append(f"{column} = ?")
            params.append(value)
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT content_hash, content, title, source, category, metadata, embedding "
                "FROM knowledge_chunks" + (f" WHERE {' AND '.join(where)}" if where else ""),
                params,
            ).fetchall()
        if not rows:
            return []
        matrix = np.frombuffer(b"".join(row[6] for row in rows), dtype="<f4").reshape(len(rows), -1)
        matrix = matrix.astype(np.float64)
        q = np.asarray(query, dtype=np.float32).astype(np.float64)
        cosine = (matrix @ q) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
        scores = (1.0 + np.clip(cosine, -1.0, 1.0)) / 2.0
        order = sorted(range(len(rows)), key=lambda i: (-float(scores[i]), rows[i][0]))[: int(k)]
        return [
            KnowledgeHit(
                content_hash=rows[i][0],
                content=rows[i][1],
                title=rows[i][2],
                source=rows[i][3],
                category=rows[i][4],
                metadata=json.loads(rows[i][5]),
                score=float(scores[i]),
            )
            for i in order
        ]

    def get(self, key: str) -> KnowledgeChunk | None:
        """Return the stored chunk with content hash ``key``, or ``None``."""
        with self.state.connect() as conn:
            row = conn.execute(
                "SELECT content, title, source, category, metadata, embedding FROM knowledge_chunks "
                "WHERE content_hash = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        blob: bytes = row[5]
        return KnowledgeChunk(
            content=row[0],
            embedding=list(struct.unpack(f"<{len(blob) // 4}f", blob)),
            title=row[1],
            source=row[2],
            category=row[3],
            metadata=json.loads(row[4]),
        )

    def delete(self, key: str) -> None:
        """Delete the chunk with content hash ``key``."""
        with self.state.connect(write=True) as conn:
            conn.execute("DELETE FROM knowledge_chunks WHERE content_hash = ?", (key,))


class _AuditLivedStore:
    """What the audit trail and the agent-run store share: the state, their TTL and the clock.

    :param state: the embedded state (its settings give the TTL and size limit).
    :param ttl_s: how long rows live; default ``settings.audit_ttl_s``.
    :param clock: returns the current UNIX time (tests pass their own).
    """

    def __init__(
        self, state: EmbeddedState, *, ttl_s: int | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.state = state
        self.ttl_s = int(ttl_s if ttl_s is not None else state.settings.audit_ttl_s)
        if self.ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {self.ttl_s}")
        self.clock = clock


class EmbeddedAuditTrail(_AuditLivedStore):
    """``AuditTrail`` in SQLite: append-only records per DAG and UTC day, newest first.

    :param state: the embedded state (its settings give the TTL and size limit).
    :param ttl_s: how long records live; default ``settings.audit_ttl_s``.
    :param clock: returns the current UNIX time (tests pass their own).
    """

    def record(
        self,
        *,
        dag_id: str,
        kind: AuditKind | str,
        name: str,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int | None = None,
        try_number: int | None = None,
        actor: str | None = None,
        outcome: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Append one record and return it.

        :raises ValueError: an unknown ``kind`` or an empty ``dag_id``/``name``.
        :raises NotJSONError: ``detail`` is not JSON-serialisable; nothing is written.
        :raises ValueTooLargeError: ``detail`` is larger than ``max_value_bytes``.
        """
        check_key(dag_id, what="dag_id", max_len=250)
        check_key(name, what="name")
        audit_kind = AuditKind(kind)
        text = (
            dump_json(dict(detail), max_bytes=self.state.settings.max_value_bytes, what="the audit detail")
            if detail is not None
            else None
        )
        now = self.clock()
        when = _from_us(_to_us(at.astimezone(UTC) if at is not None else datetime.fromtimestamp(now, UTC)))
        record = AuditRecord(
            dag_id=dag_id,
            day=when.date(),
            record_id=time_uuid(when),
            at=when,
            kind=audit_kind,
            name=name,
            run_id=run_id,
            task_id=task_id,
            map_index=map_index,
            try_number=try_number,
            actor=actor,
            outcome=outcome,
            detail=json.loads(text) if text is not None else None,
        )
        with self.state.connect(write=True) as conn:
            conn.execute("DELETE FROM audit_trail WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO audit_trail (dag_id, day, at_us, record_id, run_id, task_id, map_index, "
                "try_number, kind, name, actor, outcome, detail, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dag_id,
                    record.day.isoformat(),
                    _to_us(when),
                    str(record.record_id),
                    run_id,
                    task_id,
                    map_index,
                    try_number,
                    audit_kind.value,
                    name,
                    actor,
                    outcome,
                    text,
                    now + self.ttl_s,
                ),
            )
        return record

    def read(self, dag_id: str, day: date, limit: int = 100, run_id: str | None = None) -> list[AuditRecord]:
        """Return one DAG's live records of one UTC day, newest first.

        :param limit: the most records (1 to ``MAX_READ``).
        :param run_id: only this run's records.
        :raises ValueError: a limit out of range.
        """
        check_key(dag_id, what="dag_id", max_len=250)
        if not 1 <= int(limit) <= MAX_READ:
            raise ValueError(f"limit must be 1 to {MAX_READ}, got {limit}")
        if isinstance(day, datetime):
            day = day.astimezone(UTC).date()
        sql = (
            "SELECT record_id, at_us, run_id, task_id, map_index, try_number, kind, name, actor, outcome, "
            "detail FROM audit_trail WHERE dag_id = ? AND day = ? AND expires_at > ?"
        )
        params: list[object] = [dag_id, day.isoformat(), self.clock()]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        sql += " ORDER BY at_us DESC, rowid DESC LIMIT ?"
        params.append(int(limit))
        with self.state.connect() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            AuditRecord(
                dag_id=dag_id,
                day=day,
                record_id=uuid.UUID(row[0]),
                at=_from_us(row[1]),
                kind=AuditKind(row[6]),
                name=row[7],
                run_id=row[2],
                task_id=row[3],
                map_index=row[4],
                try_number=row[5],
                actor=row[8],
                outcome=row[9],
                detail=json.loads(row[10]) if row[10] is not None else None,
            )
            for row in rows
        ]


# -- agent runs (include/state/runs.py) ------------------------------------------------

_AGENT_RUNS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS agent_runs (
        dag_id TEXT NOT NULL, run_id TEXT NOT NULL, task_id TEXT NOT NULL, map_index INTEGER NOT NULL,
        try_number INTEGER NOT NULL, day TEXT NOT NULL, finished_at_us INTEGER NOT NULL,
        summary TEXT NOT NULL, transcript TEXT NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (dag_id, run_id, task_id, map_index, try_number))""",
    "CREATE INDEX IF NOT EXISTS agent_runs_listing ON agent_runs (day, finished_at_us)",
    "CREATE INDEX IF NOT EXISTS agent_runs_expiry ON agent_runs (expires_at)",
)


class EmbeddedAgentRunStore(_AuditLivedStore):
    """``AgentRunStore`` in SQLite: one row per agent task try, living ``ttl_s``.

    Same contract as the Cassandra store: a transcript over ``max_value_bytes`` is stored
    truncated (``include.state.runs.truncate_transcript``), a non-JSON one is refused.

    :param state: the embedded state (its settings give the TTL and size limit).
    :param ttl_s: how long runs live; default ``settings.audit_ttl_s``.
    :param clock: returns the current UNIX time (tests pass their own).
    """

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The state's connection; writers create the table first (readers check ``_ready``)."""
        with self.state.connect(write=write) as conn:
            if write:
                for statement in _AGENT_RUNS_SCHEMA:
                    conn.execute(statement)
            yield conn

    def record(self, summary: AgentRunSummary, transcript: list[dict[str, Any]]) -> None:
        """Store one run (a retry of the same try replaces it).

        :raises TypeError: ``summary`` is not an ``AgentRunSummary`` or ``transcript`` not a list of dicts.
        :raises NotJSONError: the transcript is not JSON-serialisable; nothing is written.
        """
        from include.state.runs import AgentRunSummary, check_transcript, truncate_transcript

        if not isinstance(summary, AgentRunSummary):
            raise TypeError(f"summary must be an AgentRunSummary, got {type(summary).__name__}")
        max_bytes = self.state.settings.max_value_bytes
        messages, _ = truncate_transcript(check_transcript(transcript), max_bytes=max_bytes)
        text = dump_json(messages, max_bytes=max_bytes, what="the transcript")
        now = self.clock()
        with self._connect(write=True) as conn:
            conn.execute("DELETE FROM agent_runs WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT OR REPLACE INTO agent_runs (dag_id, run_id, task_id, map_index, try_number, day, "
                "finished_at_us, summary, transcript, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    summary.dag_id,
                    summary.run_id,
                    summary.task_id,
                    summary.map_index,
                    summary.try_number,
                    summary.day.isoformat(),
                    _to_us(summary.finished_at),
                    summary.model_dump_json(),
                    text,
                    now + self.ttl_s,
                ),
            )

    def list_runs(self, day: date, *, dag_id: str | None = None, limit: int = 100) -> list[AgentRunSummary]:
        """Return the live runs that finished on UTC ``day``, newest first.

        :param dag_id: only this DAG's runs.
        :param limit: the most runs (1 to ``MAX_LIST``).
        :raises ValueError: a limit out of range or an empty ``dag_id``.
        """
        from include.state.runs import AgentRunSummary, check_listing

        day = check_listing(day, dag_id, limit)
        sql = "SELECT summary FROM agent_runs WHERE day = ? AND expires_at > ?"
        params: list[object] = [day.isoformat(), self.clock()]
        if dag_id is not None:
            sql += " AND dag_id = ?"
            params.append(dag_id)
        sql += " ORDER BY finished_at_us DESC, dag_id, run_id, task_id, map_index, try_number DESC LIMIT ?"
        params.append(int(limit))
        with self._connect() as conn:
            if not self._ready(conn):
                return []
            rows = conn.execute(sql, params).fetchall()
        return [AgentRunSummary.model_validate_json(row[0]) for row in rows]

    def get(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> tuple[AgentRunSummary, list[dict[str, Any]]] | None:
        """Return the latest try's summary and transcript of one agent task, or ``None``."""
        from include.state.runs import AgentRunSummary

        check_key(dag_id, what="dag_id", max_len=250)
        check_key(run_id, what="run_id")
        check_key(task_id, what="task_id")
        with self._connect() as conn:
            if not self._ready(conn):
                return None
            row = conn.execute(
                "SELECT summary, transcript FROM agent_runs WHERE dag_id = ? AND run_id = ? AND task_id = ? "
                "AND map_index = ? AND expires_at > ? ORDER BY try_number DESC LIMIT 1",
                (dag_id, run_id, task_id, int(map_index), self.clock()),
            ).fetchone()
        if row is None:
            return None
        return AgentRunSummary.model_validate_json(row[0]), json.loads(row[1])

    def runs_of(self, dag_id: str, run_id: str) -> list[AgentRunSummary]:
        """Return the latest try of every agent task of one DAG run, by task id and map index."""
        from include.state.runs import AgentRunSummary

        check_key(dag_id, what="dag_id", max_len=250)
        check_key(run_id, what="run_id")
        with self._connect() as conn:
            if not self._ready(conn):
                return []
            rows = conn.execute(
                "SELECT task_id, map_index, summary FROM agent_runs WHERE dag_id = ? AND run_id = ? "
                "AND expires_at > ? ORDER BY task_id, map_index, try_number DESC",
                (dag_id, run_id, self.clock()),
            ).fetchall()
        latest: dict[tuple[str, int], AgentRunSummary] = {}
        for task_id, map_index, summary in rows:
            latest.setdefault((task_id, map_index), AgentRunSummary.model_validate_json(summary))
        return list(latest.values())

    @staticmethod
    def _ready(conn: sqlite3.Connection) -> bool:
        return (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_runs'"
            ).fetchone()
            is not None
        )
