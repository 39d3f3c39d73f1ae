"""Write-back on real parts: real Redis, real RQ workers, a real database; the fake Chatwoot
(``plugin.demo.helpdesk``) answers the REST API, through `responses` or over HTTP. Fixtures are re-timed
relative to now, because the workers use the real clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses
from fake_chatwoot import retimed
from rq import Queue, SimpleWorker

from connectors.chatwoot.client import ChatwootClient
from plugin.adapters import redis_keys
from plugin.adapters import streams as ingest
from plugin.demo.helpdesk import DemoHelpdesk
from plugin.jobs import writeback
from plugin.jobs.runtime import Runtime

BASE = "http://chatwoot.test"
HELPDESK = {"CHATWOOT_URL": BASE, "CHATWOOT_ACCOUNT_ID": "1", "CHATWOOT_API_TOKEN": "secret-token-123"}
RULES = {
    "policies": {"quick": {"name": "Quick", "first_response": "1h", "resolution": "8h", "warn_before": "10m"}},
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "quick"}],
    "labels": {
        "on_track": {"title": "sla-on-track", "color": "#2E7D32"},
        "at_risk": {"title": "sla-at-risk", "color": "#F9A825"},
        "missed": {"title": "sla-missed", "color": "#C62828"},
    },
}


class FakeHelpdesk:
    """Conversation 87 of the fake Chatwoot (``plugin.demo.helpdesk``), served through `responses`: its labels
    and private notes, the (before, after) of each label write, and an agent who adds a label between the
    plugin's read and its write when ``agent_edit_after_next_read`` is set."""

    current: FakeHelpdesk | None = None  # the one a test runs: webhooks show its labels

    def __init__(self, mock: responses.RequestsMock, labels=("billing",), failures: int = 0):
        FakeHelpdesk.current = self
        self.fake = DemoHelpdesk(api_token="secret-token-123")
        self.conversation = self.fake.adopt(87, labels)
        self.fake.register(mock, BASE)
        if failures:
            self.fake.fail_next(failures, "5xx")
        self.agent_edit_after_next_read: str | None = None
        self._before_writes: list[list[str]] = []
        self.fake.before_call = self._before_call

    def _before_call(self, method: str, path: str) -> None:
        if method == "POST" and path.endswith("/conversations/87/labels"):
            if self.agent_edit_after_next_read:
                self.conversation.labels.append(self.agent_edit_after_next_read)
                self.agent_edit_after_next_read = None
            self._before_writes.append(list(self.conversation.labels))

    @property
    def labels(self) -> list[str]:
        return list(self.conversation.labels)

    @labels.setter
    def labels(self, titles: list[str]) -> None:
        self.conversation.labels = list(titles)  # an agent's edit in Chatwoot

    @property
    def notes(self) -> list[str]:
        return [message.content for message in self.conversation.messages if message.private]

    def add_note(self, content: str) -> None:
        self.fake.write_note(87, self.fake.plugin_user, content)

    @property
    def echoes(self) -> list[tuple[list[str], list[str]]]:
        afters = [after for _, after in self.fake.label_history.get(87, [])]
        return list(zip(self._before_writes, afters, strict=False))


@pytest.fixture(autouse=True)
def _no_fake_left_over():
    yield
    FakeHelpdesk.current = None


@pytest.fixture
def runtime(runtime_factory, monkeypatch):
    # The client's backoff must not sleep in tests; everything else is the production path.
    monkeypatch.setattr(
        Runtime,
        "helpdesk",
        lambda *_: ChatwootClient(BASE, 1, "secret-token-123", sleep=lambda seconds: None),
    )
    return runtime_factory(RULES, **HELPDESK)


def work(redis) -> None:
    """Real RQ workers drain the events and write-back queues until both are empty."""
    queues = [Queue(redis_keys.EVENTS_QUEUE, connection=redis), Queue(redis_keys.WRITEBACK_QUEUE, connection=redis)]
    SimpleWorker(queues, connection=redis).work(burst=True)


def deliver(redis, bodies) -> None:
    """Submit webhook bodies as the receiver does; like Chatwoot's, they show the conversation's labels as
    they are in the helpdesk (the write-back merges into what the latest webhook showed)."""
    for body in bodies:
        if FakeHelpdesk.current is not None:
            payload = json.loads(body)
            shown = payload["conversation"] if payload.get("event") == "message_created" else payload
            if "labels" in shown:
                shown["labels"] = FakeHelpdesk.current.labels
            body = json.dumps(payload).encode()
        ingest.submit(redis, "chatwoot", body, received_at=datetime.now(UTC))


def test_a_miss_gets_the_missed_label_and_exactly_one_note_keeping_agent_labels(runtime, fixture_payload):
    now = datetime.now(UTC)
    created = now - timedelta(hours=2)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock, labels=["billing", "vip"])
        bodies = [
            retimed(fixture_payload, "conversation_created", created),
            retimed(fixture_payload, "message_created-incoming", created),
        ]
        deliver(runtime.redis, bodies)
        work(runtime.redis)
        deliver(runtime.redis, bodies)  # a duplicate delivery of the same events
        work(runtime.redis)
    assert helpdesk.labels == ["billing", "vip", "sla-missed"]
    assert len(helpdesk.notes) == 1
    assert "first response" in helpdesk.notes[0] and "Quick" in helpdesk.notes[0]
    assert "secret-token-123" not in helpdesk.notes[0]


def test_host_failing_three_times_then_recovering_ends_right(runtime, fixture_payload):
    now = datetime.now(UTC)
    created = now - timedelta(hours=2)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock, failures=3)
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", created)])
        work(runtime.redis)
    assert helpdesk.labels == ["billing", "sla-missed"]
    assert len(helpdesk.notes) == 1


def test_a_late_reply_corrects_the_miss_with_one_correction_note(runtime, fixture_payload):
    now = datetime.now(UTC)
    created = now - timedelta(hours=2)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", created)])
        work(runtime.redis)
        assert helpdesk.labels == ["billing", "sla-missed"]
        # The agent had replied 30 minutes after creation; that webhook arrives only now.
        deliver(runtime.redis, [retimed(fixture_payload, "message_created-outgoing", created + timedelta(minutes=30))])
        work(runtime.redis)
        deliver(runtime.redis, [retimed(fixture_payload, "message_created-outgoing", created + timedelta(minutes=30))])
        work(runtime.redis)
    assert helpdesk.labels == ["billing", "sla-on-track"]
    assert len(helpdesk.notes) == 2
    assert helpdesk.notes[1].startswith("SLA correction")


def test_a_note_posted_before_a_crash_is_not_posted_again(runtime, fixture_payload):
    now = datetime.now(UTC)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", now - timedelta(hours=2))])
        # Process events only: the write-back job waits in its queue.
        SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis)], connection=runtime.redis).work(
            burst=True
        )
        writer = writeback.Writer(runtime, runtime.helpdesk())
        original = writer._finish

        def crash_after_post(row, state, **values):
            if state == "done" and row.key.startswith("note:"):
                raise SystemExit("worker killed after the note was posted")
            return original(row, state, **values)

        writer._finish = crash_after_post
        with pytest.raises(SystemExit):
            writer.deliver(1, 87)
        assert len(helpdesk.notes) == 1
        work(runtime.redis)  # the queued job runs after the "crash" and finds the row still "sending"
    assert len(helpdesk.notes) == 1
    assert helpdesk.labels == ["billing", "sla-missed"]


def test_shadow_policy_writes_nothing(runtime, runtime_factory, fixture_payload):
    shadow = dict(RULES, policies={"quick": {**RULES["policies"]["quick"], "mode": "shadow"}})
    runtime = runtime_factory(shadow, **HELPDESK)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        deliver(
            runtime.redis, [retimed(fixture_payload, "conversation_created", datetime.now(UTC) - timedelta(hours=2))]
        )
        work(runtime.redis)
    assert helpdesk.notes == [] and helpdesk.labels == ["billing"]
    assert runtime.store.summary((1, 87))["status"] == "missed"  # tracked and reported all the same


def test_an_agent_label_added_between_our_read_and_write_is_restored_from_the_echo(runtime, fixture_payload):
    now = datetime.now(UTC)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        helpdesk.agent_edit_after_next_read = "vip"
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", now - timedelta(hours=2))])
        work(runtime.redis)
        assert helpdesk.labels == ["billing", "sla-missed"]  # the replace-all write dropped "vip"
        # Chatwoot echoes our write as conversation_updated with the label list before and after it.
        before, after = helpdesk.echoes[-1]
        echo = fixture_payload("conversation_updated-labels")
        echo.update(
            labels=after,
            updated_at=now.timestamp(),
            changed_attributes=[{"label_list": {"previous_value": before, "current_value": after}}],
        )
        deliver(runtime.redis, [json.dumps(echo).encode()])
        work(runtime.redis)
    assert helpdesk.labels == ["billing", "sla-missed", "vip"]
    assert len(helpdesk.notes) == 1


def test_an_agent_removing_a_label_is_not_undone(runtime, fixture_payload):
    now = datetime.now(UTC)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock, labels=["billing", "vip"])
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", now - timedelta(hours=2))])
        work(runtime.redis)
        helpdesk.labels = ["billing", "sla-missed"]  # the agent removed "vip" in Chatwoot
        echo = fixture_payload("conversation_updated-labels")
        echo.update(
            labels=helpdesk.labels,
            updated_at=now.timestamp(),
            changed_attributes=[
                {"label_list": {"previous_value": ["billing", "vip", "sla-missed"], "current_value": helpdesk.labels}}
            ],
        )
        deliver(runtime.redis, [json.dumps(echo).encode()])
        work(runtime.redis)
    assert helpdesk.labels == ["billing", "sla-missed"]


def test_a_revoked_token_stops_write_back_without_hammering_and_resumes_when_fixed(runtime, fixture_payload):
    now = datetime.now(UTC)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        helpdesk.fake.replace_token("a-token-the-plugin-does-not-have")  # 401 "Invalid Access Token"
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", now - timedelta(hours=2))])
        work(runtime.redis)
        for _ in range(3):  # the sweeper's re-queue, several times: no call reaches the host
            writeback.requeue_stale_outbox(runtime, now + timedelta(minutes=10))
            work(runtime.redis)
        assert [status for _, _, status in helpdesk.fake.calls] == [401]
        runtime.redis.delete(redis_keys.writeback_auth_failed(1))  # the back-off period is over
        helpdesk.fake.replace_token("secret-token-123")  # the token is fixed
        writeback.requeue_stale_outbox(runtime, now + timedelta(minutes=10))
        work(runtime.redis)
    assert helpdesk.labels == ["billing", "sla-missed"] and len(helpdesk.notes) == 1


def test_a_conversation_the_token_may_not_see_fails_alone(runtime, fixture_payload):
    # Chatwoot's 401 "You are not authorized to do this action" (an agent's token, another inbox) concerns
    # one conversation: the account's write-back must not pause.
    from plugin.demo import script

    now = datetime.now(UTC)
    hidden = json.loads(retimed(fixture_payload, "conversation_created", now - timedelta(hours=2)))
    hidden["id"] = 88
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        helpdesk.fake.adopt(88, ["billing"], inbox=script.EMAIL)
        helpdesk.fake.add_token("secret-token-123", script.SAM, inbox_ids=[helpdesk.conversation.inbox.id])
        deliver(runtime.redis, [json.dumps(hidden).encode()])
        work(runtime.redis)
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", now - timedelta(hours=2))])
        work(runtime.redis)
        writeback.requeue_stale_outbox(runtime, now + timedelta(minutes=10))
        work(runtime.redis)
    refused = [status for _, path, status in helpdesk.fake.calls if "/conversations/88/" in path]
    assert refused == [401]  # not retried: only an administrator can change what the token sees
    assert not runtime.redis.exists(redis_keys.writeback_auth_failed(1))
    assert helpdesk.labels == ["billing", "sla-missed"] and len(helpdesk.notes) == 1
    failures = runtime.redis.hgetall(redis_keys.metric("sla_writeback_failures_total"))
    assert {key.decode(): int(value) for key, value in failures.items()} == {'{reason="not_permitted"}': 1}


# -- against the fake Chatwoot of every version profile --------------------------------------------------


def test_every_chatwoot_version_gets_its_labels_and_one_note(chatwoot, runtime_factory, make_app, monkeypatch):
    from fake_chatwoot import plugin_on_fake, post_deliveries

    from plugin.demo import script

    helpdesk = chatwoot.helpdesk
    runtime, client = plugin_on_fake(chatwoot, runtime_factory, make_app, monkeypatch, RULES)
    with helpdesk.capturing() as deliveries:
        missed = helpdesk.open_conversation(
            script.JANE, script.CHAT, "Hello?", at=datetime.now(UTC) - timedelta(hours=2)
        )
        helpdesk.agent_adds_label(missed, "billing")
        answered = helpdesk.open_conversation(
            script.LEE, script.CHAT, "Hi", at=datetime.now(UTC) - timedelta(minutes=5)
        )
        helpdesk.agent_replies(answered, script.SAM, "Hello Lee")
    post_deliveries(client, deliveries)
    work(runtime.redis)
    with helpdesk.capturing() as echoes:  # Chatwoot echoes the plugin's own writes as webhooks
        # The same events again, as new deliveries (or, unsigned, the same bodies): nothing new is written.
        post_deliveries(client, [delivery.again() for delivery in deliveries], outcomes=("queued", "duplicate"))
        work(runtime.redis)
    post_deliveries(client, echoes)
    work(runtime.redis)

    assert helpdesk.conversations[missed].labels == ["billing", "sla-missed"]
    assert helpdesk.conversations[answered].labels == ["sla-on-track"]
    notes = [message for message in helpdesk.conversations[missed].messages if message.private]
    assert len(notes) == 1 and "first response" in notes[0].content
    assert not any(message.private for message in helpdesk.conversations[answered].messages)


def test_a_conversation_an_agent_token_may_not_see_fails_alone_on_the_fake(chatwoot, runtime_factory, monkeypatch):
    # The token's user is an agent of the chat inbox only: the e-mail conversation answers 401 "You are not
    # authorized to do this action"; the chat conversation is written all the same.
    from fake_chatwoot import register_webhook, use_fake_client

    from plugin.demo import script

    helpdesk = chatwoot.helpdesk
    register_webhook(helpdesk)
    helpdesk.add_token("agent-token", script.SAM, inbox_ids=[script.CHAT.id])
    use_fake_client(monkeypatch, chatwoot, "agent-token")
    runtime = runtime_factory(RULES, CHATWOOT_URL=chatwoot.url, CHATWOOT_ACCOUNT_ID="1", CHATWOOT_API_TOKEN="x")
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    with helpdesk.capturing() as deliveries:
        mail = helpdesk.open_conversation(script.OMAR, script.EMAIL, "Invoice?", at=two_hours_ago)
        chat = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello?", at=two_hours_ago)
    deliver(runtime.redis, [delivery.body for delivery in deliveries])
    work(runtime.redis)
    writeback.requeue_stale_outbox(runtime, datetime.now(UTC) + timedelta(minutes=10))
    work(runtime.redis)

    assert helpdesk.conversations[chat].labels == ["sla-missed"]
    assert helpdesk.conversations[mail].labels == []
    refused = [call for call in helpdesk.calls if f"/conversations/{mail}/" in call[1]]
    assert [status for _, _, status in refused] == [401]  # tried once, not again
    assert not runtime.redis.exists(redis_keys.writeback_auth_failed(1))


def test_notes_mention_the_assignee_and_at_risk_gets_one_note_with_mention(
    runtime_factory, fixture_payload, monkeypatch
):
    monkeypatch.setattr(
        Runtime,
        "helpdesk",
        lambda *_: ChatwootClient(BASE, 1, "secret-token-123", sleep=lambda seconds: None),
    )
    mentioning = {**RULES, "policies": {"quick": {**RULES["policies"]["quick"], "mention": ["assignee"]}}}
    runtime = runtime_factory(mentioning, **HELPDESK)
    now = datetime.now(UTC)
    created = now - timedelta(minutes=55)  # at risk now (10 minutes before the 1 h first response)
    payload = json.loads(retimed(fixture_payload, "conversation_created", created))
    payload["meta"]["assignee"] = {"id": 7, "name": "Sam Agent", "type": "user"}
    payload["meta"]["assignee_type"] = "User"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        deliver(runtime.redis, [json.dumps(payload).encode()])
        work(runtime.redis)
        deliver(runtime.redis, [json.dumps(payload).encode()])  # a duplicate: still one note
        work(runtime.redis)
    assert helpdesk.labels == ["billing", "sla-at-risk"]
    assert len(helpdesk.notes) == 1
    assert helpdesk.notes[0].startswith("[@Sam Agent](mention://user/7/Sam%20Agent) SLA at risk: first response")
    assert helpdesk.notes[0].endswith("\n\nref sla-plugin/1/87/at_risk:first_response@" + retimed_due(created))


def retimed_due(created: datetime) -> str:
    return (created.replace(microsecond=0) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_note_with_the_marker_of_an_older_version_is_found_and_not_posted_again(runtime, fixture_payload):
    now = datetime.now(UTC)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", now - timedelta(hours=2))])
        SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis)], connection=runtime.redis).work(
            burst=True
        )
        # An older version posted the note with its bracketed marker, then died before recording it.
        helpdesk.add_note("SLA missed: ... Policy Quick v1234. [sla-plugin 1/87 note:first_response#0]")
        writer = writeback.Writer(runtime, runtime.helpdesk())
        writer._set_state(1, 87, "note:first_response#0", "sending")
        writer.deliver(1, 87)
    assert len(helpdesk.notes) == 1


@pytest.mark.parametrize("hit_label", [None, "sla-hit"])
def test_resolved_within_every_target_gets_the_hit_label_when_one_is_defined(
    runtime_factory, fixture_payload, monkeypatch, hit_label
):
    monkeypatch.setattr(
        Runtime,
        "helpdesk",
        lambda *_: ChatwootClient(BASE, 1, "secret-token-123", sleep=lambda seconds: None),
    )
    labels = {**RULES["labels"], **({"hit": {"title": hit_label, "color": "#1565C0"}} if hit_label else {})}
    runtime = runtime_factory({**RULES, "labels": labels}, **HELPDESK)
    created = datetime.now(UTC) - timedelta(minutes=30)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock)
        deliver(
            runtime.redis,
            [
                retimed(fixture_payload, "conversation_created", created),
                retimed(fixture_payload, "message_created-outgoing", created + timedelta(minutes=10)),
            ],
        )
        work(runtime.redis)
        assert helpdesk.labels == ["billing", "sla-on-track"]
        deliver(
            runtime.redis,
            [retimed(fixture_payload, "conversation_status_changed-resolved", created + timedelta(minutes=20))],
        )
        work(runtime.redis)
    assert runtime.store.summary((1, 87))["status"] == "hit"
    assert helpdesk.labels == ["billing", hit_label or "sla-on-track"]


def test_labels_a_webhook_told_are_written_in_one_call_and_read_only_when_none_did(runtime, fixture_payload):
    now = datetime.now(UTC)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = FakeHelpdesk(mock, labels=["billing"])
        deliver(runtime.redis, [retimed(fixture_payload, "conversation_created", now - timedelta(minutes=5))])
        work(runtime.redis)
        assert helpdesk.labels == ["billing", "sla-on-track"]
        assert [(method, status) for method, _, status in helpdesk.fake.calls] == [("POST", 200)]  # no GET
        # Nothing told the labels (say Redis forgot them): they are read first, then written.
        runtime.redis.delete(redis_keys.labels_known(1, 87))
        writeback.Writer(runtime, runtime.helpdesk())._write_labels(87, "at_risk")
        assert [method for method, _, _ in helpdesk.fake.calls] == ["POST", "GET", "POST"]
        assert helpdesk.labels == ["billing", "sla-at-risk"]
