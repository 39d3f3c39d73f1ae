"""Duplicate and out-of-order deliveries of the real Chatwoot fixture timeline, through the connector and
the engine, end in the state of one in-order delivery (hypothesis over permutations)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import get_connector
from plugin.core.engine import ConversationState, add_events, evaluate
from plugin.core.events import parse_time
from plugin.core.policy import policy_from_snapshot, policy_snapshot

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "chatwoot"
NAMES = [
    "conversation_created",
    "message_created-incoming",
    "message_created-private_note",
    "message_created-outgoing",
    "conversation_updated-labels",
    "conversation_updated-custom_attributes",
    "conversation_status_changed-resolved",
    "conversation_updated-by_sla_evaluator",
]
CONNECTOR = get_connector("chatwoot", {})
EVENTS = [CONNECTOR.normalize(json.loads((FIXTURES / f"{name}.json").read_text()), None) for name in NAMES]
POLICY = policy_from_snapshot(
    policy_snapshot(
        "standard",
        {
            "first_response": "30m",
            "next_response": "1h",
            "resolution": "1h",
            "warn_before": "10m",
            "pause_when": ["pending"],
        },
        None,
    )
)


class Choice:
    name, policy, sticky = "Everything", POLICY, False


def outcome(events, at):
    state = ConversationState(1, 87)
    for event in events:  # one delivery at a time, as the worker receives them
        state, _ = add_events(state, [event])
    return evaluate(state, lambda context: Choice, "v1", parse_time(at))[1].to_replay_json()


@settings(deadline=None, max_examples=100)
@given(
    order=st.permutations(range(len(EVENTS))),
    duplicates=st.lists(st.integers(0, len(EVENTS) - 1), max_size=5),
    at=st.sampled_from(
        ["2026-01-14T09:20:00Z", "2026-01-14T09:50:00Z", "2026-01-14T10:30:00Z", "2026-01-14T12:00:00Z"]
    ),
)
def test_fixture_deliveries_in_any_order_with_duplicates_match_in_order(order, duplicates, at):
    shuffled = [EVENTS[index] for index in order] + [EVENTS[index] for index in duplicates]
    assert outcome(shuffled, at) == outcome(EVENTS, at)


def test_the_fixture_timeline_itself():
    result = outcome(EVENTS, "2026-01-14T12:00:00Z")
    assert result["metrics"]["first_response"]["missed_at"] == "2026-01-14T09:30:00Z"  # replied 09:42:10
    assert result["metrics"]["resolution"]["missed_at"] == "2026-01-14T10:00:00Z"  # resolved 11:00
    assert result["metrics"]["next_response"]["status"] == "not_started"  # no customer message after the reply
    assert result["status"] == "missed"
