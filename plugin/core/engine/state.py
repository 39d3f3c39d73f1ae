"""A conversation's stored SLA state: its fold checkpoint, the events after it, and its policy decisions.

The engine never mutates a state; :func:`add_events` returns a new one. The timeline is kept in event-time
order (equal times keep arrival order), so a late or duplicate delivery ends in the same state as one
in-order delivery (docs/contracts.md section 4).

A state carries a *checkpoint*: the fold of every event up to a time (see :class:`Checkpoint`), so an event
after it costs the same however long the conversation is. Its ``timeline`` holds only the events not yet
folded into the checkpoint. An event that belongs before the checkpoint (a late delivery) cannot be added
to such a state: the caller folds again from a state holding the whole timeline (:func:`needs_history`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugin.core.events import Event, event_from_json

if TYPE_CHECKING:
    from plugin.core.engine.facts import Checkpoint


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

    @property
    def order(self) -> tuple:
        """Sort key: event time, then arrival."""
        return (self.event.occurred_at, self.arrival)


@dataclass(frozen=True)
class ConversationState:
    """Everything the engine needs to recompute a conversation's SLA at any instant after its checkpoint."""

    account_id: int
    conversation_id: int
    timeline: tuple[TimelineEntry, ...] = ()  # the events after the checkpoint, in fold order
    decisions: Mapping[str, Decision] = field(default_factory=dict)
    pins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # policy id -> snapshot given
    checkpoint: Checkpoint | None = None
    next_arrival: int = 0

    @property
    def events(self) -> tuple[Event, ...]:
        """The events after the checkpoint, in fold order."""
        return tuple(entry.event for entry in self.timeline)

    @property
    def known(self) -> bool:
        """Whether any event of the conversation was ever added."""
        return self.next_arrival > 0


def state_from_json(data: Mapping[str, Any]) -> ConversationState:
    """Rebuild a state from the JSON the store wrote before checkpoints: the whole timeline and decisions."""
    entries = tuple(TimelineEntry(arrival, event_from_json(event)) for arrival, event in data["timeline"])
    return ConversationState(
        account_id=data["account_id"],
        conversation_id=data["conversation_id"],
        timeline=tuple(sorted(entries, key=lambda entry: entry.order)),
        decisions={key: Decision(**value) for key, value in data.get("decisions", {}).items()},
        pins=dict(data.get("pins", {})),
        next_arrival=max((entry.arrival for entry in entries), default=-1) + 1,
    )


def needs_history(state: ConversationState, events: Iterable[Event], now: datetime) -> bool:
    """Whether folding ``events`` at ``now`` needs the whole timeline: one of them (or ``now``) lies before
    the checkpoint, so the fold must start again from the first event."""
    if state.checkpoint is None:
        return False
    at = state.checkpoint.at
    return now < at or any(event.occurred_at < at for event in events)


def add_events(state: ConversationState, events: Iterable[Event]) -> tuple[ConversationState, list[Event]]:
    """Insert new events into the timeline; returns the new state and the events that were new.

    An event whose key is already in the timeline is a duplicate delivery and is dropped (events already
    folded into a checkpoint are the caller's to recognise). Raises ValueError for an event before the
    checkpoint (see :func:`needs_history`).
    """
    known = {entry.event.key for entry in state.timeline}
    next_arrival = max(state.next_arrival, max((entry.arrival for entry in state.timeline), default=-1) + 1)
    added: list[Event] = []
    entries = list(state.timeline)
    for event in events:
        if event.key in known:
            continue
        if state.checkpoint is not None and event.occurred_at < state.checkpoint.at:
            raise ValueError(f"event {event.key} lies before the checkpoint: fold the whole timeline again")
        known.add(event.key)
        entries.append(TimelineEntry(next_arrival, event))
        next_arrival += 1
        added.append(event)
    if not added:
        return state, added
    entries.sort(key=lambda entry: entry.order)
    return replace(state, timeline=tuple(entries), next_arrival=next_arrival), added
