"""Names for reports: learned from the webhooks the workers read and from the helpdesk's API (the fake
Chatwoot of every version profile), kept in ``sla_names``; only new or changed names are written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rq import Queue, SimpleWorker

from connectors.chatwoot.client import ChatwootClient
from connectors.chatwoot.names import names_in
from plugin.adapters import redis_keys
from plugin.adapters import streams as ingest
from plugin.adapters.directory import Directory, Name
from plugin.jobs.names import refresh

RULES = {
    "policies": {"standard": {"name": "Standard support", "first_response": "1h"}},
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "standard"}],
}


def test_names_come_from_webhooks_and_the_api(chatwoot, runtime_factory):
    from fake_chatwoot import register_webhook

    from plugin.demo import script

    helpdesk = chatwoot.helpdesk
    register_webhook(helpdesk)
    runtime = runtime_factory(RULES, CHATWOOT_URL=chatwoot.url, CHATWOOT_ACCOUNT_ID="1", CHATWOOT_API_TOKEN="x")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with helpdesk.capturing() as deliveries:
        chat = helpdesk.open_conversation(script.JANE, script.CHAT, "Hello?", at=an_hour_ago, assignee=script.SAM)
        helpdesk.agent_replies(chat, script.SAM, "Hi Jane")
    for delivery in deliveries:
        ingest.submit(runtime.redis, "chatwoot", delivery.body, received_at=datetime.now(UTC))
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis)], connection=runtime.redis).work(burst=True)

    directory = Directory(runtime.store.engine)
    learned = directory.names([1])
    assert learned["inbox"] == {str(script.CHAT.id): script.CHAT.name}
    assert learned["agent"] == {str(script.SAM.id): script.SAM.name}
    assert learned["policy"] == {"standard": "Standard support"}

    # The API adds what no webhook showed yet: the e-mail inbox (once a conversation opened there).
    helpdesk.open_conversation(script.OMAR, script.EMAIL, "Invoice?", at=an_hour_ago)
    changed = refresh(runtime, ChatwootClient(chatwoot.url, 1, helpdesk.api_token, sleep=lambda seconds: None))
    names = directory.names([1])
    assert names["inbox"][str(script.EMAIL.id)] == script.EMAIL.name
    assert changed >= 1
    assert refresh(runtime, ChatwootClient(chatwoot.url, 1, helpdesk.api_token, sleep=lambda seconds: None)) == 0


def test_only_new_or_changed_names_are_written(database_url):
    from plugin.adapters.store import Store

    store = Store.from_url(database_url)
    store.migrate()
    directory = Directory(store.engine)
    assert directory.learn([Name(1, "inbox", "3", "Website Chat"), Name(1, "team", "5", "Billing")]) == 2
    assert directory.learn([Name(1, "inbox", "3", "Website Chat")]) == 0
    assert directory.learn([Name(1, "inbox", "3", "Web chat"), Name(2, "inbox", "3", "Other account")]) == 2
    assert directory.names([1])["inbox"] == {"3": "Web chat"}
    assert directory.learn([Name(1, "inbox", "4", "   "), Name(1, "weather", "1", "Sunny")]) == 0


def test_the_names_a_chatwoot_body_shows(fixture_payload):
    assert names_in(fixture_payload("message_created-outgoing")) == [
        ("inbox", "3", "Website Chat"),
        ("agent", "7", "Sam Agent"),
        ("agent", "7", "Sam Agent"),
    ]
    assert names_in(fixture_payload("conversation_created")) == []  # no assignee, no team, no inbox object
    assert names_in({"meta": {"team": {"id": 4, "name": "Tier 2"}, "assignee": {"id": "x", "name": "?"}}}) == [
        ("team", "4", "Tier 2")
    ]
    assert names_in(["not", "an", "object"]) == []


def test_a_worker_writes_a_name_once_not_every_batch(runtime_factory, monkeypatch):
    from plugin.jobs import drain

    runtime = runtime_factory(RULES)
    calls = []
    learn = Directory.learn
    monkeypatch.setattr(Directory, "learn", lambda self, found: calls.append(list(found)) or learn(self, found))
    batch = [Name(1, "inbox", "3", "Website Chat"), Name(1, "policy", "standard", "Standard support")]
    drain._learn_names(runtime, batch)
    drain._learn_names(runtime, batch)  # the same names again: nothing to write, no transaction
    drain._learn_names(runtime, [Name(1, "inbox", "3", "Web chat")])  # renamed: written
    assert calls == [batch, [Name(1, "inbox", "3", "Web chat")]]
    assert Directory(runtime.store.engine).names([1])["inbox"] == {"3": "Web chat"}
