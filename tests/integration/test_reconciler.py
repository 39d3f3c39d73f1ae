"""The reconciler recovers what lost webhooks hid, through the same stream and engine as live webhooks.

The helpdesk is the fake Chatwoot (``plugin.demo.helpdesk``) of every version profile, answering over HTTP as
Chatwoot's REST API does: the channel only at ``meta.channel``, messages 20 a page with ``before=``, numeric
``message_type`` and no ``sender_type`` nor ``additional_attributes``, 401 per conversation for an agent's
token. A conversation's webhooks that "arrived" are submitted by the test; the rest are lost.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fake_chatwoot import register_webhook, replayed
from rq import Queue, SimpleWorker

from connectors.chatwoot.client import ChatwootClient
from plugin.adapters import redis_keys
from plugin.adapters import streams as ingest
from plugin.demo import script
from plugin.jobs.reconciler import reconcile

RULES = {
    "policies": {
        "chat": {"name": "Chat", "first_response": "1h", "resolution": "24h"},
        "email": {"name": "Email", "first_response": "8h", "resolution": "72h"},
    },
    "rules": [
        {"name": "Chat", "when": {"field": "channel", "op": "equals", "value": "Channel::WebWidget"}, "apply": "chat"},
        {"name": "Everything else", "when": {"all": []}, "apply": "email"},
    ],
}


@pytest.fixture
def helpdesk(chatwoot):
    register_webhook(chatwoot.helpdesk)
    return chatwoot.helpdesk


@pytest.fixture
def runtime(runtime_factory, chatwoot):
    return runtime_factory(RULES, CHATWOOT_URL=chatwoot.url, CHATWOOT_ACCOUNT_ID="1")


@pytest.fixture
def start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)


def process_events(redis) -> None:
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=redis)], connection=redis).work(burst=True)


def arrive(runtime, deliveries) -> None:
    """The webhooks that did reach the plugin."""
    for delivery in deliveries:
        ingest.submit(runtime.redis, "chatwoot", delivery.body, received_at=datetime.now(UTC))
    process_events(runtime.redis)


def reconcile_with(runtime, chatwoot, token: str | None = None) -> int:
    client = ChatwootClient(chatwoot.url, 1, token or chatwoot.helpdesk.api_token, sleep=lambda seconds: None)
    submitted = reconcile(runtime, client)
    process_events(runtime.redis)
    return submitted


def at(start: datetime, minutes: float) -> datetime:
    return start + timedelta(minutes=minutes)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def first_response(runtime, conversation: int) -> dict:
    return runtime.store.summary((1, conversation))["metrics"]["first_response"]


def test_what_lost_webhooks_hid_is_recovered_from_every_chatwoot_version(runtime, chatwoot, helpdesk, start):
    # Only the creation webhooks arrive; everything after is recovered from the REST API. The store must end
    # where replaying every webhook would have put it: same policy (by channel, which REST has only at
    # meta.channel), same clocks, the reply found behind more than one page of messages.
    with helpdesk.capturing() as arrived:
        chat = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello", at=start)
        mail = helpdesk.open_conversation(script.OMAR, script.EMAIL, "Invoice?", at=start)
    arrive(runtime, arrived)
    assert runtime.store.summary((1, chat))["policy"] == "chat"
    with helpdesk.capturing() as lost:
        helpdesk.automation_replies(chat, "Thanks, we got it", at=at(start, 1))
        helpdesk.agent_replies(chat, script.SAM, "Here to help", at=at(start, 40))
        for number in range(25):  # more than one page of messages after the reply
            helpdesk.customer_writes(chat, f"detail {number}", at=at(start, 41 + number))
        helpdesk.agent_replies(chat, script.SAM, "All clear", at=at(start, 70))
        helpdesk.agent_replies(mail, script.PRIYA, "Sent again", at=at(start, 120))
        helpdesk.set_status(mail, "resolved", at=at(start, 180))

    reconcile_with(runtime, chatwoot)

    expected = replayed([*arrived, *lost], runtime.settings.SLA_RULES_DIR)
    for key in ((1, chat), (1, mail)):
        stored = runtime.store.summary(key)
        assert stored["policy"] == expected[key]["policy"]
        for metric in ("first_response", "resolution"):
            assert stored["metrics"][metric] == expected[key]["metrics"][metric], (key, metric)
    assert first_response(runtime, chat)["stopped_at"] == iso(at(start, 40))  # not the automation's message
    assert "policy_changed" not in [entry["kind"] for entry in runtime.store.log_entries((1, chat))]
    assert runtime.redis.xlen(redis_keys.DEAD_LETTERS) == 0


def test_a_recovered_reply_corrects_a_miss_and_reconciling_twice_changes_nothing_more(
    runtime, chatwoot, helpdesk, start
):
    with helpdesk.capturing() as arrived:
        conversation = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello", at=start)
    arrive(runtime, arrived)
    assert first_response(runtime, conversation)["status"] == "missed"  # nobody answered, as far as we know
    with helpdesk.capturing():
        helpdesk.agent_replies(conversation, script.SAM, "Hi Jane", at=at(start, 30))
        helpdesk.set_status(conversation, "resolved", at=at(start, 60))

    reconcile_with(runtime, chatwoot)
    summary = runtime.store.summary((1, conversation))
    log_size = len(runtime.store.log_entries((1, conversation)))
    reconcile_with(runtime, chatwoot)

    assert summary["status"] == "hit"
    assert summary["metrics"]["first_response"]["stopped_at"] == iso(at(start, 30))
    assert summary["metrics"]["resolution"]["stopped_at"] == iso(at(start, 60))
    assert "miss_corrected" in [entry["kind"] for entry in runtime.store.log_entries((1, conversation))]
    assert runtime.store.summary((1, conversation))["metrics"] == summary["metrics"]
    assert len(runtime.store.log_entries((1, conversation))) == log_size


def test_an_agent_token_reconciles_the_inboxes_it_sees_and_the_pass_goes_on(runtime, chatwoot, helpdesk, start):
    # The e-mail conversation is believed open but answers 401 "You are not authorized to do this action".
    helpdesk.add_token("agent-token", script.SAM, inbox_ids=[script.CHAT.id])
    with helpdesk.capturing() as arrived:
        mail = helpdesk.open_conversation(script.OMAR, script.EMAIL, "Invoice?", at=start)
        chat = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello", at=start)
    arrive(runtime, arrived)
    with helpdesk.capturing():
        helpdesk.agent_replies(chat, script.SAM, "Hi Jane", at=at(start, 5))
        helpdesk.agent_replies(mail, script.PRIYA, "Hi Omar", at=at(start, 5))

    reconcile_with(runtime, chatwoot, "agent-token")

    assert first_response(runtime, chat)["status"] == "hit"
    assert first_response(runtime, mail)["stopped_at"] is None
    failures = runtime.redis.hgetall(redis_keys.metric("sla_reconcile_failures_total"))
    assert failures == {b'{reason="not_permitted"}': b"1"}


@pytest.mark.parametrize("sender", ["automation", "campaign"])
def test_recovered_automated_and_campaign_messages_are_no_human_reply(runtime, chatwoot, helpdesk, start, sender):
    # REST leaves out additional_attributes (a campaign's campaign_id) and sender_type: an automation's
    # message is told by content_attributes.automation_rule_id and its missing sender; a campaign's by opening
    # its conversation before the customer wrote (Campaigns::CampaignConversationBuilder).
    with helpdesk.capturing():  # every webhook lost
        if sender == "campaign":
            conversation = helpdesk.campaign_opens(
                script.JANE, script.CHAT, script.SAM, "Need help with your order?", at=start
            )
            helpdesk.customer_writes(conversation, "Yes, where is it?", at=at(start, 2))
        else:
            conversation = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello", at=start)
            helpdesk.automation_replies(conversation, "We got your message", at=at(start, 1))

    reconcile_with(runtime, chatwoot)

    assert first_response(runtime, conversation)["stopped_at"] is None
