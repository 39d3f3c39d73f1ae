"""The reconciler recovers what lost webhooks hid, through the same stream and engine as live webhooks."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import responses
from rq import Queue, SimpleWorker

from connectors.chatwoot.client import ChatwootClient
from plugin.adapters import redis_keys
from plugin.adapters import streams as ingest
from plugin.jobs.reconciler import reconcile

BASE = "http://chatwoot.test"
API = f"{BASE}/api/v1/accounts/1"
RULES = {
    "policies": {"standard": {"name": "Standard", "first_response": "1h", "resolution": "24h"}},
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "standard"}],
}


@pytest.fixture
def runtime(runtime_factory):
    return runtime_factory(RULES, CHATWOOT_URL=BASE, CHATWOOT_ACCOUNT_ID="1", CHATWOOT_API_TOKEN="token")


def process_events(redis) -> None:
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=redis)], connection=redis).work(burst=True)


def test_a_lost_reply_and_a_lost_resolution_are_recovered(runtime, fixture_payload):
    # Only the creation webhook arrived; the first reply (09:42:10) and the resolution (11:00) were lost.
    ingest.submit(
        runtime.redis,
        "chatwoot",
        json.dumps(fixture_payload("conversation_created")).encode(),
        received_at=datetime.now(UTC),
    )
    process_events(runtime.redis)
    assert runtime.store.summary((1, 87))["metrics"]["first_response"]["status"] == "missed"

    resolved = fixture_payload("conversation_status_changed-resolved")
    api_conversation = {
        key: value for key, value in resolved.items() if key not in ("event", "changed_attributes", "account")
    }
    incoming = fixture_payload("conversation_created")["messages"][0]  # push format, as the API lists them
    reply = resolved["messages"][0]
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": []}})
        mock.add(responses.GET, f"{API}/conversations/87", json=api_conversation)
        mock.add(responses.GET, f"{API}/conversations/87/messages", json={"payload": [incoming, reply]})
        submitted = reconcile(runtime, ChatwootClient(BASE, 1, "token", sleep=lambda seconds: None))
    assert submitted == 3
    process_events(runtime.redis)

    summary = runtime.store.summary((1, 87))
    assert summary["status"] == "hit"
    assert summary["metrics"]["first_response"] == {
        "status": "hit",
        "started_at": "2026-01-14T09:00:00Z",
        "due_at": "2026-01-14T10:00:00Z",
        "stopped_at": "2026-01-14T09:42:10Z",
        "missed_at": None,
        "misses": 0,
    }
    assert summary["metrics"]["resolution"]["stopped_at"] == "2026-01-14T11:00:00Z"
    kinds = [entry["kind"] for entry in runtime.store.log_entries((1, 87))]
    assert "miss_corrected" in kinds


def test_reconciling_twice_changes_nothing_more(runtime, fixture_payload):
    created = fixture_payload("conversation_created")
    api_conversation = {key: value for key, value in created.items() if key not in ("event", "account")}
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": [api_conversation]}})
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": []}})
        mock.add(responses.GET, f"{API}/conversations/87/messages", json={"payload": created["messages"]})
        reconcile(runtime, ChatwootClient(BASE, 1, "token", sleep=lambda seconds: None))
        process_events(runtime.redis)
        first = runtime.store.summary((1, 87))
        log_size = len(runtime.store.log_entries((1, 87)))
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": [api_conversation]}})
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": []}})
        reconcile(runtime, ChatwootClient(BASE, 1, "token", sleep=lambda seconds: None))
        process_events(runtime.redis)
    assert first["policy"] == "standard"
    assert runtime.store.summary((1, 87))["metrics"] == first["metrics"]
    assert len(runtime.store.log_entries((1, 87))) == log_size


def rest_conversation(webhook_payload: dict) -> dict:
    """A conversation as Chatwoot's REST API renders it (app/views/api/v1/conversations/partials/
    _conversation.json.jbuilder): the channel only at ``meta.channel``, no ``account`` nor ``contact_inbox``."""
    conversation = {
        key: value
        for key, value in webhook_payload.items()
        if key not in ("event", "changed_attributes", "account", "channel", "contact_inbox")
    }
    conversation["meta"] = {**webhook_payload["meta"], "channel": webhook_payload["channel"]}
    return conversation


def rest_message(push_message: dict) -> dict:
    """A message as REST lists it (app/views/api/v1/models/_message.json.jbuilder): integer message_type,
    Unix seconds, no sender_type, sender_id nor additional_attributes."""
    dropped = ("sender_type", "sender_id", "additional_attributes", "conversation", "account_id", "updated_at")
    return {key: value for key, value in push_message.items() if key not in dropped}


CHANNEL_RULES = {
    "policies": {
        "chat": {"name": "Chat", "first_response": "1h", "resolution": "24h"},
        "other": {"name": "Other", "first_response": "8h", "resolution": "72h"},
    },
    "rules": [
        {
            "name": "Web chat",
            "when": {"field": "channel", "op": "equals", "value": "Channel::WebWidget"},
            "apply": "chat",
        },
        {"name": "Everything else", "when": {"all": []}, "apply": "other"},
    ],
}


def test_a_reconciled_conversation_keeps_its_channel_based_policy(runtime_factory, fixture_payload):
    # REST carries the channel only at meta.channel: a reconcile pass must not switch the policy.
    runtime = runtime_factory(CHANNEL_RULES, CHATWOOT_URL=BASE, CHATWOOT_ACCOUNT_ID="1", CHATWOOT_API_TOKEN="token")
    created = fixture_payload("conversation_created")
    ingest.submit(runtime.redis, "chatwoot", json.dumps(created).encode(), received_at=datetime.now(UTC))
    process_events(runtime.redis)
    assert runtime.store.summary((1, 87))["policy"] == "chat"
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": [rest_conversation(created)]}})
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": []}})
        mock.add(
            responses.GET,
            f"{API}/conversations/87/messages",
            json={"payload": [rest_message(message) for message in created["messages"]]},
        )
        reconcile(runtime, ChatwootClient(BASE, 1, "token", sleep=lambda seconds: None))
    process_events(runtime.redis)
    assert runtime.store.summary((1, 87))["policy"] == "chat"
    assert "policy_changed" not in [entry["kind"] for entry in runtime.store.log_entries((1, 87))]


def test_a_conversation_the_token_may_not_see_is_skipped_and_the_pass_goes_on(runtime, fixture_payload):
    # An agent's token: Chatwoot answers 401 "You are not authorized to do this action" for another inbox.
    created = fixture_payload("conversation_created")
    hidden = {**rest_conversation(created), "id": 86}
    with responses.RequestsMock() as mock:
        mock.add(
            responses.GET,
            f"{API}/conversations",
            json={"data": {"payload": [hidden, rest_conversation(created)]}},
        )
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": []}})
        mock.add(
            responses.GET,
            f"{API}/conversations/86/messages",
            status=401,
            json={"error": "You are not authorized to do this action"},
        )
        mock.add(
            responses.GET,
            f"{API}/conversations/87/messages",
            json={"payload": [rest_message(message) for message in created["messages"]]},
        )
        submitted = reconcile(runtime, ChatwootClient(BASE, 1, "token", sleep=lambda seconds: None))
    assert submitted == 2  # conversation 87's status and its one message
    process_events(runtime.redis)
    assert runtime.store.summary((1, 87)) is not None
    assert runtime.store.summary((1, 86)) is None
    failures = runtime.redis.hgetall(redis_keys.metric("sla_reconcile_failures_total"))
    assert list(failures.values()) == [b"1"]


def test_older_messages_are_read_page_by_page(runtime, fixture_payload):
    # GET .../messages gives the latest 20; the first reply is older than that and its webhook was lost.
    created = fixture_payload("conversation_created")
    incoming = rest_message(created["messages"][0])
    reply = {
        **incoming,
        "id": 9003,
        "message_type": 1,
        "created_at": 1768383730,  # 09:42:10
        "content": "Sorry about that!",
        "sender": {"id": 7, "name": "Sam Agent", "type": "user"},
    }
    later = [
        {**incoming, "id": 9100 + number, "created_at": 1768384000 + 60 * number, "content": f"still there? {number}"}
        for number in range(20)
    ]
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": [rest_conversation(created)]}})
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": []}})
        mock.add(
            responses.GET,
            f"{API}/conversations/87/messages",
            json={"payload": later},
            match=[responses.matchers.query_param_matcher({})],
        )
        mock.add(
            responses.GET,
            f"{API}/conversations/87/messages",
            json={"payload": [incoming, reply]},
            match=[responses.matchers.query_param_matcher({"before": "9100"})],
        )
        reconcile(runtime, ChatwootClient(BASE, 1, "token", sleep=lambda seconds: None))
    process_events(runtime.redis)
    first_response = runtime.store.summary((1, 87))["metrics"]["first_response"]
    assert (first_response["status"], first_response["stopped_at"]) == ("hit", "2026-01-14T09:42:10Z")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda message: message["content_attributes"].update(automation_rule_id=4), id="automation"),
        pytest.param(lambda message: message.update(message_type=3), id="template"),
        pytest.param(lambda message: message.pop("sender"), id="no-sender"),
    ],
)
def test_recovered_automated_messages_are_no_human_reply(runtime, fixture_payload, change):
    created = fixture_payload("conversation_created")
    incoming = rest_message(created["messages"][0])
    automated = {
        **incoming,
        "id": 9003,
        "message_type": 1,
        "created_at": 1768383730,
        "content": "We got your message",
        "content_attributes": {},
        "sender": {"id": 7, "name": "Sam Agent", "type": "user"},
    }
    change(automated)
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": [rest_conversation(created)]}})
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": []}})
        mock.add(responses.GET, f"{API}/conversations/87/messages", json={"payload": [incoming, automated]})
        reconcile(runtime, ChatwootClient(BASE, 1, "token", sleep=lambda seconds: None))
    process_events(runtime.redis)
    assert runtime.store.summary((1, 87))["metrics"]["first_response"]["stopped_at"] is None


def test_a_recovered_campaign_message_is_no_human_reply(runtime, fixture_payload):
    # A campaign opens its conversation with its message, sent as the campaign's user; REST leaves out the
    # additional_attributes.campaign_id that tells it apart (Campaigns::CampaignConversationBuilder).
    created = fixture_payload("conversation_created")
    incoming = {**rest_message(created["messages"][0]), "created_at": 1768381500}
    campaign = {
        **incoming,
        "id": 9000,
        "message_type": 1,
        "created_at": 1768381200,
        "content": "Need help with your order?",
        "sender": {"id": 7, "name": "Sam Agent", "type": "user"},
    }
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": [rest_conversation(created)]}})
        mock.add(responses.GET, f"{API}/conversations", json={"data": {"payload": []}})
        mock.add(responses.GET, f"{API}/conversations/87/messages", json={"payload": [campaign, incoming]})
        reconcile(runtime, ChatwootClient(BASE, 1, "token", sleep=lambda seconds: None))
    process_events(runtime.redis)
    assert runtime.store.summary((1, 87))["metrics"]["first_response"]["stopped_at"] is None


# -- against the fake Chatwoot of every version profile --------------------------------------------------


def test_what_lost_webhooks_hid_is_recovered_from_every_chatwoot_version(chatwoot, runtime_factory):
    # Only the creation webhooks arrive; everything after is recovered from the REST API. The store must end
    # where replaying every webhook would have put it: same policy (by channel), same clocks.
    from datetime import timedelta

    from fake_chatwoot import register_webhook, replayed

    from plugin.demo import script

    helpdesk = chatwoot.helpdesk
    register_webhook(helpdesk)
    runtime = runtime_factory(CHANNEL_RULES, CHATWOOT_URL=chatwoot.url, CHATWOOT_ACCOUNT_ID="1")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    with helpdesk.capturing() as arrived:
        chat = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello", at=start)
        mail = helpdesk.open_conversation(script.OMAR, script.EMAIL, "Invoice?", at=start)
    with helpdesk.capturing() as lost:
        helpdesk.automation_replies(chat, "Thanks, we got it", at=start + timedelta(minutes=1))
        helpdesk.agent_replies(chat, script.SAM, "Here to help", at=start + timedelta(minutes=40))
        for number in range(25):  # more than one page of messages after the reply
            helpdesk.customer_writes(chat, f"detail {number}", at=start + timedelta(minutes=41 + number))
        helpdesk.agent_replies(chat, script.SAM, "All clear", at=start + timedelta(minutes=70))
        helpdesk.agent_replies(mail, script.PRIYA, "Sent again", at=start + timedelta(hours=2))
        helpdesk.set_status(mail, "resolved", at=start + timedelta(hours=3))
    for delivery in arrived:
        ingest.submit(runtime.redis, "chatwoot", delivery.body, received_at=datetime.now(UTC))
    process_events(runtime.redis)

    reconcile(runtime, ChatwootClient(chatwoot.url, 1, helpdesk.api_token, sleep=lambda seconds: None))
    process_events(runtime.redis)

    expected = replayed([*arrived, *lost], runtime.settings.SLA_RULES_DIR)
    for key in ((1, chat), (1, mail)):
        stored = runtime.store.summary(key)
        assert stored["policy"] == expected[key]["policy"]
        for metric in ("first_response", "resolution"):
            assert stored["metrics"][metric] == expected[key]["metrics"][metric], (key, metric)
    assert runtime.store.summary((1, chat))["metrics"]["first_response"]["stopped_at"] == iso(start, minutes=40)
    assert runtime.redis.xlen(redis_keys.DEAD_LETTERS) == 0


def iso(start: datetime, minutes: int) -> str:
    from datetime import timedelta

    return (start + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_agent_token_reconciles_the_inboxes_it_sees_on_the_fake(chatwoot, runtime_factory):
    from datetime import timedelta

    from fake_chatwoot import register_webhook

    from plugin.demo import script

    helpdesk = chatwoot.helpdesk
    register_webhook(helpdesk)
    helpdesk.add_token("agent-token", script.SAM, inbox_ids=[script.CHAT.id])
    runtime = runtime_factory(CHANNEL_RULES, CHATWOOT_URL=chatwoot.url, CHATWOOT_ACCOUNT_ID="1")
    start = datetime.now(UTC) - timedelta(hours=1)
    with helpdesk.capturing() as arrived:
        mail = helpdesk.open_conversation(script.OMAR, script.EMAIL, "Invoice?", at=start)
        chat = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello", at=start)
    for delivery in arrived:
        ingest.submit(runtime.redis, "chatwoot", delivery.body, received_at=datetime.now(UTC))
    process_events(runtime.redis)
    with helpdesk.capturing():
        helpdesk.agent_replies(chat, script.SAM, "Hi Jane", at=start + timedelta(minutes=5))
        helpdesk.agent_replies(mail, script.PRIYA, "Hi Omar", at=start + timedelta(minutes=5))

    # The e-mail conversation is believed open but answers 401 "not authorized to do this action".
    reconcile(runtime, ChatwootClient(chatwoot.url, 1, "agent-token", sleep=lambda seconds: None))
    process_events(runtime.redis)
    assert runtime.store.summary((1, chat))["metrics"]["first_response"]["status"] == "hit"
    assert runtime.store.summary((1, mail))["metrics"]["first_response"]["status"] == "running"
    assert runtime.redis.hgetall(redis_keys.metric("sla_reconcile_failures_total")) == {
        b'{reason="not_permitted"}': b"1"
    }
