"""Integration tests against the real services started by ``docker/launcher.py``."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.integration.conftest import REPO_ROOT, run_launcher

if TYPE_CHECKING:
    import psycopg2.extensions
    import redis
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration


def _topics_spec() -> list[dict[str, Any]]:
    spec = yaml.safe_load((REPO_ROOT / "config" / "kafka" / "topics.yaml").read_text())
    return spec["topics"]


# -- Kafka -------------------------------------------------------------------------------


def test_kafka_produce_then_consume(kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"it.{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    try:
        key, value = b"ticket-42", f"hello {uuid.uuid4()}".encode()
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
        delivered: list[Any] = []
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda err, msg: delivered.append((err, msg))
        )
        assert producer.flush(30) == 0
        assert delivered
        assert delivered[0][0] is None

        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"it-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        try:
            message = None
            deadline = time.monotonic() + 60
            while message is None and time.monotonic() < deadline:
                polled = consumer.poll(1.0)
                if polled is None:
                    continue
                if polled.error() and polled.error().code() == KafkaError._PARTITION_EOF:
                    continue
                assert polled.error() is None, polled.error()
                message = polled
        finally:
            consumer.close()
        assert message is not None, "no message consumed within 60s"
        assert message.key() == key
        assert message.value() == value
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


def test_project_topics_exist_with_their_partitions(kafka_bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=30)
    for topic in _topics_spec():
        name = topic["name"]
        assert name in metadata.topics, f"topic {name} missing"
        assert len(metadata.topics[name].partitions) == topic["partitions"], name
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        configs = admin.describe_configs([resource])[resource].result(timeout=30)
        for key, value in (topic.get("config") or {}).items():
            assert configs[key].value == str(value), f"{name} {key}"


# -- Cassandra ---------------------------------------------------------------------------


def test_cassandra_create_insert_select(cassandra_session: Session) -> None:
    table = f"agentflow.it_{uuid.uuid4().hex[:12]}"
    cassandra_session.execute(f"CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY, n int, note text)")
    try:
        cassandra_session.execute(f"INSERT INTO {table} (id, n, note) VALUES (%s, %s, %s)", ("a", 7, "seven"))
        row = cassandra_session.execute(f"SELECT id, n, note FROM {table} WHERE id = %s", ("a",)).one()
        assert row is not None
        assert (row.id, row.n, row.note) == ("a", 7, "seven")
    finally:
        cassandra_session.execute(f"DROP TABLE IF EXISTS {table}")


def test_cassandra_schema_versions_recorded(cassandra_session: Session) -> None:
    rows = {row.version: row for row in cassandra_session.execute("SELECT * FROM agentflow.schema_version")}
    assert 1 in rows
    assert rows[1].name == "001_keyspace.cql"
    assert rows[1].applied_at is not None
    files = sorted((REPO_ROOT / "config" / "cassandra").glob("*.cql"))
    assert {int(path.name.split("_", 1)[0]) for path in files} <= set(rows)


def test_cassandra_vector_search_is_enabled(cassandra_session: Session) -> None:
    """storage_compatibility_mode: NONE gives 5.0's vector type and SAI."""
    table = f"agentflow.it_vec_{uuid.uuid4().hex[:12]}"
    cassandra_session.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v vector<float, 3>)")
    try:
        cassandra_session.execute(f"CREATE CUSTOM INDEX ON {table} (v) USING 'StorageAttachedIndex'")
        for i, vec in enumerate(([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.1, 0.0])):
            cassandra_session.execute(f"INSERT INTO {table} (id, v) VALUES (%s, %s)", (i, vec))
        rows = list(
            cassandra_session.execute(f"SELECT id FROM {table} ORDER BY v ANN OF [1.0, 0.0, 0.0] LIMIT 2")
        )
        assert [row.id for row in rows] == [0, 2]
    finally:
        cassandra_session.execute(f"DROP TABLE IF EXISTS {table}")


# -- PostgreSQL --------------------------------------------------------------------------


def test_postgres_select_one(pg_conn: psycopg2.extensions.connection) -> None:
    with pg_conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT current_database(), current_user")
        assert cur.fetchone() == ("agentflow", "airflow")


def test_postgres_temp_table(pg_conn: psycopg2.extensions.connection) -> None:
    with pg_conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE it_items (id serial PRIMARY KEY, name text NOT NULL)")
        cur.execute("INSERT INTO it_items (name) VALUES (%s), (%s)", ("alpha", "beta"))
        cur.execute("SELECT name FROM it_items ORDER BY id")
        assert cur.fetchall() == [("alpha",), ("beta",)]
    pg_conn.rollback()


def test_postgres_airflow_database_exists(pg_conn: psycopg2.extensions.connection) -> None:
    with pg_conn.cursor() as cur:
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'airflow'")
        assert cur.fetchone() == ("airflow",)


# -- Redis -------------------------------------------------------------------------------


def test_redis_set_get(redis_client: redis.Redis) -> None:
    key = f"it:{uuid.uuid4().hex}"
    try:
        assert redis_client.set(key, "value-1", ex=60) is True
        assert redis_client.get(key) == b"value-1"
    finally:
        redis_client.delete(key)


# -- the launcher itself -----------------------------------------------------------------


def _pids(layout: Any) -> dict[str, str]:
    return {
        name: Path(layout.pid_file(name)).read_text().strip()
        for name in ("kafka", "cassandra", "postgres", "redis")
    }


def test_up_is_idempotent(services: None, stack_layout: Any) -> None:
    before = _pids(stack_layout)
    proc = run_launcher("up")
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stderr
    assert _pids(stack_layout) == before


def test_status_lists_every_service_running(services: None, stack_layout: Any) -> None:
    proc = run_launcher("status", timeout=60)
    assert proc.returncode == 0, proc.stderr
    pids = _pids(stack_layout)
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    for name, port in (("kafka", 9092), ("cassandra", 9042), ("postgres", 5432), ("redis", 6379)):
        assert name in lines, proc.stdout
        assert "running" in lines[name]
        assert f"pid {pids[name]}" in lines[name]
        assert f"127.0.0.1:{port}" in lines[name]


def test_logs_prints_the_tail(services: None) -> None:
    proc = run_launcher("logs", "redis", "-n", "5", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 0 < len(proc.stdout.splitlines()) <= 5
