"""RedisTokenBucket on the real Redis: shared by processes, bounded waits, keys that expire."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from include.guardrails import GuardrailViolation, RedisTokenBucket

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.integration


def server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def _client(conn: dict[str, Any]) -> redis.Redis:
    import redis

    return redis.Redis(**conn)


def _hammer(
    conn: dict[str, Any], key: str, rate: float, capacity: int, seconds: float, go: Any, out: Any
) -> None:
    """Take tokens as fast as possible for ``seconds``; report (grants, calls)."""
    bucket = RedisTokenBucket(_client(conn), key, rate, capacity)
    go.wait(60)
    grants = calls = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        calls += 1
        if bucket.try_acquire() == 0.0:
            grants += 1
    out.put((grants, calls))


def _take_blocking(
    conn: dict[str, Any], key: str, rate: float, capacity: int, n: int, go: Any, out: Any
) -> None:
    """Take ``n`` tokens one by one, waiting for each; report how many were taken."""
    bucket = RedisTokenBucket(_client(conn), key, rate, capacity)
    go.wait(60)
    taken = 0
    for _ in range(n):
        bucket.acquire(timeout_s=30)
        taken += 1
    out.put((taken, 0))


@pytest.fixture
def key(redis_client: redis.Redis) -> Iterator[str]:
    name = f"test:{uuid.uuid4().hex}"
    yield name
    redis_client.delete("agentflow:ratelimit:" + name)


def run_two(redis_client: redis.Redis, target: Any, *args: Any) -> tuple[int, int, float]:
    """Run ``target`` in two processes sharing one bucket; (grants, calls, server seconds elapsed)."""
    conn = {
        k: v for k, v in redis_client.connection_pool.connection_kwargs.items() if k in ("host", "port", "db")
    }
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(conn, *args, go, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # let both import and connect before the start signal (not asserted)
    start = server_time(redis_client)
    go.set()
    results = [out.get(timeout=120) for _ in procs]
    end = server_time(redis_client)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    return sum(r[0] for r in results), sum(r[1] for r in results), end - start


def test_two_processes_hammering_one_bucket_never_exceed_it(redis_client: redis.Redis, key: str) -> None:
    rate, capacity = 20.0, 5
    grants, calls, elapsed = run_two(redis_client, _hammer, key, rate, capacity, 1.5)
    assert calls > grants  # they really competed and were refused
    assert capacity <= grants <= capacity + rate * elapsed + 1e-6


def test_two_processes_waiting_for_tokens_stay_within_the_rate(redis_client: redis.Redis, key: str) -> None:
    rate, capacity, each = 20.0, 5, 12
    taken, _, elapsed = run_two(redis_client, _take_blocking, key, rate, capacity, each)
    assert taken == 2 * each
    assert taken <= capacity + rate * elapsed + 1e-6


def test_timeout_raises_a_rate_limit_violation(redis_client: redis.Redis, key: str) -> None:
    bucket = RedisTokenBucket(redis_client, key, rate_per_s=0.1, capacity=2)
    bucket.acquire(2, timeout_s=0)
    with pytest.raises(GuardrailViolation, match="guardrail 'rate_limit' blocked") as info:
        bucket.acquire(timeout_s=0.5)
    assert info.value.hit.rule == "rate_limit"
    assert 0 < info.value.hit.detail["next_in_s"] <= 10.0


def test_an_empty_bucket_refills_at_the_rate(redis_client: redis.Redis, key: str) -> None:
    bucket = RedisTokenBucket(redis_client, key, rate_per_s=10.0, capacity=1)
    assert bucket.try_acquire() == 0.0
    wait = bucket.try_acquire()
    assert 0 < wait <= 0.1
    assert bucket.acquire(timeout_s=5) > 0


def test_the_key_has_a_ttl_and_expires(redis_client: redis.Redis, key: str) -> None:
    bucket = RedisTokenBucket(redis_client, key, rate_per_s=1000.0, capacity=1)
    bucket.acquire()
    ttl = redis_client.pttl(bucket.redis_key)
    assert 0 < ttl <= bucket.ttl_ms == 1001
    assert redis_client.hget(bucket.redis_key, "tokens") is not None
    for _ in range(100):  # poll, bounded: the key must go away on its own
        if not redis_client.exists(bucket.redis_key):
            break
        time.sleep(0.1)
    assert not redis_client.exists(bucket.redis_key)
    assert bucket.try_acquire() == 0.0  # an expired bucket is a full one
