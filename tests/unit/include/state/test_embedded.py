"""The embedded default (SQLite): the ledger, memory, knowledge and audit contracts.

The ``check_*`` functions are the contract shared with Cassandra: this module runs them on
the embedded store, ``tests/integration/test_state_contract.py`` runs the same functions on
both backends. A contract function takes ``make(kind, **overrides)``, which builds the store
of ``kind`` (``ledger``, ``memory``, ``knowledge``, ``audit``) with optional TTL overrides.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from include.errors import NotJSONError, StateStoreTimeoutError, ValueTooLargeError
from include.state import (
    AuditKind,
    EmbeddedAuditTrail,
    EmbeddedConversationMemory,
    EmbeddedEventLedger,
    EmbeddedKnowledgeStore,
    EmbeddedState,
    EmbeddedStateSettings,
    KnowledgeChunk,
)
from include.state.embedded import STATE_DB_NAME, default_state_path, time_uuid

#: The settings both backends use in the contract tests.
DIM = 384
MAX_VALUE_BYTES = 50_000
MEMORY_TTL_S = 3600
LEDGER_TTL_S = 600
AUDIT_TTL_S = 7200
MS = timedelta(milliseconds=1)

Make = Callable[..., Any]


# -- the contract ----------------------------------------------------------------------


def check_ledger_exactly_once(make: Make) -> None:
    """Concurrent claims: one winner, whose own row is stored; release allows a new claim."""
    ledger = make("ledger")
    event_id = f"evt-{uuid.uuid4()}"
    claimers = 12
    barrier = threading.Barrier(claimers)
    results: list[bool] = []
    lock = threading.Lock()

    def claim(partition: int) -> None:
        barrier.wait(timeout=30)
        won = ledger.claim(event_id, topic="support.tickets", partition=partition, offset=100 + partition)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == claimers
    assert results.count(True) == 1
    entry = ledger.get(event_id)
    assert entry is not None
    assert entry.event_id == event_id
    assert entry.topic == "support.tickets"
    assert entry.offset == 100 + entry.partition  # the winner's own row, not a mix
    assert entry.claimed_at is not None
    assert abs(entry.claimed_at - datetime.now(UTC)) < timedelta(minutes=1)

    assert ledger.claim(event_id, topic="support.tickets") is False
    assert ledger.release(event_id) is True
    assert ledger.get(event_id) is None
    assert ledger.claim(event_id, topic="t") is True
    assert ledger.release(f"evt-{uuid.uuid4()}") is False
    with pytest.raises(ValueError, match="event_id"):
        ledger.claim("", topic="t")
    with pytest.raises(TypeError, match="topic"):
        ledger.claim("evt", topic=7)


def check_ledger_ttl(make: Make) -> None:
    """A claim lives ``ttl_s`` seconds; then the id can be claimed again (real time: ~2 s)."""
    ledger = make("ledger", ttl_s=1)
    event_id = f"evt-{uuid.uuid4()}"
    assert ledger.claim(event_id, topic="t") is True
    assert ledger.claim(event_id, topic="t") is False
    time.sleep(2.2)
    assert ledger.get(event_id) is None
    assert ledger.claim(event_id, topic="t") is True


def run_messages(prompt: str, n: int) -> list[Any]:
    """One agent run's new messages: a prompt, a tool call and return, an answer."""
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC) + timedelta(minutes=n)
    return [
        ModelRequest(parts=[UserPromptPart(prompt, timestamp=at)], instructions="Be brief."),
        ModelResponse(
            parts=[ToolCallPart("search_knowledge", {"query": prompt, "k": 3}, f"call-{n}")],
            model_name="scripted",
            timestamp=at,
        ),
        ModelRequest(
            parts=[
                ToolReturnPart("search_knowledge", [{"id": "kb-1", "score": 0.5}], f"call-{n}", timestamp=at)
            ]
        ),
        ModelResponse(parts=[TextPart(f"answer {n}: é ✓")], model_name="scripted", timestamp=at),
    ]


def check_memory(make: Make) -> None:
    """Exact round trip, bounded reads (turns, token budget), the TTL horizon, checks, clear."""
    memory = make("memory")
    session_id = f"customer-{uuid.uuid4().hex}"
    assert memory.load(session_id) == []
    now = datetime.now(UTC)
    long_lived = make("memory", ttl_s=30 * 86_400)
    long_lived.append(session_id, run_messages("old", 0), tokens=100, at=now - timedelta(days=10))
    for n in range(1, 6):
        turn = memory.append(
            session_id, run_messages(f"turn {n}", n), run_id=f"run-{n}", tokens=100, at=now + n * MS
        )
        assert turn.messages == run_messages(f"turn {n}", n)
        assert turn.tokens == 100
    assert memory.load(session_id, last_turns=2) == run_messages("turn 4", 4) + run_messages("turn 5", 5)
    everything = [m for n in range(1, 6) for m in run_messages(f"turn {n}", n)]
    assert memory.load(session_id, last_turns=None) == everything
    turns = memory.turns(session_id, last_turns=6)  # the 10-day-old turn is beyond the 1-hour horizon
    assert [t.run_id for t in turns] == [f"run-{n}" for n in range(1, 6)]
    assert [t.at for t in turns] == sorted(t.at for t in turns)
    assert abs(turns[-1].at - (now + 5 * MS)) < MS
    assert len(memory.turns(session_id, token_budget=350)) == 3
    assert [t.run_id for t in memory.turns(session_id, token_budget=350)] == ["run-3", "run-4", "run-5"]
    assert memory.turns(session_id, token_budget=99) == []
    assert long_lived.load(session_id, last_turns=6)[:4] == run_messages("old", 0)
    with pytest.raises(ValueError, match="last_turns"):
        memory.turns(session_id, last_turns=0)

    with pytest.raises(ValueTooLargeError, match=str(MAX_VALUE_BYTES)):
        memory.append(session_id, [ModelRequest(parts=[UserPromptPart("x" * (MAX_VALUE_BYTES + 1))])])
    with pytest.raises(NotJSONError):
        memory.append(session_id, '{"not": "messages"}')
    with pytest.raises(ValueError, match="at least one message"):
        memory.append(session_id, [])
    assert len(long_lived.turns(session_id)) == 6  # nothing was written by the refused appends

    long_lived.clear(session_id)
    assert long_lived.load(session_id) == []


def check_memory_turn_key(make: Make) -> None:
    """A turn appended with a key replaces the session's earlier turns with that key, only those."""
    memory = make("memory")
    session_id = f"customer-{uuid.uuid4().hex}"
    other_session = f"customer-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    memory.append(session_id, run_messages("before", 0), run_id="r0", at=now)
    memory.append(session_id, run_messages("killed try", 1), run_id="r1", turn_key="d/r1/t/-1", at=now + MS)
    memory.append(other_session, run_messages("elsewhere", 1), run_id="r1", turn_key="d/r1/t/-1", at=now + MS)
    memory.append(session_id, run_messages("sibling", 2), run_id="r1", turn_key="d/r1/t/0", at=now + 2 * MS)
    memory.append(session_id, run_messages("retry", 1), run_id="r1", turn_key="d/r1/t/-1", at=now + 3 * MS)
    assert [t.run_id for t in memory.turns(session_id)] == ["r0", "r1", "r1"]
    assert memory.load(session_id) == (
        run_messages("before", 0) + run_messages("sibling", 2) + run_messages("retry", 1)
    )
    assert memory.load(other_session) == run_messages("elsewhere", 1)


def vector(degrees: float, plane: int = 0) -> list[float]:
    """A unit vector at ``degrees`` from e(2p) in the e(2p)/e(2p+1) plane: cosines known exactly."""
    values = [0.0] * DIM
    values[2 * plane] = math.cos(math.radians(degrees))
    values[2 * plane + 1] = math.sin(math.radians(degrees))
    return values


def check_knowledge(make: Make) -> None:
    """Idempotent upsert by content hash, nearest neighbours on the (1+cos)/2 scale, filters."""
    store = make("knowledge")
    tag = uuid.uuid4().hex[:8]
    angles = [0, 10, 25, 45, 70, 90, 120, 160]
    chunks = [
        KnowledgeChunk(
            content=f"{tag} chunk at {angle} degrees",
            embedding=vector(angle, plane=1),
            title=f"chunk {angle}",
            source=f"src-{tag}",
            category=f"{tag}-{'even' if i % 2 == 0 else 'odd'}",
            metadata={"angle": str(angle)},
        )
        for i, angle in enumerate(angles)
    ]
    keys = [c.content_hash for c in chunks]
    first = store.upsert(chunks)
    assert sorted(first.written) == sorted(keys)
    assert first.unchanged == []
    second = store.upsert(chunks)
    assert second.written == []
    assert sorted(second.unchanged) == sorted(keys)

    query = vector(12, plane=1)  # nearest by angle: 10, 0, 25, 45
    hits = store.search(query, k=4, filters={"source": f"src-{tag}"})
    assert [h.title for h in hits] == ["chunk 10", "chunk 0", "chunk 25", "chunk 45"]
    for hit, angle in zip(hits, [10, 0, 25, 45], strict=True):
        assert hit.score == pytest.approx((1 + math.cos(math.radians(angle - 12))) / 2, abs=1e-4)
    assert hits[0].metadata == {"angle": "10"}
    assert hits[0].content == f"{tag} chunk at 10 degrees"
    assert hits[0].content_hash == chunks[1].content_hash
    opposite = store.search(vector(12 + 180, plane=1), k=1, filters={"source": f"src-{tag}"})
    assert opposite[0].title == "chunk 160"
    assert opposite[0].score == pytest.approx((1 + math.cos(math.radians(192 - 160))) / 2, abs=1e-4)
    worst = store.search(vector(12 + 180, plane=1), k=8, filters={"source": f"src-{tag}"})[-1]
    assert worst.title == "chunk 10"
    assert worst.score == pytest.approx((1 + math.cos(math.radians(182))) / 2, abs=1e-4)  # below 0.5

    unfiltered = store.search(query, k=2)
    assert [h.title for h in unfiltered] == ["chunk 10", "chunk 0"]
    odd = store.search(query, k=3, filters={"category": f"{tag}-odd", "source": f"src-{tag}"})
    assert [h.title for h in odd] == ["chunk 10", "chunk 45", "chunk 90"]
    assert store.search(query, k=3, filters={"category": f"{tag}-none"}) == []
    with pytest.raises(ValueError, match="cannot filter"):
        store.search(query, k=3, filters={"title": "chunk 0"})
    with pytest.raises(ValueError, match="dimensions"):
        store.search([1.0, 0.0], k=3)
    with pytest.raises(ValueError, match="k must be"):
        store.search(query, k=0)

    changed = chunks[0].model_copy(update={"category": f"{tag}-moved"})
    assert store.upsert([changed]).written == [changed.content_hash]
    stored = store.get(changed.content_hash)
    assert stored is not None
    assert stored.category == f"{tag}-moved"
    assert stored.embedding == pytest.approx(chunks[0].embedding, abs=1e-6)

    fresh = KnowledgeChunk(content=f"{tag} never stored", embedding=vector(5, plane=1))
    bad = KnowledgeChunk(content=f"{tag} bad", embedding=[0.0] * DIM)
    with pytest.raises(ValueError, match="all zeros"):
        store.upsert([fresh, bad])
    big = KnowledgeChunk(content="y" * (MAX_VALUE_BYTES + 1), embedding=vector(5, plane=1))
    with pytest.raises(ValueTooLargeError):
        store.upsert([fresh, big])
    assert store.get(fresh.content_hash) is None  # nothing of a refused batch was written

    for key in keys:
        store.delete(key)
    assert store.get(keys[0]) is None
    assert store.search(query, k=3, filters={"source": f"src-{tag}"}) == []


def check_audit(make: Make) -> None:
    """Append-only records per DAG and day, newest first, limit and run filter, refused details."""
    audit = make("audit")
    dag_id = f"audit_dag_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    if (now + 10 * MS).date() != now.date():  # do not straddle midnight
        now -= timedelta(seconds=1)
    first = audit.record(
        dag_id=dag_id, kind=AuditKind.MODEL_CALL, name="gpt", run_id="r1", detail={"tokens": 12}, at=now
    )
    audit.record(
        dag_id=dag_id,
        kind="tool_call",
        name="search_knowledge",
        run_id="r1",
        task_id="draft",
        map_index=2,
        try_number=1,
        detail={"query": "refund"},
        at=now + MS,
    )
    audit.record(
        dag_id=dag_id,
        kind="approval",
        name="send_reply",
        run_id="r2",
        actor="alice",
        outcome="approved",
        at=now + 2 * MS,
    )
    audit.record(
        dag_id=dag_id, kind="guardrail_hit", name="pii", run_id="r2", outcome="blocked", at=now + 3 * MS
    )
    records = audit.read(dag_id, now.date())
    assert [r.kind for r in records] == ["guardrail_hit", "approval", "tool_call", "model_call"]
    assert records[3].record_id == first.record_id
    assert records[3].day == now.date()
    assert abs(records[3].at - now) < MS
    assert records[2].detail == {"query": "refund"}
    assert (records[2].task_id, records[2].map_index, records[2].try_number) == ("draft", 2, 1)
    assert (records[1].actor, records[1].outcome) == ("alice", "approved")
    assert [r.name for r in audit.read(dag_id, now.date(), run_id="r1")] == ["search_knowledge", "gpt"]
    assert [r.name for r in audit.read(dag_id, now.date(), limit=1)] == ["pii"]
    assert audit.read(dag_id, (now - timedelta(days=1)).date()) == []
    assert audit.read(f"{dag_id}_other", now.date()) == []

    with pytest.raises(NotJSONError):
        audit.record(dag_id=dag_id, kind="tool_call", name="bad", detail={"x": object()})
    with pytest.raises(ValueTooLargeError):
        audit.record(dag_id=dag_id, kind="tool_call", name="big", detail={"x": "z" * MAX_VALUE_BYTES})
    with pytest.raises(ValueError, match="not a valid AuditKind"):
        audit.record(dag_id=dag_id, kind="coffee_break", name="bad")
    assert len(audit.read(dag_id, now.date())) == 4  # nothing of the refused records was written
    with pytest.raises(ValueError, match="limit"):
        audit.read(dag_id, now.date(), limit=0)


# -- the embedded store ----------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> EmbeddedState:
    return EmbeddedState(
        EmbeddedStateSettings(
            path=tmp_path / "state" / "agentflow_state.db",
            vector_dimension=DIM,
            max_value_bytes=MAX_VALUE_BYTES,
            memory_ttl_s=MEMORY_TTL_S,
            ledger_ttl_s=LEDGER_TTL_S,
            audit_ttl_s=AUDIT_TTL_S,
        )
    )


@pytest.fixture
def make(state: EmbeddedState) -> Make:
    kinds: dict[str, Callable[..., Any]] = {
        "ledger": EmbeddedEventLedger,
        "memory": EmbeddedConversationMemory,
        "knowledge": EmbeddedKnowledgeStore,
        "audit": EmbeddedAuditTrail,
    }
    return lambda kind, **overrides: kinds[kind](state, **overrides)


def test_contract_ledger_exactly_once(make: Make) -> None:
    check_ledger_exactly_once(make)


def test_contract_memory(make: Make) -> None:
    check_memory(make)


def test_contract_memory_turn_key(make: Make) -> None:
    check_memory_turn_key(make)


def test_memory_turn_key_column_is_added_to_an_older_file(tmp_path: Path) -> None:
    """A state file made before ``turn_key`` existed gets the column on the first append."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            """CREATE TABLE conversation_memory (
            session_id TEXT NOT NULL, bucket INTEGER NOT NULL, at_us INTEGER NOT NULL,
            turn_id TEXT NOT NULL UNIQUE, run_id TEXT, messages TEXT NOT NULL, tokens INTEGER NOT NULL,
            expires_at REAL NOT NULL)"""
        )
    memory = EmbeddedState(EmbeddedStateSettings(path=path)).memory()
    memory.append("s", run_messages("one", 1), turn_key="k")
    memory.append("s", run_messages("two", 2), turn_key="k")
    assert memory.load("s") == run_messages("two", 2)


def test_contract_knowledge(make: Make) -> None:
    check_knowledge(make)


def test_contract_audit(make: Make) -> None:
    check_audit(make)


def test_nothing_is_opened_until_the_first_operation(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "agentflow_state.db"
    state = EmbeddedState(EmbeddedStateSettings(path=path))
    ledger = state.event_ledger()
    assert not path.parent.exists()
    assert ledger.claim("evt-1", topic="t") is True
    assert path.is_file()
    import sqlite3

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"event_ledger", "conversation_memory", "knowledge_chunks", "audit_trail"} <= tables
    assert EmbeddedState(EmbeddedStateSettings(path=path)).event_ledger().claim("evt-1", topic="t") is False


def test_default_path_is_in_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AGENTFLOW_STATE_DB", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert default_state_path() == tmp_path / "home" / STATE_DB_NAME
    assert EmbeddedStateSettings().path == tmp_path / "home" / STATE_DB_NAME
    monkeypatch.delenv("AIRFLOW_HOME")
    assert default_state_path() == Path("~/airflow").expanduser() / STATE_DB_NAME
    monkeypatch.setenv("AGENTFLOW_STATE_DB", str(tmp_path / "elsewhere.db"))
    assert default_state_path() == tmp_path / "elsewhere.db"


def test_defaults_follow_the_cassandra_settings() -> None:
    from include.state import CassandraSettings

    embedded, cassandra = EmbeddedStateSettings(), CassandraSettings()
    for name in ("vector_dimension", "max_value_bytes", "memory_ttl_s", "ledger_ttl_s", "audit_ttl_s"):
        assert getattr(embedded, name) == getattr(cassandra, name), name


_CHILD = """
import sys, time
import sqlite3
from pathlib import Path
from include.state.embedded import EmbeddedState, EmbeddedStateSettings
ledger = EmbeddedState(EmbeddedStateSettings(path=Path(sys.argv[1]))).event_ledger()
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
print(ledger.claim("evt-shared", topic="t"), flush=True)
"""


def test_concurrent_claims_from_processes_have_one_winner(tmp_path: Path) -> None:
    import subprocess
    import sys

    path, go = tmp_path / "shared.db", tmp_path / "go"
    root = Path(__file__).resolve().parents[4]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(go)],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        go.touch()  # every child is waiting: they claim at once
        outcomes = [child.communicate(timeout=120)[0].strip() for child in children]
    finally:
        for child in children:
            child.kill()
    assert [child.returncode for child in children] == [0] * 6
    assert sorted(outcomes) == ["False"] * 5 + ["True"]


class Clock:
    """A settable UNIX clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ledger_ttl_is_honoured_on_read_and_claim(state: EmbeddedState) -> None:
    clock = Clock(1_000_000.0)
    ledger = EmbeddedEventLedger(state, ttl_s=60, clock=clock)
    assert ledger.claim("evt-ttl", topic="t", partition=1, offset=2) is True
    clock.now += 59.9
    assert ledger.get("evt-ttl") is not None
    assert ledger.claim("evt-ttl", topic="t") is False
    clock.now += 0.1
    assert ledger.get("evt-ttl") is None
    assert ledger.release("evt-ttl") is False  # an expired claim no longer exists
    assert ledger.claim("evt-ttl", topic="t2") is True
    entry = ledger.get("evt-ttl")
    assert entry is not None
    assert (entry.topic, entry.partition, entry.offset) == ("t2", None, None)


def test_memory_ttl_counts_from_the_write(state: EmbeddedState) -> None:
    clock = Clock(100 * 86_400.0)
    memory = EmbeddedConversationMemory(state, ttl_s=600, bucket_s=86_400, clock=clock)
    memory.append("s1", run_messages("hi", 1), tokens=5)
    clock.now += 599
    assert memory.load("s1") == run_messages("hi", 1)
    clock.now += 1
    assert memory.load("s1") == []


def test_memory_reads_are_bounded_by_the_bucket_horizon(state: EmbeddedState) -> None:
    clock = Clock(100 * 86_400.0)
    memory = EmbeddedConversationMemory(state, ttl_s=2 * 86_400, bucket_s=86_400, clock=clock)
    base = datetime.fromtimestamp(clock.now, UTC)
    memory.append("s1", run_messages("too old", 0), at=base - timedelta(days=3))
    memory.append("s1", run_messages("horizon", 1), at=base - timedelta(days=2))
    memory.append("s1", run_messages("tomorrow", 2), at=base + timedelta(days=1))
    memory.append("s1", run_messages("too far ahead", 3), at=base + timedelta(days=2))
    assert memory.load("s1") == run_messages("horizon", 1) + run_messages("tomorrow", 2)


def test_memory_turns_of_other_sessions_stay_apart(state: EmbeddedState) -> None:
    memory = state.memory()
    memory.append("a", run_messages("for a", 1))
    memory.append("b", run_messages("for b", 2))
    assert memory.load("a") == run_messages("for a", 1)
    memory.clear("a")
    assert memory.load("a") == []
    assert memory.load("b") == run_messages("for b", 2)


def test_memory_accepts_message_json(state: EmbeddedState) -> None:
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    memory = state.memory()
    text = ModelMessagesTypeAdapter.dump_json(run_messages("as json", 1))
    turn = memory.append("s", text)
    assert turn.tokens == math.ceil(len(text.decode()) / 4)
    assert isinstance(turn.turn_id, uuid.UUID)
    assert turn.turn_id.version == 1
    assert memory.load("s") == run_messages("as json", 1)


def test_audit_ttl_is_honoured_on_read(state: EmbeddedState) -> None:
    clock = Clock(datetime(2026, 5, 6, 12, tzinfo=UTC).timestamp())
    audit = EmbeddedAuditTrail(state, ttl_s=60, clock=clock)
    audit.record(dag_id="d", kind="model_call", name="m")
    day = datetime(2026, 5, 6, tzinfo=UTC).date()
    assert len(audit.read("d", day)) == 1
    clock.now += 60
    assert audit.read("d", day) == []


def test_time_uuid_keeps_the_time() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    value = time_uuid(when)
    assert value.version == 1
    unix_100ns = value.time - 0x01B21DD213814000
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=unix_100ns // 10) == when
    assert time_uuid(when) != value


def test_search_scores_match_a_numpy_reference(state: EmbeddedState) -> None:
    rng = np.random.default_rng(7)
    store = state.knowledge()
    vectors = rng.normal(size=(50, DIM)).astype(np.float32)
    store.upsert(
        [
            KnowledgeChunk(content=f"doc {i}", embedding=v.tolist(), category="c")
            for i, v in enumerate(vectors)
        ]
    )
    query = rng.normal(size=DIM)
    cosine = vectors.astype(np.float64) @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    best = np.argsort(-cosine)[:10]
    hits = store.search(query.tolist(), k=10)
    assert [h.content for h in hits] == [f"doc {i}" for i in best]
    assert [h.score for h in hits] == pytest.approx(((1 + cosine[best]) / 2).tolist(), abs=1e-6)
    assert len(store.search(query.tolist(), k=1000)) == 50


def test_upsert_rewrites_a_changed_embedding_only(state: EmbeddedState) -> None:
    store = state.knowledge()
    chunk = KnowledgeChunk(content="c", embedding=vector(0), metadata={"a": "1"})
    assert store.upsert([chunk]).written == [chunk.content_hash]
    moved = chunk.model_copy(update={"embedding": vector(1)})
    assert store.upsert([moved]).written == [chunk.content_hash]
    relabelled = moved.model_copy(update={"metadata": {"a": "2"}})
    assert store.upsert([relabelled]).written == [chunk.content_hash]
    assert store.upsert([relabelled]).unchanged == [chunk.content_hash]
    stored = store.get(chunk.content_hash)
    assert stored is not None
    assert stored.metadata == {"a": "2"}
    assert stored.embedding == pytest.approx(vector(1), abs=1e-6)


def test_a_locked_file_is_a_timeout_naming_it(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "locked.db"
    state = EmbeddedState(EmbeddedStateSettings(path=path, busy_timeout_s=0.2))
    state.event_ledger().claim("evt-0", topic="t")  # creates the schema
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StateStoreTimeoutError, match=re.escape(str(path))):
            state.event_ledger().claim("evt-1", topic="t")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert state.event_ledger().claim("evt-1", topic="t") is True


# -- the factory and its users ---------------------------------------------------------


def _logged(log_call: mock.Mock) -> list[tuple[int, str]]:
    return [(call.args[0], call.args[1] % call.args[2:]) for call in log_call.call_args_list]


def test_state_backend_is_embedded_without_the_connection(tmp_path: Path) -> None:
    from operators.hooks import cassandra

    conn_id = f"missing_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "fallback.db"
    with mock.patch.object(cassandra.log, "log") as log_call:
        backend = cassandra.state_backend(conn_id, embedded_path=path)
        again = cassandra.state_backend(conn_id, embedded_path=path)
    assert isinstance(backend, EmbeddedState)
    assert isinstance(again, EmbeddedState)
    assert backend.path == path
    message = f"state backend: embedded SQLite file {path} (no connection {conn_id!r})"
    assert _logged(log_call) == [(logging.INFO, message), (logging.DEBUG, message)]
    assert backend.event_ledger().claim("evt", topic="t") is True
    assert again.event_ledger().claim("evt", topic="t") is False


def test_state_backend_is_cassandra_with_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from operators.hooks import cassandra

    conn_id = f"cassandra_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        '{"conn_type": "agentflow_cassandra", "host": "10.9.8.7", "schema": "ks"}',
    )
    with (
        mock.patch("include.state.session._connect") as connect,
        mock.patch.object(cassandra.log, "log") as log_call,
    ):
        backend = cassandra.state_backend(conn_id)
        assert isinstance(backend, cassandra.CassandraHook)
        assert backend.cassandra_conn_id == conn_id
        assert backend.settings.contact_points == ("10.9.8.7",)
        connect.assert_not_called()
    assert _logged(log_call) == [(logging.INFO, f"state backend: Cassandra via connection {conn_id!r}")]


def test_state_backend_raises_other_lookup_errors() -> None:
    from operators.hooks import cassandra

    broken = RuntimeError("secrets backend down")
    with (
        mock.patch.object(cassandra.CassandraHook, "get_connection", side_effect=broken),
        pytest.raises(RuntimeError, match="secrets backend down"),
    ):
        cassandra.state_backend("cassandra_default")


class _WordHashEmbedder:
    """A deterministic stand-in for the OpenVINO embedder: hashed bag of words, DIM wide."""

    def embed_rows(self, model: str, texts: list[str], truncate: bool | None = None) -> list[list[float]]:
        rows = []
        for text in texts:
            row = [0.0] * DIM
            for word in re.findall(r"[a-z]+", text.lower()):
                row[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
            rows.append(row if any(row) else [1.0] + [0.0] * (DIM - 1))
        return rows


def test_ingest_and_search_work_on_the_embedded_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asyncio

    from include.knowledge import load_corpus
    from include.knowledge.chunking import chunk_text
    from operators.knowledge import KnowledgeIngestOperator
    from operators.toolsets import CassandraKnowledgeToolset

    monkeypatch.setenv("AGENTFLOW_STATE_DB", str(tmp_path / "kb.db"))
    monkeypatch.setattr("include.inference.backend.get_backend", lambda socket_path=None: _WordHashEmbedder())
    conn_id = f"missing_{uuid.uuid4().hex[:8]}"
    first = KnowledgeIngestOperator(task_id="ingest", cassandra_conn_id=conn_id).execute(context={})  # type: ignore[arg-type]
    assert first["documents"] == len(load_corpus())
    assert first["written"] == first["chunks"] > 0
    again = KnowledgeIngestOperator(task_id="ingest", cassandra_conn_id=conn_id).execute(context={})  # type: ignore[arg-type]
    assert (again["written"], again["unchanged"]) == (0, first["chunks"])
    assert (tmp_path / "kb.db").is_file()

    doc = next(d for d in load_corpus() if d.category == "billing")
    passage = chunk_text(doc.text, 600)[0]
    toolset = CassandraKnowledgeToolset(cassandra_conn_id=conn_id)
    try:
        hits = toolset.search_knowledge(passage, k=3)
        assert hits[0]["doc_id"] == doc.doc_id
        assert hits[0]["text"] == passage
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        shipping = toolset.search_knowledge(passage, k=5, category="shipping")
        assert shipping
        assert {h["category"] for h in shipping} == {"shipping"}
    finally:
        asyncio.run(toolset.__aexit__(None, None, None))
