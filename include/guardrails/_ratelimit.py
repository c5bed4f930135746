"""A token bucket in Redis, shared by every worker that calls the same model connection.

One Lua script (``redis.register_script``: EVALSHA, reloaded on NOSCRIPT) refills the bucket
from the Redis server's own clock (``TIME``), takes the tokens if there are enough, and
otherwise says how long until there will be. Redis runs a script atomically, so concurrent
workers on any number of machines never take more than ``capacity + rate * elapsed``
tokens. The key expires once the bucket would be full again, so idle buckets leave nothing
behind.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import TYPE_CHECKING

from include.guardrails._errors import GuardrailHit, GuardrailViolation

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "agentflow:ratelimit:"

# KEYS[1]: the bucket hash. ARGV: rate (tokens/s), capacity, tokens wanted, TTL (ms).
# Returns {1, "0"} when granted, else {0, seconds until enough tokens}.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(stored[1])
local last = tonumber(stored[2])
if tokens == nil or last == nil then
  tokens = capacity
  last = now
end
if now > last then
  tokens = math.min(capacity, tokens + (now - last) * rate)
end
local granted = 0
local wait = 0
if tokens >= wanted then
  tokens = tokens - wanted
  granted = 1
else
  wait = (wanted - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {granted, string.format('%.6f', wait)}
"""


class RedisTokenBucket:
    """A token bucket shared through Redis: ``capacity`` at once, then ``rate_per_s`` sustained.

    :param client: any ``redis.Redis`` (the redis provider's ``RedisHook(conn_id).get_conn()``).
    :param key: the bucket's name, e.g. ``llm:agentflow_llm``; stored under ``prefix + key``.
    :param rate_per_s: tokens added per second (``requests_per_minute / 60``).
    :param capacity: the most tokens the bucket holds (the burst).
    :param prefix: the Redis key prefix, so buckets do not collide with other data.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate_per_s: float,
        capacity: int,
        *,
        prefix: str = KEY_PREFIX,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int | float):
            raise TypeError(f"rate_per_s must be a number, not {type(rate_per_s).__name__}")
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s must be a positive finite number, got {rate_per_s!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.client = client
        self.key = key
        self.redis_key = prefix + key
        self.rate_per_s = float(rate_per_s)
        self.capacity = capacity
        #: how long an untouched bucket lives: until it would be full again, plus a second.
        self.ttl_ms = math.ceil(capacity / self.rate_per_s * 1000) + 1000
        self._take = client.register_script(_TAKE)

    def try_acquire(self, tokens: int = 1) -> float:
        """Take ``tokens`` now if the bucket has them.

        :param tokens: how many tokens (requests) to take.
        :return: ``0.0`` when taken, else the seconds until the bucket will have them.
        :raises redis.RedisError: Redis could not be reached or refused the script.
        """
        self._check_tokens(tokens)
        granted, wait = self._take(
            keys=[self.redis_key], args=[repr(self.rate_per_s), self.capacity, tokens, self.ttl_ms]
        )
        if int(granted) == 1:
            return 0.0
        return float(wait.decode() if isinstance(wait, bytes) else wait)

    def acquire(self, tokens: int = 1, timeout_s: float = 30.0) -> float:
        """Wait (at most ``timeout_s``) until ``tokens`` can be taken, and take them.

        Gives up at once when the wait the bucket announces would pass the deadline.

        :param tokens: how many tokens (requests) to take; at most ``capacity``.
        :param timeout_s: the longest wait, in seconds; ``0`` tries once.
        :return: the seconds spent waiting.
        :raises GuardrailViolation: rule ``rate_limit`` when the tokens cannot be had in time.
        :raises redis.RedisError: Redis could not be reached or refused the script.
        """
        self._check_tokens(tokens)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise TypeError(f"timeout_s must be a number, not {type(timeout_s).__name__}")
        if not (timeout_s >= 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a finite number >= 0, got {timeout_s!r}")
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            wait = self.try_acquire(tokens)
            now = time.monotonic()
            if wait == 0.0:
                waited = now - start
                if waited > 0.05:
                    log.info("rate limit %s: waited %.2f s for %d token(s)", self.key, waited, tokens)
                return waited
            if now + wait > deadline:
                hit = GuardrailHit(
                    rule="rate_limit",
                    action="blocked",
                    detail={
                        "key": self.key,
                        "tokens": tokens,
                        "rate_per_s": self.rate_per_s,
                        "capacity": self.capacity,
                        "timeout_s": timeout_s,
                        "waited_s": round(now - start, 3),
                        "next_in_s": round(wait, 3),
                    },
                )
                raise GuardrailViolation(
                    hit,
                    f"rate limit {self.key!r} ({self.rate_per_s:g}/s, burst {self.capacity}): "
                    f"{tokens} token(s) not available within {timeout_s:g} s (next in {wait:.2f} s)",
                )
            # a little jitter, so workers woken together do not all retry at the same instant
            time.sleep(min(wait * (1.0 + 0.1 * random.random()), deadline - now))

    def _check_tokens(self, tokens: int) -> None:
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise TypeError(f"tokens must be an int, not {type(tokens).__name__}")
        if not 1 <= tokens <= self.capacity:
            raise ValueError(f"tokens must be between 1 and the capacity {self.capacity}, got {tokens}")
