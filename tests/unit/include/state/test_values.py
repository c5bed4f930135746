"""Bad values are refused, before anything reaches the driver."""

from __future__ import annotations

import math
from datetime import date

import pytest
from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, ToolReturnPart, UserPromptPart

from include.errors import NotJSONError, StateValueError, ValueTooLargeError
from include.state import AuditTrail, ConversationMemory, EventLedger, KnowledgeChunk, KnowledgeStore
from include.state._values import dump_json
from include.state.session import CassandraClient
from tests.unit.include.state.conftest import FakeSession


def test_dump_json() -> None:
    assert dump_json({"a": [1, "é"]}, max_bytes=100, what="v") == '{"a":[1,"é"]}'
    with pytest.raises(NotJSONError, match="v is not JSON-serialisable"):
        dump_json({"a": object()}, max_bytes=100, what="v")
    with pytest.raises(NotJSONError):
        dump_json({"a": math.nan}, max_bytes=100, what="v")
    with pytest.raises(ValueTooLargeError, match="v is 12 bytes, more than the configured limit of 11"):
        dump_json("a" * 10, max_bytes=11, what="v")
    assert issubclass(ValueTooLargeError, StateValueError)
    assert issubclass(NotJSONError, ValueError)


def test_memory_refuses_before_writing(client: CassandraClient, fake_session: FakeSession) -> None:
    memory = ConversationMemory(client)
    with pytest.raises(NotJSONError, match="not JSON-serialisable"):
        memory.append("s1", [ModelRequest(parts=[ToolReturnPart("t", object(), "c1")])])
    with pytest.raises(ValueTooLargeError, match="max_value_bytes"):
        memory.append("s1", [ModelRequest(parts=[UserPromptPart("x" * 3000)])])
    with pytest.raises(NotJSONError, match="not pydantic-ai message JSON"):
        memory.append("s1", b'[{"kind": "nope"}]')
    with pytest.raises(ValueError, match="at least one message"):
        memory.append("s1", [])
    with pytest.raises(TypeError, match="session_id must be a str"):
        memory.append(42, [ModelResponse(parts=[TextPart("x")])])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="last_turns must be 1 to 1000"):
        memory.load("s1", last_turns=0)
    assert fake_session.executed == []


def test_knowledge_refuses_before_writing(client: CassandraClient, fake_session: FakeSession) -> None:
    store = KnowledgeStore(client)  # dimension 4
    good = KnowledgeChunk(content="ok", embedding=[1, 0, 0, 0])
    for bad, message in [
        ([1, 0, 0], "has 3 dimensions, the store's is 4"),
        ([0, 0, 0, 0], "all zeros"),
        ([1, math.inf, 0, 0], "NaN or infinity"),
    ]:
        with pytest.raises(ValueError, match=message):
            store.upsert([good, KnowledgeChunk(content="bad", embedding=bad)])
    with pytest.raises(ValueTooLargeError, match="chunk 1"):
        store.upsert([good, KnowledgeChunk(content="x" * 2001, embedding=[1, 0, 0, 0])])
    with pytest.raises(ValueError, match="cannot filter on 'title'"):
        store.search([1, 0, 0, 0], 3, {"title": "x"})
    with pytest.raises(ValueError, match="k must be 1 to 1000"):
        store.search([1, 0, 0, 0], 0)
    assert fake_session.executed == []


def test_audit_and_ledger_refuse_before_writing(client: CassandraClient, fake_session: FakeSession) -> None:
    audit = AuditTrail(client)
    with pytest.raises(NotJSONError, match="audit detail"):
        audit.record(dag_id="d", kind="tool_call", name="t", detail={"x": {1, 2}})
    with pytest.raises(ValueTooLargeError):
        audit.record(dag_id="d", kind="tool_call", name="t", detail={"x": "y" * 3000})
    with pytest.raises(ValueError, match="'sneeze' is not a valid AuditKind"):
        audit.record(dag_id="d", kind="sneeze", name="t")
    with pytest.raises(ValueError, match="limit must be 1 to 5000"):
        audit.read("d", date(2026, 1, 1), limit=0)
    ledger = EventLedger(client)
    with pytest.raises(ValueError, match="event_id must be 1 to 512 characters"):
        ledger.claim("", topic="t")
    with pytest.raises(TypeError, match="topic must be a str"):
        ledger.claim("e1", topic=None)  # type: ignore[arg-type]
    assert fake_session.executed == []
