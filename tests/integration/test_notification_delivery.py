"""SLA events reach Slack and webhook destinations on real parts: real Redis, real RQ workers, each database,
and real local HTTP receivers (plugin/demo/receiver.py) that answer as the test scripts them. Time is
injected into the notifier for backoff; nothing sleeps for it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from fake_chatwoot import retimed
from rq import Queue, SimpleWorker

from plugin.adapters import destinations, redis_keys
from plugin.adapters import streams as ingest
from plugin.demo.receiver import NotificationReceiver
from plugin.jobs import notify

SECRET = "ops-signing-secret-42"
PINNED_KEYS = [
    "event",
    "id",
    "occurred_at",
    "account_id",
    "conversation_id",
    "conversation_url",
    "policy",
    "metric",
    "due_at",
    "status",
]


def rules(on=("applied", "missed")) -> dict:
    return {
        "notifications": {
            "support-slack": {"type": "slack", "url_env": "SLA_TEST_SLACK_URL"},
            "ops": {"type": "webhook", "url_env": "SLA_TEST_OPS_URL", "secret_env": "SLA_TEST_OPS_SECRET"},
        },
        "policies": {
            "quick": {
                "name": "Quick",
                "first_response": "1h",
                "warn_before": "10m",
                "notify": [{"on": list(on), "to": ["support-slack", "ops"]}],
            },
            "quiet": {"first_response": "1h", "mode": "shadow", "notify": [{"on": ["missed"], "to": ["ops"]}]},
        },
        "rules": [
            {"name": "shadow inbox", "when": {"field": "inbox_id", "op": "equals", "value": 99}, "apply": "quiet"},
            {"name": "Everything", "when": {"all": []}, "apply": "quick"},
        ],
    }


@pytest.fixture
def receivers():
    slack = NotificationReceiver().start()
    ops = NotificationReceiver(secret=SECRET).start()
    yield slack, ops
    slack.stop()
    ops.stop()


@pytest.fixture
def runtime(runtime_factory, receivers):
    slack, ops = receivers
    return runtime_factory(
        rules(),
        CHATWOOT_URL="http://chatwoot.test",
        SLA_TEST_SLACK_URL=f"{slack.url}/slack",
        SLA_TEST_OPS_URL=f"{ops.url}/webhook",
        SLA_TEST_OPS_SECRET=SECRET,
    )


def submit(redis, *bodies: bytes) -> None:
    for body in bodies:
        ingest.submit(redis, "chatwoot", body, received_at=datetime.now(UTC))


def work(redis, *queues: str) -> None:
    SimpleWorker([Queue(name, connection=redis) for name in queues], connection=redis).work(burst=True)


def counter(redis, name: str) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in redis.hgetall(redis_keys.metric(name)).items()}


def missed_conversation(runtime, fixture_payload) -> bytes:
    """A conversation created two hours ago with no reply: applied, then missed (first response, 1h)."""
    body = retimed(fixture_payload, "conversation_created", datetime.now(UTC) - timedelta(hours=2))
    submit(runtime.redis, body)
    work(runtime.redis, redis_keys.EVENTS_QUEUE)
    return body


def test_each_event_reaches_each_destination_once_signed_and_linked(runtime, receivers, fixture_payload):
    slack, ops = receivers
    body = missed_conversation(runtime, fixture_payload)
    submit(runtime.redis, body, body)  # duplicate webhooks of the same event
    work(runtime.redis, redis_keys.EVENTS_QUEUE, redis_keys.NOTIFICATIONS_QUEUE)
    work(runtime.redis, redis_keys.EVENTS_QUEUE, redis_keys.NOTIFICATIONS_QUEUE)

    hooks = ops.bodies("/webhook")
    assert [hook["event"] for hook in hooks] == ["sla.applied", "sla.missed"]
    assert all(list(hook) == PINNED_KEYS for hook in hooks)
    assert all(item.signature_ok for item in ops.received)
    missed = hooks[1]
    assert missed["conversation_url"] == "http://chatwoot.test/app/accounts/1/conversations/87"
    assert missed["policy"]["id"] == "quick" and missed["policy"]["name"] == "Quick"
    assert len(missed["policy"]["version"]) == 64
    assert (missed["metric"], missed["status"]) == ("first_response", "missed")
    assert missed["occurred_at"] == missed["due_at"]  # a miss happens at its due time
    headers = ops.received[1].headers
    assert headers["x-sla-event"] == "sla.missed" and headers["x-sla-delivery"] == missed["id"]
    assert headers["x-sla-timestamp"].isdigit()

    messages = slack.bodies("/slack")
    assert len(messages) == 2
    assert "<http://chatwoot.test/app/accounts/1/conversations/87|conversation #87>" in messages[1]["text"]
    assert "SLA missed" in messages[1]["text"] and "Quick" in messages[1]["text"]
    assert "first response" in messages[1]["text"] and "late" in messages[1]["text"]
    assert messages[1]["blocks"][0]["type"] == "section"
    assert counter(runtime.redis, "sla_notifications_sent_total") == {
        '{destination="ops"}': 2,
        '{destination="support-slack"}': 2,
    }


def test_shadow_policies_notify_nobody(runtime, receivers, fixture_payload):
    slack, ops = receivers
    created = datetime.now(UTC) - timedelta(hours=2)
    submit(runtime.redis, retimed(fixture_payload, "conversation_created", created, inbox_id=99))
    work(runtime.redis, redis_keys.EVENTS_QUEUE, redis_keys.NOTIFICATIONS_QUEUE)
    assert runtime.store.summary((1, 87))["policy"] == "quiet"
    assert ops.received == [] and slack.received == []


def test_a_receiver_down_for_a_while_gets_each_event_once_it_is_back(runtime, receivers, fixture_payload):
    slack, ops = receivers
    down = {"answers": 0}

    def unavailable_three_times(path, headers, body):
        down["answers"] += 1
        return (503, {}) if down["answers"] <= 3 else (200, {})

    ops.respond = unavailable_three_times
    missed_conversation(runtime, fixture_payload)
    start = datetime.now(UTC)
    clock = {"now": start}
    notifier = notify.Notifier(runtime, clock=lambda: clock["now"])

    assert notifier.deliver("ops") == 0  # first attempt: 503, the destination is held
    assert notifier.deliver("ops") == 0  # held: nothing is sent
    assert len(ops.received) == 1
    assert notify.requeue_due(runtime, clock["now"]) == 1  # only Slack is due; ops is held
    assert notifier.deliver("support-slack") == 2  # another destination is not held up
    for _ in range(2):
        clock["now"] += notify.backoff(10)
        assert notifier.deliver("ops") == 0
    clock["now"] += notify.backoff(10)
    assert notifier.deliver("ops") == 2
    assert notifier.deliver("ops") == 0

    attempts = [item.headers["x-sla-delivery"] for item in ops.received]
    assert len(attempts) == 5 and len(set(attempts)) == 2  # 3 failures of the first event, then both
    assert [hook["event"] for hook in ops.bodies("/webhook")] == ["sla.applied", "sla.missed"]
    rows = {row["event"]: row for row in runtime.store.notifications_of((1, 87)) if row["destination"] == "ops"}
    assert rows["sla.applied"]["state"] == rows["sla.missed"]["state"] == "done"
    assert rows["sla.applied"]["attempts"] == 4
    assert counter(runtime.redis, "sla_notifications_failed_total") == {'{destination="ops",reason="HTTP 503"}': 3}


def test_after_24_hours_of_failures_a_delivery_is_dropped_counted_and_logged(
    runtime, receivers, fixture_payload, caplog
):
    slack, ops = receivers
    ops.respond = lambda path, headers, body: (500, {})
    missed_conversation(runtime, fixture_payload)
    clock = {"now": datetime.now(UTC)}
    notifier = notify.Notifier(runtime, clock=lambda: clock["now"])
    caplog.set_level(logging.INFO)
    for _ in range(60):
        notifier.deliver("ops")
        clock["now"] += notify.backoff(100)
    rows = [row for row in runtime.store.notifications_of((1, 87)) if row["destination"] == "ops"]
    assert [row["state"] for row in rows] == ["dropped", "dropped"]
    assert 20 < len(ops.received) < 40  # backoff, not one attempt per pass
    assert counter(runtime.redis, "sla_notifications_dropped_total") == {'{destination="ops"}': 2}
    assert any("dropped after retrying for 24 h" in record.getMessage() for record in caplog.records)
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert ops.url not in logged and SECRET not in logged and "/webhook" not in logged


def test_a_redirect_is_not_followed(runtime, receivers, fixture_payload):
    slack, ops = receivers
    ops.respond = lambda path, headers, body: (
        (307, {"Location": f"{slack.url}/stolen"}) if path == "/webhook" else (200, {})
    )
    missed_conversation(runtime, fixture_payload)
    notify.Notifier(runtime).deliver("ops")
    assert [item.path for item in slack.received] == []
    row = next(row for row in runtime.store.notifications_of((1, 87)) if row["destination"] == "ops")
    assert row["state"] == "pending" and row["last_error"] == "redirect not followed (HTTP 307)"


def test_a_slow_destination_times_out_without_holding_up_the_others(runtime, receivers, fixture_payload, monkeypatch):
    slack, ops = receivers
    release = threading.Event()

    def hang(path, headers, body):
        release.wait(10)
        return 200, {}

    slack.respond = hang
    monkeypatch.setattr(destinations, "TIMEOUT", (0.2, 0.2))
    missed_conversation(runtime, fixture_payload)
    try:
        work(runtime.redis, redis_keys.NOTIFICATIONS_QUEUE)  # one job per destination
    finally:
        release.set()
    assert [hook["event"] for hook in ops.bodies("/webhook")] == ["sla.applied", "sla.missed"]
    states = {
        row["destination"]: row for row in runtime.store.notifications_of((1, 87)) if row["event"] == "sla.applied"
    }
    assert states["support-slack"]["state"] == "pending" and states["support-slack"]["last_error"] == "timeout"


def test_an_unset_url_skips_the_destination_and_says_so(runtime_factory, receivers, fixture_payload, caplog):
    slack, ops = receivers
    runtime = runtime_factory(rules(), SLA_TEST_SLACK_URL=f"{slack.url}/slack", SLA_TEST_OPS_URL=None)
    caplog.set_level(logging.WARNING)
    missed_conversation(runtime, fixture_payload)
    work(runtime.redis, redis_keys.NOTIFICATIONS_QUEUE)
    assert len(slack.bodies("/slack")) == 2 and ops.received == []
    states = {row["state"] for row in runtime.store.notifications_of((1, 87)) if row["destination"] == "ops"}
    assert states == {"skipped"}
    assert any("SLA_TEST_OPS_URL is not set" in record.getMessage() for record in caplog.records)


def test_a_worker_killed_mid_delivery_leaves_it_to_be_sent_again_with_the_same_id(runtime, receivers, fixture_payload):
    slack, ops = receivers
    arrived, release = threading.Event(), threading.Event()
    ids: list[str] = []

    def hold_the_first(path, headers, body):
        ids.append(headers["x-sla-delivery"])
        if not arrived.is_set():
            arrived.set()
            release.wait(20)
        return 200, {}

    ops.respond = hold_the_first
    missed_conversation(runtime, fixture_payload)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plugin.cli",
            "worker",
            "--burst",
            "--no-sweeper",
            "--queue",
            redis_keys.NOTIFICATIONS_QUEUE,
        ],
        env=os.environ.copy(),
        start_new_session=True,
    )
    try:
        assert arrived.wait(60), "the worker never sent the first delivery"
        os.killpg(worker.pid, signal.SIGKILL)  # killed between its POST and recording the answer
        worker.wait(30)
    finally:
        release.set()
    first = ids[0]
    row = next(row for row in runtime.store.notifications_of((1, 87)) if row["event_id"] == first)
    assert row["state"] == "sending"
    later = datetime.now(UTC) + notify.LEASE + timedelta(seconds=1)
    notify.Notifier(runtime, clock=lambda: later).deliver("ops")
    assert ids[0] == ids[1] == first and len(ids) == 3  # sent again once, with the same id; then the next
    assert {row["state"] for row in runtime.store.notifications_of((1, 87)) if row["destination"] == "ops"} == {"done"}


def test_healthz_shows_each_destinations_backlog_without_failing(
    runtime, receivers, fixture_payload, make_app, database_url
):
    slack, ops = receivers
    ops.respond = lambda path, headers, body: (503, {})
    missed_conversation(runtime, fixture_payload)
    notifier = notify.Notifier(runtime)
    notifier.deliver("ops")
    notifier.deliver("support-slack")
    response = make_app(DATABASE_URL=database_url).test_client().get("/healthz")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert body["notifications"] == {"ok": True, "backlog": {"ops": {"pending": 2}}}
