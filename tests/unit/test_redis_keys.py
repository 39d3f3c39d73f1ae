"""The names the plugin gives things in Redis are a contract with operators (docs/scaling.md,
docs/architecture.md): dashboards, alerts and runbooks read these keys, so a rename must be deliberate."""

from __future__ import annotations

from plugin.adapters import redis_keys


def test_the_documented_names():
    assert redis_keys.EVENT_STREAM == "sla:events"
    assert redis_keys.EVENT_GROUP == "sla-workers"
    assert redis_keys.DEAD_LETTERS == "sla:events:dead"
    assert redis_keys.DEADLINES == "sla:deadlines"
    assert redis_keys.delivery("chatwoot", "abc") == "sla:delivery:chatwoot:abc"
    assert redis_keys.QUEUES == ("events", "writeback", "notifications")
    assert redis_keys.metric("sla_events_processed_total") == "sla:metrics:sla_events_processed_total"


def test_every_key_is_under_the_plugin_prefix():
    keys = [
        redis_keys.EVENT_STREAM,
        redis_keys.DEAD_LETTERS,
        redis_keys.DRAIN_PENDING,
        redis_keys.DEADLINES,
        redis_keys.SWEEPER_LEADER,
        redis_keys.delivery("chatwoot", "1"),
        redis_keys.metric("x"),
        redis_keys.writeback_conversation(1, 2),
        redis_keys.writeback_slots(1),
        redis_keys.writeback_auth_failed(1),
        redis_keys.labels_written(1, 2),
    ]
    assert all(key.startswith("sla:") for key in keys)
    assert len(set(keys)) == len(keys)
