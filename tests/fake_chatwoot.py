"""Helpers for tests that run the plugin against the fake Chatwoot (``plugin.demo.helpdesk``) of each version
profile: register the plugin's webhook as ``install`` does, and hand the fake's deliveries to the web app."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

from connectors import get_connector
from connectors.chatwoot.client import ChatwootClient
from plugin.adapters.rule_files import load_rules
from plugin.cli.replay import replay
from plugin.demo.helpdesk import WEBHOOK_EVENTS, Delivery, DemoHelpdesk
from plugin.jobs.runtime import Runtime

PLUGIN_URL = "http://plugin.test/webhooks/chatwoot"
WEBHOOK_TOKEN = "url-token-for-unsigned-chatwoot"


def register_webhook(helpdesk: DemoHelpdesk) -> dict[str, str]:
    """Register the plugin's webhook in the fake (unsigned releases: with the URL token) and return the web
    app's settings for it: the signing secret Chatwoot generated, or the URL token."""
    url = PLUGIN_URL if helpdesk.profile.signed else f"{PLUGIN_URL}?token={WEBHOOK_TOKEN}"
    hook = helpdesk.api_create_webhook(url, list(WEBHOOK_EVENTS), "SLA")
    if hook.secret:
        return {"CHATWOOT_WEBHOOK_SECRET": hook.secret}
    return {"SLA_WEBHOOK_TOKEN": WEBHOOK_TOKEN}


def post_deliveries(client, deliveries: Iterable[Delivery], outcomes: tuple[str, ...] = ("queued",)) -> None:
    """POST each delivery to the web app (Flask test client) exactly as Chatwoot sends it; each must be
    answered 202 with one of ``outcomes``."""
    for delivery in deliveries:
        parts = urlsplit(delivery.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        response = client.post(path, data=delivery.body, headers=delivery.headers())
        assert response.status_code == 202, (delivery.event, response.get_data(as_text=True))
        assert response.get_json()["status"] in outcomes, (delivery.event, response.get_json())


def replayed(deliveries: Iterable[Delivery], rules_dir, account_id: int = 1) -> dict:
    """``sla-plugin replay --account`` on the deliveries' bodies: each conversation's replay JSON."""
    rule_set = load_rules(rules_dir)
    connector = get_connector("chatwoot", {"CHATWOOT_ACCOUNT_ID": str(account_id)})
    lines = [delivery.body.decode() for delivery in deliveries]
    result = replay(lines, connector, rule_set.match, rule_set.content_hash)
    assert result.errors == []
    return {(item.account_id, item.conversation_id): item.to_replay_json() for item in result.evaluations}


def bodies(deliveries: Iterable[Delivery]) -> list[dict]:
    return [json.loads(delivery.body) for delivery in deliveries]


def use_fake_client(monkeypatch, chatwoot, token: str | None = None) -> None:
    """Point the runtime's helpdesk client at the served fake (its admin token unless *token*), with retries
    that do not sleep."""
    token = token or chatwoot.helpdesk.api_token
    monkeypatch.setattr(
        Runtime, "helpdesk", lambda *_: ChatwootClient(chatwoot.url, 1, token, sleep=lambda seconds: None)
    )


def plugin_on_fake(chatwoot, runtime_factory, make_app, monkeypatch, rules: dict):
    """The plugin installed into the served fake Chatwoot: its runtime (write-back through the fake's REST
    API) and a test client of its web app, whose webhook the fake has registered."""
    use_fake_client(monkeypatch, chatwoot)
    auth = register_webhook(chatwoot.helpdesk)
    runtime = runtime_factory(rules, CHATWOOT_URL=chatwoot.url, CHATWOOT_ACCOUNT_ID="1", CHATWOOT_API_TOKEN="x")
    return runtime, make_app(CHATWOOT_ACCOUNT_ID="1", **auth).test_client()


def retimed(fixture_payload, name: str, at: datetime, **changes) -> bytes:
    """A fixture payload moved to *at* (a message's and its conversation's times, or a conversation
    event's), with *changes* to its top-level keys."""
    payload = fixture_payload(name)
    if payload.get("event") == "message_created":
        payload["created_at"] = at.isoformat().replace("+00:00", "Z")
        payload["conversation"]["created_at"] = int(at.timestamp())
    else:
        payload["created_at"] = int(at.timestamp())
        payload["updated_at"] = at.timestamp()
    payload.update(changes)
    return json.dumps(payload).encode()
