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


# --- long timelines: the live path (checkpoint + compact records) equals one fold from the first event ------

import random  # noqa: E402

from plugin.core.engine.facts import CONTENT_BUDGET  # noqa: E402

from engine_helpers import MemoryStore, Timeline, long_timeline, make_policy  # noqa: E402

STANDARD = make_policy(
    first_response="1h", next_response="2h", resolution="2d", warn_before="20%", pause_when=["pending", "snoozed"]
)
URGENT = make_policy("urgent", first_response="15m", next_response="30m", resolution="8h", on_reopen="restart")


class Rule:
    def __init__(self, name, policy, sticky=False):
        self.name, self.policy, self.sticky = name, policy, sticky


RULES = {"standard": Rule("Standard", STANDARD), "urgent": Rule("Urgent", URGENT)}


def switching(context):
    """Urgent by priority or by a customer's word; no SLA at all for low priority."""
    if context.conversation.priority == "urgent" or any("urgent" in text for text in context.customer_texts):
        return RULES["urgent"]
    return None if context.conversation.priority == "low" else RULES["standard"]


class Raise:
    name, priority = "Raise urgent words", "high"


def prioritizer(context):
    """Gives an empty priority "high" when a customer wrote "urgent"."""
    return Raise if any("urgent" in text for text in context.customer_texts) else None


def in_one_fold(events, at):
    state, _ = add_events(ConversationState(1, 87), events)
    return evaluate(state, switching, "v1", at, prioritizer)[1]


def same(live, reference):
    assert live.to_replay_json() == reference.to_replay_json()
    assert live.misses == reference.misses
    assert live.next_check_at == reference.next_check_at
    assert (live.prioritized, live.resolved) == (reference.prioritized, reference.resolved)


def test_a_long_conversation_delivered_in_order_never_folds_again_and_its_head_stays_small():
    events = long_timeline(seed=3, length=1200, blocks=False).events
    store = MemoryStore()
    for position, event in enumerate(events):
        live = store.deliver([event], switching, "v1", event.occurred_at, prioritizer)
        if position % 300 == 299:
            same(live, in_one_fold(events[: position + 1], event.occurred_at))
            # The head grows with status changes and misses, not with messages: answered cycles settle.
            checkpoint = json.loads(store.head_json)["checkpoint"]
            assert len(checkpoint["cycles"]) <= 3
            assert sum(map(len, checkpoint["texts"])) <= CONTENT_BUDGET
            messages = sum(1 for event in events[: position + 1] if event.message is not None)
            assert checkpoint["settled"][0] + len(checkpoint["cycles"]) > messages // 10
    assert store.refolds == 0
    later = events[-1].occurred_at + (events[-1].occurred_at - events[0].occurred_at)
    same(store.deliver([], switching, "v1", later, prioritizer), in_one_fold(events, later))  # a deadline tick


@settings(deadline=None, max_examples=10)
@given(
    seed=st.integers(0, 10**6),
    length=st.sampled_from([150, 400, 1000]),
    late=st.floats(0, 0.04),
    duplicates=st.floats(0, 0.05),
    rules_edit=st.booleans(),
)
def test_long_conversations_delivered_late_and_twice_match_one_fold_of_what_arrived(
    seed, length, late, duplicates, rules_edit
):
    rng = random.Random(seed)
    events = long_timeline(seed, length).events
    deliveries = list(events)
    for position in range(len(deliveries)):  # some events arrive up to 30 deliveries late
        if rng.random() < late:
            event = deliveries.pop(position)
            deliveries.insert(min(len(deliveries), position + rng.randint(1, 30)), event)
    deliveries += [event for event in events if rng.random() < duplicates]
    store, arrived, clock = MemoryStore(), {}, events[0].occurred_at
    checks = set(rng.sample(range(len(deliveries)), 6)) | {len(deliveries) - 1}
    for position, event in enumerate(deliveries):
        arrived.setdefault(event.key, event)
        clock = max(clock, event.occurred_at)
        version = "v2" if rules_edit and position > len(deliveries) // 2 else "v1"
        live = store.deliver([event], switching, version, clock, prioritizer)
        if position in checks and not rules_edit:
            same(live, in_one_fold(list(arrived.values()), clock))
    if rules_edit:  # decisions made under v1 stay; the final state equals one delivery of the same history
        replayed = MemoryStore()
        for position, event in enumerate(deliveries):
            version = "v2" if position > len(deliveries) // 2 else "v1"
            moment = max(e.occurred_at for e in deliveries[: position + 1])
            replayed.deliver([event], switching, version, moment, prioritizer)
        same(
            store.deliver([], switching, "v2", clock, prioritizer),
            replayed.deliver([], switching, "v2", clock, prioritizer),
        )


def test_customer_text_is_kept_within_its_budget_and_not_at_all_when_no_rule_reads_it():
    timeline = Timeline()
    for minute in range(10, 50):
        timeline.customer(f"09:{minute}", "urgent " + "x" * 400).agent(f"09:{minute}:30")
    for keep_text, kept in ((True, CONTENT_BUDGET), (False, 0)):
        store = MemoryStore(keep_text=keep_text)
        for event in timeline.events:
            store.deliver([event], switching, "v1", event.occurred_at)
        head = json.loads(store.head_json)
        assert sum(map(len, head["checkpoint"]["texts"])) == kept
        bodies = [json.loads(record)["body"] for record in store.records.values()]
        stored_text = sum(len(body["m"][3]) for body in bodies if len(body.get("m", ())) > 3)
        assert stored_text <= kept + 407  # the message that crosses the budget is stored whole
