"""The deadline sweeper (plugin.jobs.sweeper) on a real Redis and SQLite / PostgreSQL: what one sweep queues,
how a new leader rebuilds the deadline index from SQL, and the periodic jobs it queues."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from rq import Queue, SimpleWorker

from plugin.adapters import deadlines, redis_keys, rollup_pairs
from plugin.adapters import streams as ingest
from plugin.adapters.store import applied, outbox
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
    """Conversations created two minutes apart, the last a minute ago, folded by a real RQ worker (each gets a
    running clock)."""
    now = int(datetime.now(UTC).timestamp())
    for number in numbers:
        created = now - 60 - 120 * (numbers.stop - 1 - number)
        body = fixture_payload("conversation_created")
        body.update(id=number, created_at=created, updated_at=created)
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


def test_the_minute_refresh_restores_lost_checks_but_not_one_just_due(runtime, fixture_payload):
    store_conversations(runtime, fixture_payload, range(201, 203))
    due = {
        int(name.split(b":")[1]): score
        for name, score in runtime.redis.zrange(redis_keys.DEADLINES, 0, -1, withscores=True)
    }
    assert due[202] - due[201] == 120

    def ticked() -> set[int]:
        entries = runtime.redis.xrange(redis_keys.EVENT_STREAM)
        runtime.redis.delete(redis_keys.EVENT_STREAM)
        return {deadlines.parse_member(fields[b"tick"])[1] for _, fields in entries}

    now = datetime.fromtimestamp(due[201], UTC) + timedelta(seconds=5)
    sweeper = Sweeper(runtime, lambda: now)
    sweeper.step()  # a new leader: the index rebuilt from SQL, then what is due ticked
    assert ticked() == {201}
    runtime.redis.delete(redis_keys.DEADLINES)  # a Redis flush: 202's check is lost (201's tick was never run)

    now = datetime.fromtimestamp(due[202], UTC) + timedelta(seconds=5)
    sweeper._last_run["index"] = now - sweeper_module.INDEX_REFRESH_EVERY  # the minute refresh is due
    sweeper.step()
    assert ticked() == {201}  # 2 minutes overdue in SQL: restored; 202 is due since 5 s only, likely in flight

    now += sweeper_module.INDEX_REFRESH_EVERY
    sweeper.step()
    assert ticked() == {201, 202}  # a minute later 202 is overdue too: restored and ticked


@pytest.mark.parametrize("retention", ["7", "0"])
def test_the_leader_deletes_written_intents_older_than_the_retention_unless_it_is_zero(runtime_factory, retention):
    runtime = runtime_factory(RULES, SLA_DELIVERED_RETENTION_DAYS=retention)
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with runtime.store.engine.begin() as connection:
        for conversation_id, age in ((7, timedelta(days=8)), (8, timedelta(days=6))):
            connection.execute(
                outbox.insert().values(
                    account_id=1,
                    conversation_id=conversation_id,
                    key="labels",
                    payload="{}",
                    state="done",
                    attempts=1,
                    created_at=now - age,
                    updated_at=now - age,
                )
            )

    Sweeper(runtime, lambda: now).step()

    with runtime.store.engine.connect() as connection:
        kept = connection.execute(sa.select(outbox.c.conversation_id)).scalars().all()
    assert sorted(kept) == ([8] if retention == "7" else [7, 8])


def test_the_leader_queues_the_report_pairs_job_which_pairs_the_closed_days(runtime, fixture_payload):
    store_conversations(runtime, fixture_payload, range(301, 304))
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with runtime.store.engine.begin() as connection:  # applied yesterday, changed outside the store
        connection.execute(applied.update().values(applied_at=yesterday + timedelta(hours=9)))
        assert rollup_pairs.reset(connection) == 1
    now = datetime.now(UTC)
    sweeper = Sweeper(runtime, lambda: now)

    sweeper.step()
    sweeper.step()  # within the minute: not queued again
    now += sweeper_module.REPORT_PAIRS_EVERY
    sweeper.step()  # a minute later, still waiting for a worker: not queued twice

    queue = Queue(redis_keys.WRITEBACK_QUEUE, connection=runtime.redis)
    assert queue.job_ids == [redis_keys.REPORT_PAIRS_JOB]
    SimpleWorker([queue], connection=runtime.redis).work(burst=True)
    with runtime.store.engine.connect() as connection:
        paired, stale = rollup_pairs.paired_days(connection, [1], yesterday, yesterday + timedelta(days=1))
        rows = connection.execute(sa.select(sa.func.count()).select_from(rollup_pairs.rollup_pairs)).scalar()
    assert (paired, stale) == ([yesterday], []) and rows > 0
