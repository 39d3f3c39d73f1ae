"""The write-back's rounds (plugin.jobs.writeback.Writer.deliver_owed) on real Redis and a real database: the
account's owed conversations are written longest-waiting first, a conversation owed again keeps its place,
and a round that finds every slot of the account taken puts its conversations back in their places."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses
from fake_chatwoot import retimed
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry

from plugin.adapters import locks, redis_keys
from plugin.adapters import streams as ingest
from plugin.demo.helpdesk import DemoHelpdesk
from plugin.jobs import writeback

BASE = "http://chatwoot.test"
TOKEN = "secret-token-123"
RULES = {
    "policies": {"quick": {"name": "Quick", "first_response": "1h"}},
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "quick"}],
}
CONVERSATIONS = [101, 102, 103, 104, 105]


@pytest.fixture
def owed(runtime_factory, tmp_path, fixture_payload):
    """An account written one conversation at a time, five new conversations judged, their label write-backs
    owed (the round the drain queued is left waiting: each test runs rounds itself), and its fake helpdesk."""
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps({"accounts": {"1": {"chatwoot_url": BASE, "api_token": TOKEN, "writeback_concurrency": 1}}})
    )
    runtime = runtime_factory(RULES, SLA_ACCOUNTS_FILE=str(accounts))
    opened = datetime.now(UTC) - timedelta(minutes=5)
    for conversation_id in CONVERSATIONS:
        body = retimed(fixture_payload, "conversation_created", opened, id=conversation_id, labels=[])
        ingest.submit(
            runtime.redis,
            "chatwoot",
            body,
            received_at=datetime.now(UTC),
            stream=redis_keys.account_stream(1),
            account_id=1,
        )
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis)], connection=runtime.redis).work(burst=True)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = DemoHelpdesk(api_token=TOKEN)
        for conversation_id in CONVERSATIONS:
            helpdesk.adopt(conversation_id, [])
        helpdesk.register(mock, BASE)
        yield runtime, helpdesk


def labelled_in_order(helpdesk: DemoHelpdesk) -> list[int]:
    """The conversations whose labels were written, in the order of the calls."""
    return [int(path.split("/")[-2]) for method, path, _ in helpdesk.calls if method == "POST"]


def test_the_longest_waiting_conversation_is_written_first_and_one_owed_again_keeps_its_place(owed):
    runtime, helpdesk = owed
    queue = redis_keys.writeback_owed(1)
    runtime.redis.delete(queue)
    for conversation_id in (104, 102, 105, 101, 103):
        writeback.enqueue_writebacks(runtime.redis, [(1, conversation_id)])
    writeback.enqueue_writebacks(runtime.redis, [(1, 104), (1, 102)])  # their labels changed again meanwhile
    assert runtime.redis.zcard(queue) == 5  # one entry per conversation

    done = writeback.Writer(runtime, runtime.helpdesk(1)).deliver_owed(1)

    assert done == 5
    assert labelled_in_order(helpdesk) == [104, 102, 105, 101, 103]
    assert runtime.redis.zcard(queue) == 0


def test_a_round_finding_every_slot_taken_puts_its_conversations_back_in_their_places(owed):
    runtime, helpdesk = owed
    queue = redis_keys.writeback_owed(1)
    waiting = runtime.redis.zrange(queue, 0, -1, withscores=True)
    scheduled = ScheduledJobRegistry(redis_keys.WRITEBACK_QUEUE, connection=runtime.redis)
    runtime.redis.delete(redis_keys.writeback_round_pending(1))  # the drain's round has started elsewhere

    with locks.writeback_exclusive(runtime.redis, 1, 999, "another-round", slots=1, ttl_seconds=60):
        assert writeback.Writer(runtime, runtime.helpdesk(1)).deliver_owed(1) == 0

    assert helpdesk.calls == []
    assert runtime.redis.zrange(queue, 0, -1, withscores=True) == waiting  # nothing lost, nothing reordered
    assert len(scheduled.get_job_ids()) == 1  # a round tries again shortly
    assert writeback.Writer(runtime, runtime.helpdesk(1)).deliver_owed(1) == 5
    assert sorted(labelled_in_order(helpdesk)) == CONVERSATIONS
