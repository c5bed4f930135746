"""Knowledge ingest and search with real all-MiniLM-L6-v2 embeddings and Cassandra 5 ANN.

The shipped corpus is chunked, embedded by OpenVINO and upserted into a keyspace of this
module's own; queries a customer would write find the document that answers them.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ToolCallPart

from include.events import TriageResult
from include.knowledge import load_corpus
from include.state import CassandraSettings
from include.state.migrate import migrate
from operators.hooks.extractive import ExtractivePolicyHook
from operators.knowledge import KnowledgeIngestOperator
from operators.toolsets import CassandraKnowledgeToolset

if TYPE_CHECKING:
    from cassandra.cluster import Session

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def conn_id(cassandra_session: Session) -> Iterator[str]:
    keyspace = f"af_kb_{uuid.uuid4().hex[:10]}"
    migrate(CassandraSettings(contact_points=("127.0.0.1",), keyspace=keyspace, request_timeout=60))
    conn_id = f"cassandra_kb_{keyspace}"
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    os.environ[variable] = json.dumps(
        {"conn_type": "agentflow_cassandra", "host": "127.0.0.1", "port": 9042, "schema": keyspace}
    )
    try:
        yield conn_id
    finally:
        del os.environ[variable]
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


@pytest.fixture(scope="module")
def ingested(conn_id: str) -> dict[str, Any]:
    first = KnowledgeIngestOperator(task_id="ingest", cassandra_conn_id=conn_id).execute(context={})  # type: ignore[arg-type]
    return first


def _search(conn_id: str, query: str, **kwargs: Any) -> list[dict[str, Any]]:
    toolset = CassandraKnowledgeToolset(cassandra_conn_id=conn_id)
    try:
        return toolset.search_knowledge(query, **kwargs)
    finally:
        asyncio.run(toolset.__aexit__(None, None, None))


def test_ingest_writes_every_chunk_once(conn_id: str, ingested: dict[str, Any]) -> None:
    assert ingested["documents"] == len(load_corpus())
    assert ingested["chunks"] >= ingested["documents"]
    assert ingested["written"] == ingested["chunks"]
    assert ingested["unchanged"] == 0
    again = KnowledgeIngestOperator(task_id="ingest", cassandra_conn_id=conn_id).execute(context={})  # type: ignore[arg-type]
    assert again["written"] == 0
    assert again["unchanged"] == ingested["chunks"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("I was charged two times for a single purchase", "kb-billing-charges"),
        ("how long does standard delivery take", "kb-shipping-times"),
        ("I can't get into my account, I forgot my login details", "kb-account-access"),
        ("the mobile application keeps closing when I open it", "kb-app-troubleshooting"),
        ("the vase I ordered came smashed in the box", "kb-damaged-item"),
    ],
)
def test_semantic_search_finds_the_answering_document(
    conn_id: str, ingested: dict[str, Any], query: str, expected: str
) -> None:
    hits = _search(conn_id, query, k=3)
    assert hits[0]["doc_id"] == expected, [(h["doc_id"], h["score"]) for h in hits]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_search_filters_by_category(conn_id: str, ingested: dict[str, Any]) -> None:
    hits = _search(conn_id, "I want my money back", k=5, category="billing")
    assert hits
    assert {h["category"] for h in hits} == {"billing"}


def test_agent_drafts_from_vector_search(conn_id: str, ingested: dict[str, Any]) -> None:
    from unittest import mock

    from airflow.sdk import Connection

    llm = Connection(conn_id="agentflow_llm", conn_type="pydanticai_extractive")
    with mock.patch.object(ExtractivePolicyHook, "get_connection", return_value=llm):
        model = ExtractivePolicyHook(llm_conn_id="agentflow_llm").get_conn()
    agent = Agent(
        model, output_type=TriageResult, toolsets=[CassandraKnowledgeToolset(cassandra_conn_id=conn_id)]
    )
    run = agent.run_sync("My card statement shows the same payment twice, please refund one")
    calls = [p.tool_name for m in run.all_messages() for p in m.parts if isinstance(p, ToolCallPart)]
    assert calls == ["search_knowledge", "final_result"]
    assert run.output.category == "billing"
    assert run.output.sources[0] == "kb-billing-charges"
