"""POST /webhooks/<connector> with Flask's test client against a real (private) Redis and real RQ queues."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from rq import Queue

from plugin.adapters import redis_keys
from plugin.demo.helpdesk import chatwoot_headers

FIXTURE_NAMES = sorted(path.stem for path in (Path(__file__).parents[1] / "fixtures" / "chatwoot").glob("*.json"))
SECRET = "whsec-test-0123456789abcdef"
TOKEN = "url-token-fedcba9876543210"
API_TOKEN = "api-token-5555aaaa"
ADMIN_TOKEN = "admin-token-6666bbbb"
SIDEBAR_TOKEN = "sidebar-token-7777cccc"


def fixture_bytes(name: str) -> bytes:
    """A shared Chatwoot payload exactly as stored (signatures are over the raw bytes)."""
    return (Path(__file__).parents[1] / "fixtures" / "chatwoot" / f"{name}.json").read_bytes()


def signed_headers(
    body: bytes, secret: str = SECRET, timestamp: int | None = None, delivery: str | None = None
) -> dict[str, str]:
    """Headers as Chatwoot sends them (the fake Chatwoot's): ``sha256=`` HMAC of ``"<timestamp>.<raw body>"``."""
    return chatwoot_headers(body, secret, sent_at=timestamp, delivery_id=delivery or str(uuid.uuid4()))


def post(client, body: bytes, headers: dict[str, str] | None = None, path: str = "/webhooks/chatwoot"):
    return client.post(path, data=body, headers=headers or {"Content-Type": "application/json"})


def queued_bodies(redis) -> list[bytes]:
    return [fields[b"body"] for _, fields in redis.xrange(redis_keys.EVENT_STREAM)]


def remembered_deliveries(redis) -> list[bytes]:
    return list(redis.scan_iter(match=f"{redis_keys.DELIVERY_PREFIX}*"))


@pytest.fixture
def signed_client(make_app):
    return make_app(CHATWOOT_WEBHOOK_SECRET=SECRET, CHATWOOT_ACCOUNT_ID=1).test_client()


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_shared_chatwoot_payload_is_queued(signed_client, redis, name):
    body = fixture_bytes(name)

    response = post(signed_client, body, signed_headers(body))

    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json() == {"status": "queued"}
    entries = redis.xrange(redis_keys.EVENT_STREAM)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"body"] == body
    assert fields[b"connector"] == b"chatwoot"
    queue = Queue(redis_keys.EVENTS_QUEUE, connection=redis)
    assert queue.count == 1
    assert queue.jobs[0].func_name == "plugin.jobs.drain.drain"


def test_several_deliveries_share_one_pending_drain_job(signed_client, redis):
    for name in FIXTURE_NAMES[:3]:
        body = fixture_bytes(name)
        assert post(signed_client, body, signed_headers(body)).status_code == 202

    assert len(queued_bodies(redis)) == 3
    assert Queue(redis_keys.EVENTS_QUEUE, connection=redis).count == 1


@pytest.mark.parametrize("case", ["missing", "wrong_secret", "tampered_body", "stale", "future", "garbage"])
def test_bad_signature_is_401_and_nothing_is_queued(signed_client, redis, case):
    body = fixture_bytes("message_created-incoming")
    headers = {
        "missing": {"Content-Type": "application/json"},
        "wrong_secret": signed_headers(body, secret="not-the-secret"),
        "tampered_body": signed_headers(body.replace(b"Acme", b"Evil")),
        "stale": signed_headers(body, timestamp=int(time.time()) - 3600),
        "future": signed_headers(body, timestamp=int(time.time()) + 3600),
        "garbage": {**signed_headers(body), "X-Chatwoot-Signature": "sha256=zz"},
    }[case]

    response = post(signed_client, body, headers)

    assert response.status_code == 401
    assert response.get_json() == {"status": "rejected"}
    assert queued_bodies(redis) == []
    assert remembered_deliveries(redis) == []


@pytest.mark.parametrize("query, expected", [("", 401), ("?token=wrong", 401), (f"?token={TOKEN}", 202)])
def test_url_token_mode(make_app, redis, query, expected):
    client = make_app(SLA_WEBHOOK_TOKEN=TOKEN).test_client()
    body = fixture_bytes("conversation_created")

    response = post(client, body, path=f"/webhooks/chatwoot{query}")

    assert response.status_code == expected
    assert len(queued_bodies(redis)) == (1 if expected == 202 else 0)


def test_signature_mode_does_not_accept_the_url_token_instead(make_app, redis):
    client = make_app(CHATWOOT_WEBHOOK_SECRET=SECRET, SLA_WEBHOOK_TOKEN=TOKEN).test_client()

    response = post(client, fixture_bytes("conversation_created"), path=f"/webhooks/chatwoot?token={TOKEN}")

    assert response.status_code == 401


def test_oversized_body_is_413_by_content_length(make_app, redis):
    client = make_app(SLA_MAX_BODY_BYTES=1000).test_client()
    body = json.dumps({"event": "message_created", "content": "x" * 2000}).encode()

    response = post(client, body)

    assert response.status_code == 413
    assert response.get_json() == {"status": "too_large"}
    assert queued_bodies(redis) == []


def test_oversized_body_without_content_length_is_413(make_app, redis):
    """A chunked upload announces no length: the limit applies to the bytes actually read."""
    client = make_app(SLA_MAX_BODY_BYTES=1000).test_client()
    body = json.dumps({"event": "message_created", "content": "x" * 2000}).encode()

    response = client.post(
        "/webhooks/chatwoot",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert response.status_code == 413
    assert queued_bodies(redis) == []


def test_body_of_exactly_the_limit_is_accepted(make_app, redis):
    body = json.dumps({"event": "message_created", "pad": ""}).encode()
    padded = body.replace(b'"pad": ""', b'"pad": "' + b"x" * (1000 - len(body)) + b'"')
    assert len(padded) == 1000
    client = make_app(SLA_MAX_BODY_BYTES=1000).test_client()

    assert post(client, padded).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"event": ',
        b"\xff\xfe\x00garbage",
        b"",
        b"[]",
        b'[{"event": "message_created"}]',
        b'"message_created"',
        b"42",
        b"null",
    ],
)
def test_body_that_is_not_a_json_object_is_400(make_app, redis, body):
    client = make_app().test_client()

    response = post(client, body)

    assert response.status_code == 400
    assert response.get_json() == {"status": "invalid"}
    assert queued_bodies(redis) == []
    assert remembered_deliveries(redis) == []


def test_signature_is_checked_before_the_body_is_parsed(signed_client, redis):
    response = post(signed_client, b"not json")

    assert response.status_code == 401


def test_other_account_is_ignored_and_logged(make_app, redis, caplog):
    client = make_app(CHATWOOT_ACCOUNT_ID=2).test_client()
    caplog.set_level(logging.INFO)

    response = post(client, fixture_bytes("message_created-incoming"))  # account 1

    assert response.status_code == 202
    assert response.get_json() == {"status": "ignored"}
    assert queued_bodies(redis) == []
    assert Queue(redis_keys.EVENTS_QUEUE, connection=redis).count == 0
    assert remembered_deliveries(redis) == []
    ignored = [record for record in caplog.records if "another account" in record.getMessage()]
    assert ignored and ignored[0].account_id == 1


def test_payload_without_an_account_is_queued(make_app, redis):
    client = make_app(CHATWOOT_ACCOUNT_ID=2).test_client()

    response = post(client, json.dumps({"event": "conversation_typing_on"}).encode())

    assert response.get_json() == {"status": "queued"}


def test_duplicate_delivery_by_header_is_queued_once(signed_client, redis):
    body = fixture_bytes("message_created-incoming")
    headers = signed_headers(body, delivery="4b7e2f0a-0000-4000-8000-000000000001")

    first = post(signed_client, body, headers)
    second = post(signed_client, body, headers)

    assert first.get_json() == {"status": "queued"}
    assert second.status_code == 202
    assert second.get_json() == {"status": "duplicate"}
    assert queued_bodies(redis) == [body]


def test_duplicate_delivery_by_body_hash_without_the_header(make_app, redis):
    client = make_app().test_client()
    body = fixture_bytes("message_created-outgoing")
    other = fixture_bytes("message_created-incoming")

    answers = [post(client, payload).get_json()["status"] for payload in (body, body, other)]

    assert answers == ["queued", "duplicate", "queued"]
    assert queued_bodies(redis) == [body, other]


def test_unknown_event_is_accepted_and_queued(make_app, redis):
    client = make_app(CHATWOOT_ACCOUNT_ID=1).test_client()
    body = json.dumps({"event": "some_event_from_the_future", "account": {"id": 1}}).encode()

    response = post(client, body)

    assert response.status_code == 202
    assert response.get_json() == {"status": "queued"}
    assert queued_bodies(redis) == [body]


def test_unknown_connector_is_404(make_app, redis):
    client = make_app().test_client()

    response = post(client, fixture_bytes("conversation_created"), path="/webhooks/zendesk")

    assert response.status_code == 404
    assert queued_bodies(redis) == []


def test_redis_down_is_503(make_app, tmp_path):
    client = make_app(REDIS_URL=f"unix://{tmp_path}/no-redis-here.sock").test_client()

    response = post(client, fixture_bytes("conversation_created"))

    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable"}


def test_failed_hand_over_does_not_remember_the_delivery_so_a_retry_is_queued(signed_client, redis):
    body = fixture_bytes("message_created-incoming")
    headers = signed_headers(body, delivery="4b7e2f0a-0000-4000-8000-000000000002")
    redis.set(redis_keys.EVENT_STREAM, "not a stream")  # XADD now fails

    failed = post(signed_client, body, headers)

    assert failed.status_code == 503
    assert remembered_deliveries(redis) == []
    redis.delete(redis_keys.EVENT_STREAM)
    retried = post(signed_client, body, headers)
    assert retried.get_json() == {"status": "queued"}
    assert queued_bodies(redis) == [body]


def test_secrets_never_appear_in_logs(make_app, redis, caplog, capfd, tmp_path):
    """Every kind of request, with every secret configured: no secret in any captured record or output."""
    caplog.set_level(logging.DEBUG)
    secrets = {
        "CHATWOOT_WEBHOOK_SECRET": SECRET,
        "SLA_WEBHOOK_TOKEN": TOKEN,
        "CHATWOOT_API_TOKEN": API_TOKEN,
        "SLA_ADMIN_TOKEN": ADMIN_TOKEN,
        "SLA_SIDEBAR_TOKEN": SIDEBAR_TOKEN,
    }
    client = make_app(CHATWOOT_ACCOUNT_ID=2, SLA_MAX_BODY_BYTES=5000, **secrets).test_client()
    body = fixture_bytes("message_created-incoming")
    other_account = json.dumps({"event": "message_created", "account": {"id": 2}}).encode()
    requests = [
        (body, {"Content-Type": "application/json"}, ""),  # unsigned
        (body, signed_headers(body, secret=TOKEN), f"?token={TOKEN}"),  # wrong secret, token in the URL
        (body, signed_headers(body, timestamp=1), ""),  # stale
        (b"x" * 6000, signed_headers(b"x" * 6000), ""),  # too large
        (b"not json", signed_headers(b"not json"), ""),  # invalid
        (body, signed_headers(body), ""),  # another account: ignored
        (other_account, signed_headers(other_account, delivery="d-1"), ""),  # queued
        (other_account, signed_headers(other_account, delivery="d-1"), ""),  # duplicate
    ]
    statuses = [
        post(client, payload, headers, f"/webhooks/chatwoot{query}").status_code for payload, headers, query in requests
    ]
    redis_down = make_app(REDIS_URL=f"unix://{tmp_path}/gone.sock", **secrets).test_client()
    statuses.append(post(redis_down, other_account, signed_headers(other_account)).status_code)

    assert statuses == [401, 401, 401, 413, 400, 202, 202, 202, 503]
    captured = capfd.readouterr()
    logged = (
        caplog.text
        + captured.out
        + captured.err
        + "".join(json.dumps(vars(record), default=str) for record in caplog.records)
    )
    assert "webhook rejected" in logged
    for secret in secrets.values():
        assert secret not in logged
