"""Actions on the helpdesk besides labels and notes, against the fake Chatwoot of every version profile over
real HTTP: prioritize rules set an empty priority once, and SLA rules see it at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue, SimpleWorker

from plugin.adapters.redis_keys import EVENTS_QUEUE, WRITEBACK_QUEUE
from plugin.demo import script

RULES = {
    "policies": {
        "urgent": {"first_response": "1h", "warn_before": "10m"},
        "standard": {"first_response": "4h", "warn_before": "10m"},
    },
    "rules": [
        {"name": "urgent", "when": {"field": "priority", "op": "equals", "value": "urgent"}, "apply": "urgent"},
        {"name": "everything else", "when": {"all": []}, "apply": "standard"},
    ],
    "prioritize": [
        {
            "name": "E-mail is urgent",
            "priority": "urgent",
            "when": {"field": "channel", "op": "equals", "value": "Channel::Email"},
        }
    ],
}


def work(redis) -> None:
    queues = [Queue(EVENTS_QUEUE, connection=redis), Queue(WRITEBACK_QUEUE, connection=redis)]
    SimpleWorker(queues, connection=redis).work(burst=True)


@pytest.fixture
def plugin(chatwoot, runtime_factory, make_app, monkeypatch):
    """The runtime and web client of a plugin installed into the fake Chatwoot."""
    from fake_chatwoot import plugin_on_fake

    return plugin_on_fake(chatwoot, runtime_factory, make_app, monkeypatch, RULES)


def test_an_empty_priority_is_set_once_and_rules_see_it_at_once(chatwoot, plugin, monkeypatch):
    from fake_chatwoot import post_deliveries

    runtime, client = plugin
    helpdesk = chatwoot.helpdesk
    calls: list[tuple[int, str | None]] = []
    original = helpdesk.api_toggle_priority
    monkeypatch.setattr(
        helpdesk,
        "api_toggle_priority",
        lambda conversation, priority: (calls.append((conversation, priority)), original(conversation, priority))[1],
    )
    now = datetime.now(UTC)
    with helpdesk.capturing() as deliveries:
        mail = helpdesk.open_conversation(script.JANE, script.EMAIL, "Invoice is wrong", at=now - timedelta(minutes=10))
        chat = helpdesk.open_conversation(script.LEE, script.CHAT, "Hi", at=now - timedelta(minutes=10))
        low = helpdesk.open_conversation(
            script.LEE, script.EMAIL, "No hurry", at=now - timedelta(minutes=10), priority="low"
        )
    post_deliveries(client, deliveries)
    work(runtime.redis)

    assert runtime.store.summary((1, mail))["policy"] == "urgent"  # before any echo of the priority
    assert runtime.store.summary((1, chat))["policy"] == "standard"
    assert runtime.store.summary((1, low))["policy"] == "standard"  # a priority that is set is never changed
    assert calls == [(mail, "urgent")]
    assert [conversation.priority for conversation in (helpdesk.conversations[mail], helpdesk.conversations[low])] == [
        "urgent",
        "low",
    ]

    with helpdesk.capturing() as echoes:
        post_deliveries(client, [delivery.again() for delivery in deliveries], outcomes=("queued", "duplicate"))
        work(runtime.redis)
    post_deliveries(client, echoes)  # Chatwoot's conversation_updated for our priority
    work(runtime.redis)
    with helpdesk.capturing() as later:
        helpdesk.customer_writes(mail, "Any news?")
    post_deliveries(client, later)
    work(runtime.redis)
    assert calls == [(mail, "urgent")]
    assert runtime.store.summary((1, mail))["policy"] == "urgent"


def test_the_sla_is_kept_in_custom_attributes_beside_the_agents_own(chatwoot, runtime_factory, make_app, monkeypatch):
    from fake_chatwoot import plugin_on_fake, post_deliveries

    helpdesk = chatwoot.helpdesk
    rules = {**RULES, "prioritize": [], "writeback": {"custom_attributes": True}}
    runtime, client = plugin_on_fake(chatwoot, runtime_factory, make_app, monkeypatch, rules)
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    with helpdesk.capturing() as deliveries:
        conversation = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello", at=created)
        helpdesk.api_set_custom_attributes(conversation, {"product": "Orange"})  # an agent's own attribute
    post_deliveries(client, deliveries)
    work(runtime.redis)
    due = (created + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert helpdesk.conversations[conversation].custom_attributes == {
        "product": "Orange",
        "sla_status": "on_track",
        "sla_policy": "standard",
        "sla_next_due_at": due,
    }
    with helpdesk.capturing() as later:
        helpdesk.agent_replies(conversation, script.SAM, "Hello Jane")
        helpdesk.set_status(conversation, "resolved")
    post_deliveries(client, later)
    work(runtime.redis)
    attributes = helpdesk.conversations[conversation].custom_attributes
    assert attributes == {"product": "Orange", "sla_status": "hit", "sla_policy": "standard", "sla_next_due_at": ""}


def test_a_contact_blocked_later_stops_every_one_of_its_conversations_clocks(runtime_factory, fixture_payload):
    import json

    from connectors import get_connector
    from plugin.adapters import streams as ingest
    from plugin.cli.replay import replay

    runtime = runtime_factory({"policies": RULES["policies"], "rules": RULES["rules"][1:]})
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)  # first response due 4 h later

    def conversation(conversation_id: int, contact_id: int) -> bytes:
        payload = fixture_payload("conversation_created")
        payload.update(id=conversation_id, created_at=int(created.timestamp()), updated_at=created.timestamp())
        payload["meta"]["sender"]["id"] = contact_id
        return json.dumps(payload).encode()

    blocked_at = created + timedelta(hours=1)
    block = {
        "event": "contact_updated",
        "account": {"id": 1, "name": "Acme"},
        "id": 42,
        "name": "Jane Doe",
        "blocked": True,
        "changed_attributes": [
            {"blocked": {"previous_value": False, "current_value": True}},
            {"updated_at": {"previous_value": None, "current_value": blocked_at.isoformat().replace("+00:00", "Z")}},
        ],
    }
    bodies = [conversation(87, 42), conversation(88, 42), conversation(89, 7)]
    for body in bodies[:2]:
        ingest.submit(runtime.redis, "chatwoot", body, received_at=created)
    work(runtime.redis)  # the store learns which conversations contact 42 has
    for body in [json.dumps(block).encode(), bodies[2]]:
        ingest.submit(runtime.redis, "chatwoot", body, received_at=datetime.now(UTC))
    work(runtime.redis)

    for conversation_id in (87, 88):
        summary = runtime.store.summary((1, conversation_id))
        assert (summary["status"], summary["metrics"]["first_response"]["misses"]) == ("on_track", 0)
    assert runtime.store.summary((1, 89))["status"] == "missed"  # another contact's: missed as usual
    rules = runtime.accounts.rules_for(1).current()
    lines = [body.decode() for body in bodies] + [json.dumps(block)]
    replayed = replay(lines, get_connector("chatwoot", {}), rules.match, rules.content_hash, datetime.now(UTC))
    statuses = {evaluation.conversation_id: evaluation.status for evaluation in replayed.evaluations}
    assert statuses == {87: "on_track", 88: "on_track", 89: "missed"}
