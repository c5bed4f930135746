"""The Cassandra state against a real Cassandra 5 node started by the launcher.

Each test module run works in its own keyspace (``af_it_<random>``, created by the project's
migrator and dropped afterwards), so it never collides with other users of the node.
"""

from __future__ import annotations

import math
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from include.errors import StateStoreUnavailableError, ValueTooLargeError
from include.state import (
    AuditKind,
    AuditTrail,
    CassandraClient,
    CassandraSettings,
    ConversationMemory,
    EventLedger,
    KnowledgeChunk,
    KnowledgeStore,
)
from include.state.migrate import LOCK_TABLE, load_migrations, migrate

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration

ALL_VERSIONS = [m.version for m in load_migrations()]
DIM = 384


def _settings(keyspace: str, **overrides: Any) -> CassandraSettings:
    values: dict[str, Any] = {
        "contact_points": ("127.0.0.1",),
        "local_dc": "datacenter1",
        "keyspace": keyspace,
        "request_timeout": 60,
        "memory_ttl_s": 3600,
        "ledger_ttl_s": 600,
        "audit_ttl_s": 7200,
        "max_value_bytes": 50_000,
    }
    values.update(overrides)
    return CassandraSettings(**values)


def _drop(session: Session, keyspace: str) -> None:
    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


@pytest.fixture(scope="module")
def keyspace(cassandra_session: Session) -> Iterator[str]:
    name = f"af_it_{uuid.uuid4().hex[:10]}"
    report = migrate(_settings(name))
    assert report.applied == ALL_VERSIONS
    try:
        yield name
    finally:
        _drop(cassandra_session, name)


@pytest.fixture(scope="module")
def client(keyspace: str) -> Iterator[CassandraClient]:
    with CassandraClient(_settings(keyspace)) as client:
        yield client


# -- migrations ------------------------------------------------------------------------


def test_launcher_applied_the_schema_to_the_shared_keyspace(cassandra_session: Session) -> None:
    versions = {
        row.version for row in cassandra_session.execute("SELECT version FROM agentflow.schema_version")
    }
    assert set(ALL_VERSIONS) <= versions
    tables = {
        row.table_name
        for row in cassandra_session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'agentflow'"
        )
    }
    assert {"conversation_memory", "knowledge_chunks", "event_ledger", "audit_trail", LOCK_TABLE} <= tables


def test_migrations_are_idempotent(keyspace: str, client: CassandraClient) -> None:
    again = migrate(client)
    assert again.applied == []
    assert again.already_applied == ALL_VERSIONS
    assert again.replication_matches
    rows = list(client.execute(f"SELECT version, name FROM {keyspace}.schema_version"))
    assert sorted(row.version for row in rows) == ALL_VERSIONS
    assert list(client.execute(f"SELECT * FROM {keyspace}.{LOCK_TABLE}")) == []


def test_two_concurrent_migrators_apply_each_version_once(cassandra_session: Session) -> None:
    name = f"af_it_mig_{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(2)
    reports: list[Any] = [None, None]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            with CassandraClient(_settings(name)) as own:
                barrier.wait(timeout=60)
                reports[index] = migrate(own, poll_s=0.2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not errors, errors
        first, second = (set(r.applied) for r in reports)
        assert first | second == set(ALL_VERSIONS)
        assert first & second == set(), "a version was applied by both migrators: the lock did not hold"
        versions = sorted(
            row.version for row in cassandra_session.execute(f"SELECT version FROM {name}.schema_version")
        )
        assert versions == ALL_VERSIONS
        assert list(cassandra_session.execute(f"SELECT * FROM {name}.{LOCK_TABLE}")) == []
    finally:
        _drop(cassandra_session, name)


def test_replication_comes_from_configuration(cassandra_session: Session) -> None:
    name = f"af_it_nts_{uuid.uuid4().hex[:8]}"
    try:
        report = migrate(
            _settings(name, replication={"class": "NetworkTopologyStrategy", "datacenter1": 1}),
        )
        assert report.replication == {
            "class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
            "datacenter1": "1",
        }
        assert report.replication_matches
    finally:
        _drop(cassandra_session, name)


# -- ledger ----------------------------------------------------------------------------


def test_ledger_claim_is_exactly_once_under_concurrent_claims(client: CassandraClient) -> None:
    ledger = EventLedger(client)
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
    assert entry.topic == "support.tickets"
    assert entry.offset == 100 + entry.partition  # the winner's own row, not a mix
    ttl = client.execute(
        f"SELECT TTL(topic) AS ttl FROM {client.keyspace}.event_ledger WHERE event_id = ?", (event_id,)
    ).one()
    assert 0 < ttl.ttl <= 600


def test_ledger_release_allows_a_new_claim(client: CassandraClient) -> None:
    ledger = EventLedger(client)
    event_id = f"evt-{uuid.uuid4()}"
    assert ledger.claim(event_id, topic="t") is True
    assert ledger.claim(event_id, topic="t") is False
    assert ledger.release(event_id) is True
    assert ledger.get(event_id) is None
    assert ledger.claim(event_id, topic="t") is True
    assert ledger.release(f"evt-{uuid.uuid4()}") is False


# -- memory ----------------------------------------------------------------------------


def _run_messages(prompt: str, n: int) -> list[Any]:
    at = datetime(2026, 3, 4, 5, 6, 7, 891011 + 0, tzinfo=UTC) + timedelta(minutes=n)
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


def test_memory_round_trip_across_two_runs(keyspace: str) -> None:
    session_id = f"customer-{uuid.uuid4().hex}"
    run1, run2 = _run_messages("I was charged twice", 1), _run_messages("Any update?", 2)
    with CassandraClient(_settings(keyspace)) as first_run:
        memory = ConversationMemory(first_run)
        assert memory.load(session_id) == []
        memory.append(session_id, run1, run_id="run-1")
    with CassandraClient(_settings(keyspace)) as second_run:
        memory = ConversationMemory(second_run)
        history = memory.load(session_id)
        assert history == run1
        memory.append(session_id, run2, run_id="run-2")
        assert memory.load(session_id) == run1 + run2
        assert [t.run_id for t in memory.turns(session_id)] == ["run-1", "run-2"]


def test_memory_bounded_reads_and_ttl(client: CassandraClient) -> None:
    memory = ConversationMemory(client)
    session_id = f"customer-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    # Ten days back: an earlier 7-day bucket; read by a memory whose TTL horizon reaches it.
    long_lived = ConversationMemory(client, ttl_s=30 * 86_400)
    long_lived.append(session_id, _run_messages("old", 0), tokens=100, at=now - timedelta(days=10))
    for n in range(1, 6):
        memory.append(
            session_id, _run_messages(f"turn {n}", n), tokens=100, at=now + timedelta(milliseconds=n)
        )
    assert memory.load(session_id, last_turns=2) == _run_messages("turn 4", 4) + _run_messages("turn 5", 5)
    assert long_lived.load(session_id, last_turns=6)[:4] == _run_messages("old", 0)
    assert len(memory.turns(session_id, last_turns=6)) == 5  # beyond this memory's 1-hour horizon
    assert len(memory.turns(session_id, token_budget=350)) == 3
    assert memory.turns(session_id, token_budget=99) == []
    ttls = [
        row.ttl
        for row in client.execute(
            f"SELECT TTL(messages) AS ttl FROM {client.keyspace}.conversation_memory "
            "WHERE session_id = ? AND bucket = ?",
            (session_id, memory.bucket_of(now.timestamp())),
        )
    ]
    assert len(ttls) == 5
    assert all(3500 < ttl <= 3600 for ttl in ttls)
    long_lived.clear(session_id)
    assert long_lived.load(session_id) == []


def test_memory_refuses_oversized_turns_without_writing(client: CassandraClient) -> None:
    memory = ConversationMemory(client)
    session_id = f"customer-{uuid.uuid4().hex}"
    with pytest.raises(ValueTooLargeError, match="50000"):
        memory.append(session_id, [ModelRequest(parts=[UserPromptPart("x" * 60_000)])])
    assert memory.load(session_id) == []


# -- knowledge -------------------------------------------------------------------------


def _vector(degrees: float) -> list[float]:
    """A unit vector at ``degrees`` from e0 in the e0/e1 plane (cosine to e0 is known exactly)."""
    vector = [0.0] * DIM
    vector[0] = math.cos(math.radians(degrees))
    vector[1] = math.sin(math.radians(degrees))
    return vector


def test_knowledge_upsert_is_idempotent_and_ann_finds_the_neighbours(client: CassandraClient) -> None:
    store = KnowledgeStore(client)
    tag = uuid.uuid4().hex[:8]
    angles = [0, 10, 25, 45, 70, 90, 120, 160]
    chunks = [
        KnowledgeChunk(
            content=f"{tag} chunk at {angle} degrees",
            embedding=_vector(angle),
            title=f"chunk {angle}",
            source=f"src-{tag}",
            category=f"{tag}-{'even' if i % 2 == 0 else 'odd'}",
            metadata={"angle": str(angle)},
        )
        for i, angle in enumerate(angles)
    ]
    first = store.upsert(chunks)
    assert len(first.written) == len(chunks)
    keys = [c.content_hash for c in chunks]
    writetime = (
        f"SELECT WRITETIME(content) AS wt FROM {client.keyspace}.knowledge_chunks WHERE content_hash = ?"
    )
    before = [client.execute(writetime, (k,)).one().wt for k in keys]

    second = store.upsert(chunks)
    assert second.written == []
    assert sorted(second.unchanged) == sorted(keys)
    assert [client.execute(writetime, (k,)).one().wt for k in keys] == before

    query = _vector(12)  # nearest by angle: 10, 0, 25, 45
    hits = store.search(query, k=4, filters={"source": f"src-{tag}"})
    assert [h.title for h in hits] == ["chunk 10", "chunk 0", "chunk 25", "chunk 45"]
    expected = (1 + math.cos(math.radians(2))) / 2  # similarity_cosine maps cosine to 0..1
    assert hits[0].score == pytest.approx(expected, abs=1e-4)
    assert hits[0].metadata == {"angle": "10"}

    odd = store.search(query, k=3, filters={"category": f"{tag}-odd", "source": f"src-{tag}"})
    assert [h.title for h in odd] == ["chunk 10", "chunk 45", "chunk 90"]

    changed = chunks[0].model_copy(update={"category": f"{tag}-moved"})
    assert store.upsert([changed]).written == [changed.content_hash]
    stored = store.get(changed.content_hash)
    assert stored is not None
    assert stored.category == f"{tag}-moved"
    for key in keys:
        store.delete(key)


# -- audit -----------------------------------------------------------------------------


def test_audit_append_and_read(client: CassandraClient) -> None:
    audit = AuditTrail(client)
    dag_id = f"audit_dag_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    audit.record(
        dag_id=dag_id, kind=AuditKind.MODEL_CALL, name="gpt", run_id="r1", detail={"tokens": 12}, at=now
    )
    audit.record(
        dag_id=dag_id,
        kind="tool_call",
        name="search_knowledge",
        run_id="r1",
        task_id="draft",
        detail={"query": "refund"},
        at=now + timedelta(milliseconds=1),
    )
    audit.record(
        dag_id=dag_id,
        kind="approval",
        name="send_reply",
        run_id="r2",
        actor="alice",
        outcome="approved",
        at=now + timedelta(milliseconds=2),
    )
    audit.record(
        dag_id=dag_id,
        kind="guardrail_hit",
        name="pii",
        run_id="r2",
        outcome="blocked",
        at=now + timedelta(milliseconds=3),
    )
    records = audit.read(dag_id, now.date())
    assert [r.kind for r in records] == ["guardrail_hit", "approval", "tool_call", "model_call"]
    assert records[2].detail == {"query": "refund"}
    assert records[2].task_id == "draft"
    assert [r.name for r in audit.read(dag_id, now.date(), run_id="r1")] == ["search_knowledge", "gpt"]
    assert len(audit.read(dag_id, now.date(), limit=1)) == 1
    assert audit.read(dag_id, (now - timedelta(days=1)).date()) == []
    ttl = client.execute(
        f"SELECT TTL(kind) AS ttl FROM {client.keyspace}.audit_trail WHERE dag_id = ? AND day = ? LIMIT 1",
        (dag_id, now.date()),
    ).one()
    assert 7000 < ttl.ttl <= 7200


# -- unreachable -----------------------------------------------------------------------


def test_unreachable_cluster_fails_in_bounded_time_naming_the_contact_points() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = _settings("agentflow", port=port, max_retries=2, retry_backoff=0.1, connect_timeout=2)
    started = time.monotonic()
    with CassandraClient(settings) as unreachable, pytest.raises(StateStoreUnavailableError) as info:
        EventLedger(unreachable).claim("evt-x", topic="t")
    elapsed = time.monotonic() - started
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "after 3 attempts" in str(info.value)
    assert elapsed < 30
