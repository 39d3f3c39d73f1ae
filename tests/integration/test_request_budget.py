"""The write-back's budget of helpdesk calls (real Redis): per-second pacing under the helpdesk's limit, a
429 that makes every caller wait (Retry-After when given, a doubling backoff when not, as Chatwoot's
throttle answers), and the client paced by it against the fake Chatwoot."""

from __future__ import annotations

import responses

from connectors.chatwoot.client import ChatwootClient
from plugin.adapters import redis_keys
from plugin.adapters.request_budget import RequestBudget
from plugin.demo.helpdesk import DemoHelpdesk

BASE = "http://chatwoot.test"


class Clock:
    """A clock that only moves when someone sleeps."""

    def __init__(self, start: float = 1_000_000.25):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_calls_over_the_budget_of_a_second_wait_for_the_next_one(redis):
    clock = Clock()
    budget = RequestBudget(redis, 1, per_minute=180, sleep=clock.sleep, clock=clock)  # 3 a second
    for _ in range(3):
        budget.before_request()
    assert clock.slept == []
    budget.before_request()
    assert len(clock.slept) == 1 and 0.75 <= clock.slept[0] <= 0.8  # to the next second, spread a little
    assert int(clock.now) == 1_000_001
    other_process = RequestBudget(redis, 1, per_minute=180, sleep=clock.sleep, clock=clock)
    other_process.before_request()
    other_process.before_request()
    assert len(clock.slept) == 1  # the same budget: 1 + 2 calls in the second
    other_process.before_request()
    assert len(clock.slept) == 2


def test_a_429_makes_every_caller_wait_retry_after_or_a_doubling_backoff(redis):
    clock = Clock()
    budget = RequestBudget(redis, 1, per_minute=3000, sleep=clock.sleep, clock=clock)
    assert budget.rate_limited(None) == 1.0
    assert budget.rate_limited(None) == 2.0  # Chatwoot's throttle said no again, without Retry-After
    assert budget.rate_limited(7) == 7.0  # a proxy's Retry-After is honoured
    assert 6000 < redis.pttl(redis_keys.rate_limited_until(1)) <= 7000
    assert budget.rate_limited(None) == 4.0
    assert redis.pttl(redis_keys.rate_limited_until(1)) > 6000  # a shorter wait does not cut a longer one

    waiting: list[float] = []
    redis.set(redis_keys.rate_limited_until(1), 1, px=1500)

    def sleep(seconds: float) -> None:
        waiting.append(seconds)
        redis.delete(redis_keys.rate_limited_until(1))  # the wait is over

    RequestBudget(redis, 1, per_minute=3000, sleep=sleep, clock=clock).before_request()
    assert len(waiting) == 1 and 1.4 < waiting[0] <= 1.5


def test_the_client_paced_by_the_budget_waits_out_a_429_without_retry_after(redis):
    clock = Clock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        redis.delete(redis_keys.rate_limited_until(1))  # the wait is over

    budget = RequestBudget(redis, 1, per_minute=3000, sleep=sleep, clock=clock)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = DemoHelpdesk(api_token="token")
        fake.adopt(87, ["billing"])
        fake.register(mock, BASE)
        fake.fail_next(1, "429")
        client = ChatwootClient(BASE, 1, "token", pace=budget, sleep=sleep)
        assert client.conversation_labels(87) == ["billing"]
    assert redis.get(redis_keys.rate_limited_streak(1)) == b"1"
    assert clock.slept and clock.slept[0] <= 1.0  # the next call waited for the pause the 429 set
