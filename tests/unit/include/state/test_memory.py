"""ConversationMemory's layout logic: buckets, the read walk, token budgets (fake driver session)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from pydantic_ai.messages import (
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    UserPromptPart,
)

from include.state import ConversationMemory
from include.state.session import CassandraClient
from tests.unit.include.state.conftest import FakeSession

DAY = 86_400


AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _turn(text: str) -> list[Any]:
    return [
        ModelRequest(parts=[UserPromptPart(text, timestamp=AT)]),
        ModelResponse(parts=[TextPart(f"re: {text}")], timestamp=AT),
    ]


def test_buckets_cover_the_ttl_horizon_newest_first(client: CassandraClient) -> None:
    memory = ConversationMemory(client, ttl_s=30 * DAY, bucket_s=7 * DAY, clock=lambda: 100 * DAY)
    buckets = memory.buckets_to_read(100 * DAY)
    assert buckets[0] == memory.bucket_of(100 * DAY) + 1  # one ahead, for clock skew
    assert buckets[-1] == memory.bucket_of(70 * DAY)
    assert buckets == sorted(buckets, reverse=True)
    assert len(buckets) <= 30 // 7 + 3


def test_append_writes_ttl_and_bucket(client: CassandraClient, fake_session: FakeSession) -> None:
    memory = ConversationMemory(client, ttl_s=3600, bucket_s=DAY, clock=lambda: 10.5 * DAY)
    turn = memory.append("s1", _turn("hi"), run_id="r1", tokens=7)
    values = fake_session.executed[0].values
    assert values[0:2] == ("s1", 10)
    assert values[3:5] == ("r1", None)  # no turn_key: nothing else is read or deleted
    assert ModelMessagesTypeAdapter.validate_json(values[5]) == _turn("hi")
    assert values[6:] == (7, 3600)
    assert turn.messages == _turn("hi")
    assert len(fake_session.executed) == 1


def test_reads_stop_at_last_turns_and_token_budget(
    client: CassandraClient, fake_session: FakeSession
) -> None:
    memory = ConversationMemory(client, ttl_s=3 * DAY, bucket_s=DAY, clock=lambda: 10.5 * DAY)
    stored = {  # bucket -> rows newest first
        10: [("t4", 10), ("t3", 10)],
        9: [("t2", 10), ("t1", 10)],
    }

    def rows(statement: Any) -> list[Any]:
        _, bucket, limit = statement.values
        return [
            SimpleNamespace(
                turn_id=__import__("uuid").uuid1(),
                run_id=None,
                messages=ModelMessagesTypeAdapter.dump_json(_turn(text)).decode(),
                tokens=tokens,
            )
            for text, tokens in stored.get(bucket, [])[:limit]
        ]

    fake_session.rows = rows
    assert memory.load("s1", last_turns=3) == _turn("t2") + _turn("t3") + _turn("t4")
    assert memory.load("s1", last_turns=10) == _turn("t1") + _turn("t2") + _turn("t3") + _turn("t4")
    assert memory.load("s1", token_budget=25) == _turn("t3") + _turn("t4")
    assert memory.load("s1", token_budget=5) == []
    # The walk stopped early: the 3-turn read never asked for bucket 8 or older.
    first_read = [s.values[1] for s in fake_session.executed[:3]]
    assert first_read == [11, 10, 9]
