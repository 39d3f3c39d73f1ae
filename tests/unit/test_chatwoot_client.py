"""The Chatwoot REST client against a mocked API: request shapes, error mapping, retries."""

from __future__ import annotations

import logging

import pytest
import requests
import responses
from responses import matchers

from connectors.base import HelpdeskAPIError
from connectors.chatwoot import (
    AuthError,
    ChatwootClient,
    ChatwootError,
    NotFound,
    NotPermitted,
    RateLimited,
    ServerError,
    TokenRefused,
    TransportError,
    Unprocessable,
)

BASE = "https://chat.example.com"
ACCOUNT = f"{BASE}/api/v1/accounts/1"
TOKEN = "user-token-s3cr3t"
AUTH = matchers.header_matcher({"api_access_token": TOKEN})


class RecordingSleep:
    """Stands in for time.sleep: remembers the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def client(sleep) -> ChatwootClient:
    return ChatwootClient(BASE + "/", 1, TOKEN, sleep=sleep)


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


# -- request shapes --------------------------------------------------------------------------------


def test_get_conversation(api, client):
    api.get(f"{ACCOUNT}/conversations/87", json={"id": 87, "status": "open"}, match=[AUTH])
    assert client.get_conversation(87) == {"id": 87, "status": "open"}


def test_list_conversations(api, client):
    api.get(
        f"{ACCOUNT}/conversations",
        match=[AUTH, matchers.query_param_matcher({"status": "open", "page": "2"})],
        json={"data": {"meta": {"all_count": 26}, "payload": [{"id": 87}, {"id": 88}]}},
    )
    assert client.list_conversations(page=2) == [{"id": 87}, {"id": 88}]


def test_iter_messages_follows_before_until_a_short_page(api, client):
    # GET .../messages returns the latest 20, older ones with before=<the oldest id seen> (message_finder.rb).
    newest = [{"id": number} for number in range(121, 141)]
    older = [{"id": number} for number in range(101, 121)]
    oldest = [{"id": number} for number in range(95, 101)]
    api.get(
        f"{ACCOUNT}/conversations/87/messages", json={"payload": newest}, match=[AUTH, matchers.query_param_matcher({})]
    )
    for before, page in ((121, older), (101, oldest)):
        api.get(
            f"{ACCOUNT}/conversations/87/messages",
            json={"payload": page},
            match=[AUTH, matchers.query_param_matcher({"before": str(before)})],
        )
    ids = [message["id"] for message in client.iter_messages(87)]
    assert sorted(ids) == list(range(95, 141))


def test_list_messages(api, client):
    api.get(
        f"{ACCOUNT}/conversations/87/messages",
        match=[AUTH, matchers.query_param_matcher({"before": "9003"})],
        json={"meta": {}, "payload": [{"id": 9001}, {"id": 9002}]},
    )
    assert client.list_messages(87, before=9003) == [{"id": 9001}, {"id": 9002}]


def test_conversation_labels(api, client):
    api.get(f"{ACCOUNT}/conversations/87/labels", json={"payload": ["billing", "sla-on-track"]}, match=[AUTH])
    assert client.conversation_labels(87) == ["billing", "sla-on-track"]


def test_set_conversation_labels_posts_the_whole_list(api, client):
    api.post(
        f"{ACCOUNT}/conversations/87/labels",
        json={"payload": ["billing", "sla-missed"]},
        match=[AUTH, matchers.json_params_matcher({"labels": ["billing", "sla-missed"]}, strict_match=True)],
    )
    assert client.set_conversation_labels(87, ("billing", "sla-missed")) == ["billing", "sla-missed"]


def test_create_private_note(api, client):
    api.post(
        f"{ACCOUNT}/conversations/87/messages",
        json={"id": 9010, "private": True, "message_type": 1},
        match=[
            AUTH,
            matchers.json_params_matcher(
                {"content": "First response missed", "message_type": "outgoing", "private": True}, strict_match=True
            ),
        ],
    )
    assert client.create_private_note(87, "First response missed") == 9010


def test_get_custom_attributes(api, client):
    api.get(f"{ACCOUNT}/conversations/87", json={"id": 87, "custom_attributes": {"sla_due": "2026-01-14T10:00Z"}})
    assert client.get_custom_attributes(87) == {"sla_due": "2026-01-14T10:00Z"}
    api.get(f"{ACCOUNT}/conversations/88", json={"id": 88, "custom_attributes": None})
    assert client.get_custom_attributes(88) == {}


def test_set_custom_attributes_posts_the_whole_object(api, client):
    attributes = {"product": "pro", "sla_due": "2026-01-14T10:00:00Z"}
    api.post(
        f"{ACCOUNT}/conversations/87/custom_attributes",
        json={"custom_attributes": attributes},
        match=[AUTH, matchers.json_params_matcher({"custom_attributes": attributes}, strict_match=True)],
    )
    assert client.set_custom_attributes(87, attributes) == attributes


def test_list_account_labels(api, client):
    labels = [{"id": 5, "title": "sla-missed", "description": "", "color": "#C62828", "show_on_sidebar": True}]
    api.get(f"{ACCOUNT}/labels", json={"payload": labels}, match=[AUTH])
    assert client.list_account_labels() == labels


def test_create_account_label(api, client):
    label = {
        "title": "sla-missed",
        "description": "An SLA target was missed",
        "color": "#C62828",
        "show_on_sidebar": False,
    }
    api.post(
        f"{ACCOUNT}/labels",
        json={"id": 5, **label},
        match=[AUTH, matchers.json_params_matcher({"label": label}, strict_match=True)],
    )
    assert client.create_account_label("sla-missed", "An SLA target was missed", "#C62828", show_on_sidebar=False) == {
        "id": 5,
        **label,
    }


def test_delete_account_label(api, client):
    api.delete(f"{ACCOUNT}/labels/5", match=[AUTH])
    assert client.delete_account_label(5) is None


def test_list_webhooks(api, client):
    hooks = [
        {
            "id": 3,
            "url": "https://sla.example.com/webhooks/chatwoot",
            "subscriptions": ["message_created"],
            "secret": "abc",
        }
    ]
    api.get(f"{ACCOUNT}/webhooks", json={"payload": {"webhooks": hooks}}, match=[AUTH])
    assert client.list_webhooks() == hooks


def test_create_webhook_returns_its_secret(api, client):
    subscriptions = ["conversation_created", "conversation_updated", "message_created"]
    hook = {
        "id": 3,
        "name": "SLA plugin",
        "url": "https://sla.example.com/webhooks/chatwoot",
        "subscriptions": subscriptions,
        "account_id": 1,
        "secret": "generated-by-chatwoot",
    }
    api.post(
        f"{ACCOUNT}/webhooks",
        json={"payload": {"webhook": hook}},
        match=[
            AUTH,
            matchers.json_params_matcher(
                {
                    "webhook": {
                        "url": "https://sla.example.com/webhooks/chatwoot",
                        "subscriptions": subscriptions,
                        "name": "SLA plugin",
                    }
                },
                strict_match=True,
            ),
        ],
    )
    created = client.create_webhook("https://sla.example.com/webhooks/chatwoot", subscriptions, name="SLA plugin")
    assert created["secret"] == "generated-by-chatwoot" and created["id"] == 3


def test_create_webhook_without_a_name(api, client):
    api.post(
        f"{ACCOUNT}/webhooks",
        json={"payload": {"webhook": {"id": 4}}},
        match=[
            matchers.json_params_matcher(
                {"webhook": {"url": "https://x.example/h", "subscriptions": []}}, strict_match=True
            )
        ],
    )
    assert client.create_webhook("https://x.example/h", []) == {"id": 4}


def test_delete_webhook(api, client):
    api.delete(f"{ACCOUNT}/webhooks/3", match=[AUTH])
    client.delete_webhook(3)


def test_dashboard_apps(api, client):
    app = {"id": 2, "title": "SLA", "content": [{"type": "frame", "url": "https://sla.example.com/sidebar"}]}
    api.get(f"{ACCOUNT}/dashboard_apps", json=[app], match=[AUTH])
    api.post(
        f"{ACCOUNT}/dashboard_apps",
        json=app,
        match=[
            AUTH,
            matchers.json_params_matcher(
                {
                    "dashboard_app": {
                        "title": "SLA",
                        "content": [{"type": "frame", "url": "https://sla.example.com/sidebar"}],
                    }
                },
                strict_match=True,
            ),
        ],
    )
    api.delete(f"{ACCOUNT}/dashboard_apps/2", status=204, match=[AUTH])
    assert client.list_dashboard_apps() == [app]
    assert client.create_dashboard_app("SLA", "https://sla.example.com/sidebar") == app
    client.delete_dashboard_app(2)


# -- error mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, error_type",
    [
        (401, {"error": "Invalid Access Token"}, TokenRefused),
        (401, {"error": "You are not authorized to access this account"}, TokenRefused),
        # Chatwoot answers 401 when the token's user may not see one resource (RequestExceptionHandler).
        (401, {"error": "You are not authorized to do this action"}, NotPermitted),
        (403, {"error": "You are not authorized to do this action"}, NotPermitted),
        (404, {"error": "Resource could not be found"}, NotFound),
        (400, {"error": "param is missing"}, ChatwootError),
    ],
)
def test_errors_that_are_not_retried(api, client, sleep, status, body, error_type):
    api.get(f"{ACCOUNT}/conversations/87", status=status, json=body)
    with pytest.raises(error_type) as raised:
        client.get_conversation(87)
    assert type(raised.value) is error_type
    assert raised.value.status == status and not raised.value.retryable
    assert body["error"] in str(raised.value)
    assert len(api.calls) == 1 and sleep.delays == []


def test_unprocessable_carries_chatwoot_message(api, client, sleep):
    api.post(f"{ACCOUNT}/labels", status=422, json={"message": "Title has already been taken", "attributes": ["title"]})
    with pytest.raises(Unprocessable) as raised:
        client.create_account_label("sla-missed", "", "#C62828")
    assert raised.value.reason == "Title has already been taken"
    assert isinstance(raised.value, HelpdeskAPIError)
    assert sleep.delays == []


def test_retry_on_500_then_success(api, client, sleep):
    api.get(f"{ACCOUNT}/conversations/87/labels", status=500, body="boom")
    api.get(f"{ACCOUNT}/conversations/87/labels", json={"payload": ["billing"]})
    assert client.conversation_labels(87) == ["billing"]
    assert len(api.calls) == 2 and sleep.delays == [1.0]


def test_server_errors_until_the_last_attempt(api, client, sleep):
    api.get(f"{ACCOUNT}/conversations/87", status=503, body="maintenance")
    with pytest.raises(ServerError) as raised:
        client.get_conversation(87)
    assert raised.value.status == 503 and raised.value.retryable
    assert len(api.calls) == 4 and sleep.delays == [1.0, 2.0, 4.0]


def test_429_honours_retry_after(api, client, sleep):
    api.post(f"{ACCOUNT}/conversations/87/labels", status=429, body="Retry later", headers={"Retry-After": "7"})
    api.post(f"{ACCOUNT}/conversations/87/labels", json={"payload": ["sla-at-risk"]})
    assert client.set_conversation_labels(87, ["sla-at-risk"]) == ["sla-at-risk"]
    assert sleep.delays == [7.0]


def test_429_retry_after_is_capped_at_a_minute(api, client, sleep):
    api.get(f"{ACCOUNT}/labels", status=429, headers={"Retry-After": "3600"})
    api.get(f"{ACCOUNT}/labels", json={"payload": []})
    assert client.list_account_labels() == []
    assert sleep.delays == [60.0]


def test_429_without_retry_after_backs_off_and_keeps_the_server_value(api, client, sleep):
    api.get(f"{ACCOUNT}/labels", status=429, headers={"Retry-After": "Wed, 14 Jan 2026 09:00:00 GMT"})
    with pytest.raises(RateLimited) as raised:
        client.list_account_labels()
    assert raised.value.retry_after is None
    assert sleep.delays == [1.0, 2.0, 4.0]


def test_rate_limited_after_the_last_attempt_tells_how_long_to_wait(api, client):
    api.get(f"{ACCOUNT}/labels", status=429, headers={"Retry-After": "90"})
    with pytest.raises(RateLimited) as raised:
        client.list_account_labels()
    assert raised.value.retry_after == 90.0 and raised.value.retryable


def test_401_is_not_retried(api, client, sleep):
    api.post(f"{ACCOUNT}/conversations/87/custom_attributes", status=401, json={"error": "Invalid Access Token"})
    with pytest.raises(AuthError):
        client.set_custom_attributes(87, {"a": 1})
    assert len(api.calls) == 1 and sleep.delays == []


def test_timeout_is_retried(api, client, sleep):
    api.get(f"{ACCOUNT}/conversations/87", body=requests.ReadTimeout("read timed out"))
    api.get(f"{ACCOUNT}/conversations/87", body=requests.ConnectionError("connection reset"))
    api.get(f"{ACCOUNT}/conversations/87", json={"id": 87})
    assert client.get_conversation(87) == {"id": 87}
    assert sleep.delays == [1.0, 2.0]


def test_persistent_timeout_raises_transport_error(api, sleep):
    client = ChatwootClient(BASE, 1, TOKEN, sleep=sleep, max_attempts=2)
    api.get(f"{ACCOUNT}/conversations/87", body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(TransportError) as raised:
        client.get_conversation(87)
    assert raised.value.status is None and raised.value.retryable
    assert len(api.calls) == 2 and sleep.delays == [1.0]


@pytest.mark.parametrize(
    "failure",
    [
        {"body": requests.ReadTimeout("read timed out")},
        {"body": requests.ConnectionError("connection aborted")},
        {"status": 500, "body": "boom"},
    ],
)
def test_a_note_that_may_have_been_created_is_not_posted_again(api, client, sleep, failure):
    api.post(f"{ACCOUNT}/conversations/87/messages", **failure)
    with pytest.raises((TransportError, ServerError)) as raised:
        client.create_private_note(87, "First response missed")
    assert raised.value.retryable  # the job queue may retry after checking the note is not there
    assert len(api.calls) == 1 and sleep.delays == []


@pytest.mark.parametrize(
    "failure",
    [
        {"body": requests.ConnectTimeout("connect timed out")},
        {"status": 429, "headers": {"Retry-After": "2"}},
    ],
)
def test_a_note_that_certainly_was_not_created_is_retried(api, client, sleep, failure):
    api.post(f"{ACCOUNT}/conversations/87/messages", **failure)
    api.post(f"{ACCOUNT}/conversations/87/messages", json={"id": 9011})
    assert client.create_private_note(87, "First response missed") == 9011
    assert len(api.calls) == 2


def test_redirects_are_not_followed(api, client):
    api.get(f"{ACCOUNT}/conversations/87", status=301, headers={"Location": "https://elsewhere.example/steal"})
    with pytest.raises(ChatwootError, match="redirected"):
        client.get_conversation(87)
    assert len(api.calls) == 1


def test_a_non_json_answer_is_an_error(api, client):
    api.get(f"{ACCOUNT}/conversations/87", body="<html>login</html>", content_type="text/html")
    with pytest.raises(ChatwootError, match="not JSON"):
        client.get_conversation(87)


def test_an_unexpected_shape_is_an_error(api, client):
    api.get(f"{ACCOUNT}/conversations/87/labels", json={"labels": ["billing"]})
    with pytest.raises(ChatwootError, match="unexpected response shape"):
        client.conversation_labels(87)


# -- safety ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("conversation_id", ["87/../../admin", -1, 0, True, 8.7])
def test_only_positive_whole_ids_reach_a_path(client, conversation_id):
    with pytest.raises(ValueError):
        client.get_conversation(conversation_id)


@pytest.mark.parametrize("base_url", ["chat.example.com", "ftp://chat.example.com", ""])
def test_base_url_must_be_http(base_url):
    with pytest.raises(ValueError, match="CHATWOOT_URL"):
        ChatwootClient(base_url, 1, TOKEN)


def test_the_token_is_never_shown(api, client, caplog):
    assert TOKEN not in repr(client)
    api.get(f"{ACCOUNT}/conversations/87", status=500, json={"error": "boom"})
    with caplog.at_level(logging.DEBUG), pytest.raises(ServerError) as raised:
        client.get_conversation(87)
    assert TOKEN not in str(raised.value)
    assert caplog.records and all(TOKEN not in record.getMessage() for record in caplog.records)


def test_from_settings(api):
    client = ChatwootClient.from_settings(
        {"CHATWOOT_URL": BASE, "CHATWOOT_ACCOUNT_ID": " 1 ", "CHATWOOT_API_TOKEN": TOKEN}
    )
    api.get(f"{ACCOUNT}/labels", json={"payload": []}, match=[AUTH])
    assert client.list_account_labels() == []


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"CHATWOOT_URL": BASE}, "missing setting(s): CHATWOOT_ACCOUNT_ID, CHATWOOT_API_TOKEN"),
        (
            {"CHATWOOT_URL": BASE, "CHATWOOT_ACCOUNT_ID": "acme", "CHATWOOT_API_TOKEN": TOKEN},
            "CHATWOOT_ACCOUNT_ID must be a whole number",
        ),
    ],
)
def test_from_settings_names_the_bad_setting(settings, message):
    with pytest.raises(ValueError) as raised:
        ChatwootClient.from_settings(settings)
    assert message in str(raised.value) and TOKEN not in str(raised.value)


def test_an_injected_session_is_used(sleep):
    session = requests.Session()
    client = ChatwootClient(BASE, 1, TOKEN, session=session, sleep=sleep)
    with responses.RequestsMock() as mock:
        mock.get(f"{ACCOUNT}/labels", json={"payload": []})
        assert client.list_account_labels() == []
    assert "api_access_token" not in session.headers
