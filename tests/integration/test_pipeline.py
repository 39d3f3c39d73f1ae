"""The core pipeline end to end on real parts: Redis stream + real RQ worker + SQLite and PostgreSQL.

Webhook bodies (the real Chatwoot fixtures) go in through the same hand-over the web receiver uses; a real
RQ worker drains them; the stored evaluation must equal what ``replay`` computes from the same bodies.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from rq import Queue, SimpleWorker

from connectors import get_connector
from plugin.adapters import deadlines, redis_keys
from plugin.adapters import streams as ingest
from plugin.adapters.rule_files import load_rules
from plugin.cli.replay import replay

TIMELINE = [
    "conversation_created",
    "message_created-incoming",
    "message_created-private_note",
    "message_created-outgoing",
    "conversation_updated-labels",
    "conversation_updated-custom_attributes",
    "conversation_status_changed-resolved",
    "conversation_updated-by_sla_evaluator",
    "conversation_typing_on",
]

RULES = {
    "policies": {
        "standard": {
            "name": "Standard",
            "first_response": "1h",
            "next_response": "2h",
            "resolution": "24h",
            "warn_before": "15m",
            "target": 0.9,
        }
    },
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "standard"}],
}


@pytest.fixture
def runtime(runtime_factory):
    return runtime_factory(RULES)


def run_worker(redis) -> None:
    """A real RQ worker, in burst mode, on the events queue."""
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=redis)], connection=redis).work(burst=True)


def submit(redis, bodies: list[bytes]) -> None:
    for body in bodies:
        ingest.submit(redis, "chatwoot", body, received_at=datetime.now(UTC))


def test_fixture_timeline_through_real_worker_matches_replay(runtime, fixture_payload):
    bodies = [json.dumps(fixture_payload(name)).encode() for name in TIMELINE]
    submit(runtime.redis, bodies)
    assert Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis).count == 1  # one drain job for the whole burst
    run_worker(runtime.redis)

    stored = runtime.store.summary((1, 87))
    rule_set = load_rules(runtime.settings.SLA_RULES_DIR)
    expected = (
        replay([body.decode() for body in bodies], get_connector("chatwoot", {}), rule_set.match, rule_set.content_hash)
        .evaluations[0]
        .to_replay_json()
    )
    assert {key: stored[key] for key in expected} == expected
    assert stored["status"] == "hit"  # resolved 11:00 with the first reply at 09:42:10 (due 10:00)
    assert stored["metrics"]["first_response"]["stopped_at"] == "2026-01-14T09:42:10Z"
    kinds = [entry["kind"] for entry in runtime.store.log_entries((1, 87))]
    assert kinds[0] == "applied" and "hit" in kinds


def test_duplicate_and_shuffled_deliveries_end_in_the_same_state(runtime, fixture_payload):
    bodies = [json.dumps(fixture_payload(name)).encode() for name in TIMELINE]
    shuffled = bodies + bodies[:4]
    random.Random(7).shuffle(shuffled)
    # Two drains, so later events meet a stored state (a late delivery after the worker already ran).
    submit(runtime.redis, shuffled[:6])
    run_worker(runtime.redis)
    submit(runtime.redis, shuffled[6:])
    run_worker(runtime.redis)
    in_order = runtime.store.summary((1, 87))

    runtime.redis.flushall()
    runtime.store.engine.dispose()
    with runtime.store.engine.begin() as connection:
        for table in ("sla_conversations", "sla_events", "sla_applied", "sla_log", "sla_misses", "sla_outbox"):
            connection.exec_driver_sql(f"DELETE FROM {table}")
    submit(runtime.redis, bodies)
    run_worker(runtime.redis)
    once = runtime.store.summary((1, 87))
    for name in ("metrics", "status", "policy", "policy_version"):
        assert once[name] == in_order[name]


def test_unreadable_payload_is_kept_aside_and_does_not_stop_the_queue(runtime, fixture_payload, caplog):
    broken = fixture_payload("message_created-incoming")
    del broken["conversation"]["id"]
    submit(runtime.redis, [json.dumps(broken).encode(), json.dumps(fixture_payload("conversation_created")).encode()])
    ingest.submit(
        runtime.redis,
        "chatwoot",
        b'{"event": "message_created"}',
        received_at=datetime.now(UTC),
        delivery_id="delivery-42",
    )
    run_worker(runtime.redis)
    assert runtime.store.summary((1, 87))["policy"] == "standard"
    assert runtime.redis.xlen(redis_keys.DEAD_LETTERS) == 2
    assert any(getattr(record, "delivery_id", None) == "delivery-42" for record in caplog.records)
    # The log line names the field that is missing, so an operator sees what an unknown version changed.
    assert any("conversation.id" in record.getMessage() for record in caplog.records)


def unknown_version_payload(fixture_payload) -> dict:
    """A conversation webhook of a future Chatwoot: new keys everywhere, keys the plugin does not read gone."""
    payload = fixture_payload("conversation_created")
    for key in ("contact_inbox", "can_reply", "unread_count", "agent_last_seen_at", "timestamp", "messages", "account"):
        payload.pop(key, None)
    payload.update(sla_policy_id=None, applied_sla=None, brand_new_key={"nested": [1, 2]})
    payload["meta"]["sender"]["company_id"] = 5
    return payload


def test_a_payload_of_an_unknown_version_is_processed_when_the_needed_fields_are_there(
    runtime_factory, fixture_payload
):
    runtime = runtime_factory(RULES, CHATWOOT_ACCOUNT_ID="1")
    submit(runtime.redis, [json.dumps(unknown_version_payload(fixture_payload)).encode()])
    run_worker(runtime.redis)
    assert runtime.store.summary((1, 87))["policy"] == "standard"
    assert runtime.redis.xlen(redis_keys.DEAD_LETTERS) == 0


def test_a_payload_lacking_a_needed_field_is_dead_lettered_naming_it(runtime, fixture_payload, caplog):
    # No account in the payload and none configured: nothing can tell whose conversation it is.
    submit(runtime.redis, [json.dumps(unknown_version_payload(fixture_payload)).encode()])
    run_worker(runtime.redis)
    assert runtime.store.summary((1, 87)) is None
    [(_entry, fields)] = runtime.redis.xrange(redis_keys.DEAD_LETTERS)
    assert b"account" in fields[b"error"]
    assert any("account: Missing data" in record.getMessage() for record in caplog.records)


def test_running_clocks_are_indexed_for_the_sweeper(runtime, fixture_payload):
    # Re-timed relative to now: the sweeper works on real time, so a clock must still be running.
    now = int(datetime.now(UTC).timestamp())
    created = fixture_payload("conversation_created")
    created.update(created_at=now - 60, updated_at=now - 60)
    submit(runtime.redis, [json.dumps(created).encode()])
    run_worker(runtime.redis)
    summary = runtime.store.summary((1, 87))
    assert summary["status"] == "on_track"
    scheduled = runtime.redis.zscore(redis_keys.DEADLINES, deadlines.member(1, 87))
    # The next check is the first response's at-risk instant: created + 1h - 15m.
    assert scheduled == now - 60 + 45 * 60


def test_a_conversation_that_cannot_be_evaluated_is_set_aside_and_the_batch_goes_on(runtime, fixture_payload):
    poisoned = fixture_payload("conversation_created")
    nested: list = []
    for _ in range(900):  # deep enough to break JSON encoding of the stored state
        nested = [nested]
    poisoned.update(id=500, custom_attributes={"x": nested})
    submit(runtime.redis, [json.dumps(poisoned).encode(), json.dumps(fixture_payload("conversation_created")).encode()])
    run_worker(runtime.redis)
    assert runtime.store.summary((1, 87))["policy"] == "standard"
    assert runtime.store.summary((1, 500)) is None
    assert runtime.redis.xlen(redis_keys.DEAD_LETTERS) == 1
    assert runtime.redis.xlen(redis_keys.EVENT_STREAM) == 0  # nothing left to be claimed again


# -- every Chatwoot version in use, through the web receiver -----------------------------------------------

CHANNEL_RULES = {
    "policies": {
        "chat": {"name": "Chat", "first_response": "1h", "next_response": "1h", "resolution": "24h"},
        "email": {"name": "Email", "first_response": "8h", "resolution": "72h"},
    },
    "rules": [
        {"name": "Chat", "when": {"field": "channel", "op": "equals", "value": "Channel::WebWidget"}, "apply": "chat"},
        {"name": "Email", "when": {"field": "channel", "op": "equals", "value": "Channel::Email"}, "apply": "email"},
    ],
}


def test_every_chatwoot_version_is_processed_like_replay(chatwoot, runtime_factory, make_app):
    # Unsigned without account (before v4.12.0), signed without account, signed with account (v4.14.2+):
    # bodies rendered as Chatwoot renders them, through the web receiver, into the store.
    from datetime import timedelta

    from fake_chatwoot import post_deliveries, register_webhook, replayed

    from plugin.demo import script

    helpdesk = chatwoot.helpdesk
    auth = register_webhook(helpdesk)
    runtime = runtime_factory(CHANNEL_RULES, CHATWOOT_ACCOUNT_ID="1")
    client = make_app(CHATWOOT_ACCOUNT_ID="1", **auth).test_client()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    with helpdesk.capturing() as deliveries:
        chat = helpdesk.open_conversation(script.JANE, script.CHAT, "Where is my order?", at=start)
        helpdesk.agent_replies(chat, script.SAM, "Looking into it", at=start + timedelta(minutes=20))
        helpdesk.customer_writes(chat, "Thanks!", at=start + timedelta(minutes=30))
        helpdesk.automation_replies(chat, "We will get back to you", at=start + timedelta(minutes=31))
        helpdesk.set_status(chat, "resolved", at=start + timedelta(minutes=50))
        mail = helpdesk.open_conversation(script.OMAR, script.EMAIL, "Invoice question", at=start)
        helpdesk.set_status(mail, "pending", at=start + timedelta(minutes=5))
    post_deliveries(client, deliveries)
    run_worker(runtime.redis)

    expected = replayed(deliveries, runtime.settings.SLA_RULES_DIR)
    assert set(expected) == {(1, chat), (1, mail)}
    for key, wanted in expected.items():
        stored = runtime.store.summary(key)
        assert {name: stored[name] for name in wanted} == wanted
    assert runtime.store.summary((1, chat))["policy"] == "chat"
    assert runtime.store.summary((1, chat))["status"] == "hit"
    assert runtime.store.summary((1, mail))["policy"] == "email"
    assert runtime.redis.xlen(redis_keys.DEAD_LETTERS) == 0
