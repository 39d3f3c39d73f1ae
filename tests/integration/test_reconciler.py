"""The reconciler recovers what lost webhooks hid, through the same stream and engine as live webhooks."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import responses
from rq import Queue, SimpleWorker

from connectors.chatwoot.client import ChatwootClient
from plugin.adapters import streams as ingest
from plugin.adapters.streams import EVENTS_QUEUE
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
    SimpleWorker([Queue(EVENTS_QUEUE, connection=redis)], connection=redis).work(burst=True)


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
