"""The store's write-back outbox queries (what plugin.jobs.writeback asks of SQL), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from plugin.adapters.store import Store, notifications, outbox

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url):
    store = Store.from_url(database_url)
    store.migrate()
    yield store
    store.engine.dispose()


def record(store: Store, key: tuple[int, int], intent: str, state: str, updated_at: datetime, payload: str = "{}"):
    with store.engine.begin() as connection:
        connection.execute(
            outbox.insert().values(
                account_id=key[0],
                conversation_id=key[1],
                key=intent,
                payload=payload,
                state=state,
                attempts=0,
                created_at=updated_at,
                updated_at=updated_at,
            )
        )


def test_stale_and_pending_intents(store):
    record(store, (1, 7), "labels", "pending", NOW - timedelta(minutes=5))
    record(store, (1, 7), "note:first_response#0", "sending", NOW - timedelta(minutes=4))
    record(store, (1, 8), "labels", "pending", NOW)  # recent: its job may still be queued
    record(store, (1, 9), "labels", "done", NOW - timedelta(hours=1))  # written: nothing owed

    assert store.stale_intent_conversations(NOW - timedelta(minutes=2)) == [(1, 7)]
    assert [row.key for row in store.pending_intents((1, 7))] == ["labels", "note:first_response#0"]
    assert store.pending_intents((1, 9)) == []
    assert store.intent_state((1, 9), "labels") == "done"
    assert store.intent_state((1, 9), "note:first_response#0") is None


def test_a_label_intent_changed_meanwhile_stays_pending(store):
    record(store, (1, 7), "labels", "pending", NOW, payload='{"label": "at_risk"}')

    record(store, (1, 8), "labels", "pending", NOW, payload='{"label": "missed"}')

    store.finish_intents_if_unchanged([((1, 7), "labels", '{"label": "running"}')], NOW)  # we wrote an older one
    assert store.intent_state((1, 7), "labels") == "pending"
    store.finish_intents_if_unchanged(
        [((1, 7), "labels", '{"label": "at_risk"}'), ((1, 8), "labels", '{"label": "at_risk"}')], NOW
    )
    assert store.intent_state((1, 7), "labels") == "done"
    assert store.intent_state((1, 8), "labels") == "pending"  # several at once, each judged on its own
    store.finish_intents_if_unchanged([], NOW)


def test_failing_a_conversations_intents_leaves_written_ones_and_other_conversations(store):
    record(store, (1, 7), "labels", "done", NOW)
    record(store, (1, 7), "note:first_response#0", "pending", NOW)
    record(store, (1, 7), "note:resolution#0", "sending", NOW)
    record(store, (1, 8), "labels", "pending", NOW)

    assert store.fail_intents((1, 7), NOW) == 2
    assert store.intent_state((1, 7), "labels") == "done"
    assert store.intent_state((1, 7), "note:resolution#0") == "failed"
    assert store.intent_state((1, 8), "labels") == "pending"
    store.set_intent_state((1, 8), "labels", "done", NOW, remote_id="42")
    assert store.intent_state((1, 8), "labels") == "done"


def notification(store: Store, event_id: str, state: str, updated_at: datetime) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            notifications.insert().values(
                event_id=event_id,
                destination="ops",
                account_id=1,
                conversation_id=7,
                event="sla.missed",
                occurred_at=updated_at,
                payload="{}",
                state=state,
                attempts=1,
                next_attempt_at=updated_at,
                created_at=updated_at,
                updated_at=updated_at,
            )
        )


def test_delivered_notifications_and_written_intents_are_deleted_after_their_retention_a_page_at_a_time(store):
    old, recent = NOW - timedelta(days=8), NOW - timedelta(days=6)
    record(store, (1, 7), "labels", "done", old)
    record(store, (1, 8), "labels", "done", old)
    record(store, (1, 7), "note:first_response#0", "done", recent)
    record(store, (1, 9), "labels", "pending", old)  # still owed, however old
    record(store, (1, 9), "note:first_response#0", "failed", old)
    for event_id, state, updated_at in (
        ("a", "done", old),
        ("b", "done", old),
        ("c", "done", recent),
        ("d", "pending", old),
        ("e", "dropped", old),  # given up: /healthz counts these
    ):
        notification(store, event_id, state, updated_at)

    before = NOW - timedelta(days=7)
    assert store.prune_delivered(before, limit=1) == 2  # one of each table
    assert store.prune_delivered(before, limit=1) == 2
    assert store.prune_delivered(before, limit=1) == 0

    with store.engine.connect() as connection:
        intents = connection.execute(sa.select(outbox.c.conversation_id, outbox.c.key, outbox.c.state)).all()
        deliveries = connection.execute(sa.select(notifications.c.event_id)).scalars().all()
    assert sorted(intents) == [
        (7, "note:first_response#0", "done"),
        (9, "labels", "pending"),
        (9, "note:first_response#0", "failed"),
    ]
    assert sorted(deliveries) == ["c", "d", "e"]
    assert store.notification_backlog() == {"ops": {"pending": 1, "dropped": 1}}


def test_pending_intents_health_and_backlog_are_read_while_a_batch_of_the_event_worker_holds_the_write_lock(store):
    record(store, (1, 7), "labels", "pending", NOW, payload='{"label": "at_risk"}')
    notification(store, "a", "pending", NOW)

    with store.batch([(1, 8)]):  # on SQLite: BEGIN IMMEDIATE, the one write lock, until the batch commits
        assert [row.payload for row in store.pending_intents((1, 7))] == ['{"label": "at_risk"}']
        store.ping()
        assert store.notification_backlog() == {"ops": {"pending": 1}}
