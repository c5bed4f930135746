"""The ``agentflow_cassandra`` connection: the project's Cassandra state (memory, knowledge, ledger, audit).

The apache-cassandra provider owns the ``cassandra`` connection type; this hook has its own
type so its settings (consistency levels, retries, TTLs, replication) come from the
connection's extras. It connects lazily: constructing it does no I/O.

``state_backend`` is what the rest of the code calls: this hook when the connection exists,
else the embedded default (``include.state.embedded.EmbeddedState``, one SQLite file).
"""

from __future__ import annotations

import logging
import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from include.state.audit import AuditTrail
    from include.state.embedded import EmbeddedState
    from include.state.knowledge import KnowledgeStore
    from include.state.ledger import EventLedger
    from include.state.memory import ConversationMemory
    from include.state.runs import AgentRunStore
    from include.state.session import CassandraClient
    from include.state.settings import CassandraSettings


class CassandraHook(BaseHook):
    """Reach the project's Cassandra state through an ``agentflow_cassandra`` connection.

    Connection fields: ``host`` (contact points, comma-separated), ``port``, ``schema`` (the
    keyspace), ``login``/``password`` (optional). Extras: ``local_dc``, ``consistency``
    (default ``LOCAL_QUORUM``), ``serial_consistency`` (``SERIAL`` or ``LOCAL_SERIAL``),
    ``request_timeout``, ``max_retries``, ``retry_backoff``, ``replication``,
    ``vector_dimension``, ``max_value_bytes``, ``memory_ttl_s``, ``ledger_ttl_s``,
    ``audit_ttl_s`` (see ``include.state.settings.CassandraSettings``).

    :param cassandra_conn_id: the Airflow connection id.
    """

    conn_name_attr = "cassandra_conn_id"
    default_conn_name = "cassandra_default"
    conn_type = "agentflow_cassandra"
    hook_name = "AgentFlow Cassandra state"

    def __init__(self, cassandra_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cassandra_conn_id = cassandra_conn_id
        self._client: CassandraClient | None = None

    @staticmethod
    def get_ui_field_behaviour() -> dict[str, Any]:
        """Label the fields the way this connection uses them."""
        return {
            "hidden_fields": [],
            "relabeling": {"host": "Contact points (comma-separated)", "schema": "Keyspace"},
            "placeholders": {
                "host": "127.0.0.1",
                "port": "9042",
                "schema": "agentflow",
                "extra": '{"local_dc": "datacenter1", "consistency": "LOCAL_QUORUM"}',
            },
        }

    @cached_property
    def settings(self) -> CassandraSettings:
        """The settings read from the connection's fields and extras.

        :raises ConfigurationError: on an unknown extra or an invalid value.
        """
        from include.state.settings import CassandraSettings

        conn = self.get_connection(self.cassandra_conn_id)
        return CassandraSettings.from_connection_fields(
            host=conn.host,
            port=conn.port,
            schema=conn.schema,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
        )

    def get_conn(self) -> CassandraClient:
        """Return the client of this connection; it connects on its first statement."""
        if self._client is None:
            from include.state.session import CassandraClient

            self._client = CassandraClient(self.settings)
        return self._client

    def test_connection(self) -> tuple[bool, str]:
        """Read the server version over the connection.

        :raises StateStoreUnavailableError: if the cluster is unreachable (Airflow's
            connection test reports the message, which names the contact points).
        """
        from include.state.session import contact_points_text

        row = self.get_conn().execute("SELECT release_version FROM system.local").one()
        version = row.release_version if row is not None else "unknown"
        return True, f"Connected to Cassandra {version} at {contact_points_text(self.settings)}."

    def event_ledger(self) -> EventLedger:
        """The event dedupe ledger on this connection."""
        from include.state.ledger import EventLedger

        return EventLedger(self.get_conn())

    def memory(self) -> ConversationMemory:
        """Conversation memory on this connection."""
        from include.state.memory import ConversationMemory

        return ConversationMemory(self.get_conn())

    def knowledge(self) -> KnowledgeStore:
        """The vector knowledge store on this connection."""
        from include.state.knowledge import KnowledgeStore

        return KnowledgeStore(self.get_conn())

    def audit(self) -> AuditTrail:
        """The audit trail on this connection."""
        from include.state.audit import AuditTrail

        return AuditTrail(self.get_conn())

    def agent_runs(self) -> AgentRunStore:
        """Agent run summaries and transcripts on this connection (the UI's agent runs)."""
        from include.state.runs import AgentRunStore

        return AgentRunStore(self.get_conn())

    def close(self) -> None:
        """Close the client's connection, if one was opened."""
        if self._client is not None:
            self._client.close()
            self._client = None


log = logging.getLogger(__name__)

_announced: set[tuple[str, str]] = set()
_announced_lock = threading.Lock()


def _announce(kind: str, where: str, message: str, *args: object) -> None:
    """Log ``message`` at INFO the first time this process uses ``kind`` at ``where``, then at DEBUG."""
    with _announced_lock:
        first = (kind, where) not in _announced
        _announced.add((kind, where))
    log.log(logging.INFO if first else logging.DEBUG, message, *args)


def state_backend(
    cassandra_conn_id: str = CassandraHook.default_conn_name,
    *,
    embedded_path: str | os.PathLike[str] | None = None,
) -> CassandraHook | EmbeddedState:
    """Return the state backend: Cassandra when the connection exists, else the embedded default.

    Both give ``event_ledger()``, ``memory()``, ``knowledge()``, ``audit()``, ``agent_runs()``
    and ``close()`` with the same methods. Only a connection that is not defined selects the embedded
    default; any other error while looking it up is raised. Nothing connects here.

    :param cassandra_conn_id: the ``agentflow_cassandra`` connection to use when it exists.
    :param embedded_path: the SQLite file of the embedded default; default
        ``$AGENTFLOW_STATE_DB``, else ``$AIRFLOW_HOME/agentflow_state.db``.
    """
    try:
        CassandraHook.get_connection(cassandra_conn_id)
    except AirflowNotFoundException:
        from pathlib import Path

        from include.state.embedded import EmbeddedState, EmbeddedStateSettings

        settings = (
            EmbeddedStateSettings(path=Path(embedded_path))
            if embedded_path is not None
            else EmbeddedStateSettings()
        )
        _announce(
            "embedded",
            str(settings.path),
            "state backend: embedded SQLite file %s (no connection %r)",
            settings.path,
            cassandra_conn_id,
        )
        return EmbeddedState(settings)
    _announce("cassandra", cassandra_conn_id, "state backend: Cassandra via connection %r", cassandra_conn_id)
    return CassandraHook(cassandra_conn_id)
