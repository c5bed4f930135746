"""Agent runs: the summary model, transcript truncation and the store contract (embedded here).

``check_agent_runs`` and ``check_transcript_limits`` are the contract shared with Cassandra:
``tests/integration/test_agent_runs.py`` runs the same functions on both backends. Each
takes ``make(**overrides)``, which builds a store (``AgentRunStore`` or
``EmbeddedAgentRunStore``) whose ``max_value_bytes`` is :data:`MAX_VALUE_BYTES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_ai.messages import (
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from include.errors import NotJSONError
from include.state.embedded import EmbeddedAgentRunStore, EmbeddedState, EmbeddedStateSettings
from include.state.runs import TRUNCATION_MARKER, AgentRunStore, AgentRunSummary, truncate_transcript
from include.state.session import CassandraClient

MAX_VALUE_BYTES = 20_000
DAY = date(2026, 3, 4)
MakeStore = Callable[..., Any]


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, second, tzinfo=UTC)


def summary(dag_id: str, run_id: str, finished: datetime, **fields: Any) -> AgentRunSummary:
    values: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": "draft_reply",
        "status": "success",
        "started_at": finished - timedelta(seconds=2),
        "finished_at": finished,
        "latency_ms": 2000,
        "model": "scripted",
        "input_tokens": 120,
        "output_tokens": 45,
        "requests": 2,
        "tool_calls": 1,
        **fields,
    }
    return AgentRunSummary(**values)


def transcript(prompt: str, answer: str) -> list[dict[str, Any]]:
    """A real pydantic-ai exchange (prompt, tool call, tool return, answer) dumped as JSON."""
    when = at(9)
    messages = [
        ModelRequest(parts=[UserPromptPart(prompt, timestamp=when)], instructions="Be brief."),
        ModelResponse(
            parts=[ToolCallPart("search_knowledge", {"query": prompt, "k": 3}, "call-1")],
            model_name="scripted",
            timestamp=when,
        ),
        ModelRequest(parts=[ToolReturnPart("search_knowledge", [{"id": "kb-1"}], "call-1", timestamp=when)]),
        ModelResponse(parts=[TextPart(answer)], model_name="scripted", timestamp=when),
    ]
    return ModelMessagesTypeAdapter.dump_python(messages, mode="json")  # type: ignore[no-any-return]


# -- the contract ----------------------------------------------------------------------


def check_agent_runs(make: MakeStore) -> None:
    """Record, list newest first (day, DAG, limit), get the latest try, runs of a DAG run."""
    store = make()
    a1 = summary("triage", "run-1", at(9, 0, 1), session_id="customer-7")
    b1 = summary("triage", "run-2", at(14, 30), status="awaiting_approval", guardrail_hits=2)
    c1 = summary("ingest", "run-9", at(23, 59, 59), status="failed", error="boom <b>")
    other_day = summary("triage", "run-0", at(0) - timedelta(seconds=1))
    evil = transcript("<script>alert(1)</script> refund?", "Your refund: é ✓ [REDACTED:EMAIL]")
    for item in (a1, b1, c1, other_day):
        store.record(item, evil)

    listed = store.list_runs(DAY)
    assert [(s.dag_id, s.run_id) for s in listed] == [
        ("ingest", "run-9"),
        ("triage", "run-2"),
        ("triage", "run-1"),
    ]
    assert listed[2] == a1  # every field round-trips
    assert listed[1].status == "awaiting_approval"
    assert listed[1].guardrail_hits == 2
    assert listed[0].error == "boom <b>"
    assert [s.run_id for s in store.list_runs(DAY, dag_id="triage")] == ["run-2", "run-1"]
    assert [s.run_id for s in store.list_runs(DAY, limit=2)] == ["run-9", "run-2"]
    assert [s.run_id for s in store.list_runs(DAY, dag_id="triage", limit=1)] == ["run-2"]
    assert [s.run_id for s in store.list_runs(DAY - timedelta(days=1))] == ["run-0"]
    assert store.list_runs(DAY, dag_id="nobody") == []
    assert store.list_runs(DAY + timedelta(days=1)) == []

    found = store.get("triage", "run-1", "draft_reply")
    assert found is not None
    got_summary, got_transcript = found
    assert got_summary == a1
    assert got_transcript == evil  # exact JSON round trip, markup and all
    assert ModelMessagesTypeAdapter.validate_python(got_transcript)[0].parts[0].content.startswith("<script>")
    assert store.get("triage", "run-1", "draft_reply", map_index=3) is None
    assert store.get("triage", "run-404", "draft_reply") is None
    assert store.get("nobody", "run-1", "draft_reply") is None

    # A retry: the latest try wins in get and runs_of; a mapped task is its own entry.
    retry = summary("triage", "run-1", at(9, 5), try_number=2, status="failed", error="limit")
    store.record(retry, transcript("again", "no"))
    mapped = summary("triage", "run-1", at(9, 6), map_index=4, task_id="classify")
    store.record(mapped, [])
    latest = store.get("triage", "run-1", "draft_reply")
    assert latest is not None
    assert latest[0].try_number == 2
    assert latest[1][-1]["parts"][0]["content"] == "no"
    mapped_found = store.get("triage", "run-1", "classify", map_index=4)
    assert mapped_found is not None
    assert mapped_found[1] == []
    assert sorted((s.task_id, s.map_index, s.try_number) for s in store.runs_of("triage", "run-1")) == [
        ("classify", 4, 1),
        ("draft_reply", -1, 2),
    ]
    assert store.runs_of("triage", "run-404") == []

    with pytest.raises(ValueError, match="limit"):
        store.list_runs(DAY, limit=0)
    with pytest.raises(ValueError, match="dag_id"):
        store.list_runs(DAY, dag_id="")
    with pytest.raises(TypeError, match="AgentRunSummary"):
        store.record({"dag_id": "x"}, [])
    with pytest.raises(TypeError, match="list of dicts"):
        store.record(a1, "not a list")
    with pytest.raises(NotJSONError):
        store.record(summary("triage", "run-bad", at(10)), [{"x": object()}])
    assert store.get("triage", "run-bad", "draft_reply") is None  # nothing of it was written


def check_transcript_limits(make: MakeStore) -> None:
    """A transcript over max_value_bytes is stored truncated with a marker; the summary is whole."""
    store = make()
    messages: list[dict[str, Any]] = []
    for i in range(60):
        messages += transcript(f"question {i} " + "x" * 300, f"answer {i}")
    original_bytes = len(json.dumps(messages, separators=(",", ":"), ensure_ascii=False).encode())
    assert original_bytes > MAX_VALUE_BYTES
    big = summary("long", "run-long", at(12))
    store.record(big, messages)
    found = store.get("long", "run-long", "draft_reply")
    assert found is not None
    stored_summary, stored = found
    assert stored_summary == big
    assert len(json.dumps(stored, separators=(",", ":"), ensure_ascii=False).encode()) <= MAX_VALUE_BYTES
    assert stored[0] == messages[0]  # the prompt
    assert stored[1]["kind"] == TRUNCATION_MARKER
    assert stored[1]["original_bytes"] == original_bytes
    kept_tail = stored[2:]
    assert kept_tail == messages[len(messages) - len(kept_tail) :]  # the latest messages, in order
    assert stored[1]["omitted_messages"] == len(messages) - 1 - len(kept_tail)
    assert kept_tail, "some of the latest messages fit"


# -- the model and the truncation ------------------------------------------------------


def test_summary_validates_its_fields() -> None:
    ok = summary("d", "r", at(10))
    assert ok.day == DAY
    assert ok.total_tokens == 165
    with pytest.raises(ValidationError, match="timezone-aware"):
        summary("d", "r", datetime(2026, 3, 4, 10))
    with pytest.raises(ValidationError, match="before started_at"):
        summary("d", "r", at(10), started_at=at(11))
    with pytest.raises(ValidationError, match="status"):
        summary("d", "r", at(10), status="pending")
    with pytest.raises(ValidationError, match="input_tokens"):
        summary("d", "r", at(10), input_tokens=-1)
    with pytest.raises(ValidationError, match="dag_id"):
        summary("", "r", at(10))
    with pytest.raises(ValidationError):
        ok.model_copy(update={}).__setattr__("status", "failed")  # frozen


def test_summary_is_stored_in_utc() -> None:
    from zoneinfo import ZoneInfo

    paris = datetime(2026, 3, 5, 0, 30, tzinfo=ZoneInfo("Europe/Paris"))  # 23:30 UTC the day before
    item = summary("d", "r", paris)
    assert item.finished_at.tzinfo == UTC
    assert item.day == DAY


def test_truncation_keeps_small_transcripts_whole() -> None:
    messages = transcript("hi", "hello")
    assert truncate_transcript(messages, max_bytes=10_000) == (messages, False)


def test_truncation_drops_the_prompt_when_it_alone_is_too_large() -> None:
    messages = [{"kind": "request", "text": "p" * 5000}, {"kind": "response", "text": "ok"}]
    cut, truncated = truncate_transcript(messages, max_bytes=300)
    assert truncated
    assert cut[0]["kind"] == TRUNCATION_MARKER
    assert cut[0]["omitted_messages"] == 1
    assert cut[1:] == [{"kind": "response", "text": "ok"}]


# -- the stores --------------------------------------------------------------------------


@pytest.fixture
def make_embedded(tmp_path: Path) -> MakeStore:
    state = EmbeddedState(EmbeddedStateSettings(path=tmp_path / "state.db", max_value_bytes=MAX_VALUE_BYTES))
    return lambda **overrides: EmbeddedAgentRunStore(state, **overrides)


def test_contract_agent_runs_embedded(make_embedded: MakeStore) -> None:
    check_agent_runs(make_embedded)


def test_contract_transcript_limits_embedded(make_embedded: MakeStore) -> None:
    check_transcript_limits(make_embedded)


def test_embedded_reads_before_any_write_find_nothing(tmp_path: Path) -> None:
    state = EmbeddedState(EmbeddedStateSettings(path=tmp_path / "state.db"))
    store = state.agent_runs()
    assert store.list_runs(DAY) == []
    assert store.get("d", "r", "t") is None
    assert store.runs_of("d", "r") == []


def test_embedded_runs_expire_after_ttl(tmp_path: Path) -> None:
    now = [1_000_000.0]
    state = EmbeddedState(EmbeddedStateSettings(path=tmp_path / "state.db"))
    store = EmbeddedAgentRunStore(state, ttl_s=60, clock=lambda: now[0])
    store.record(summary("d", "r", at(8)), [])
    assert [s.run_id for s in store.list_runs(DAY)] == ["r"]
    now[0] += 61
    assert store.list_runs(DAY) == []
    assert store.get("d", "r", "draft_reply") is None


def test_cassandra_store_writes_both_tables_with_the_ttl(client: CassandraClient, fake_session: Any) -> None:
    store = AgentRunStore(client, ttl_s=3600)
    item = summary("d", "r", at(17, 45))
    store.record(item, transcript("q", "a"))
    statements = [(s.query_string, s.values) for s in fake_session.executed]
    assert len(statements) == 2
    transcript_cql, transcript_values = statements[0]  # the transcript first: a listed run has one
    assert "INSERT INTO agentflow.agent_run_transcripts" in transcript_cql
    assert "USING TTL ?" in transcript_cql
    assert transcript_values[-1] == 3600
    listing_cql, listing_values = statements[1]
    assert "INSERT INTO agentflow.agent_runs_by_hour" in listing_cql
    assert list(listing_values[:3]) == [DAY, 17, item.finished_at]
    assert listing_values[-1] == 3600


def test_cassandra_store_lists_from_the_last_hour_back_until_the_limit(
    client: CassandraClient, fake_session: Any
) -> None:
    rows = {
        20: [summary("d", "r20", at(20))],
        5: [summary("d", "r5b", at(5, 30)), summary("d", "r5a", at(5, 10))],
        1: [summary("d", "r1", at(1))],
    }

    class Row:
        def __init__(self, item: AgentRunSummary) -> None:
            self.summary = item.model_dump_json()

    def answer(statement: Any) -> list[Any]:
        _, hour, *_rest, limit = statement.values
        return [Row(item) for item in rows.get(hour, [])][:limit]

    fake_session.rows = answer
    store = AgentRunStore(client)
    assert [s.run_id for s in store.list_runs(DAY, limit=3)] == ["r20", "r5b", "r5a"]
    hours = [s.values[1] for s in fake_session.executed]
    assert hours == list(range(23, 4, -1))  # stopped once the limit was reached
    assert fake_session.executed[-1].values[-1] == 2  # asked only for what was still missing
    assert "ALLOW FILTERING" not in fake_session.executed[0].query_string
    fake_session.executed.clear()
    store.list_runs(DAY, dag_id="d", limit=10)
    assert "AND dag_id = ?" in fake_session.executed[0].query_string
    assert "ALLOW FILTERING" in fake_session.executed[0].query_string
    assert len(fake_session.executed) == 24
