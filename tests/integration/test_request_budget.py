"""The write-back's budget of helpdesk calls (real Redis): a sliding window under the helpdesk's limit (any 60
seconds within the minute's budget, any second within twice the even pace, a slow stretch caught up later), a
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


def test_calls_over_twice_the_even_pace_of_a_second_wait_for_the_oldest_to_leave_it(redis):
    clock = Clock()
    budget = RequestBudget(redis, 1, per_minute=180, sleep=clock.sleep, clock=clock)  # 3 a second, 6 at most
    for _ in range(6):
        budget.before_request()
    assert clock.slept == []
    budget.before_request()
    assert len(clock.slept) == 1 and 1.0 <= clock.slept[0] <= 1.011  # until the first call is a second old
    other_process = RequestBudget(redis, 1, per_minute=180, sleep=clock.sleep, clock=clock)
    for _ in range(5):
        other_process.before_request()
    assert len(clock.slept) == 1  # the same budget: 1 + 5 calls in the last second
    other_process.before_request()
    assert len(clock.slept) == 2


def test_any_sixty_seconds_stay_within_the_budget_and_a_slow_stretch_is_caught_up_later(redis):
    clock = Clock()
    budget = RequestBudget(redis, 1, per_minute=180, sleep=clock.sleep, clock=clock)
    calls: list[float] = []
    for _ in range(100):  # a slow stretch: a call every second, a third of the pace
        budget.before_request()
        calls.append(clock.now)
        clock.now += 1
    slept_before = len(clock.slept)
    for _ in range(60):  # then a backlog: its calls go at twice the even pace, not one
        budget.before_request()
        calls.append(clock.now)
    caught_up = calls[-1] - calls[-60]
    assert caught_up < 15  # about 10 s at 6 a second; at the even pace (3) it took 20
    assert len(clock.slept) > slept_before  # the burst limit held it back
    for _ in range(300):  # a long backlog: the minute's budget holds
        budget.before_request()
        calls.append(clock.now)
    assert all(calls[index + 180] - calls[index] >= 60 for index in range(len(calls) - 180))
    assert all(calls[index + 6] - calls[index] >= 1 for index in range(len(calls) - 6))


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
