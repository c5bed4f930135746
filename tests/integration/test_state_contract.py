"""One contract, two backends: the same assertions on Cassandra 5 and on the embedded SQLite file.

The ``check_*`` functions live in ``tests/unit/include/state/test_embedded.py`` (where the
embedded side also runs without services). Here each runs against a fresh Cassandra keyspace
made by the project's migrator and against a fresh SQLite file, with the same limits and TTLs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from include.state import (
    AuditTrail,
    CassandraClient,
    CassandraSettings,
    ConversationMemory,
    EmbeddedAuditTrail,
    EmbeddedConversationMemory,
    EmbeddedEventLedger,
    EmbeddedKnowledgeStore,
    EmbeddedState,
    EmbeddedStateSettings,
    EventLedger,
    KnowledgeStore,
)
from include.state.migrate import migrate
from tests.unit.include.state.test_embedded import (
    AUDIT_TTL_S,
    DIM,
    LEDGER_TTL_S,
    MAX_VALUE_BYTES,
    MEMORY_TTL_S,
    Make,
    check_audit,
    check_knowledge,
    check_ledger_exactly_once,
    check_ledger_ttl,
    check_memory,
    check_memory_turn_key,
)

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cassandra_client(cassandra_session: Session) -> Iterator[CassandraClient]:
    keyspace = f"af_contract_{uuid.uuid4().hex[:10]}"
    settings = CassandraSettings(
        contact_points=("127.0.0.1",),
        local_dc="datacenter1",
        keyspace=keyspace,
        request_timeout=60,
        vector_dimension=DIM,
        max_value_bytes=MAX_VALUE_BYTES,
        memory_ttl_s=MEMORY_TTL_S,
        ledger_ttl_s=LEDGER_TTL_S,
        audit_ttl_s=AUDIT_TTL_S,
    )
    migrate(settings)
    try:
        with CassandraClient(settings) as client:
            yield client
    finally:
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


def _embedded(path: Path) -> Make:
    state = EmbeddedState(
        EmbeddedStateSettings(
            path=path,
            vector_dimension=DIM,
            max_value_bytes=MAX_VALUE_BYTES,
            memory_ttl_s=MEMORY_TTL_S,
            ledger_ttl_s=LEDGER_TTL_S,
            audit_ttl_s=AUDIT_TTL_S,
        )
    )
    kinds: dict[str, Callable[..., Any]] = {
        "ledger": EmbeddedEventLedger,
        "memory": EmbeddedConversationMemory,
        "knowledge": EmbeddedKnowledgeStore,
        "audit": EmbeddedAuditTrail,
    }
    return lambda kind, **overrides: kinds[kind](state, **overrides)


def _cassandra(client: CassandraClient) -> Make:
    kinds: dict[str, Callable[..., Any]] = {
        "ledger": EventLedger,
        "memory": ConversationMemory,
        "knowledge": KnowledgeStore,
        "audit": AuditTrail,
    }
    return lambda kind, **overrides: kinds[kind](client, **overrides)


@pytest.fixture(params=["embedded", "cassandra"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    if request.param == "embedded":
        return _embedded(tmp_path / "agentflow_state.db")
    return _cassandra(request.getfixturevalue("cassandra_client"))


def test_ledger_exactly_once(make: Make) -> None:
    check_ledger_exactly_once(make)


def test_ledger_ttl(make: Make) -> None:
    check_ledger_ttl(make)


def test_memory(make: Make) -> None:
    check_memory(make)


def test_memory_turn_key(make: Make) -> None:
    check_memory_turn_key(make)


def test_knowledge(make: Make) -> None:
    check_knowledge(make)


def test_audit(make: Make) -> None:
    check_audit(make)
