"""Marshmallow schemas for the parts of Chatwoot's webhook bodies that the plugin uses.

Each schema declares exactly the fields the connector reads and excludes everything else (a Chatwoot
payload carries dozens of keys the SLA clocks never look at, and new Chatwoot versions add more).
Identifiers, times, statuses and flags are validated strictly: a payload where they are missing or of the
wrong type is not a usable event. Free-form attributes (a contact's or conversation's
``additional_attributes``, which any API client can fill) are lenient: a value of the wrong type counts as
absent, so one odd attribute cannot make the plugin lose a message.

Payload shapes: Chatwoot's ``Conversations::EventDataPresenter#push_data`` and ``Message#webhook_data``.
"""

from __future__ import annotations

import math
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from plugin.core.events import STATUSES, from_timestamp, parse_time

# 9999-12-31T23:59:59Z: the last second a datetime can hold.
MAX_UNIX_SECONDS = 253_402_300_799
# Identifiers are stored in BIGINT columns.
MAX_ID = 2**63 - 1

# Chatwoot's message types by name (webhook format) and by number (push format, inside messages[]).
MESSAGE_TYPE_NAMES = ("incoming", "outgoing", "activity", "template")
MESSAGE_TYPE_NUMBERS = dict(enumerate(MESSAGE_TYPE_NAMES))


class Timestamp(fields.Field):
    """A time given as Unix seconds (Chatwoot's conversation times) or ISO-8601 text (message times).

    Loads as an aware UTC datetime floored to the whole second (docs/contracts.md section 4).
    """

    default_error_messages = {"invalid": "Not a valid time (Unix seconds or ISO-8601 text)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value) and 0 <= value <= MAX_UNIX_SECONDS:
                    return from_timestamp(value)
            elif isinstance(value, str):
                return parse_time(value)
        except (ValueError, OverflowError, OSError):
            pass
        raise self.make_error("invalid")


class StrictBoolean(fields.Field):
    """A JSON ``true`` or ``false``; unlike ``fields.Boolean`` no ``"yes"`` or ``1``."""

    default_error_messages = {"invalid": "Not a valid boolean."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool):
            return value
        raise self.make_error("invalid")


class FreeText(fields.Field):
    """Text from a free-form JSON object; any other type counts as absent (None)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return value if isinstance(value, str) else None


class MessageType(fields.Field):
    """A message type by name (``"incoming"``) or by its push-format number (``0``); loads the name."""

    default_error_messages = {"invalid": f"Must be one of: {', '.join(MESSAGE_TYPE_NAMES)} (or 0-3)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and value in MESSAGE_TYPE_NAMES:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value in MESSAGE_TYPE_NUMBERS:
            return MESSAGE_TYPE_NUMBERS[value]
        raise self.make_error("invalid")


def required_id() -> fields.Integer:
    """A positive whole-number identifier that must be present."""
    return fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_ID))


def optional_id() -> fields.Integer:
    """A positive whole-number identifier that may be missing or null."""
    return fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1, max=MAX_ID))


def optional_text() -> fields.String:
    """A string that may be missing or null."""
    return fields.String(allow_none=True, load_default=None)


def json_object() -> fields.Dict:
    """A JSON object of any values (custom attributes), missing or null meaning empty."""
    return fields.Dict(keys=fields.String(), allow_none=True, load_default=None)


class _Schema(Schema):
    class Meta:
        unknown = EXCLUDE


class AccountSchema(_Schema):
    """``account``: ``{id, name}``."""

    id = required_id()


class ReferenceSchema(_Schema):
    """Something referred to by id: ``meta.team``, ``meta.assignee`` (``type`` ``user`` or ``agent_bot``);
    the name is what a mention in a note shows."""

    id = required_id()
    name = optional_text()
    type = optional_text()


class ContactAttributesSchema(_Schema):
    """A contact's free-form ``additional_attributes``."""

    country_code = FreeText(load_default=None)
    city = FreeText(load_default=None)
    company_name = FreeText(load_default=None)


class ContactSchema(_Schema):
    """The customer: ``meta.sender`` of a conversation."""

    id = optional_id()
    name = optional_text()
    email = optional_text()
    phone_number = optional_text()
    additional_attributes = fields.Nested(ContactAttributesSchema, allow_none=True, load_default=None)
    custom_attributes = json_object()
    blocked = fields.Boolean(allow_none=True, load_default=None)  # since Chatwoot v4.0/4.1 (#10899)


class ConversationAttributesSchema(_Schema):
    """A conversation's free-form ``additional_attributes`` (set by the channel: widget, email...)."""

    browser_language = FreeText(load_default=None)
    conversation_language = FreeText(load_default=None)
    referer = FreeText(load_default=None)
    mail_subject = FreeText(load_default=None)


class MetaSchema(_Schema):
    """A conversation's ``meta``: who the customer is, who and which team it is assigned to."""

    sender = fields.Nested(ContactSchema, allow_none=True, load_default=None)
    assignee = fields.Nested(ReferenceSchema, allow_none=True, load_default=None)
    assignee_type = optional_text()  # "User", "AgentBot" or null
    team = fields.Nested(ReferenceSchema, allow_none=True, load_default=None)


class ConversationSchema(_Schema):
    """A conversation as webhooks render it (``Conversations::EventDataPresenter#push_data``).

    ``id`` is the display id, the one REST paths use. ``messages[]`` is deliberately not declared: those
    are the last public message in push format, not message events.
    """

    id = required_id()
    created_at = Timestamp(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    inbox_id = optional_id()
    channel = optional_text()
    priority = optional_text()
    labels = fields.List(fields.String(), allow_none=True, load_default=None)
    custom_attributes = json_object()
    snoozed_until = Timestamp(allow_none=True, load_default=None)
    additional_attributes = fields.Nested(ConversationAttributesSchema, allow_none=True, load_default=None)
    meta = fields.Nested(MetaSchema, allow_none=True, load_default=None)


class ConversationEventSchema(ConversationSchema):
    """The body of a conversation webhook: the conversation plus ``account`` and ``changed_attributes``.

    ``account`` is absent before Chatwoot v4.14.2 (PR #12445): the connector then uses the install's account.

    ``updated_at`` is the event's time; when it is missing the receiver's time is used (docs/contracts.md section 2).
    ``changed_attributes`` is a list of single-key objects ``{"<column>": {previous_value, current_value}}``;
    only a ``status`` entry is validated further (:class:`StatusChangeSchema`).
    """

    account = fields.Nested(AccountSchema, allow_none=True, load_default=None)
    updated_at = Timestamp(allow_none=True, load_default=None)
    changed_attributes = fields.List(
        fields.Dict(keys=fields.String(), values=fields.Raw()), allow_none=True, load_default=None
    )


class StatusChangeSchema(_Schema):
    """``changed_attributes[].status``: the status a conversation changed into is ``current_value``."""

    current_value = fields.String(required=True, validate=validate.OneOf(STATUSES))


class SenderSchema(_Schema):
    """A message's ``sender``: a contact, a user (``type: "user"``), an agent bot or Captain."""

    id = optional_id()
    type = optional_text()


class MessageContentAttributesSchema(_Schema):
    """Set on messages an automation rule sent."""

    automation_rule_id = fields.Raw(load_default=None)


class MessageAttributesSchema(_Schema):
    """Set on messages a campaign sent."""

    campaign_id = fields.Raw(load_default=None)


class MessageEventSchema(_Schema):
    """The body of a ``message_created`` webhook (``Message#webhook_data``).

    ``created_at`` is ISO-8601 text here; ``sender_type``/``sender_id`` appear in the push format only.
    """

    account = fields.Nested(AccountSchema, required=True)
    id = required_id()
    created_at = Timestamp(allow_none=True, load_default=None)
    message_type = MessageType(required=True)
    private = StrictBoolean(required=True)
    content = optional_text()
    sender = fields.Nested(SenderSchema, allow_none=True, load_default=None)
    sender_type = optional_text()
    sender_id = optional_id()
    content_attributes = fields.Nested(MessageContentAttributesSchema, allow_none=True, load_default=None)
    additional_attributes = fields.Nested(MessageAttributesSchema, allow_none=True, load_default=None)
    conversation = fields.Nested(ConversationSchema, required=True)


# Schemas hold no per-load state, so one instance of each serves every request and thread.
class ContactEventSchema(_Schema):
    """The body of ``contact_updated``: ``Contact#webhook_data`` (app/models/contact.rb) plus ``event`` and
    ``changed_attributes``; the plugin reads only whether the contact was blocked or unblocked, and when."""

    account = fields.Nested(AccountSchema, required=True)
    id = required_id()
    blocked = fields.Boolean(allow_none=True, load_default=None)
    changed_attributes = fields.List(
        fields.Dict(keys=fields.String(), values=fields.Raw()), allow_none=True, load_default=None
    )


CONTACT_EVENT = ContactEventSchema()
CONVERSATION_EVENT = ConversationEventSchema()
STATUS_CHANGE = StatusChangeSchema()
MESSAGE_EVENT = MessageEventSchema()
