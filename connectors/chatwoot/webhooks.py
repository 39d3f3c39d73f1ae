"""Chatwoot webhooks: authenticate a delivery and turn its body into a :class:`plugin.core.events.Event`.

Which Chatwoot event becomes which plugin event (docs/contracts.md section 4):

- ``conversation_created`` -> CONVERSATION_CREATED at the conversation's ``created_at``;
- ``conversation_updated`` -> CONVERSATION_UPDATED at ``updated_at``, or STATUS_CHANGED when its
  ``changed_attributes`` hold a ``status`` change;
- ``conversation_status_changed`` -> STATUS_CHANGED at ``updated_at``, into
  ``changed_attributes[].status.current_value`` (the rendered ``status`` may already show a later change,
  because Chatwoot renders payloads asynchronously). Chatwoot's own listener sends ``changed_attributes:
  null`` here (it reads the change after the commit, when Rails has forgotten it: ``Conversation#
  notify_status_change`` in app/models/conversation.rb), so without a ``status`` entry the rendered
  ``status`` is the new one;
- the deprecated ``conversation_opened`` / ``conversation_resolved`` -> STATUS_CHANGED open / resolved;
- ``message_created`` -> MESSAGE_CREATED at the message's ``created_at``;
- ``contact_updated`` whose ``changed_attributes`` hold ``blocked`` -> CONTACT_UPDATED (conversation id 0: the
  worker hands it to each conversation of the contact) at the ``updated_at`` they show;
- anything else (``message_updated``, typing, other contact, inbox and widget events, automation events, names
  this version does not know) -> None: acknowledged and ignored.

Conversation webhooks carry ``account`` only since Chatwoot v4.14.2 (PR #12445); before that they have none,
and the account is the install's: ``default_account_id`` (``CHATWOOT_ACCOUNT_ID``). Message webhooks always
carry it. See docs/chatwoot-versions.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError

from connectors.base import PayloadError, WebhookRejected
from connectors.chatwoot import schemas
from connectors.chatwoot.names import names_in
from plugin.core.events import (
    AUTOMATION,
    BOT,
    CAMPAIGN,
    CONTACT,
    CONTACT_UPDATED,
    CONVERSATION_CREATED,
    CONVERSATION_UPDATED,
    HUMAN,
    INCOMING,
    MESSAGE_CREATED,
    OPEN,
    OUTGOING,
    RESOLVED,
    STATUS_CHANGED,
    Contact,
    Conversation,
    Event,
    Message,
    format_time,
    parse_time,
    utc,
)

SIGNATURE_HEADER = "x-chatwoot-signature"
TIMESTAMP_HEADER = "x-chatwoot-timestamp"
DELIVERY_HEADER = "x-chatwoot-delivery"
# Chatwoot signs "<timestamp>.<raw body>"; a signature older or newer than this is a replay.
SIGNATURE_TOLERANCE_SECONDS = 300
# A delivery id is used in Redis keys and logs; anything but a short printable id is hashed instead.
MAX_DELIVERY_ID_LENGTH = 128

# Direction of each Chatwoot message type; activity messages (assignment notices...) are not messages
# anybody wrote and are not events for the plugin.
MESSAGE_DIRECTIONS = {"incoming": INCOMING, "outgoing": OUTGOING, "template": OUTGOING, "activity": None}
# Chatwoot's ``Message#human_response?`` requires ``outgoing?``: a template message (a bot's form, a CSAT
# survey) never answers a customer, whoever sent it.
NEVER_HUMAN_TYPES = frozenset({"template"})


class ChatwootConnector:
    """The Chatwoot connector (webhook side).

    Authentication, in order: when ``webhook_secret`` is set every request must carry a valid HMAC
    signature (newer Chatwoot versions sign with the webhook's secret); otherwise, when ``webhook_token``
    is set, the URL must carry ``?token=<it>`` (older, unsigned installs); with neither, every request is
    accepted (development only).

    The plugin's own messages: its private notes come back as ``message_created``. Private notes never
    answer a customer, but to be safe against a public message written with the plugin's account too, a
    message whose sender is ``plugin_user_id`` is normalised with ``sender_kind`` BOT, so it can never
    count as a human reply. It is still returned (not dropped) because it carries a fresh conversation
    snapshot like any other event.
    """

    name = "chatwoot"

    def __init__(
        self,
        *,
        webhook_secret: str | None = None,
        webhook_token: str | None = None,
        plugin_user_id: int | None = None,
        default_account_id: int | None = None,
    ) -> None:
        self._webhook_secret = (webhook_secret or "").encode()
        self._webhook_token = (webhook_token or "").encode()
        self.plugin_user_id = plugin_user_id
        self.default_account_id = default_account_id
        self._handlers: dict[str, Callable[[Mapping[str, Any], str, datetime | None], Event | None]] = {
            "conversation_created": self._conversation_created,
            "conversation_updated": self._conversation_updated,
            "conversation_status_changed": self._conversation_status_changed,
            "conversation_opened": self._deprecated_status_event,
            "conversation_resolved": self._deprecated_status_event,
            "message_created": self._message_created,
            "contact_updated": self._contact_updated,
        }

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ChatwootConnector:
        """Build from settings: ``CHATWOOT_WEBHOOK_SECRET``, ``SLA_WEBHOOK_TOKEN``, ``CHATWOOT_PLUGIN_USER_ID``,
        ``CHATWOOT_ACCOUNT_ID`` (the account of conversation webhooks that name none).

        Empty values count as unset. Raises ValueError when an id setting is not a positive whole number.
        """
        return cls(
            webhook_secret=str(settings.get("CHATWOOT_WEBHOOK_SECRET") or "").strip(),
            webhook_token=str(settings.get("SLA_WEBHOOK_TOKEN") or "").strip(),
            plugin_user_id=_id_setting(settings, "CHATWOOT_PLUGIN_USER_ID", "a Chatwoot user id"),
            default_account_id=_id_setting(settings, "CHATWOOT_ACCOUNT_ID", "a Chatwoot account id"),
        )

    def __repr__(self) -> str:
        mode = "signature" if self._webhook_secret else "token" if self._webhook_token else "open"
        return (
            f"ChatwootConnector(auth={mode!r}, plugin_user_id={self.plugin_user_id!r}, "
            f"default_account_id={self.default_account_id!r})"
        )

    # -- authentication and deduplication -------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], now: datetime) -> None:
        """Accept the request or raise :class:`WebhookRejected` with status 401 (see the class docstring)."""
        if self._webhook_secret:
            self._verify_signature(_lower_keys(headers), body, now)
        elif self._webhook_token:
            token = query.get("token")
            if not token:
                raise WebhookRejected(401, "missing token")
            if not hmac.compare_digest(token.encode(), self._webhook_token):
                raise WebhookRejected(401, "invalid token")

    def _verify_signature(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        signature = headers.get(SIGNATURE_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise WebhookRejected(401, "missing X-Chatwoot-Signature or X-Chatwoot-Timestamp header")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise WebhookRejected(401, "X-Chatwoot-Timestamp is not Unix seconds") from None
        # Whole-number arithmetic: a timestamp with thousands of digits must not overflow a float.
        skew = int(utc(now).timestamp()) - sent_at
        if abs(skew) > SIGNATURE_TOLERANCE_SECONDS:
            raise WebhookRejected(
                401, f"X-Chatwoot-Timestamp is more than {SIGNATURE_TOLERANCE_SECONDS} s away from now"
            )
        digest = hmac.new(self._webhook_secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        expected = f"sha256={digest}".encode()
        given = signature.strip().lower().encode("utf-8", "replace")
        if not hmac.compare_digest(expected, given):
            raise WebhookRejected(401, "signature mismatch")

    def delivery_key(self, headers: Mapping[str, str], body: bytes) -> str:
        """``X-Chatwoot-Delivery`` (stable across Chatwoot's retries), else the sha256 hex of the raw body."""
        delivery = str(_lower_keys(headers).get(DELIVERY_HEADER) or "").strip()
        if delivery and len(delivery) <= MAX_DELIVERY_ID_LENGTH and delivery.isascii() and delivery.isprintable():
            return delivery
        return hashlib.sha256(body).hexdigest()

    def account_of(self, payload: Mapping) -> int | None:
        """``account.id`` of the payload (or of its ``conversation`` for typing events), None when absent."""
        if not isinstance(payload, Mapping):
            return None
        for holder in (payload, payload.get("conversation")):
            account = holder.get("account") if isinstance(holder, Mapping) else None
            account_id = account.get("id") if isinstance(account, Mapping) else None
            if isinstance(account_id, int) and not isinstance(account_id, bool):
                return account_id
        return None

    def names(self, payload: Mapping) -> list[tuple[str, str, str]]:
        """The inbox, assignee and team names the body shows (:func:`connectors.chatwoot.names.names_in`)."""
        return names_in(payload)

    # -- normalisation --------------------------------------------------------------------------------

    def normalize(self, payload: Mapping, received_at: datetime | None) -> Event | None:
        """The plugin event for one webhook body, None for events the plugin ignores.

        Times are floored to whole seconds. An event time missing from the payload (a conversation
        event's ``updated_at``, a message's ``created_at``) falls back to ``received_at`` (docs/contracts.md section 2);
        without either the payload is unusable. Raises :class:`PayloadError` naming the fields that are
        missing or of the wrong type.
        """
        if not isinstance(payload, Mapping):
            raise PayloadError("payload: expected a JSON object", ("payload",))
        event_name = payload.get("event")
        if not isinstance(event_name, str):
            raise PayloadError("event: missing or not a string", ("event",))
        handler = self._handlers.get(event_name)
        if handler is None:
            return None
        return handler(payload, event_name, None if received_at is None else utc(received_at))

    def _conversation_created(self, payload: Mapping[str, Any], event_name: str, received_at: datetime | None) -> Event:
        data = _load(schemas.CONVERSATION_EVENT, payload, event_name)
        conversation = _conversation(data, self._account_id(data, event_name))
        return Event(
            kind=CONVERSATION_CREATED,
            key=f"{event_name}:{conversation.conversation_id}",
            account_id=conversation.account_id,
            conversation_id=conversation.conversation_id,
            occurred_at=conversation.created_at,
            conversation=conversation,
            connector=self.name,
        )

    def _conversation_updated(self, payload: Mapping[str, Any], event_name: str, received_at: datetime | None) -> Event:
        data = _load(schemas.CONVERSATION_EVENT, payload, event_name)
        new_status = _status_change(data["changed_attributes"], event_name, required=False)
        if new_status is None:
            return self._conversation_event(CONVERSATION_UPDATED, payload, data, event_name, received_at)
        return self._conversation_event(STATUS_CHANGED, payload, data, event_name, received_at, new_status)

    def _conversation_status_changed(
        self, payload: Mapping[str, Any], event_name: str, received_at: datetime | None
    ) -> Event:
        data = _load(schemas.CONVERSATION_EVENT, payload, event_name)
        new_status = _status_change(data["changed_attributes"], event_name, required=False) or data["status"]
        return self._conversation_event(STATUS_CHANGED, payload, data, event_name, received_at, new_status)

    def _deprecated_status_event(
        self, payload: Mapping[str, Any], event_name: str, received_at: datetime | None
    ) -> Event:
        data = _load(schemas.CONVERSATION_EVENT, payload, event_name)
        new_status = OPEN if event_name == "conversation_opened" else RESOLVED
        return self._conversation_event(STATUS_CHANGED, payload, data, event_name, received_at, new_status)

    def _conversation_event(
        self,
        kind: str,
        payload: Mapping[str, Any],
        data: dict[str, Any],
        event_name: str,
        received_at: datetime | None,
        new_status: str | None = None,
    ) -> Event:
        conversation = _conversation(data, self._account_id(data, event_name))
        occurred_at = _event_time(data["updated_at"], received_at, event_name, "updated_at")
        # The key keeps updated_at exactly as Chatwoot sent it: a float's full precision tells two
        # updates within one second apart, while duplicate deliveries of one update still match.
        key_time = format_time(occurred_at) if data["updated_at"] is None else str(payload["updated_at"])
        return Event(
            kind=kind,
            key=f"{event_name}:{conversation.conversation_id}:{key_time}",
            account_id=conversation.account_id,
            conversation_id=conversation.conversation_id,
            occurred_at=occurred_at,
            conversation=conversation,
            new_status=new_status,
            previous_labels=_previous_labels(data["changed_attributes"]),
            connector=self.name,
        )

    def _account_id(self, data: Mapping[str, Any], event_name: str) -> int:
        """The payload's ``account.id``, else the install's account (conversation webhooks before v4.14.2)."""
        if data["account"] is not None:
            return data["account"]["id"]
        if self.default_account_id is None:
            raise _payload_error(
                event_name, {"account": ["Missing data for required field (and CHATWOOT_ACCOUNT_ID is not set)."]}
            )
        return self.default_account_id

    def _message_created(
        self, payload: Mapping[str, Any], event_name: str, received_at: datetime | None
    ) -> Event | None:
        data = _load(schemas.MESSAGE_EVENT, payload, event_name)
        direction = MESSAGE_DIRECTIONS[data["message_type"]]
        if direction is None:
            return None
        account_id = data["account"]["id"]
        conversation = _conversation(data["conversation"], account_id)
        sender = data["sender"] or {}
        sender_id = sender.get("id") if sender.get("id") is not None else data["sender_id"]
        message = Message(
            id=data["id"],
            created_at=_event_time(data["created_at"], received_at, event_name, "created_at"),
            direction=direction,
            sender_kind=self._sender_kind(direction, sender, sender_id, data),
            private=data["private"],
            sender_id=sender_id,
            content=data["content"],
        )
        return Event(
            kind=MESSAGE_CREATED,
            key=f"message:{message.id}",
            account_id=account_id,
            conversation_id=conversation.conversation_id,
            occurred_at=message.created_at,
            conversation=conversation,
            message=message,
            connector=self.name,
        )

    def _contact_updated(
        self, payload: Mapping[str, Any], event_name: str, received_at: datetime | None
    ) -> Event | None:
        """A contact blocked or unblocked (the only contact change the SLA depends on), at the ``updated_at``
        its ``changed_attributes`` show; every other contact change is ignored."""
        data = _load(schemas.CONTACT_EVENT, payload, event_name)
        changes = {key: value for change in data["changed_attributes"] or () for key, value in change.items()}
        if "blocked" not in changes or data["blocked"] is None:
            return None
        stated = (
            (changes.get("updated_at") or {}).get("current_value")
            if isinstance(changes.get("updated_at"), Mapping)
            else None
        )
        try:
            moment = parse_time(stated) if isinstance(stated, str) else None
        except ValueError:
            moment = None
        occurred_at = _event_time(moment, received_at, event_name, "changed_attributes[].updated_at")
        return Event(
            kind=CONTACT_UPDATED,
            key=f"{event_name}:{data['id']}:{occurred_at.isoformat()}",
            account_id=data["account"]["id"],
            conversation_id=0,  # the worker routes it to each conversation of the contact
            occurred_at=occurred_at,
            contact=Contact(id=data["id"], blocked=bool(data["blocked"])),
            connector=self.name,
        )

    def _sender_kind(
        self, direction: str, sender: Mapping[str, Any], sender_id: int | None, data: Mapping[str, Any]
    ) -> str:
        """Who wrote a message, with the rules of Chatwoot's ``Message#human_response?`` (app/models/message.rb)."""
        if direction == INCOMING:
            return CONTACT
        if data["message_type"] in NEVER_HUMAN_TYPES:
            return BOT
        if _present((data["content_attributes"] or {}).get("automation_rule_id")):
            return AUTOMATION
        if _present((data["additional_attributes"] or {}).get("campaign_id")):
            return CAMPAIGN
        written_by_user = (sender.get("type") or "").lower() == "user" or data["sender_type"] == "User"
        if not written_by_user:
            return BOT
        if self.plugin_user_id is not None and sender_id == self.plugin_user_id:
            return BOT
        return HUMAN


def _id_setting(settings: Mapping[str, str], name: str, what: str) -> int | None:
    """A positive whole-number id setting, None when unset."""
    text = str(settings.get(name) or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be {what} (a whole number), got {text!r}")
    return int(text)


def _load(schema: Schema, payload: Mapping[str, Any], event_name: str) -> dict[str, Any]:
    try:
        return schema.load(payload)
    except ValidationError as error:
        raise _payload_error(event_name, error.messages) from None


def _payload_error(event_name: str, messages: Any, prefix: str = "") -> PayloadError:
    """A :class:`PayloadError` naming every field marshmallow complained about."""
    problems = list(_flatten_errors(messages, prefix))
    details = "; ".join(f"{path}: {message}" for path, message in problems)
    return PayloadError(f"invalid {event_name} payload: {details}", tuple(dict.fromkeys(path for path, _ in problems)))


def _flatten_errors(messages: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Marshmallow's nested error dict as (dotted path, message) pairs."""
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
            yield from _flatten_errors(value, path)
    elif isinstance(messages, (list, tuple)):
        for message in messages:
            yield from _flatten_errors(message, prefix)
    else:
        yield prefix or "payload", str(messages)


def _event_time(stated: datetime | None, received_at: datetime | None, event_name: str, field: str) -> datetime:
    """The time the payload states, else the time it was received (docs/contracts.md section 2)."""
    if stated is not None:
        return stated
    if received_at is None:
        raise _payload_error(event_name, {field: ["Missing data for required field (and no received time)."]})
    return received_at


def _status_change(changes: list[dict[str, Any]] | None, event_name: str, *, required: bool) -> str | None:
    """The status a conversation changed into, from ``changed_attributes``; None when it holds none."""
    change = next((item["status"] for item in changes or () if "status" in item), None)
    if change is None:
        if required:
            missing = {"changed_attributes": {"status": ["Missing data for required field."]}}
            raise _payload_error(event_name, missing)
        return None
    try:
        return schemas.STATUS_CHANGE.load(change)["current_value"]
    except ValidationError as error:
        raise _payload_error(event_name, error.messages, "changed_attributes.status") from None


def _previous_labels(changes: list[dict[str, Any]] | None) -> tuple[str, ...] | None:
    """The label list before a label change (lets the plugin see a label its own write dropped)."""
    change = next((item["label_list"] for item in changes or () if "label_list" in item), None)
    previous = change.get("previous_value") if isinstance(change, Mapping) else None
    if not isinstance(previous, list):
        return None
    return tuple(label for label in previous if isinstance(label, str))


def _conversation(data: Mapping[str, Any], account_id: int) -> Conversation:
    """The :class:`Conversation` snapshot from a loaded conversation."""
    meta = data["meta"] or {}
    attributes = data["additional_attributes"] or {}
    team = meta.get("team") or {}
    assignee = meta.get("assignee") or {}
    # A bot can be the assignee (assignee_type "AgentBot"); only a person can be mentioned in a note.
    person = meta.get("assignee_type") in (None, "User") and (assignee.get("type") or "user") == "user"
    return Conversation(
        account_id=account_id,
        conversation_id=data["id"],
        created_at=data["created_at"],
        status=data["status"],
        inbox_id=data["inbox_id"],
        channel=data["channel"],
        priority=data["priority"],
        team_id=team.get("id"),
        assignee_id=assignee.get("id"),
        assignee_name=assignee.get("name") if person else None,
        team_name=team.get("name"),
        labels=tuple(data["labels"] or ()),
        custom_attributes=data["custom_attributes"] or {},
        snoozed_until=data["snoozed_until"],
        browser_language=attributes.get("browser_language"),
        conversation_language=attributes.get("conversation_language"),
        referer=attributes.get("referer"),
        mail_subject=attributes.get("mail_subject"),
        contact=_contact(meta.get("sender")),
    )


def _contact(data: Mapping[str, Any] | None) -> Contact:
    if not data:
        return Contact()
    attributes = data.get("additional_attributes") or {}
    return Contact(
        id=data.get("id"),
        name=data.get("name"),
        email=data.get("email"),
        phone_number=data.get("phone_number"),
        country_code=attributes.get("country_code"),
        city=attributes.get("city"),
        company=attributes.get("company_name"),
        custom_attributes=data.get("custom_attributes") or {},
        blocked=bool(data.get("blocked")),
    )


def _present(value: Any) -> bool:
    """Ruby's ``present?``, which Chatwoot uses for ``automation_rule_id`` and ``campaign_id``."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, dict)):
        return bool(value)
    return True


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers by lower-case name: HTTP header names are case-insensitive, a plain dict is not."""
    return {str(name).lower(): value for name, value in headers.items()}
