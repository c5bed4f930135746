"""The Cassandra state: settings, client, migrations, memory, knowledge, ledger and audit.

No Airflow here; ``operators.hooks.cassandra.CassandraHook`` builds these from a connection.
``include.state.embedded`` holds the same four interfaces in one SQLite file, the embedded
default that ``operators.hooks.cassandra.state_backend`` picks when no connection exists.
cassandra-driver is imported on first use, so importing this package is cheap. The
migrator is ``include.state.migrate.migrate`` (and ``python -m include.state.migrate``).
"""

from __future__ import annotations

from include.state.audit import AuditKind, AuditRecord, AuditTrail
from include.state.embedded import (
    EmbeddedAuditTrail,
    EmbeddedConversationMemory,
    EmbeddedEventLedger,
    EmbeddedKnowledgeStore,
    EmbeddedState,
    EmbeddedStateSettings,
)
from include.state.knowledge import KnowledgeChunk, KnowledgeHit, KnowledgeStore, UpsertResult, content_hash
from include.state.ledger import EventLedger, LedgerEntry
from include.state.memory import ConversationMemory, MemoryTurn
from include.state.session import CassandraClient, open_session
from include.state.settings import CassandraSettings

__all__ = [
    "AuditKind",
    "AuditRecord",
    "AuditTrail",
    "CassandraClient",
    "CassandraSettings",
    "ConversationMemory",
    "EmbeddedAuditTrail",
    "EmbeddedConversationMemory",
    "EmbeddedEventLedger",
    "EmbeddedKnowledgeStore",
    "EmbeddedState",
    "EmbeddedStateSettings",
    "EventLedger",
    "KnowledgeChunk",
    "KnowledgeHit",
    "KnowledgeStore",
    "LedgerEntry",
    "MemoryTurn",
    "UpsertResult",
    "content_hash",
    "open_session",
]
