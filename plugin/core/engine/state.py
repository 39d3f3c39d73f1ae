"""A conversation's stored SLA state: its deduplicated event timeline and its policy decisions.

The engine never mutates a state; :func:`add_events` returns a new one. The timeline is kept in event-time
order (equal times keep arrival order), so a late or duplicate delivery ends in the same state as one
in-order delivery (docs/contracts.md section 4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from plugin.core.events import Event, event_from_json


@dataclass(frozen=True)
class Decision:
    """Which policy the rules chose on one event, under which rule-set version.

    ``snapshot`` is the policy snapshot (None when no rule matched), kept so that editing the rule files
    never rewrites what was decided before the edit.
    """

    rules_hash: str
    rule: str | None = None
    sticky: bool = False
    snapshot: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "rules_hash": self.rules_hash,
            "rule": self.rule,
            "sticky": self.sticky,
            "snapshot": None if self.snapshot is None else dict(self.snapshot),
        }


@dataclass(frozen=True)
class TimelineEntry:
    """One event and its arrival number (the tie-break between events at the same second)."""

    arrival: int
    event: Event
    # The event's stored JSON, kept from loading so saving a long timeline does not re-encode it.
    stored: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> list:
        """``[arrival, event JSON]``."""
        return [self.arrival, self.stored if self.stored is not None else self.event.to_json()]

    @property
    def order(self) -> tuple:
        """Sort key: event time, then arrival."""
        return (self.event.occurred_at, self.arrival)


@dataclass(frozen=True)
class ConversationState:
    """Everything the engine needs to recompute a conversation's SLA at any instant."""

    account_id: int
    conversation_id: int
    timeline: tuple[TimelineEntry, ...] = ()
    decisions: Mapping[str, Decision] = field(default_factory=dict)
    pins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # policy id -> snapshot given

    @property
    def events(self) -> tuple[Event, ...]:
        """The events in fold order."""
        return tuple(entry.event for entry in self.timeline)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form for the store."""
        return {
            "account_id": self.account_id,
            "conversation_id": self.conversation_id,
            "timeline": [entry.to_json() for entry in self.timeline],
            "decisions": {key: decision.to_json() for key, decision in self.decisions.items()},
            "pins": {key: dict(value) for key, value in self.pins.items()},
        }


def state_from_json(data: Mapping[str, Any]) -> ConversationState:
    """Rebuild a :class:`ConversationState` from :meth:`ConversationState.to_json`."""
    return ConversationState(
        account_id=data["account_id"],
        conversation_id=data["conversation_id"],
        timeline=tuple(TimelineEntry(arrival, event_from_json(event), event) for arrival, event in data["timeline"]),
        decisions={key: Decision(**value) for key, value in data.get("decisions", {}).items()},
        pins=dict(data.get("pins", {})),
    )


def add_events(state: ConversationState, events: Iterable[Event]) -> tuple[ConversationState, list[Event]]:
    """Insert new events into the timeline; returns the new state and the events that were new.

    An event whose key is already in the timeline is a duplicate delivery and is dropped.
    """
    known = {entry.event.key for entry in state.timeline}
    next_arrival = max((entry.arrival for entry in state.timeline), default=-1) + 1
    added: list[Event] = []
    entries = list(state.timeline)
    for event in events:
        if event.key in known:
            continue
        known.add(event.key)
        entries.append(TimelineEntry(next_arrival, event))
        next_arrival += 1
        added.append(event)
    if not added:
        return state, added
    entries.sort(key=lambda entry: entry.order)
    return replace(state, timeline=tuple(entries)), added
