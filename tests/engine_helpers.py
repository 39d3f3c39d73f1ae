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
    Contact,
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


class MemoryStore:
    """One conversation kept as the SQL store keeps it, without SQL: a head stored as JSON and one compact
    record per event (plugin/core/engine/stored.py), folded from the checkpoint, or from the first event
    when a delivery is late. What the worker does with a batch of one conversation's events."""

    def __init__(self, account_id: int = 1, conversation_id: int = 87, keep_text: bool = True):
        self.key = (account_id, conversation_id)
        self.head_json: str | None = None
        self.records: dict[str, str] = {}  # event key -> the record as stored (JSON)
        self.keep_text = keep_text
        self.refolds = 0

    def _records(self, keys=None):
        import json

        from plugin.core.engine.stored import EventRecord

        chosen = [self.records[key] for key in (self.records if keys is None else keys)]
        records = [EventRecord(**json.loads(text)) for text in chosen]
        return sorted(records, key=lambda record: record.arrival)

    def deliver(self, events, matcher, rules_hash: str, now: datetime, prioritizer=None):
        """Store and fold ``events`` at ``now`` (or at the newest event, when later); returns the evaluation."""
        import dataclasses
        import json

        from plugin.core.engine import needs_history
        from plugin.core.engine.stored import (
            Head,
            expand_records,
            head_from_json,
            head_to_json,
            keeps_text,
            plan_writes,
            without_text,
        )

        head = (
            head_from_json(*self.key, json.loads(self.head_json))
            if self.head_json
            else Head(ConversationState(*self.key), [], [], None)
        )
        events = [event for event in events if event.key not in self.records]
        at = max([now, *(event.occurred_at for event in events)])
        history = head.state.checkpoint is None or needs_history(head.state, events, at)
        records = self._records(None if history else head.pending)
        entries, decisions, _ = expand_records(*self.key, records, head.choices, head.state.pins)
        state = dataclasses.replace(
            head.state,
            timeline=tuple(entries),
            decisions=decisions,
            checkpoint=None if history else head.state.checkpoint,
        )
        self.refolds += history and head.state.known
        if not keeps_text(self.keep_text, state):
            events = [without_text(event) for event in events]
        state, added = add_events(state, events)
        state, evaluation = evaluate(state, matcher, rules_hash, at, prioritizer)
        plan = plan_writes(head, {record.key: record for record in records}, added, state)
        for record in plan.new + plan.changed:
            self.records[record.key] = json.dumps(dataclasses.asdict(record))
        self.head_json = json.dumps(head_to_json(plan.head))
        return evaluation


def long_timeline(seed: int, length: int, conversation_id: int = 87, blocks: bool = True) -> Timeline:
    """A conversation of about ``length`` events over weeks: customers and agents taking turns, bots,
    private notes, pauses, snoozes, resolutions and reopenings, a priority raised now and then, the contact
    blocked for a while (rarely, with ``blocks``: the clocks then stand still at the first block)."""
    import random
    from datetime import timedelta

    from plugin.core.events import AUTOMATION, BOT, PENDING, RESOLVED, SNOOZED

    rng = random.Random(seed)
    timeline = Timeline(conversation_id=conversation_id)
    moment = t("09:00")

    def stamp() -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    while len(timeline.events) < length:
        moment += timedelta(seconds=rng.choice([0, 1, 30, 300, 1800, 3600, 4 * 3600, 20 * 3600]))
        roll = rng.random()
        if roll < 0.42:
            timeline.customer(stamp(), rng.choice(["hello", "any news?", "this is urgent", "thanks"]))
        elif roll < 0.80:
            timeline.agent(stamp())
        elif roll < 0.84:
            timeline.agent(stamp(), sender_kind=rng.choice([BOT, AUTOMATION]))
        elif roll < 0.87:
            timeline.agent(stamp(), private=True)
        elif roll < 0.97:
            status = rng.choice([PENDING, "open", RESOLVED, SNOOZED])
            until = (moment + timedelta(hours=rng.choice([1, 8]))).strftime("%Y-%m-%dT%H:%M:%SZ")
            timeline.status(stamp(), status, snoozed_until=until if status == SNOOZED else None)
        elif roll < 0.975 and blocks:
            blocked = not timeline.conversation.contact.blocked
            timeline.conversation = Conversation(
                **{**vars(timeline.conversation), "contact": Contact(id=42, blocked=blocked)}
            )
            timeline.status(stamp(), timeline.conversation.status)
        else:
            priority = rng.choice([None, "high", "urgent"])
            timeline.conversation = Conversation(
                **{**vars(timeline.conversation), "priority": priority}  # a new attribute from here on
            )
            timeline.status(stamp(), timeline.conversation.status, priority=priority)
    return timeline
