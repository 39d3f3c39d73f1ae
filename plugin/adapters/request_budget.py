"""A per-account budget of helpdesk API calls, shared through Redis by every process that calls the account.

The helpdesk limits calls per client (Chatwoot: 3,000 a minute by default, Rack::Attack's fixed window).
Staying under it costs less than meeting it: a 429 stalls every write for a while. The budget is a sliding
window: at most ``per_minute`` calls in any 60 seconds, so every minute the helpdesk counts (however its window
is aligned) stays within it, and at most twice the even pace (``2 * per_minute / 60``) in any second, so a
backlog is caught up quickly without a flood. A second the writers left unused is not lost (a budget counted
per second lost it for good, and a load at the even pace fell behind for the rest of the run). A caller over
the budget waits until the oldest call that holds it back leaves the window. A 429 makes every caller wait:
as long as its ``Retry-After`` says, or, since Chatwoot's throttle answers without one, a backoff that doubles
with each 429 in a row (1 s up to 30 s).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

from redis import Redis

from plugin.adapters import metrics, redis_keys

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
STREAK_MEMORY_SECONDS = 120  # a 429 this long after the last one starts the backoff again
WINDOW_MS = 60_000
SECOND_MS = 1_000
BURST_PACES = 2  # in any second, at most this many times the even pace

# Take a place in the account's call log (times in ms), or say how long to wait before trying again:
# until the oldest call of the minute leaves it, or the oldest of the last second when that is full.
_TAKE_PLACE = """
local now = tonumber(ARGV[1])
local window, limit, second, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
if redis.call('ZCOUNT', KEYS[1], '(' .. (now - second), '+inf') >= burst then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - second), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return math.max(1, tonumber(oldest[2]) + second - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[6])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class RequestBudget:
    """Paces one account's calls (implements :class:`connectors.outbound.Pace`)."""

    def __init__(
        self,
        redis: Redis,
        account_id: int,
        per_minute: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.account_id = account_id
        self.per_minute = per_minute
        self.burst = max(1, BURST_PACES * per_minute // 60)
        self.sleep = sleep
        self.clock = clock

    def before_request(self) -> None:
        """Wait until the helpdesk's requested pause is over and a call fits in the last minute's and the last
        second's budget, then take its place."""
        paused = redis_keys.rate_limited_until(self.account_id)
        log = redis_keys.request_log(self.account_id)
        while True:
            wait_ms = int(self.redis.pttl(paused))
            if wait_ms > 0:
                self.sleep(wait_ms / 1000)
                continue
            now_ms = self.clock() * 1000
            place = f"{now_ms:.3f}:{os.urandom(4).hex()}"
            limits = (WINDOW_MS, self.per_minute, SECOND_MS, self.burst)
            wait_ms = int(self.redis.eval(_TAKE_PLACE, 1, log, now_ms, *limits, place))
            if wait_ms <= 0:
                return
            # Spread a little, so the waiters do not all try again at the same instant.
            self.sleep(wait_ms / 1000 + random.uniform(0, 0.01))

    def rate_limited(self, retry_after: float | None) -> float:
        """Record a 429: every caller of the account waits ``retry_after`` seconds, or a doubling backoff."""
        metrics.incr(self.redis, "sla_helpdesk_rate_limited_total")
        if retry_after is not None and retry_after > 0:
            wait = float(retry_after)
        else:
            streak_key = redis_keys.rate_limited_streak(self.account_id)
            pipeline = self.redis.pipeline(transaction=False)
            pipeline.incr(streak_key)
            pipeline.expire(streak_key, STREAK_MEMORY_SECONDS)
            streak = int(pipeline.execute()[0])
            wait = min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (streak - 1))
        paused = redis_keys.rate_limited_until(self.account_id)
        # A longer wait already asked for stays: only a later end replaces it.
        if int(self.redis.pttl(paused)) < wait * 1000:
            self.redis.set(paused, 1, px=max(1, int(wait * 1000)))
        return wait
