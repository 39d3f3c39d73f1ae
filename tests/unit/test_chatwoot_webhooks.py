"""The Chatwoot connector's webhook side: signatures, deduplication keys, and normalisation of real payloads."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import CONNECTOR_NAMES, get_connector
from connectors.base import Connector, PayloadError, UnknownConnector, WebhookRejected
from connectors.chatwoot import ChatwootConnector
from plugin.core.events import (
    AUTOMATION,
    BOT,
    CAMPAIGN,
    CONTACT,
    CONVERSATION_CREATED,
    CONVERSATION_UPDATED,
    HUMAN,
    INCOMING,
    MESSAGE_CREATED,
    OUTGOING,
    STATUS_CHANGED,
    Event,
    event_from_json,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "chatwoot"
RECEIVED_AT = datetime(2026, 1, 14, 12, 0, 0, tzinfo=UTC)
PLUGIN_USER_ID = 12
SECRET = "whsec-test-5f2d8c"
TOKEN = "url-token-9a7b"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def connector() -> ChatwootConnector:
    return ChatwootConnector(plugin_user_id=PLUGIN_USER_ID)


# -- every real payload ------------------------------------------------------------------------------

EXPECTED = {
    "conversation_created": dict(
        kind=CONVERSATION_CREATED, key="conversation_created:87", occurred_at=at("2026-01-14T09:00:00")
    ),
    "message_created-incoming": dict(kind=MESSAGE_CREATED, key="message:9001", occurred_at=at("2026-01-14T09:00:01")),
    "message_created-private_note": dict(
        kind=MESSAGE_CREATED, key="message:9002", occurred_at=at("2026-01-14T09:20:00")
    ),
    "message_created-outgoing": dict(kind=MESSAGE_CREATED, key="message:9003", occurred_at=at("2026-01-14T09:42:10")),
    "conversation_updated-labels": dict(
        kind=CONVERSATION_UPDATED, key="conversation_updated:87:1768384500.0917", occurred_at=at("2026-01-14T09:55:00")
    ),
    "conversation_updated-custom_attributes": dict(
        kind=CONVERSATION_UPDATED, key="conversation_updated:87:1768384502.4471", occurred_at=at("2026-01-14T09:55:02")
    ),
    "conversation_status_changed-resolved": dict(
        kind=STATUS_CHANGED,
        key="conversation_status_changed:87:1768388400.2044",
        occurred_at=at("2026-01-14T11:00:00"),
        new_status="resolved",
    ),
    "conversation_updated-by_sla_evaluator": dict(
        kind=CONVERSATION_UPDATED, key="conversation_updated:87:1768388400.2044", occurred_at=at("2026-01-14T11:00:00")
    ),
    "conversation_typing_on": None,
}


def test_every_fixture_file_has_an_expectation():
    assert sorted(path.stem for path in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_normalises(connector, name):
    event = connector.normalize(fixture(name), RECEIVED_AT)
    expected = EXPECTED[name]
    if expected is None:
        assert event is None
        return
    assert isinstance(event, Event)
    assert event.kind == expected["kind"]
    assert event.key == expected["key"]
    assert event.occurred_at == expected["occurred_at"]
    assert event.new_status == expected.get("new_status")
    assert (event.account_id, event.conversation_id, event.connector) == (1, 87, "chatwoot")
    assert event.occurred_at.microsecond == 0 and event.occurred_at.tzinfo is not None
    assert event.conversation.conversation_id == 87
    assert event.conversation.created_at == at("2026-01-14T09:00:00")
    assert event_from_json(json.loads(json.dumps(event.to_json()))) == event


def test_conversation_created_snapshot(connector):
    conversation = connector.normalize(fixture("conversation_created"), RECEIVED_AT).conversation
    assert conversation.account_id == 1
    assert conversation.status == "open"
    assert conversation.inbox_id == 3
    assert conversation.channel == "Channel::WebWidget"
    assert conversation.priority is None
    assert conversation.team_id is None and conversation.assignee_id is None
    assert conversation.labels == ()
    assert conversation.custom_attributes == {}
    assert conversation.snoozed_until is None
    assert conversation.browser_language == "en"
    assert conversation.referer == "https://shop.example.com/orders/5531"
    assert conversation.conversation_language is None and conversation.mail_subject is None
    contact = conversation.contact
    assert (contact.id, contact.name, contact.email, contact.phone_number) == (
        42,
        "Jane Doe",
        "jane.doe@example.com",
        None,
    )


def test_status_changed_snapshot_keeps_labels_assignee_and_attributes(connector):
    event = connector.normalize(fixture("conversation_status_changed-resolved"), RECEIVED_AT)
    assert event.conversation.labels == ("billing", "sla-frt-met")
    assert event.conversation.assignee_id == 7
    assert event.conversation.status == "resolved"
    assert event.conversation.custom_attributes == {"sla_frt_status": "met", "sla_frt_met_at": "2026-01-14T09:42:10Z"}


def test_custom_attributes_update_is_a_plain_update(connector):
    event = connector.normalize(fixture("conversation_updated-custom_attributes"), RECEIVED_AT)
    assert event.conversation.custom_attributes["sla_frt_status"] == "met"
    assert event.new_status is None


def test_incoming_message(connector):
    event = connector.normalize(fixture("message_created-incoming"), RECEIVED_AT)
    message = event.message
    assert (message.id, message.direction, message.sender_kind, message.private, message.sender_id) == (
        9001,
        INCOMING,
        CONTACT,
        False,
        42,
    )
    assert message.created_at == at("2026-01-14T09:00:01")
    assert message.content == "Hi, my order #5531 hasn't arrived yet."
    assert message.is_customer_message and not message.is_human_reply
    assert event.conversation.status == "open" and event.conversation.inbox_id == 3


def test_agent_reply_is_a_human_reply(connector):
    message = connector.normalize(fixture("message_created-outgoing"), RECEIVED_AT).message
    assert (message.id, message.direction, message.sender_kind, message.private, message.sender_id) == (
        9003,
        OUTGOING,
        HUMAN,
        False,
        7,
    )
    assert message.is_human_reply


def test_plugin_private_note_is_marked_as_the_plugin_echo(connector):
    event = connector.normalize(fixture("message_created-private_note"), RECEIVED_AT)
    message = event.message
    assert (message.id, message.direction, message.sender_kind, message.private, message.sender_id) == (
        9002,
        OUTGOING,
        BOT,
        True,
        12,
    )
    assert not message.is_human_reply
    # The conversation snapshot is the message's conversation, not its embedded messages[].
    assert event.conversation.assignee_id == 7


def test_private_note_of_an_agent_never_answers(connector):
    payload = fixture("message_created-private_note")
    payload["sender"]["id"] = 7
    message = connector.normalize(payload, RECEIVED_AT).message
    assert message.sender_kind == HUMAN and message.private
    assert not message.is_human_reply


def test_public_message_from_the_plugin_user_is_not_a_human_reply(connector):
    payload = fixture("message_created-outgoing")
    payload["sender"]["id"] = PLUGIN_USER_ID
    assert connector.normalize(payload, RECEIVED_AT).message.sender_kind == BOT


def test_without_a_plugin_user_a_user_message_is_human():
    payload = fixture("message_created-outgoing")
    payload["sender"]["id"] = PLUGIN_USER_ID
    assert ChatwootConnector().normalize(payload, RECEIVED_AT).message.sender_kind == HUMAN


@pytest.mark.parametrize(
    "change, kind",
    [
        (lambda p: p["content_attributes"].update(automation_rule_id=4), AUTOMATION),
        (lambda p: p["additional_attributes"].update(campaign_id=9), CAMPAIGN),
        (lambda p: p.update(sender={"id": 3, "name": "Helper bot", "type": "agent_bot"}), BOT),
        (lambda p: p.update(sender={"id": 5, "name": "Captain", "type": "captain_assistant"}), BOT),
        (lambda p: p.update(sender=None), BOT),
        (lambda p: p.pop("sender"), BOT),
        (lambda p: p.update(sender={"id": 7}, sender_type="User"), HUMAN),
        # Message#human_response? requires outgoing?: a template (a bot's form, a CSAT survey) answers nobody.
        (lambda p: p.update(message_type="template"), BOT),
        (lambda p: p["content_attributes"].update(automation_rule_id=None), HUMAN),
        (lambda p: p["content_attributes"].update(automation_rule_id=""), HUMAN),
    ],
)
def test_sender_kind_of_outgoing_messages(connector, change, kind):
    payload = fixture("message_created-outgoing")
    change(payload)
    message = connector.normalize(payload, RECEIVED_AT).message
    assert message.direction == OUTGOING
    assert message.sender_kind == kind


def test_push_format_message_type_numbers(connector):
    payload = fixture("message_created-incoming")
    payload["message_type"] = 0
    assert connector.normalize(payload, RECEIVED_AT).message.direction == INCOMING


def test_activity_message_is_ignored(connector):
    payload = fixture("message_created-outgoing")
    payload["message_type"] = "activity"
    assert connector.normalize(payload, RECEIVED_AT) is None


def test_message_time_is_floored_to_the_second(connector):
    payload = fixture("message_created-incoming")
    payload["created_at"] = "2026-01-14T09:00:01.999999+01:00"
    assert connector.normalize(payload, RECEIVED_AT).occurred_at == at("2026-01-14T08:00:01")


def test_full_conversation_snapshot(connector):
    payload = fixture("message_created-incoming")
    conversation = payload["conversation"]
    conversation.update(
        priority="urgent",
        status="snoozed",
        snoozed_until="2026-01-15T08:00:00.500Z",
        labels=["vip", "billing"],
        custom_attributes={"product": "pro", "seats": 40},
    )
    conversation["additional_attributes"].update(conversation_language="de", mail_subject="Order 5531")
    conversation["meta"]["team"] = {"id": 4, "name": "Billing"}
    conversation["meta"]["assignee"] = {"id": 7, "name": "Sam Agent", "type": "user"}
    conversation["meta"]["sender"].update(
        phone_number="+4930123456",
        custom_attributes={"plan": "enterprise"},
        additional_attributes={"country_code": "DE", "city": "Berlin", "company_name": "Acme GmbH"},
    )
    snapshot = connector.normalize(payload, RECEIVED_AT).conversation
    assert (snapshot.priority, snapshot.status, snapshot.team_id, snapshot.assignee_id) == ("urgent", "snoozed", 4, 7)
    assert snapshot.snoozed_until == at("2026-01-15T08:00:00")
    assert snapshot.labels == ("vip", "billing")
    assert snapshot.custom_attributes == {"product": "pro", "seats": 40}
    assert (snapshot.conversation_language, snapshot.mail_subject) == ("de", "Order 5531")
    contact = snapshot.contact
    assert (contact.phone_number, contact.country_code, contact.city, contact.company) == (
        "+4930123456",
        "DE",
        "Berlin",
        "Acme GmbH",
    )
    assert contact.custom_attributes == {"plan": "enterprise"}


def test_free_form_attributes_of_the_wrong_type_count_as_absent(connector):
    payload = fixture("conversation_created")
    payload["additional_attributes"]["browser_language"] = ["en", "de"]
    payload["meta"]["sender"]["additional_attributes"] = {"city": 10115, "country_code": None}
    conversation = connector.normalize(payload, RECEIVED_AT).conversation
    assert conversation.browser_language is None
    assert conversation.contact.city is None and conversation.contact.country_code is None


# -- status changes ----------------------------------------------------------------------------------


def test_status_comes_from_changed_attributes_not_the_rendered_status(connector):
    payload = fixture("conversation_status_changed-resolved")
    payload["status"] = "open"  # rendered late, after a reopen
    payload["changed_attributes"] = [{"status": {"previous_value": "open", "current_value": "resolved"}}]
    event = connector.normalize(payload, RECEIVED_AT)
    assert event.kind == STATUS_CHANGED and event.new_status == "resolved"


@pytest.mark.parametrize("changed_attributes", [None, []])
def test_status_change_without_a_status_entry_takes_the_rendered_status(connector, changed_attributes):
    # Chatwoot's listener reads the change after the commit and sends changed_attributes null
    # (app/models/conversation.rb notify_status_change, app/listeners/base_listener.rb).
    payload = fixture("conversation_status_changed-resolved")
    payload["changed_attributes"] = changed_attributes
    event = connector.normalize(payload, RECEIVED_AT)
    assert (event.kind, event.new_status) == (STATUS_CHANGED, "resolved")


# -- conversation webhooks without ``account`` (Chatwoot before v4.14.2) -----------------------------


@pytest.mark.parametrize(
    "name", ["conversation_created", "conversation_updated-labels", "conversation_status_changed-resolved"]
)
def test_conversation_webhook_without_account_is_the_install_account(name):
    payload = fixture(name)
    del payload["account"]
    connector = get_connector("chatwoot", {"CHATWOOT_ACCOUNT_ID": "7"})
    event = connector.normalize(payload, RECEIVED_AT)
    assert (event.account_id, event.conversation_id) == (7, 87)
    assert event.conversation.account_id == 7


def test_an_account_in_the_payload_wins_over_the_install_account():
    connector = get_connector("chatwoot", {"CHATWOOT_ACCOUNT_ID": "7"})
    assert connector.normalize(fixture("conversation_created"), RECEIVED_AT).account_id == 1


def test_without_account_nor_install_account_the_error_names_account(connector):
    payload = fixture("conversation_created")
    del payload["account"]
    with pytest.raises(PayloadError) as raised:
        connector.normalize(payload, RECEIVED_AT)
    assert raised.value.fields == ("account",)
    assert "CHATWOOT_ACCOUNT_ID" in str(raised.value)


def test_conversation_updated_with_a_status_change_is_a_status_change(connector):
    payload = fixture("conversation_updated-labels")
    payload["changed_attributes"].insert(0, {"status": {"previous_value": "open", "current_value": "pending"}})
    event = connector.normalize(payload, RECEIVED_AT)
    assert event.kind == STATUS_CHANGED
    assert event.new_status == "pending"
    assert event.key == "conversation_updated:87:1768384500.0917"
    assert event.occurred_at == at("2026-01-14T09:55:00")


@pytest.mark.parametrize("name, status", [("conversation_opened", "open"), ("conversation_resolved", "resolved")])
def test_deprecated_status_events(connector, name, status):
    payload = fixture("conversation_updated-by_sla_evaluator")
    payload["event"] = name
    event = connector.normalize(payload, RECEIVED_AT)
    assert (event.kind, event.new_status, event.key) == (STATUS_CHANGED, status, f"{name}:87:1768388400.2044")


def test_duplicate_deliveries_have_the_same_key(connector):
    for name in EXPECTED:
        if EXPECTED[name] is not None:
            first = connector.normalize(fixture(name), RECEIVED_AT)
            again = connector.normalize(fixture(name), RECEIVED_AT + timedelta(minutes=3))
            assert first.key == again.key and first == again


def test_missing_event_time_falls_back_to_received_at(connector):
    payload = fixture("conversation_updated-labels")
    del payload["updated_at"]
    event = connector.normalize(payload, RECEIVED_AT.replace(microsecond=123456))
    assert event.occurred_at == RECEIVED_AT
    assert event.key == "conversation_updated:87:2026-01-14T12:00:00Z"
    message = fixture("message_created-incoming")
    message["created_at"] = None
    assert connector.normalize(message, RECEIVED_AT).occurred_at == RECEIVED_AT


def test_without_a_received_time_a_missing_event_time_is_a_payload_error(connector):
    assert connector.normalize(fixture("message_created-incoming"), None).occurred_at == at("2026-01-14T09:00:01")
    conversation = fixture("conversation_updated-labels")
    del conversation["updated_at"]
    with pytest.raises(PayloadError) as raised:
        connector.normalize(conversation, None)
    assert raised.value.fields == ("updated_at",)
    message = fixture("message_created-incoming")
    del message["created_at"]
    with pytest.raises(PayloadError) as raised:
        connector.normalize(message, None)
    assert raised.value.fields == ("created_at",)


# -- ignored events ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "conversation_typing_on",
        "conversation_typing_off",
        "message_updated",
        "contact_created",
        "contact_updated",
        "webwidget_triggered",
        "inbox_created",
        "inbox_updated",
        "automation_event.conversation_created",
        "something_new",
    ],
)
def test_events_the_plugin_does_not_use_are_ignored(connector, name):
    payload = fixture("message_created-outgoing")
    payload["event"] = name
    assert connector.normalize(payload, RECEIVED_AT) is None


def test_embedded_messages_are_not_message_events(connector):
    payload = fixture("conversation_created")
    assert payload["messages"]
    event = connector.normalize(payload, RECEIVED_AT)
    assert event.kind == CONVERSATION_CREATED and event.message is None


# -- invalid payloads --------------------------------------------------------------------------------


def _delete(path: str):
    def change(payload):
        *parents, last = path.split(".")
        for part in parents:
            payload = payload[part]
        del payload[last]

    return change


def _set(path: str, value):
    def change(payload):
        *parents, last = path.split(".")
        for part in parents:
            payload = payload[part]
        payload[last] = value

    return change


@pytest.mark.parametrize(
    "name, change, field",
    [
        ("conversation_created", _delete("id"), "id"),
        ("conversation_created", _delete("account"), "account"),
        ("conversation_created", _delete("created_at"), "created_at"),
        ("conversation_created", _delete("status"), "status"),
        ("conversation_created", _set("id", "eighty-seven"), "id"),
        ("conversation_created", _set("id", True), "id"),
        ("conversation_created", _set("id", -87), "id"),
        ("conversation_created", _set("created_at", "yesterday-ish"), "created_at"),
        ("conversation_created", _set("created_at", 1e300), "created_at"),
        ("conversation_created", _set("status", "archived"), "status"),
        ("conversation_created", _set("labels", "billing"), "labels"),
        ("conversation_created", _set("account", {"id": "one"}), "account.id"),
        ("conversation_created", _set("meta.team", {"name": "no id"}), "meta.team.id"),
        ("conversation_updated-labels", _set("updated_at", "not a time"), "updated_at"),
        (
            "conversation_status_changed-resolved",
            _set("changed_attributes", [{"status": {"current_value": "gone"}}]),
            "changed_attributes.status.current_value",
        ),
        ("conversation_status_changed-resolved", _set("changed_attributes", "status"), "changed_attributes"),
        ("message_created-incoming", _delete("id"), "id"),
        ("message_created-incoming", _set("id", "abc"), "id"),
        ("message_created-incoming", _delete("conversation"), "conversation"),
        ("message_created-incoming", _delete("conversation.id"), "conversation.id"),
        ("message_created-incoming", _set("conversation.id", "abc"), "conversation.id"),
        ("message_created-incoming", _set("created_at", "garbage"), "created_at"),
        ("message_created-incoming", _delete("message_type"), "message_type"),
        ("message_created-incoming", _set("message_type", "sideways"), "message_type"),
        ("message_created-incoming", _set("private", "yes"), "private"),
        ("message_created-incoming", _delete("private"), "private"),
        ("message_created-incoming", _set("sender", "Jane"), "sender"),
    ],
)
def test_unusable_payloads_raise_payload_error_naming_the_field(connector, name, change, field):
    payload = fixture(name)
    change(payload)
    with pytest.raises(PayloadError) as raised:
        connector.normalize(payload, RECEIVED_AT)
    assert field in raised.value.fields
    assert field in str(raised.value)


def test_payload_error_names_every_bad_field(connector):
    payload = fixture("message_created-incoming")
    del payload["id"]
    payload["created_at"] = "garbage"
    with pytest.raises(PayloadError) as raised:
        connector.normalize(payload, RECEIVED_AT)
    assert set(raised.value.fields) == {"id", "created_at"}


@pytest.mark.parametrize("payload", [[], "text", None, {}, {"event": 5}])
def test_not_an_event_at_all(connector, payload):
    with pytest.raises(PayloadError):
        connector.normalize(payload, RECEIVED_AT)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
EVENT_NAMES = st.sampled_from(
    [
        "conversation_created",
        "conversation_updated",
        "conversation_status_changed",
        "conversation_opened",
        "conversation_resolved",
        "message_created",
        "message_updated",
        "conversation_typing_on",
    ]
) | st.text(max_size=20)
FIELD_NAMES = st.sampled_from(
    [
        "id",
        "account",
        "created_at",
        "updated_at",
        "status",
        "labels",
        "meta",
        "changed_attributes",
        "conversation",
        "message_type",
        "private",
        "sender",
        "content",
        "content_attributes",
        "additional_attributes",
        "custom_attributes",
        "snoozed_until",
        "inbox_id",
    ]
) | st.text(max_size=12)


def _assert_event_none_or_payload_error(connector, payload, received_at=RECEIVED_AT):
    try:
        result = connector.normalize(payload, received_at)
    except PayloadError:
        return
    assert result is None or isinstance(result, Event)
    if result is not None:
        event_from_json(json.loads(json.dumps(result.to_json())))


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=EVENT_NAMES,
    body=st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=10),
    received_at=st.sampled_from([RECEIVED_AT, None]),
)
def test_arbitrary_json_only_gives_events_none_or_payload_errors(event, body, received_at):
    _assert_event_none_or_payload_error(
        ChatwootConnector(plugin_user_id=PLUGIN_USER_ID), {**body, "event": event}, received_at
    )


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_payloads_only_give_events_none_or_payload_errors(data):
    name = data.draw(st.sampled_from(sorted(EXPECTED)))
    payload = fixture(name)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        path = data.draw(st.sampled_from([p for p in _paths(payload) if p]))
        parent = payload
        for part in path[:-1]:
            parent = parent[part]
        if data.draw(st.booleans()):
            parent[path[-1]] = data.draw(JSON_VALUES)
        elif isinstance(parent, dict):
            del parent[path[-1]]
    received_at = data.draw(st.sampled_from([RECEIVED_AT, None]))
    _assert_event_none_or_payload_error(ChatwootConnector(plugin_user_id=PLUGIN_USER_ID), payload, received_at)


# -- account, delivery key -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_account_of_every_fixture(connector, name):
    assert connector.account_of(fixture(name)) == 1


@pytest.mark.parametrize("payload", [{}, {"account": None}, {"account": {"id": "1"}}, {"account": {"id": True}}, []])
def test_account_of_unknown(connector, payload):
    assert connector.account_of(payload) is None


def test_delivery_key_is_the_delivery_header_in_any_case(connector):
    body = b'{"event": "message_created"}'
    delivery = "0d4e9c1a-7f3b-4b8e-9a55-2f0c6f7e8d11"
    assert connector.delivery_key({"X-Chatwoot-Delivery": delivery}, body) == delivery
    assert connector.delivery_key({"x-chatwoot-delivery": delivery}, body) == delivery


def test_delivery_key_without_header_is_the_body_hash(connector):
    body = b'{"event": "message_created"}'
    assert connector.delivery_key({}, body) == hashlib.sha256(body).hexdigest()
    assert connector.delivery_key({"X-Chatwoot-Delivery": "  "}, body) == hashlib.sha256(body).hexdigest()
    assert connector.delivery_key({"X-Chatwoot-Delivery": "x" * 500}, body) == hashlib.sha256(body).hexdigest()


# -- verification --------------------------------------------------------------------------------------

NOW = datetime(2026, 1, 14, 9, 0, 5, tzinfo=UTC)
BODY = (FIXTURES / "message_created-incoming.json").read_bytes()


def signed_headers(body: bytes = BODY, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(NOW.timestamp()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Chatwoot-Signature": f"sha256={digest}",
        "X-Chatwoot-Timestamp": str(timestamp),
        "X-Chatwoot-Delivery": "0d4e9c1a-7f3b-4b8e-9a55-2f0c6f7e8d11",
        "Content-Type": "application/json",
    }


@pytest.fixture
def signed() -> ChatwootConnector:
    return ChatwootConnector(webhook_secret=SECRET, webhook_token=TOKEN)


def rejected(connector, headers, body=BODY, query=None, now=NOW) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as raised:
        connector.verify(headers, body, query or {}, now)
    assert raised.value.status == 401
    assert SECRET not in raised.value.reason and TOKEN not in raised.value.reason
    return raised.value


def test_valid_signature_is_accepted(signed):
    signed.verify(signed_headers(), BODY, {}, NOW)
    lower = {name.lower(): value for name, value in signed_headers().items()}
    signed.verify(lower, BODY, {}, NOW)


def test_signature_with_the_wrong_secret_is_rejected(signed):
    assert "mismatch" in rejected(signed, signed_headers(secret="another-secret")).reason


def test_tampered_body_is_rejected(signed):
    rejected(signed, signed_headers(), body=BODY.replace(b"Jane Doe", b"Eve Doe"))


def test_tampered_timestamp_is_rejected(signed):
    headers = signed_headers()
    headers["X-Chatwoot-Timestamp"] = str(int(NOW.timestamp()) + 1)
    rejected(signed, headers)


@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
def test_stale_or_future_timestamp_is_rejected(signed, skew):
    reason = rejected(signed, signed_headers(timestamp=int(NOW.timestamp()) + skew)).reason
    assert "X-Chatwoot-Timestamp" in reason


@pytest.mark.parametrize("skew", [-300, 300])
def test_timestamp_within_five_minutes_is_accepted(signed, skew):
    signed.verify(signed_headers(timestamp=int(NOW.timestamp()) + skew), BODY, {}, NOW)


@pytest.mark.parametrize("header", ["X-Chatwoot-Signature", "X-Chatwoot-Timestamp"])
def test_missing_signature_header_is_rejected(signed, header):
    headers = signed_headers()
    del headers[header]
    rejected(signed, headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Chatwoot-Signature": "sha256=abc", "X-Chatwoot-Timestamp": "soon"},
        {"X-Chatwoot-Signature": "sha256=ü", "X-Chatwoot-Timestamp": str(int(NOW.timestamp()))},
        {"X-Chatwoot-Signature": "sha256=abc", "X-Chatwoot-Timestamp": "9" * 4000},
    ],
)
def test_malformed_signature_headers_are_rejected(signed, headers):
    rejected(signed, headers)


def test_signature_without_its_prefix_is_rejected(signed):
    headers = signed_headers()
    headers["X-Chatwoot-Signature"] = headers["X-Chatwoot-Signature"].removeprefix("sha256=")
    rejected(signed, headers)


def test_when_a_secret_is_set_the_url_token_is_not_enough(signed):
    rejected(signed, {}, query={"token": TOKEN})


def test_token_mode():
    connector = ChatwootConnector(webhook_token=TOKEN)
    connector.verify({}, BODY, {"token": TOKEN}, NOW)
    assert rejected(connector, {}, query={"token": "guess"}).reason == "invalid token"
    assert rejected(connector, {}, query={}).reason == "missing token"
    rejected(connector, signed_headers(), query={"token": TOKEN + "x"})


def test_dev_mode_accepts_anything():
    ChatwootConnector().verify({}, b"anything", {}, NOW)


# -- registry ------------------------------------------------------------------------------------------


def test_registry_builds_the_chatwoot_connector_from_settings():
    assert "chatwoot" in CONNECTOR_NAMES
    connector = get_connector(
        "chatwoot", {"CHATWOOT_WEBHOOK_SECRET": SECRET, "SLA_WEBHOOK_TOKEN": "", "CHATWOOT_PLUGIN_USER_ID": " 12 "}
    )
    assert isinstance(connector, Connector)
    assert connector.name == "chatwoot" and connector.plugin_user_id == 12
    connector.verify(signed_headers(), BODY, {}, NOW)
    assert SECRET not in repr(connector)


def test_registry_with_empty_settings_is_dev_mode():
    connector = get_connector("chatwoot", {})
    connector.verify({}, BODY, {}, NOW)
    assert connector.plugin_user_id is None


def test_unknown_connector_name():
    with pytest.raises(KeyError) as raised:
        get_connector("zendesk", {})
    assert isinstance(raised.value, UnknownConnector)
    assert str(raised.value) == "unknown connector 'zendesk'; known connectors: chatwoot"


@pytest.mark.parametrize("value", ["sla-bot", "-3", "0", "1.5"])
def test_plugin_user_id_must_be_a_user_id(value):
    with pytest.raises(ValueError, match="CHATWOOT_PLUGIN_USER_ID"):
        get_connector("chatwoot", {"CHATWOOT_PLUGIN_USER_ID": value})


def test_payload_is_not_modified(connector):
    for name in EXPECTED:
        payload = fixture(name)
        before = copy.deepcopy(payload)
        connector.normalize(payload, RECEIVED_AT)
        assert payload == before


def test_names_for_mentions_only_for_a_person_and_the_blocked_flag(connector):
    payload = fixture("conversation_status_changed-resolved")
    payload["meta"]["assignee"] = {"id": 7, "name": "Sam Agent", "type": "user"}
    payload["meta"]["assignee_type"] = "User"
    payload["meta"]["team"] = {"id": 2, "name": "support"}
    payload["meta"]["sender"]["blocked"] = True
    conversation = connector.normalize(payload, RECEIVED_AT).conversation
    assert (conversation.assignee_name, conversation.team_name) == ("Sam Agent", "support")
    assert conversation.contact.blocked is True
    payload["meta"]["assignee"] = {"id": 9, "name": "Helper Bot", "type": "agent_bot"}
    payload["meta"]["assignee_type"] = "AgentBot"
    del payload["meta"]["sender"]["blocked"]  # before Chatwoot v4.1 there is no blocked key
    conversation = connector.normalize(payload, RECEIVED_AT).conversation
    assert conversation.assignee_name is None and conversation.contact.blocked is False


def contact_updated(changes: list[dict], blocked: bool = True) -> dict:
    """``contact_updated`` as WebhookListener#contact_updated renders it (Contact#webhook_data + changes)."""
    return {
        "event": "contact_updated",
        "account": {"id": 1, "name": "Acme Support"},
        "additional_attributes": {},
        "avatar": "",
        "custom_attributes": {},
        "email": "jane.doe@example.com",
        "id": 42,
        "identifier": None,
        "name": "Jane Doe",
        "phone_number": None,
        "thumbnail": "",
        "blocked": blocked,
        "changed_attributes": changes,
    }


def test_a_contact_blocked_or_unblocked_is_an_event_other_contact_changes_are_not(connector):
    blocked = connector.normalize(
        contact_updated(
            [
                {"blocked": {"previous_value": False, "current_value": True}},
                {
                    "updated_at": {
                        "previous_value": "2026-01-14T09:00:00.000Z",
                        "current_value": "2026-01-14T09:30:05.120Z",
                    }
                },
            ]
        ),
        RECEIVED_AT,
    )
    assert (blocked.kind, blocked.account_id, blocked.conversation_id) == ("contact_updated", 1, 0)
    assert blocked.contact.id == 42 and blocked.contact.blocked is True
    assert blocked.occurred_at == at("2026-01-14T09:30:05")
    assert event_from_json(blocked.to_json()) == blocked
    renamed = contact_updated([{"name": {"previous_value": "Jane", "current_value": "Jane Doe"}}])
    assert connector.normalize(renamed, RECEIVED_AT) is None
    unblocked = connector.normalize(
        contact_updated([{"blocked": {"current_value": False}}], blocked=False), RECEIVED_AT
    )
    assert unblocked.contact.blocked is False and unblocked.occurred_at == RECEIVED_AT
