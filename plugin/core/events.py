"""The helpdesk-neutral event model.

Connectors turn a helpdesk's webhook bodies into these typed, immutable events; the engine folds them.
Nothing here knows about Chatwoot, HTTP, Redis or SQL. Events are serialisable to plain JSON so the store
can keep a conversation's timeline and replay it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

# Event kinds (what happened, not which webhook carried it).
CONVERSATION_CREATED = "conversation_created"
CONVERSATION_UPDATED = "conversation_updated"
STATUS_CHANGED = "status_changed"
MESSAGE_CREATED = "message_created"
# A contact changed (blocked or unblocked): it concerns every conversation of the contact, so the connector
# leaves conversation_id 0 and the worker delivers one copy to each conversation it knows of the contact.
CONTACT_UPDATED = "contact_updated"
TICK = "tick"
EVENT_KINDS = (CONVERSATION_CREATED, CONVERSATION_UPDATED, STATUS_CHANGED, MESSAGE_CREATED, CONTACT_UPDATED)

# Conversation statuses (Chatwoot's vocabulary, which most helpdesks map onto).
OPEN, RESOLVED, PENDING, SNOOZED = "open", "resolved", "pending", "snoozed"
STATUSES = (OPEN, RESOLVED, PENDING, SNOOZED)

# Who wrote a message. Only HUMAN replies satisfy a response clock (docs/semantics.md).
CONTACT, HUMAN, BOT, AUTOMATION, CAMPAIGN = "contact", "human", "bot", "automation", "campaign"

INCOMING, OUTGOING = "incoming", "outgoing"

MAX_MESSAGE_TEXT = 10_000
"""A message's text is kept up to this many characters (what rules can test of it)."""


def utc(moment: datetime) -> datetime:
    """Return *moment* as an aware UTC datetime floored to the whole second (docs/contracts.md section 4)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def from_timestamp(seconds: float) -> datetime:
    """A Unix timestamp as an aware UTC datetime floored to the second."""
    return datetime.fromtimestamp(int(seconds // 1), tz=UTC)


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 time (a trailing ``Z`` allowed) into aware UTC, floored to the second."""
    return utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00")))


@overload
def format_time(moment: datetime) -> str: ...
@overload
def format_time(moment: None) -> None: ...
def format_time(moment: datetime | None) -> str | None:
    """UTC ISO-8601 with a ``Z``, to the second (the replay contract's time format)."""
    if moment is None:
        return None
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Contact:
    """The customer's attributes that rules may test."""

    id: int | None = None
    name: str | None = None
    email: str | None = None
    phone_number: str | None = None
    country_code: str | None = None
    city: str | None = None
    company: str | None = None
    custom_attributes: Mapping[str, Any] = field(default_factory=dict)
    blocked: bool = False  # the helpdesk blocked this contact: no SLA (docs/notifications.md)


@dataclass(frozen=True)
class Conversation:
    """A conversation's attributes as one event shows them (rule inputs and report dimensions)."""

    account_id: int
    conversation_id: int
    created_at: datetime
    status: str = OPEN
    inbox_id: int | None = None
    channel: str | None = None
    priority: str | None = None
    team_id: int | None = None
    assignee_id: int | None = None
    assignee_name: str | None = None  # a person's display name (None when a bot is assigned)
    team_name: str | None = None
    labels: tuple[str, ...] = ()
    custom_attributes: Mapping[str, Any] = field(default_factory=dict)
    snoozed_until: datetime | None = None
    browser_language: str | None = None
    conversation_language: str | None = None
    referer: str | None = None
    mail_subject: str | None = None
    contact: Contact = field(default_factory=Contact)


@dataclass(frozen=True)
class Message:
    """One message of a conversation."""

    id: int
    created_at: datetime
    direction: str  # INCOMING or OUTGOING (templates are outgoing)
    sender_kind: str  # CONTACT, HUMAN, BOT, AUTOMATION or CAMPAIGN
    private: bool = False
    sender_id: int | None = None
    content: str | None = None

    def __post_init__(self) -> None:
        # The engine needs a message's words, not megabytes: a conversation keeps every event it saw, and
        # sixty messages of 500 KB made one 30 MB row. Rules see the same cut text live and in replay.
        if self.content is not None and len(self.content) > MAX_MESSAGE_TEXT:
            object.__setattr__(self, "content", self.content[:MAX_MESSAGE_TEXT])

    @property
    def is_human_reply(self) -> bool:
        """A public outgoing message written by a person: the only thing that answers a customer."""
        return self.direction == OUTGOING and self.sender_kind == HUMAN and not self.private

    @property
    def is_customer_message(self) -> bool:
        """A public incoming message from the customer."""
        return self.direction == INCOMING and self.sender_kind == CONTACT and not self.private


@dataclass(frozen=True)
class Event:
    """One thing that happened to one conversation, at the time the helpdesk says it happened."""

    kind: str
    key: str  # idempotency key: the same fact delivered twice has the same key
    account_id: int
    conversation_id: int
    occurred_at: datetime
    conversation: Conversation | None = None
    message: Message | None = None
    new_status: str | None = None  # only on STATUS_CHANGED: the status changed into
    previous_labels: tuple[str, ...] | None = None  # when the event changed the labels: the list before
    contact: Contact | None = None  # only on CONTACT_UPDATED: the contact as it is now
    connector: str = "chatwoot"
    delivery_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict from which :func:`event_from_json` rebuilds an equal event."""
        return _encode(self)


def event_from_json(data: Mapping[str, Any]) -> Event:
    """Rebuild an :class:`Event` from :meth:`Event.to_json`'s output."""
    conversation = data.get("conversation")
    if conversation is not None:
        conversation = conversation_from_json(conversation)
    message = data.get("message")
    if message is not None:
        message = Message(**{**message, "created_at": parse_time(message["created_at"])})
    previous_labels = data.get("previous_labels")
    changed_contact = data.get("contact")
    return Event(
        **{
            **data,
            "occurred_at": parse_time(data["occurred_at"]),
            "conversation": conversation,
            "message": message,
            "previous_labels": None if previous_labels is None else tuple(previous_labels),
            "contact": None if changed_contact is None else Contact(**changed_contact),
        }
    )


def conversation_from_json(data: Mapping[str, Any]) -> Conversation:
    """Rebuild a :class:`Conversation` from its JSON form (as :meth:`Event.to_json` writes it)."""
    return Conversation(
        **{
            **data,
            "created_at": parse_time(data["created_at"]),
            "snoozed_until": _maybe_time(data.get("snoozed_until")),
            "labels": tuple(data.get("labels") or ()),
            "contact": Contact(**data.get("contact") or {}),
        }
    )


def encode(value: Any) -> Any:
    """A JSON-safe form of an event model value (dataclasses as dicts, times as UTC ISO texts)."""
    return _encode(value)


def _maybe_time(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)


_PLAIN = (str, int, float, bool, type(None))


def _encode(value: Any) -> Any:
    # Hand-rolled rather than dataclasses.asdict, which deep-copies every value: the worker encodes often.
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, datetime):
        return format_time(value)
    if dataclasses.is_dataclass(value):
        return {key: _encode(item) for key, item in vars(value).items()}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _encode(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class MatchContext:
    """What a rule condition sees when it is evaluated on one event.

    ``customer_texts`` and ``mail_subjects`` hold every public customer message so far, so a keyword that
    once matched keeps matching (docs/contracts.md section 1); ``message`` is the event's own message, if any.
    """

    conversation: Conversation
    at: datetime
    message: Message | None = None
    customer_texts: tuple[str, ...] = ()
