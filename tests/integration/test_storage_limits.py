"""Values beyond what the schema stores never block the event queue, on SQLite and on PostgreSQL.

PostgreSQL refuses a text longer than its ``VARCHAR`` column and any NUL character; both databases' drivers
refuse lone surrogates (valid in JSON, not in UTF-8). A webhook carrying such a value used to fail its whole
batch, which was then claimed and failed again forever while every event read with it waited.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import get_connector
from plugin.adapters import redis_keys
from plugin.adapters import store as store_module
from plugin.adapters import streams as ingest
from plugin.adapters.directory import MAX_NAME, Directory, Name
from plugin.adapters.store import applied, conversations, events, notifications, storable_text
from plugin.core.events import MAX_MESSAGE_TEXT
from plugin.jobs.drain import process_stream

RULES = {
    "policies": {"standard": {"name": "Standard", "first_response": "1h", "resolution": "24h"}},
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "standard"}],
}

# Any text, with the characters that break storage made likely: NUL, lone surrogates, and long runs.
hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(["a", "\x00", "\ud800", "\udfff", "é", ",", "="]), min_size=1, max_size=300),
)


# Conversation ids never reused across examples: the database is shared by every example of a test.
conversation_ids = itertools.count(10_000)


@pytest.fixture
def runtime(runtime_factory):
    return runtime_factory(RULES)


def _conversation(fixture_payload, conversation_id: int, priority, channel, labels) -> bytes:
    payload = fixture_payload("conversation_created")
    payload.update(id=conversation_id, priority=priority, channel=channel, labels=labels)
    return json.dumps(payload).encode()


def _drain(runtime) -> None:
    while process_stream(runtime, lambda: datetime.now(UTC), "test-consumer"):
        pass


def _stored(runtime, conversation_id: int):
    with runtime.store.engine.connect() as connection:
        return connection.execute(sa.select(applied).where(applied.c.conversation_id == conversation_id)).first()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_values_beyond_the_column_limits_are_stored_and_the_queue_moves(runtime, fixture_payload, data):
    ids = conversation_ids
    hostile = []
    for _ in range(data.draw(st.integers(1, 3))):
        values = (data.draw(hostile_text), data.draw(hostile_text), data.draw(st.lists(hostile_text, max_size=4)))
        hostile.append((next(ids), *values))
    healthy = next(ids)
    bodies = [_conversation(fixture_payload, conversation, *values) for conversation, *values in hostile]
    bodies.append(_conversation(fixture_payload, healthy, "high", "Channel::Email", ["billing"]))
    for body in bodies:
        ingest.submit(runtime.redis, "chatwoot", body, received_at=datetime.now(UTC))

    _drain(runtime)

    assert runtime.redis.xlen(redis_keys.EVENT_STREAM) == 0
    assert runtime.redis.xlen(redis_keys.DEAD_LETTERS) == 0
    assert _stored(runtime, healthy).priority == "high"
    connector = get_connector("chatwoot", {})
    for (conversation_id, *_), body in zip(hostile, bodies, strict=False):
        conversation = connector.normalize(json.loads(body), None).conversation
        row = _stored(runtime, conversation_id)
        expected_priority = conversation.priority and storable_text(conversation.priority, 20)
        expected_channel = conversation.channel and storable_text(conversation.channel, 100)
        assert (row.priority, row.channel) == (expected_priority, expected_channel)
        if conversation.labels:
            assert row.labels == storable_text("," + ",".join(conversation.labels) + ",")


def test_a_conversation_whose_rows_the_database_refuses_is_set_aside_and_the_batch_goes_on(
    runtime, fixture_payload, monkeypatch, database_url
):
    # Without the values being made storable, the database itself refuses the row (PostgreSQL: too long
    # for VARCHAR(20); both: a lone surrogate): the batch must still go on without it.
    monkeypatch.setattr(store_module, "_storable", lambda table, row: row)
    refused = "\ud800" if database_url.startswith("sqlite") else "p" * 21
    bodies = [
        _conversation(fixture_payload, 501, refused, "Channel::Email", []),
        _conversation(fixture_payload, 502, "high", "Channel::Email", ["billing"]),
    ]
    for body in bodies:
        ingest.submit(runtime.redis, "chatwoot", body, received_at=datetime.now(UTC))

    _drain(runtime)

    assert runtime.store.summary((1, 502))["policy"] == "standard"
    assert runtime.store.summary((1, 501)) is None  # left as it was: unknown
    assert runtime.redis.xlen(redis_keys.EVENT_STREAM) == 0  # nothing left to be claimed and fail again
    dead = runtime.redis.xrange(redis_keys.DEAD_LETTERS)
    assert len(dead) == 1 and b'"id": 501' in dead[0][1][b"body"]


def test_huge_messages_keep_their_words_not_their_megabytes(runtime, fixture_payload):
    # Twenty customer messages of 500 KB each (a pasted log, an inlined attachment) used to make a 10 MB row.
    bodies = [_conversation(fixture_payload, 601, "high", "Channel::Email", [])]
    for number in range(20):
        message = fixture_payload("message_created-incoming")
        message["conversation"]["id"] = 601
        message.update(id=70_000 + number, content=f"refund please {number} " + "x" * 500_000)
        bodies.append(json.dumps(message).encode())
    for body in bodies:
        ingest.submit(runtime.redis, "chatwoot", body, received_at=datetime.now(UTC))

    _drain(runtime)

    with runtime.store.engine.connect() as connection:
        head = connection.execute(
            sa.select(conversations.c.packed_head).where(conversations.c.conversation_id == 601)
        ).scalar_one()
        records = connection.execute(sa.select(events.c.body).where(events.c.conversation_id == 601)).scalars().all()
    assert len(records) == 21
    # No rule tests content: no text is kept at all (with one, a conversation keeps 8,000 characters).
    assert len(head) + sum(map(len, records)) < MAX_MESSAGE_TEXT
    assert runtime.store.summary((1, 601))["policy"] == "standard"


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_text.filter(lambda text: text.strip()))
def test_names_beyond_the_column_limits_are_stored(runtime, name):
    # A team or agent name is whatever the helpdesk's users typed: long, with NUL or lone surrogates.
    key = str(next(conversation_ids))
    directory = Directory(runtime.store.engine)
    directory.learn([Name(1, "team", key, name + "x" * 600)])
    stored = directory.names([1])["team"][key]
    assert stored == storable_text((name + "x" * 600).strip(), MAX_NAME)


def test_a_long_delivery_error_is_stored_cut_to_its_column(runtime):
    now = datetime.now(UTC)
    with runtime.store.engine.begin() as connection:
        connection.execute(
            notifications.insert(),
            [
                {
                    "event_id": "e" * 36,
                    "destination": "ops",
                    "account_id": 1,
                    "conversation_id": 1,
                    "event": "sla.missed",
                    "occurred_at": now,
                    "payload": "{}",
                    "state": "sending",
                    "attempts": 1,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
    # A receiver's answer quoted in the error: longer than the column, with a NUL in it.
    runtime.store.finish_notification("e" * 36, "ops", now, "dropped", last_error="HTTP 500: \x00" + "x" * 1000)
    (row,) = runtime.store.notifications_of((1, 1))
    assert row["last_error"] == storable_text("HTTP 500: \x00" + "x" * 1000, 200)
