"""The deadline sweeper (plugin.jobs.sweeper) on a real Redis and SQLite / PostgreSQL: what one sweep queues,
and how a new leader rebuilds the deadline index from SQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue, SimpleWorker

from plugin.adapters import deadlines, redis_keys
from plugin.adapters import streams as ingest
from plugin.jobs import sweeper as sweeper_module
from plugin.jobs.sweeper import Sweeper

RULES = {
    "policies": {"quick": {"name": "Quick", "first_response": "1h", "resolution": "24h"}},
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "quick"}],
}


@pytest.fixture
def runtime(runtime_factory):
    return runtime_factory(RULES)


def store_conversations(runtime, fixture_payload, numbers: range) -> None:
    """Conversations created a minute ago, folded by a real RQ worker (each gets a running clock)."""
    now = int(datetime.now(UTC).timestamp())
    for number in numbers:
        body = fixture_payload("conversation_created")
        body.update(id=number, created_at=now - 60, updated_at=now - 60)
        ingest.submit(runtime.redis, "chatwoot", json.dumps(body).encode(), received_at=datetime.now(UTC))
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis)], connection=runtime.redis).work(burst=True)


def test_one_sweep_ticks_every_due_conversation_once_and_leaves_the_others_indexed(runtime):
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    due = [((1, number), now - timedelta(seconds=number % 7)) for number in range(1, 1201)]
    later = [((1, 5000), now + timedelta(seconds=1))]
    sweeper = Sweeper(runtime, lambda: now)
    deadlines.schedule(runtime.redis, due + later)

    assert sweeper.step() == 1200

    ticked = [fields[b"tick"].decode() for _, fields in runtime.redis.xrange(redis_keys.EVENT_STREAM)]
    assert sorted(ticked) == sorted(deadlines.member(*key) for key, _ in due)
    assert Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis).count == 1  # one drain for the whole sweep
    assert runtime.redis.zrange(redis_keys.DEADLINES, 0, -1) == [deadlines.member(1, 5000).encode()]
    assert sweeper.step() == 0  # popped once: the next sweep finds nothing more due


def test_a_new_leader_rebuilds_the_whole_index_from_sql_page_by_page(runtime, fixture_payload, monkeypatch):
    store_conversations(runtime, fixture_payload, range(101, 108))
    indexed = dict(runtime.redis.zrange(redis_keys.DEADLINES, 0, -1, withscores=True))
    assert len(indexed) == 7
    runtime.redis.delete(redis_keys.DEADLINES)  # as after a Redis restart without its data
    monkeypatch.setattr(sweeper_module, "REBUILD_PAGE", 3)  # 7 checks: pages of 3, 3 and 1

    assert Sweeper(runtime, lambda: datetime.now(UTC)).rebuild() == 7

    assert dict(runtime.redis.zrange(redis_keys.DEADLINES, 0, -1, withscores=True)) == indexed


def test_scheduling_keeps_the_last_check_given_for_each_conversation(redis):
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    deadlines.schedule(redis, [((1, 1), now), ((1, 2), now)])

    deadlines.schedule(
        redis, [((1, 1), None), ((1, 3), now), ((1, 3), None), ((1, 2), None), ((1, 2), now + timedelta(1))]
    )

    assert redis.zrange(redis_keys.DEADLINES, 0, -1, withscores=True) == [
        (deadlines.member(1, 2).encode(), (now + timedelta(1)).timestamp())
    ]
