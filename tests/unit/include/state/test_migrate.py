"""The migrator's pure parts: the project's CQL files, splitting, rendering from configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from include.errors import ConfigurationError
from include.state.migrate import SCHEMA_DIR, load_migrations, render, split_cql
from include.state.settings import CassandraSettings


def test_project_schema_loads_in_version_order() -> None:
    migrations = load_migrations(SCHEMA_DIR)
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)
    assert versions[0] == 1
    assert {2, 3, 4, 5} <= set(versions)


def test_every_statement_is_idempotent() -> None:
    for migration in load_migrations(SCHEMA_DIR):
        for statement in migration.statements:
            assert re.match(
                r"CREATE\s+(CUSTOM\s+)?(KEYSPACE|TABLE|INDEX)\s+IF\s+NOT\s+EXISTS"
                r"|ALTER\s+TABLE\s+\S+\s+ADD\s+IF\s+NOT\s+EXISTS\s",
                statement,
                re.I,
            ), f"{migration.name}: {statement[:80]!r} is not CREATE/ALTER ... IF NOT EXISTS"


def test_every_table_has_a_bounded_partition_key() -> None:
    """Our tables: memory per (session, bucket), audit per (dag, day), others one row per key."""
    text = " ".join(s for m in load_migrations(SCHEMA_DIR) if m.version in (2, 3, 4, 5) for s in m.statements)
    assert "PRIMARY KEY ((session_id, bucket), turn_id)" in text
    assert "PRIMARY KEY ((dag_id, day), record_id)" in text
    assert "content_hash text PRIMARY KEY" in text
    assert "event_id text PRIMARY KEY" in text


def test_render_takes_keyspace_replication_and_dimension_from_settings() -> None:
    settings = CassandraSettings(
        keyspace="prod_state",
        replication={"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 3},
        vector_dimension=768,
    )
    statements = [render(s, settings) for m in load_migrations(SCHEMA_DIR) for s in m.statements]
    keyspace = statements[0]
    assert re.match(r"CREATE KEYSPACE IF NOT EXISTS prod_state\s+WITH replication = ", keyspace)
    assert "{'class': 'NetworkTopologyStrategy', 'dc1': '3', 'dc2': '3'}" in keyspace
    joined = "\n".join(statements)
    assert "agentflow." not in joined
    assert "prod_state.knowledge_chunks" in joined
    assert "vector<float, 768>" in joined
    assert "vector<float, 384>" not in joined


def test_split_cql_keeps_literals_and_drops_comments() -> None:
    text = "-- a; comment\nCREATE TABLE a (x text); /* b; */ INSERT INTO a (x) VALUES ('it''s; ok');\n"
    assert split_cql(text) == ["CREATE TABLE a (x text)", "INSERT INTO a (x) VALUES ('it''s; ok')"]


def test_bad_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no schema files"):
        load_migrations(tmp_path)
    (tmp_path / "001_a.cql").write_text("SELECT 1;")
    (tmp_path / "01_b.cql").write_text("SELECT 1;")
    with pytest.raises(ConfigurationError, match="share version 1"):
        load_migrations(tmp_path)
    (tmp_path / "01_b.cql").unlink()
    (tmp_path / "tables.cql").write_text("SELECT 1;")
    with pytest.raises(ConfigurationError, match="must start with its version"):
        load_migrations(tmp_path)
