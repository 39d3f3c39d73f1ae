"""``sla-plugin replay``: webhook bodies from a file -> each conversation's SLA at an instant.

The what-if tool for admins and the black-box interface of the acceptance tests (docs/contracts.md section 2). It runs
the same normalise + engine code as the workers, with no Redis and no HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from connectors.base import Connector, PayloadError
from plugin.core.engine import ConversationState, Evaluation, add_events, evaluate
from plugin.core.events import CONTACT_UPDATED, EVENT_KINDS, Event, parse_time


@dataclass
class ReplayResult:
    """The evaluations to print and the unreadable lines to report."""

    evaluations: list[Evaluation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_line(connector: Connector, line: str) -> Event | None:
    """One input line -> an event (None for an event name the plugin ignores).

    A line is a webhook body, or ``{"received_at": ISO-8601, "payload": {...}}``. Raises ValueError with a
    message when the line cannot be read.
    """
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, Mapping):
        raise ValueError("expected a JSON object")
    received_at = None
    if isinstance(data.get("payload"), Mapping) and "received_at" in data:
        try:
            received_at = parse_time(str(data["received_at"]))
        except ValueError:
            raise ValueError(f"received_at is not an ISO-8601 time: {data['received_at']!r}") from None
        data = data["payload"]
    try:
        return connector.normalize(data, received_at)
    except PayloadError as error:
        raise ValueError(str(error)) from None


def replay(
    lines: Iterable[str],
    connector: Connector,
    matcher,
    rules_hash: str,
    at: datetime | None = None,
    prioritizer=None,
) -> ReplayResult:
    """Fold every readable line's event into its conversation and evaluate each at ``at``.

    ``at`` defaults to the latest event time. Events after ``at`` are ignored; conversations are ordered
    by account and conversation id.
    """
    result = ReplayResult()
    events: list[Event] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = read_line(connector, line)
        except ValueError as error:
            result.errors.append(f"line {number}: {error}")
            continue
        if event is not None and event.kind in EVENT_KINDS:
            events.append(event)
    if not events:
        return result
    at = at or max(event.occurred_at for event in events)
    by_conversation: dict[tuple[int, int], list[Event]] = {}
    # As the worker does, a contact's change goes to every conversation of that contact.
    conversations_of: dict[tuple[int, int | None], set[int]] = {}
    for event in events:
        if event.conversation is not None:
            conversations_of.setdefault((event.account_id, event.conversation.contact.id), set()).add(
                event.conversation_id
            )
    # A stable sort keeps the file's order for events at the same second (arrival order).
    for event in sorted((event for event in events if event.occurred_at <= at), key=lambda e: e.occurred_at):
        if event.kind == CONTACT_UPDATED and event.contact is not None:
            for conversation_id in sorted(conversations_of.get((event.account_id, event.contact.id), ())):
                by_conversation.setdefault((event.account_id, conversation_id), []).append(
                    replace(event, conversation_id=conversation_id)
                )
            continue
        by_conversation.setdefault((event.account_id, event.conversation_id), []).append(event)
    for (account_id, conversation_id), conversation_events in sorted(by_conversation.items()):
        state, _ = add_events(ConversationState(account_id, conversation_id), conversation_events)
        _, evaluation = evaluate(state, matcher, rules_hash, at, prioritizer)
        result.evaluations.append(evaluation)
    return result
