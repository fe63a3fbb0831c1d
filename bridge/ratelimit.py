"""A sliding-window rate limiter shared by every process through Redis.

ActiveCampaign allows 5 requests a second per *account*, however many worker
processes (on however many machines) talk to it. Each process therefore asks
Redis for a slot before each request. The window is a sorted set of the
timestamps of granted slots; one Lua script trims it, counts it and either
grants a slot or answers how long until the oldest slot leaves the window, so
checking and taking a slot is atomic. The clock is Redis ``TIME``, so machines
whose clocks disagree still agree on the window.

The effective window is ``per + margin``: a request granted a slot is not yet at
the server, and network jitter could otherwise squeeze ``rate + 1`` requests into
one server-side second.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import redis as redis_lib

# KEYS[1] window (sorted set of grant times, µs), KEYS[2] pause-until (µs)
# ARGV[1] rate, ARGV[2] window µs, ARGV[3] unique member suffix
# Returns 0 when a slot was granted, otherwise the µs to wait before asking again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return paused - now
end
local rate = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < rate then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""

# KEYS[1] pause-until (µs); ARGV[1] pause length µs. Never shortens an existing pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untilp = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilp > current then
  local ttl = math.ceil(tonumber(ARGV[1]) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%d', untilp), 'PX', ttl)
end
return untilp - now
"""


class RateLimitTimeout(Exception):
    """No slot became free within the caller's timeout."""


def activecampaign_limiter_key(api_url: str) -> str:
    """The Redis key of one ActiveCampaign account's window (the key is never in it)."""
    digest = hashlib.sha256(api_url.rstrip("/").lower().encode()).hexdigest()
    return f"ratelimit:ac:{digest}"


class RedisRateLimiter:
    """At most ``rate`` grants in any ``per + margin`` seconds, across all processes."""

    def __init__(
        self,
        redis: redis_lib.Redis,
        key: str,
        rate: int = 5,
        per: float = 1.0,
        margin: float = 0.1,
    ) -> None:
        if rate <= 0 or per <= 0 or margin < 0:
            raise ValueError("rate and per must be positive, margin not negative")
        self.redis = redis
        self.key = key
        self.pause_key = f"{key}:paused"
        self.rate = rate
        self.window_us = int((per + margin) * 1_000_000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._pause = redis.register_script(_PAUSE)

    def try_acquire(self) -> float:
        """Take a slot if one is free: 0.0, else the seconds until one may be."""
        wait_us = int(
            self._acquire(
                keys=[self.key, self.pause_key],
                args=[self.rate, self.window_us, secrets.token_hex(8)],
            )
        )
        return wait_us / 1_000_000

    def acquire(self, timeout: float | None = None) -> None:
        """Block until a slot is granted; raise ``RateLimitTimeout`` after ``timeout`` seconds.

        Sleeps exactly until the oldest grant leaves the window (or the pause
        ends) rather than polling, so waiting workers cost Redis almost nothing.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or wait > remaining:
                    raise RateLimitTimeout(f"no rate-limit slot free within {timeout:.1f}s")
            time.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Make every process wait ``seconds`` before its next grant (a 429's ``Retry-After``)."""
        if seconds > 0:
            self._pause(keys=[self.pause_key], args=[int(seconds * 1_000_000)])

    def reset(self) -> None:
        """Forget all grants and pauses (tests, and an operator's escape hatch)."""
        self.redis.delete(self.key, self.pause_key)
