"""A per-account budget of helpdesk API calls, shared through Redis by every process that calls the account.

The helpdesk limits calls per client (Chatwoot: 3,000 a minute by default, Rack::Attack). Staying under it
costs less than meeting it: a 429 stalls every write for a while. The budget is counted per second (at most
``per_minute / 60`` calls in any second, so any minute stays within ``per_minute``); a caller over it waits
for the next second. A 429 makes every caller wait: as long as its ``Retry-After`` says, or, since
Chatwoot's throttle answers without one, a backoff that doubles with each 429 in a row (1 s up to 30 s).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from redis import Redis

from plugin.adapters import metrics, redis_keys

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
STREAK_MEMORY_SECONDS = 120  # a 429 this long after the last one starts the backoff again


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
        self.per_second = max(1, per_minute // 60)
        self.sleep = sleep
        self.clock = clock

    def before_request(self) -> None:
        """Wait until the helpdesk's requested pause is over and a call fits in the current second."""
        paused = redis_keys.rate_limited_until(self.account_id)
        while True:
            wait_ms = int(self.redis.pttl(paused))
            if wait_ms > 0:
                self.sleep(wait_ms / 1000)
                continue
            now = self.clock()
            second = int(now)
            counter = redis_keys.request_budget(self.account_id, second)
            pipeline = self.redis.pipeline(transaction=False)
            pipeline.incr(counter)
            pipeline.expire(counter, 5)
            taken = int(pipeline.execute()[0])
            if taken <= self.per_second:
                return
            # Over budget in this second: try again in the next one, spread so the waiters do not all retry
            # at its first instant.
            self.sleep(second + 1 - now + random.uniform(0, 0.05))

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
