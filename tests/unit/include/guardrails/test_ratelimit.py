"""RedisTokenBucket's waiting loop and argument checks, with the Redis script replaced.

The bucket arithmetic itself runs in Redis: tests/integration/test_guardrail_rate_limit.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from include.guardrails import GuardrailViolation, RedisTokenBucket


class ScriptedRedis:
    """Stands in for redis.Redis at the boundary: the script answers from a list."""

    def __init__(self, answers: Iterable[list[Any]]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []
        self.source = ""

    def register_script(self, source: str) -> Any:
        self.source = source

        def run(keys: list[str], args: list[Any]) -> list[Any]:
            self.calls.append({"keys": keys, "args": args})
            return self.answers.pop(0)

        return run


def test_granted_at_once() -> None:
    client = ScriptedRedis([[1, b"0.000000"]])
    bucket = RedisTokenBucket(client, key="llm:a", rate_per_s=2.0, capacity=5)  # type: ignore[arg-type]
    assert bucket.acquire() == pytest.approx(0.0, abs=0.05)
    assert client.calls == [{"keys": ["agentflow:ratelimit:llm:a"], "args": ["2.0", 5, 1, 3500]}]
    assert "redis.call('TIME')" in client.source


def test_waits_what_the_bucket_says_then_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("include.guardrails._ratelimit.time.sleep", sleeps.append)
    client = ScriptedRedis([[0, b"0.020000"], [0, "0.010000"], [1, b"0.000000"]])
    bucket = RedisTokenBucket(client, key="k", rate_per_s=50, capacity=1)  # type: ignore[arg-type]
    bucket.acquire(timeout_s=5)
    assert len(client.calls) == 3
    # the announced wait, plus up to 10% jitter
    assert 0.02 <= sleeps[0] <= 0.022
    assert 0.01 <= sleeps[1] <= 0.011
    assert len(sleeps) == 2


def test_gives_up_at_once_when_the_wait_passes_the_deadline() -> None:
    client = ScriptedRedis([[0, b"12.500000"]])
    bucket = RedisTokenBucket(client, key="llm:a", rate_per_s=0.08, capacity=1)  # type: ignore[arg-type]
    with pytest.raises(GuardrailViolation, match=r"rate limit 'llm:a'.*not available within 1 s") as info:
        bucket.acquire(timeout_s=1.0)
    assert len(client.calls) == 1
    assert info.value.hit.rule == "rate_limit"
    assert info.value.hit.detail["next_in_s"] == 12.5


def test_try_acquire_reports_the_wait() -> None:
    client = ScriptedRedis([[0, "0.250000"], [1, "0.000000"]])
    bucket = RedisTokenBucket(client, key="k", rate_per_s=4, capacity=2)  # type: ignore[arg-type]
    assert bucket.try_acquire(2) == 0.25
    assert bucket.try_acquire(2) == 0.0
    assert client.calls[0]["args"][2] == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"key": ""}, ValueError, "key must be a non-empty str"),
        ({"rate_per_s": 0}, ValueError, "rate_per_s must be a positive"),
        ({"rate_per_s": float("inf")}, ValueError, "rate_per_s must be a positive"),
        ({"rate_per_s": "10"}, TypeError, "rate_per_s must be a number"),
        ({"capacity": 0}, ValueError, "capacity must be at least 1"),
        ({"capacity": 2.5}, TypeError, "capacity must be an int"),
    ],
)
def test_bad_construction(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    args = {"key": "k", "rate_per_s": 1.0, "capacity": 1, **kwargs}
    with pytest.raises(error, match=message):
        RedisTokenBucket(ScriptedRedis([]), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"tokens": 0}, ValueError, "tokens must be between 1 and the capacity 3"),
        ({"tokens": 4}, ValueError, "tokens must be between 1 and the capacity 3"),
        ({"tokens": True}, TypeError, "tokens must be an int"),
        ({"timeout_s": -1}, ValueError, "timeout_s must be a finite number >= 0"),
        ({"timeout_s": "1"}, TypeError, "timeout_s must be a number"),
    ],
)
def test_bad_acquire(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    client = ScriptedRedis([])
    bucket = RedisTokenBucket(client, key="k", rate_per_s=1.0, capacity=3)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        bucket.acquire(**kwargs)
    assert client.calls == []
