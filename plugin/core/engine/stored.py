"""The stored forms of a conversation's state: a small head and one compact record per event.

The head holds the fold checkpoint, the pinned policies, the rule-set versions decisions were made under
and the arrival counter; its size does not grow with the number of messages. An event record holds what
the engine reads of one event and nothing else: its kind, the conversation attributes that changed since
the event that arrived before it, the message's direction, sender kind and private flag (its text only
when the rules in force test message content), a status change, and the decision the rules made on it (an
index into the head's list of the decisions this conversation has seen: they repeat from event to event).
Times are whole seconds since the epoch. Pure: the store writes these as JSON (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from plugin.core.engine.facts import (
    CONTENT_BUDGET,
    Checkpoint,
    Cycle,
    Facts,
    Frozen,
    PolicySegment,
    Prioritized,
    SettledCycles,
    SettledMiss,
    StatusSpan,
    policy_of,
)
from plugin.core.engine.state import ConversationState, Decision, TimelineEntry
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
    OUTGOING,
    STATUS_CHANGED,
    Contact,
    Conversation,
    Event,
    Message,
    encode,
    from_timestamp,
    parse_time,
)
from plugin.core.policy import Policy

HEAD_FORMAT = 2
_SAME_AS_LAST = 0  # a checkpoint's latest conversation that is the head's last one
_KIND_CODES = {
    CONVERSATION_CREATED: "c",
    CONVERSATION_UPDATED: "u",
    STATUS_CHANGED: "s",
    MESSAGE_CREATED: "m",
    CONTACT_UPDATED: "p",
}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_DIRECTIONS = {INCOMING: "i", OUTGOING: "o"}
_DIRECTION_NAMES = {code: name for name, code in _DIRECTIONS.items()}
# Written as one letter; a record stored before holds the whole name, which reads as it is (no name is a code).
_SENDER_KINDS = {CONTACT: "c", HUMAN: "h", BOT: "b", AUTOMATION: "a", CAMPAIGN: "p"}
_SENDER_KIND_NAMES = {code: name for name, code in _SENDER_KINDS.items()}
_CONVERSATION_FIELDS = tuple(
    item.name for item in dataclasses.fields(Conversation) if item.name not in ("account_id", "conversation_id")
)


def seconds(moment: datetime | None) -> int | None:
    """A stored time: whole seconds since the epoch."""
    return None if moment is None else int(moment.timestamp())


def moment(value: int | None) -> datetime | None:
    """A stored time back as aware UTC."""
    return None if value is None else from_timestamp(value)


@dataclass(frozen=True)
class EventRecord:
    """One stored event: arrival number, idempotency key, event time and the compact body."""

    arrival: int
    key: str
    occurred_at: int
    body: Mapping[str, Any]


@dataclass
class Head:
    """A conversation's stored head, and what goes with it: the decisions its event records name (compact,
    see :func:`compact_decision`), and the events not yet folded into the checkpoint."""

    state: ConversationState
    choices: list[list[Any]]
    pending: list[str]  # the keys of the events after the checkpoint
    last_conversation: Conversation | None  # the attributes of the latest arrival (records store changes)


# --- events ------------------------------------------------------------------------------------------


def compact_event(
    event: Event,
    previous: Conversation | None,
    decision: Decision | None,
    choices: list[list[Any]],
    whole: bool = False,
) -> dict[str, Any]:
    """An event's record body. ``previous`` is the conversation as the event that arrived before it showed
    it; ``choices`` the head's decisions (a new one is appended). With ``whole``, the conversation is
    stored whole (``"cw"``), so the record reads back without the records before it: an event after the
    checkpoint is read alone."""
    # A message's kind goes without saying; its id is the event key's business, not the engine's.
    body: dict[str, Any] = {} if event.kind == MESSAGE_CREATED else {"k": _KIND_CODES[event.kind]}
    if event.conversation is None:
        body["n"] = 1
    elif whole:
        body["cw"] = conversation_changes(event.conversation, None)
    else:
        changes = conversation_changes(event.conversation, previous)
        if changes:
            body["c"] = changes
    message = event.message
    if message is not None:
        item: list[Any] = [
            _DIRECTIONS.get(message.direction, message.direction),
            _SENDER_KINDS.get(message.sender_kind, message.sender_kind),
        ]
        item.append(1 if message.private else 0)
        if message.content and message.is_customer_message:  # the only text rules read
            item.append(message.content)
        body["m"] = item
        if message.created_at != event.occurred_at:
            body["mt"] = seconds(message.created_at)
    if event.new_status is not None:
        body["s"] = event.new_status
    if event.contact is not None:
        body["p"] = _compact(event.contact)
    if decision is not None:
        body["d"] = compact_decision(decision, choices)
    return body


def compact_decision(decision: Decision, choices: list[list[Any]]) -> int:
    """The index in ``choices`` of ``[rules hash, rule, sticky, policy id]`` (appended when new); the
    snapshot is the conversation's pinned one of that policy id."""
    policy_id = None if decision.snapshot is None else decision.snapshot["id"]
    choice = [decision.rules_hash, decision.rule, 1 if decision.sticky else 0, policy_id]
    if choice not in choices:
        choices.append(choice)
    return choices.index(choice)


def expand_records(
    account_id: int,
    conversation_id: int,
    records: Iterable[EventRecord],
    choices: Sequence[Sequence[Any]],
    pins: Mapping[str, Mapping[str, Any]],
) -> tuple[list[TimelineEntry], dict[str, Decision], Conversation | None]:
    """Records (in arrival order) -> timeline entries in fold order, their decisions, and the conversation
    as the last arrival showed it."""
    entries: list[TimelineEntry] = []
    decisions: dict[str, Decision] = {}
    previous: Conversation | None = None
    for record in records:
        body = record.body
        occurred_at = from_timestamp(record.occurred_at)
        conversation = None
        if "cw" in body:
            conversation = previous = apply_changes(account_id, conversation_id, None, body["cw"])
        elif not body.get("n"):
            conversation = previous = apply_changes(account_id, conversation_id, previous, body.get("c") or {})
        message = None
        if "m" in body:
            item = body["m"]
            message = Message(
                id=0,  # not stored
                created_at=from_timestamp(body["mt"]) if "mt" in body else occurred_at,
                direction=_DIRECTION_NAMES.get(item[0], item[0]),
                sender_kind=_SENDER_KIND_NAMES.get(item[1], item[1]),
                private=bool(item[2]),
                content=item[3] if len(item) > 3 else None,
            )
        event = Event(
            kind=_KINDS[body["k"]] if "k" in body else MESSAGE_CREATED,
            key=record.key,
            account_id=account_id,
            conversation_id=conversation_id,
            occurred_at=occurred_at,
            conversation=conversation,
            message=message,
            new_status=body.get("s"),
            contact=Contact(**body["p"]) if "p" in body else None,
        )
        entries.append(TimelineEntry(record.arrival, event))
        if "d" in body:
            decisions[record.key] = expand_decision(choices[body["d"]], pins)
    entries.sort(key=lambda entry: entry.order)
    return entries, decisions, previous


def expand_decision(choice: Sequence[Any], pins: Mapping[str, Mapping[str, Any]]) -> Decision:
    """A decision back from its entry in the head's choices."""
    rules_hash, rule, sticky, policy_id = choice
    return Decision(
        rules_hash=rules_hash, rule=rule, sticky=bool(sticky), snapshot=None if policy_id is None else pins[policy_id]
    )


def conversation_changes(conversation: Conversation, previous: Conversation | None) -> dict[str, Any]:
    """The attributes in which ``conversation`` differs from ``previous`` (all that are set, when None)."""
    changes: dict[str, Any] = {}
    for name in _CONVERSATION_FIELDS:
        value = getattr(conversation, name)
        if previous is None:
            if name == "created_at" or _is_set(value):
                changes[name] = _compact(value)
        elif value != getattr(previous, name):
            changes[name] = _compact(value)
    return changes


def _is_set(value: Any) -> bool:
    if isinstance(value, Contact):
        return value != Contact()
    return value is not None and value is not False and value != () and value != {}


def _compact(value: Any) -> Any:
    """A value's JSON form; a contact without the fields it has at their defaults (rebuilt from them)."""
    if isinstance(value, Contact):
        return {name: encode(item) for name, item in vars(value).items() if _is_set(item)}
    return encode(value)


def apply_changes(
    account_id: int, conversation_id: int, previous: Conversation | None, changes: Mapping[str, Any]
) -> Conversation:
    """A conversation from :func:`conversation_changes`' output and the one it was taken against."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name in ("created_at", "snoozed_until"):
            values[name] = None if value is None else parse_time(value)
        elif name == "labels":
            values[name] = tuple(value or ())
        elif name == "contact":
            values[name] = Contact(**(value or {}))
        else:
            values[name] = value
    if previous is None:
        return Conversation(account_id=account_id, conversation_id=conversation_id, **values)
    return replace(previous, **values)


# --- the head ----------------------------------------------------------------------------------------


def head_to_json(head: Head) -> dict[str, Any]:
    """The stored head of a state (its timeline is stored as records; ``head.pending`` names them)."""
    state = head.state
    pins = state.pins
    last = None if head.last_conversation is None else conversation_changes(head.last_conversation, None)
    checkpoint = None if state.checkpoint is None else checkpoint_to_json(state.checkpoint, pins)
    if checkpoint is not None and checkpoint["latest"] is not None and checkpoint["latest"] == last:
        checkpoint["latest"] = _SAME_AS_LAST  # mostly the same conversation: stored once
    return {
        "format": HEAD_FORMAT,
        "next_arrival": state.next_arrival,
        "pins": {key: dict(value) for key, value in pins.items()},
        "choices": head.choices,
        "pending": head.pending,
        "last": last,
        "checkpoint": checkpoint,
    }


def head_from_json(account_id: int, conversation_id: int, data: Mapping[str, Any]) -> Head:
    """A head back from :func:`head_to_json`: a state with its checkpoint and no timeline yet."""
    pins = dict(data.get("pins") or {})
    checkpoint = data.get("checkpoint")
    last = data.get("last")
    if checkpoint is not None and checkpoint["latest"] == _SAME_AS_LAST:
        checkpoint = {**checkpoint, "latest": last}
    state = ConversationState(
        account_id=account_id,
        conversation_id=conversation_id,
        pins=pins,
        checkpoint=None if checkpoint is None else checkpoint_from_json(account_id, conversation_id, checkpoint, pins),
        next_arrival=data["next_arrival"],
    )
    return Head(
        state=state,
        choices=[list(choice) for choice in data.get("choices") or []],
        pending=list(data.get("pending") or []),
        last_conversation=None if last is None else apply_changes(account_id, conversation_id, None, last),
    )


def _policy_ref(policy: Policy, pins: Mapping[str, Mapping[str, Any]]) -> Any:
    # Every policy the fold uses is pinned; the snapshot itself is stored only if it somehow is not.
    return policy.id if pins.get(policy.id) == policy.snapshot else dict(policy.snapshot)


def _policy_from_ref(ref: Any, pins: Mapping[str, Mapping[str, Any]]) -> Policy:
    return policy_of(pins[ref] if isinstance(ref, str) else ref)


def checkpoint_to_json(point: Checkpoint, pins: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A checkpoint's JSON form (times as epoch seconds, policies by their pinned id)."""
    data = {
        "at": seconds(point.at),
        **_facts_to_json(point.facts, pins),
        "segments": _segments_to_json(point.segments, pins),
        "sticky": point.sticky,
        "texts": point.customer_texts,
    }
    # What only conversations of blocked contacts or prioritize rules have is written only for them.
    if point.blocked:
        data["blocked"] = True
    if point.priority_seen:
        data["priority_seen"] = True
    if point.prioritized is not None:
        data["prioritized"] = [point.prioritized.name, point.prioritized.priority]
    if point.frozen is not None:
        data["frozen"] = {
            **_facts_to_json(point.frozen.facts, pins),
            "segments": _segments_to_json(point.frozen.segments, pins),
        }
    return data


def checkpoint_from_json(
    account_id: int, conversation_id: int, data: Mapping[str, Any], pins: Mapping[str, Mapping[str, Any]]
) -> Checkpoint:
    """A checkpoint back from :func:`checkpoint_to_json`."""
    policies: dict[str, Policy] = {}

    def policy(ref: Any) -> Policy:
        if not isinstance(ref, str):
            return _policy_from_ref(ref, pins)
        if ref not in policies:
            policies[ref] = _policy_from_ref(ref, pins)
        return policies[ref]

    def segments(items: Sequence[Sequence[Any]]) -> list[PolicySegment]:
        return [PolicySegment(from_timestamp(start), policy(ref), rule) for start, ref, rule in items]

    def facts(item: Mapping[str, Any]) -> Facts:
        return _facts_from_json(account_id, conversation_id, item, policy)

    frozen = data.get("frozen")
    prioritized = data.get("prioritized")
    return Checkpoint(
        at=from_timestamp(data["at"]),
        facts=facts(data),
        segments=segments(data["segments"]),
        sticky=data["sticky"],
        customer_texts=list(data["texts"]),
        blocked=data.get("blocked", False),
        priority_seen=data.get("priority_seen", False),
        prioritized=None if prioritized is None else Prioritized(*prioritized),
        frozen=None if frozen is None else Frozen(facts(frozen), segments(frozen["segments"])),
    )


def _segments_to_json(segments: Sequence[PolicySegment], pins: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    return [[seconds(segment.start), _policy_ref(segment.policy, pins), segment.rule] for segment in segments]


def _facts_to_json(facts: Facts, pins: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    settled = facts.settled
    data = {
        "created": seconds(facts.created_at),
        "spans": [[seconds(span.start), span.status, seconds(span.snoozed_until)] for span in facts.spans],
        "first_reply": seconds(facts.first_reply_at),
        "cycles": [
            [seconds(cycle.start), seconds(cycle.stop), [seconds(at) for at in cycle.customer_messages]]
            for cycle in facts.cycles
        ],
        "settled": [
            settled.count,
            seconds(settled.last_stop),
            [
                [
                    miss.index,
                    seconds(miss.start),
                    seconds(miss.stop),
                    seconds(miss.due_at),
                    _policy_ref(miss.policy, pins),
                    miss.late_messages,
                ]
                for miss in settled.misses
            ],
        ],
        "latest": None if facts.latest is None else conversation_changes(facts.latest, None),
    }
    if facts.blocked_at is not None:
        data["blocked_at"] = seconds(facts.blocked_at)
    return data


def _facts_from_json(
    account_id: int, conversation_id: int, data: Mapping[str, Any], policy: Callable[[Any], Policy]
) -> Facts:
    count, last_stop, missed = data["settled"]
    return Facts(
        created_at=from_timestamp(data["created"]),
        spans=[StatusSpan(from_timestamp(start), status, moment(until)) for start, status, until in data["spans"]],
        first_reply_at=moment(data["first_reply"]),
        cycles=[
            Cycle(from_timestamp(start), moment(stop), [from_timestamp(at) for at in messages])
            for start, stop, messages in data["cycles"]
        ],
        latest=None if data["latest"] is None else apply_changes(account_id, conversation_id, None, data["latest"]),
        blocked_at=moment(data.get("blocked_at")),
        settled=SettledCycles(
            count,
            moment(last_stop),
            [
                SettledMiss(index, from_timestamp(start), from_timestamp(stop), from_timestamp(due), policy(ref), late)
                for index, start, stop, due, ref, late in missed
            ],
        ),
    )


# --- what a fold changes -----------------------------------------------------------------------------


@dataclass
class WritePlan:
    """The records and head to store after an evaluation: records to insert, records whose decision
    changed (rewritten whole), and the new head."""

    new: list[EventRecord]
    changed: list[EventRecord]
    head: Head


def plan_writes(
    head: Head,
    loaded: Mapping[str, EventRecord],
    added: Sequence[Event],
    after: ConversationState,
) -> WritePlan:
    """What to store once ``after`` (the evaluated state) replaces ``head.state``.

    ``loaded`` are the records read with the head (the pending ones, or every one when the fold started
    again from the first event), ``added`` the new events in the order :func:`add_events` numbered them
    (their customer texts are stored as they are: see :func:`without_text`).
    """
    if head.state.next_arrival + len(added) != after.next_arrival:
        raise ValueError("the events added to the state are not the ones given")
    choices = [list(choice) for choice in head.choices]
    decisions = after.decisions
    pending = {entry.event.key: entry.event for entry in after.timeline}  # read back alone next time
    changed = []
    for key, record in loaded.items():
        decision = decisions.get(key)
        body = {name: value for name, value in record.body.items() if name != "d"}
        if decision is not None:
            body["d"] = compact_decision(decision, choices)
        conversation = pending[key].conversation if key in pending else None
        if conversation is not None and "cw" not in body:
            body.pop("c", None)
            body["cw"] = conversation_changes(conversation, None)
        if body != record.body:
            changed.append(replace(record, body=body))
    new = []
    previous = head.last_conversation
    first_arrival = head.state.next_arrival
    for offset, event in enumerate(added):
        body = compact_event(event, previous, decisions.get(event.key), choices, event.key in pending)
        new.append(EventRecord(first_arrival + offset, event.key, seconds(event.occurred_at) or 0, body))
        if event.conversation is not None:
            previous = event.conversation
    # The head keeps no decisions: they live in the records, read back with the events they belong to.
    state = replace(after, timeline=(), decisions={})
    return WritePlan(new, changed, Head(state, choices, list(pending), previous))


def keeps_text(rules_read_content: bool, state: ConversationState) -> bool:
    """Whether new customer texts are worth keeping: the rules test content and the conversation's
    budget of kept text (see :data:`plugin.core.engine.facts.CONTENT_BUDGET`) is not used up."""
    if not rules_read_content:
        return False
    if state.checkpoint is None:
        return True
    return sum(map(len, state.checkpoint.customer_texts)) < CONTENT_BUDGET


def without_text(event: Event) -> Event:
    """The event without its message's text (what no rule will read is neither kept nor stored)."""
    if event.message is None or event.message.content is None:
        return event
    return replace(event, message=replace(event.message, content=None))
