"""The demo helpdesk: Chatwoot's REST semantics as the plugin's own client sees them, and its webhooks, which
must verify and normalise with the Chatwoot connector exactly as real Chatwoot's do. In-process and fast: the
helpdesk serves on a loopback port in a thread; the scripted morning is played from a start in the past, so
it plays at once with past timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from connectors.base import WebhookRejected
from connectors.chatwoot.client import AuthError, ChatwootClient, NotFound, Unprocessable
from connectors.chatwoot.webhooks import ChatwootConnector
from plugin.adapters.manifest import load_manifest
from plugin.adapters.rule_files import load_rules
from plugin.cli.install import install
from plugin.cli.replay import replay
from plugin.core.events import (
    BOT,
    CONTACT,
    CONVERSATION_CREATED,
    CONVERSATION_UPDATED,
    HUMAN,
    MESSAGE_CREATED,
    STATUS_CHANGED,
)
from plugin.demo import script
from plugin.demo.helpdesk import DEMO_API_TOKEN, PLUGIN_USER_ID, DemoHelpdesk, HelpdeskServer

DEMO_RULES = Path(__file__).resolve().parents[2] / "demo" / "rules"
PLUGIN_URL = "http://plugin.test"


@pytest.fixture
def helpdesk():
    desk = DemoHelpdesk()
    with HelpdeskServer(desk) as server:
        desk.url = server.url
        yield desk


@pytest.fixture
def client(helpdesk):
    return ChatwootClient(helpdesk.url, 1, DEMO_API_TOKEN, max_attempts=1)


@pytest.fixture
def secret(helpdesk, client) -> str:
    """Install the plugin as `sla-plugin install` does; the webhook's secret is the helpdesk's."""
    report = install(client, load_manifest(), PLUGIN_URL, dashboard_app=True, sidebar_token="side")
    return report.webhook_secret


def test_every_call_needs_the_access_token(helpdesk):
    url = f"{helpdesk.url}/api/v1/accounts/1/labels"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"api_access_token": "wrong"}, timeout=5).json() == {
        "error": "Invalid Access Token"
    }
    assert requests.get(url, headers={"api_access_token": DEMO_API_TOKEN}, timeout=5).status_code == 200
    with pytest.raises(AuthError):
        ChatwootClient(helpdesk.url, 1, "wrong", max_attempts=1).list_account_labels()
    with pytest.raises(AuthError):  # another account than the token's
        ChatwootClient(helpdesk.url, 2, DEMO_API_TOKEN, max_attempts=1).list_account_labels()


def test_setting_conversation_labels_replaces_the_whole_list(helpdesk, client):
    conversation = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello")
    assert client.set_conversation_labels(conversation, ["billing", "VIP"]) == ["billing", "vip"]
    assert client.set_conversation_labels(conversation, ["sla-missed"]) == ["sla-missed"]
    assert client.conversation_labels(conversation) == ["sla-missed"]
    assert client.get_conversation(conversation)["labels"] == ["sla-missed"]
    with pytest.raises(NotFound):
        client.conversation_labels(999)


def test_account_labels_are_created_once_lower_cased_and_deleted(client):
    created = client.create_account_label("SLA-Missed", "missed", "#C62828")
    assert created["title"] == "sla-missed"
    with pytest.raises(Unprocessable, match="already been taken"):
        client.create_account_label("sla-missed", "again", "#C62828")
    with pytest.raises(Unprocessable):
        client.create_account_label("SLA: missed", "not a title Chatwoot allows", "#C62828")
    assert [label["title"] for label in client.list_account_labels()] == ["sla-missed"]
    client.delete_account_label(created["id"])
    assert client.list_account_labels() == []


def test_webhook_registration_returns_a_generated_secret(helpdesk, client):
    created = client.create_webhook(f"{PLUGIN_URL}/webhooks/chatwoot", ["message_created"], name="SLA")
    assert len(created["secret"]) >= 24
    assert client.list_webhooks() == [created]
    second = client.create_webhook(f"{PLUGIN_URL}/other", ["message_created"])
    assert second["secret"] != created["secret"]
    client.delete_webhook(created["id"])
    assert [hook["id"] for hook in client.list_webhooks()] == [second["id"]]
    with pytest.raises(Unprocessable):
        client.create_webhook(f"{PLUGIN_URL}/x", ["no_such_event"])


def test_install_sets_up_labels_webhook_and_dashboard_app_idempotently(client, secret):
    assert {label["title"] for label in client.list_account_labels()} == {"sla-on-track", "sla-at-risk", "sla-missed"}
    assert client.list_dashboard_apps()[0]["content"][0]["url"] == f"{PLUGIN_URL}/sidebar?token=side"
    again = install(client, load_manifest(), PLUGIN_URL, dashboard_app=True)
    assert again.webhook_secret == secret
    assert len(client.list_webhooks()) == 1 and len(client.list_dashboard_apps()) == 1


def test_private_notes_and_the_conversation_list(helpdesk, client):
    first = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello")
    second = helpdesk.open_conversation(script.LEE, script.CHAT, "Hi")
    helpdesk.set_status(second, "resolved")
    note = client.create_private_note(first, "SLA missed [marker]")
    messages = client.list_messages(first)
    assert [(message["id"], message["private"]) for message in messages][-1] == (note, True)
    assert messages[-1]["sender"]["id"] == PLUGIN_USER_ID
    assert [conversation["id"] for conversation in client.list_conversations("open")] == [first]
    assert [conversation["id"] for conversation in client.list_conversations("resolved")] == [second]
    # A private note answers nobody: the customer is still waiting.
    assert client.get_conversation(first)["first_reply_created_at"] == 0  # REST: Unix seconds, 0 for none


def test_custom_attributes_replace_the_whole_object(helpdesk, client):
    conversation = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello")
    client.set_custom_attributes(conversation, {"product": "shop", "sla_due": "x"})
    assert client.set_custom_attributes(conversation, {"product": "app"}) == {"product": "app"}
    assert client.get_custom_attributes(conversation) == {"product": "app"}


def test_a_conversations_webhooks_are_signed_like_chatwoots_and_normalise(helpdesk, client, secret):
    connector = ChatwootConnector(webhook_secret=secret, plugin_user_id=PLUGIN_USER_ID)
    with helpdesk.capturing() as deliveries:
        conversation = helpdesk.open_conversation(script.JANE, script.CHAT, "Where is my order?", assignee=script.SAM)
        helpdesk.agent_replies(conversation, script.SAM, "On its way!")
        client.set_conversation_labels(conversation, ["sla-on-track"])  # the plugin's write comes back too
        client.create_private_note(conversation, "a note by the plugin")
        helpdesk.set_status(conversation, "resolved")
        helpdesk.customer_writes(conversation, "It still has not arrived.")  # reopens

    now = datetime.now(UTC)
    events = []
    for delivery in deliveries:
        headers = delivery.headers()
        assert headers["X-Chatwoot-Signature"].startswith("sha256=")
        assert abs(int(headers["X-Chatwoot-Timestamp"]) - now.timestamp()) < 60
        connector.verify(headers, delivery.body, {}, now)
        assert connector.delivery_key(headers, delivery.body) == delivery.delivery_id
        events.append(connector.normalize(json.loads(delivery.body), now))
    names = [delivery.event for delivery in deliveries]
    assert names == [
        "conversation_created",
        "message_created",  # created, the first customer message
        "message_created",
        "conversation_updated",  # the reply, first_reply + waiting_since
        "conversation_updated",  # the plugin's labels
        "message_created",  # the plugin's private note
        "conversation_updated",
        "conversation_status_changed",  # resolved
        "message_created",
        "conversation_updated",
        "conversation_status_changed",
    ]  # reopened
    kinds = [event.kind for event in events]
    assert kinds == [
        CONVERSATION_CREATED,
        MESSAGE_CREATED,
        MESSAGE_CREATED,
        CONVERSATION_UPDATED,
        CONVERSATION_UPDATED,
        MESSAGE_CREATED,
        STATUS_CHANGED,
        STATUS_CHANGED,
        MESSAGE_CREATED,
        STATUS_CHANGED,
        STATUS_CHANGED,
    ]
    assert [events[i].message.sender_kind for i in (1, 2, 5, 8)] == [CONTACT, HUMAN, BOT, CONTACT]
    assert events[5].message.private
    assert [events[i].new_status for i in (6, 7, 9, 10)] == ["resolved", "resolved", "open", "open"]
    label_change = json.loads(deliveries[4].body)["changed_attributes"]
    assert label_change[0] == {"label_list": {"previous_value": [], "current_value": ["sla-on-track"]}}
    assert events[4].conversation.labels == ("sla-on-track",)


def test_a_tampered_or_stale_delivery_is_refused(helpdesk, secret):
    connector = ChatwootConnector(webhook_secret=secret)
    with helpdesk.capturing() as deliveries:
        helpdesk.open_conversation(script.JANE, script.CHAT, "Hello")
    delivery = deliveries[1]  # the first message
    now = datetime.now(UTC)
    connector.verify(delivery.headers(), delivery.body, {}, now)
    with pytest.raises(WebhookRejected):
        connector.verify(delivery.headers(), delivery.body.replace(b"Hello", b"Hallo"), {}, now)
    with pytest.raises(WebhookRejected):
        connector.verify(delivery.headers(sent_at=now.timestamp() - 3600), delivery.body, {}, now)


def test_the_scripted_morning_tells_the_story_under_the_demo_rules(helpdesk, secret):
    """Played from a start in the past, the whole script is sent at once with its real (past) timestamps;
    replaying those webhooks at chosen instants shows what the live demo shows as it happens."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    lines: list[str] = []
    with helpdesk.capturing() as deliveries:
        ids = script.play(helpdesk, lines.append, start=start)
    assert len(lines) == 20 and all(line.startswith("#1") for line in lines)
    bodies = [delivery.body.decode() for delivery in deliveries]
    rules = load_rules(DEMO_RULES)

    def statuses(seconds: float) -> dict[str, str]:
        at = start + timedelta(seconds=seconds)
        result = replay(bodies, ChatwootConnector(), rules.match, rules.content_hash, at)
        assert result.errors == []
        by_id = {evaluation.conversation_id: evaluation.to_replay_json() for evaluation in result.evaluations}
        return {name: by_id[conversation]["status"] for name, conversation in ids.items()}

    assert statuses(30) == {
        "jane": "hit",
        "omar": "on_track",
        "lee": "on_track",
        "ana": "on_track",
        "max": "hit",
        "kim": "on_track",
    }
    assert statuses(36) == {
        "jane": "hit",
        "omar": "at_risk",
        "lee": "at_risk",
        "ana": "on_track",
        "max": "hit",
        "kim": "at_risk",
    }
    assert statuses(60) == {"jane": "hit", "omar": "missed", "lee": "missed", "ana": "hit", "max": "hit", "kim": "hit"}
    # The weekend email's webhooks come Monday's reply first (see script.play_weekend).
    email_bodies = [
        json.loads(body)
        for body in bodies
        if ids["max"] in (json.loads(body).get("id"), json.loads(body).get("conversation", {}).get("id"))
    ]
    assert (email_bodies[0]["event"], email_bodies[0]["message_type"]) == ("message_created", "outgoing")
    weekend = replay(bodies, ChatwootConnector(), rules.match, rules.content_hash).evaluations
    email = next(evaluation for evaluation in weekend if evaluation.conversation_id == ids["max"]).to_replay_json()
    assert email["policy"] == "email-office-hours"
    written = datetime.fromisoformat(email["metrics"]["first_response"]["started_at"].replace("Z", "+00:00"))
    answered = datetime.fromisoformat(email["metrics"]["first_response"]["stopped_at"].replace("Z", "+00:00"))
    assert written.astimezone(script.OFFICE_ZONE).strftime("%a %H:%M") == "Fri 16:55"
    assert answered.astimezone(script.OFFICE_ZONE).strftime("%a %H:%M") == "Mon 09:20"
    assert email["metrics"]["first_response"]["status"] == "hit"


@pytest.mark.parametrize(
    "now, friday",
    [
        ("2026-11-23T14:00:00+00:00", "2026-11-20"),  # a Monday afternoon: this morning is over
        ("2026-11-23T07:00:00+00:00", "2026-11-13"),  # a Monday at 08:00 in Berlin: the week before
        ("2026-11-21T12:00:00+00:00", "2026-11-13"),  # a Saturday
        ("2026-11-20T18:00:00+00:00", "2026-11-13"),  # a Friday evening
        ("2026-03-30T10:00:00+00:00", "2026-03-27"),  # the Monday after the switch to summer time
    ],
)
def test_the_weekend_conversation_uses_the_latest_weekend_that_is_over(now, friday):
    weekend = script.last_weekend(datetime.fromisoformat(now))
    assert weekend.written.date().isoformat() == friday
    assert weekend.resolved <= datetime.fromisoformat(now)
    assert weekend.written.astimezone(script.OFFICE_ZONE).strftime("%a %H:%M") == "Fri 16:55"
    assert weekend.answered.astimezone(script.OFFICE_ZONE).strftime("%a %H:%M") == "Mon 09:20"


def test_the_dev_session_installs_into_its_helpdesk_and_summarises_from_the_store(tmp_path):
    from plugin.adapters.store import Store
    from plugin.demo.run import DemoSession

    lines: list[str] = []
    session = DemoSession(8123, echo=lines.append)
    try:
        settings = session.prepare({"SLA_ADMIN_TOKEN": "the operator's own"}, tmp_path)
        (hook,) = session.helpdesk.webhooks.values()
        assert hook.url == "http://127.0.0.1:8123/webhooks/chatwoot"
        assert settings["CHATWOOT_WEBHOOK_SECRET"] == hook.secret
        assert settings["CHATWOOT_URL"] == session.server.url and settings["CHATWOOT_ACCOUNT_ID"] == "1"
        assert Path(settings["SLA_RULES_DIR"]) == DEMO_RULES
        assert settings["DATABASE_URL"] == f"sqlite:///{tmp_path / 'demo.sqlite3'}"
        assert "SLA_ADMIN_TOKEN" not in settings  # what the environment sets wins
        assert any("label sla-missed: created" in line for line in lines)
        assert len(session.helpdesk.dashboard_apps) == 1
        # The demo says how to read its own data from another terminal, and where the sidebar is.
        command, sidebar = session.address_lines()
        assert command == f"reports in a terminal: DATABASE_URL=sqlite:///{tmp_path / 'demo.sqlite3'} sla-plugin report"
        assert (
            sidebar == f"sidebar (Dashboard App): http://127.0.0.1:8123/sidebar?token={settings['SLA_SIDEBAR_TOKEN']}"
        )

        Store.from_url(settings["DATABASE_URL"]).migrate()
        session.plugin_url = "http://127.0.0.1:1"  # nothing listens: the summary falls back to the store
        summary = session.summary_lines()
        assert summary[0].startswith("(reports API unavailable")
        assert summary[1] == "hit rate n/a: 0 of 0 conversations under an SLA kept it, 0 missed"
    finally:
        session.stop()
