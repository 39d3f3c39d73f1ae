"""Builders of helpdesk-neutral events and policies for the engine's tests (no connector involved)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from plugin.core.engine import ConversationState, add_events, evaluate
from plugin.core.events import (
    CONTACT,
    CONVERSATION_CREATED,
    HUMAN,
    INCOMING,
    MESSAGE_CREATED,
    OUTGOING,
    STATUS_CHANGED,
    Conversation,
    Event,
    Message,
    parse_time,
)
from plugin.core.policy import Policy, policy_from_snapshot, policy_snapshot

CREATED = "2026-01-14T09:00:00Z"


def t(text: str) -> datetime:
    """A UTC instant from a short ISO text ("2026-01-14T09:00:00Z" or "09:00" on 2026-01-14)."""
    return parse_time(text if "T" in text else f"2026-01-14T{text}:00Z" if len(text) == 5 else f"2026-01-14T{text}Z")


class Timeline:
    """A conversation's events, written the way a test reads."""

    def __init__(self, created: str = "09:00", conversation_id: int = 87, **attributes):
        self.conversation = Conversation(
            account_id=1, conversation_id=conversation_id, created_at=t(created), **attributes
        )
        self.events: list[Event] = [
            Event(
                CONVERSATION_CREATED,
                f"created:{conversation_id}",
                1,
                conversation_id,
                t(created),
                conversation=self.conversation,
            )
        ]
        self._message_id = 0

    def _message(self, at: str, direction: str, sender_kind: str, content: str, private: bool) -> Timeline:
        self._message_id += 1
        message = Message(self._message_id, t(at), direction, sender_kind, private, content=content)
        self.events.append(
            Event(
                MESSAGE_CREATED,
                f"message:{self._message_id}",
                1,
                self.conversation.conversation_id,
                t(at),
                conversation=self.conversation,
                message=message,
            )
        )
        return self

    def customer(self, at: str, content: str = "hello") -> Timeline:
        return self._message(at, INCOMING, CONTACT, content, False)

    def agent(self, at: str, content: str = "on it", sender_kind: str = HUMAN, private: bool = False) -> Timeline:
        return self._message(at, OUTGOING, sender_kind, content, private)

    def status(self, at: str, status: str, snoozed_until: str | None = None, **attributes) -> Timeline:
        from dataclasses import replace

        conversation = replace(
            self.conversation, status=status, snoozed_until=t(snoozed_until) if snoozed_until else None, **attributes
        )
        self.events.append(
            Event(
                STATUS_CHANGED,
                f"status:{len(self.events)}",
                1,
                conversation.conversation_id,
                t(at),
                conversation=conversation,
                new_status=status,
            )
        )
        return self

    def evaluate(self, at: str, matcher, events=None):
        state, _ = add_events(ConversationState(1, self.conversation.conversation_id), events or self.events)
        return evaluate(state, matcher, "rules-v1", t(at))[1]


def make_policy(policy_id: str = "standard", calendar: dict | None = None, **raw) -> Policy:
    raw = {"name": policy_id.title(), **raw}
    if calendar is not None:
        raw["calendar"] = "office"
    return policy_from_snapshot(policy_snapshot(policy_id, raw, calendar))


@dataclass(frozen=True)
class Choice:
    name: str
    policy: Policy
    sticky: bool = False


def always(policy: Policy, sticky: bool = False):
    """A matcher that applies ``policy`` to every event."""
    choice = Choice("Everything", policy, sticky)
    return lambda context: choice
