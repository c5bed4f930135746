"""The agentflow_ui plugin on real services: runs from Cassandra, the event flow from Kafka.

Airflow's own api-server app (as in ``tests/unit/plugins/test_agentflow_ui.py``), with the
plugin pointed (``[agentflow_ui]`` settings, as environment variables) at a fresh Cassandra
keyspace made by the migrator, and at a topic pair unique to this test on the real broker,
read through a Kafka connection whose ``group.id`` is unique too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from include.state import CassandraClient, CassandraSettings
from include.state.audit import AuditTrail
from include.state.migrate import migrate
from include.state.runs import AgentRunStore, AgentRunSummary
from tests.unit.plugins.test_agentflow_ui import (  # noqa: F401 (fixtures)
    EVIL,
    _messages,
    _token,
    airflow_app,
    state_path,
)

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration
DAG_ID = "support_ticket_triage"


@pytest.fixture(scope="module")
def keyspace(cassandra_session: Session) -> Iterator[CassandraSettings]:
    name = f"af_ui_{uuid.uuid4().hex[:10]}"
    settings = CassandraSettings(
        contact_points=("127.0.0.1",), local_dc="datacenter1", keyspace=name, request_timeout=60
    )
    migrate(settings)
    try:
        yield settings
    finally:
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)


@pytest.fixture
def client(
    airflow_app: Any,  # noqa: F811
    keyspace: CassandraSettings,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[TestClient]:
    connection = {
        "conn_type": "agentflow_cassandra",
        "host": "127.0.0.1",
        "port": 9042,
        "schema": keyspace.keyspace,
        "extra": {"local_dc": "datacenter1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AF_UI_IT_CASSANDRA", json.dumps(connection))
    monkeypatch.setenv("AIRFLOW__AGENTFLOW_UI__CASSANDRA_CONN_ID", "af_ui_it_cassandra")
    with TestClient(airflow_app, headers={"Authorization": f"Bearer {_token('admin')}"}) as test_client:
        yield test_client


def test_run_page_reads_cassandra(client: TestClient, keyspace: CassandraSettings) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    run_id = f"manual__{uuid.uuid4().hex[:8]}"
    summary = AgentRunSummary(
        dag_id=DAG_ID,
        run_id=run_id,
        task_id="draft_reply",
        model="scripted-model",
        status="success",
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        latency_ms=2000,
        input_tokens=4321,
        output_tokens=99,
        tool_calls=1,
    )
    with CassandraClient(keyspace) as cassandra:
        AgentRunStore(cassandra).record(summary, _messages(EVIL, "done [REDACTED:PHONE]"))
        AuditTrail(cassandra).record(
            dag_id=DAG_ID, kind="guardrail_hit", name="pii.phone", run_id=run_id, outcome="redacted"
        )
    listing = client.get("/agentflow/api/runs", params={"dag_id": DAG_ID}).json()
    assert [r["run_id"] for r in listing["runs"]] == [run_id]
    page = client.get(f"/agentflow/ui/runs/{DAG_ID}/{run_id}/draft_reply")
    assert page.status_code == 200, page.text
    assert 'id="input-tokens">4321<' in page.text
    assert "&lt;script&gt;" in page.text
    assert "<script" not in page.text
    assert '<mark class="redacted" title="redacted by a guardrail">[REDACTED:PHONE]</mark>' in page.text
    assert '<tr class="audit-guardrail_hit">' in page.text
    missing = client.get(f"/agentflow/api/runs/{DAG_ID}/{run_id}-nope/draft_reply")
    assert missing.status_code == 404
    assert "no agent run recorded" in missing.json()["detail"]


def test_events_page_reads_offsets_lag_and_dead_letters_from_kafka(
    client: TestClient,
    keyspace: CassandraSettings,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from include.state.eventflow import EventFlowCounters

    topic = f"ui.it.{uuid.uuid4().hex[:8]}"
    group = f"ui-it-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, 2, 1), NewTopic(topic + ".dlq", 1, 1)]).values():
        future.result(30)
    try:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(10):
            producer.produce(topic, value=b"{}", partition=i % 2)
        for i, reason in enumerate(["not_json", "schema", "empty"]):
            producer.produce(
                topic + ".dlq",
                value=b"x",
                headers=[
                    ("agentflow.dlq.reason", reason.encode()),
                    ("agentflow.dlq.detail", f"bad <{i}>".encode()),
                    ("agentflow.dlq.original_topic", topic.encode()),
                    ("agentflow.dlq.original_partition", b"0"),
                    ("agentflow.dlq.original_offset", str(i).encode()),
                ],
            )
        assert producer.flush(30) == 0
        # The watcher's group has consumed 4 of partition 0's 5 and 3 of partition 1's 5.
        committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        committer.commit(
            offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 3)], asynchronous=False
        )
        committer.close()

        topics_file = tmp_path / "topics.yaml"
        topics_file.write_text(
            f"topics:\n  - name: {topic}\n    partitions: 2\n  - name: {topic}.dlq\n    partitions: 1\n"
        )
        kafka = {"conn_type": "kafka", "extra": {"bootstrap.servers": kafka_bootstrap, "group.id": group}}
        monkeypatch.setenv("AIRFLOW_CONN_AF_UI_IT_KAFKA", json.dumps(kafka))
        monkeypatch.setenv("AIRFLOW__AGENTFLOW_UI__KAFKA_CONFIG_ID", "af_ui_it_kafka")
        monkeypatch.setenv("AIRFLOW__AGENTFLOW_UI__TOPICS_FILE", str(topics_file))
        monkeypatch.setenv("AIRFLOW__AGENTFLOW_UI__DLQ_LAST_MESSAGES", "2")

        with CassandraClient(keyspace) as cassandra:
            EventFlowCounters(cassandra).add(topic, consumed=7, duplicates=4)
        flow = client.get("/agentflow/api/events")
        assert flow.status_code == 200, flow.text
        body = flow.json()
        assert body["group_id"] == group
        [row] = body["topics"]
        assert row["topic"] == topic
        assert (row["partitions"], row["consumed"], row["lag"]) == (2, 7, 3)
        assert (row["dlq_topic"], row["dlq"]) == (topic + ".dlq", 3)
        assert [m["reason"] for m in row["last_dlq"]] == ["empty", "schema"]  # the last two, newest first
        assert row["last_dlq"][0]["original"] == f"{topic}[0]@2"
        assert row["duplicates_today"] == 4

        page = client.get("/agentflow/ui/events")
        assert page.status_code == 200
        assert "bad &lt;2&gt;" in page.text
        assert f"<td>{topic}</td>" in page.text
    finally:
        for future in admin.delete_topics([topic, topic + ".dlq"]).values():
            future.result(30)


def test_events_without_kafka_is_a_503_with_a_message(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = {"conn_type": "kafka", "extra": {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}}
    monkeypatch.setenv("AIRFLOW_CONN_AF_UI_IT_NOKAFKA", json.dumps(kafka))
    monkeypatch.setenv("AIRFLOW__AGENTFLOW_UI__KAFKA_CONFIG_ID", "af_ui_it_nokafka")
    monkeypatch.setenv("AIRFLOW__AGENTFLOW_UI__KAFKA_TIMEOUT_S", "2")
    response = client.get("/agentflow/api/events")
    assert response.status_code == 503
    assert "af_ui_it_nokafka" in response.json()["detail"]
