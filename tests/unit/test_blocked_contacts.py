"""Blocked contacts: no SLA for a conversation whose contact is blocked; blocking later stops the clocks."""

from __future__ import annotations

from dataclasses import replace

from plugin.core.events import Contact

from engine_helpers import MemoryStore, Timeline, always, make_policy, t

POLICY = make_policy("quick", first_response="1h", resolution="8h", warn_before="10m")


def blocked(timeline: Timeline) -> Timeline:
    """Every later event of *timeline* shows the contact blocked (as Chatwoot's payloads then do)."""
    timeline.conversation = replace(timeline.conversation, contact=Contact(id=42, blocked=True))
    return timeline


def test_a_conversation_of_a_blocked_contact_gets_no_sla() -> None:
    timeline = Timeline(contact=Contact(id=42, blocked=True)).customer("09:05")
    evaluation = timeline.evaluate("12:00", always(POLICY))
    assert (evaluation.policy, evaluation.status, evaluation.metrics) == (None, "none", {})
    assert evaluation.to_replay_json()["policy"] is None


def test_blocking_later_stops_running_clocks_without_a_miss_and_no_more_checks() -> None:
    timeline = Timeline().customer("09:05")
    blocked(timeline).customer("09:30", "spam again")
    evaluation = timeline.evaluate("12:00", always(POLICY))  # long after the first response's due time
    assert evaluation.policy is not None and evaluation.misses == ()
    assert evaluation.metrics["first_response"].status == "running"
    assert evaluation.status == "on_track" and evaluation.next_check_at is None


def test_misses_recorded_before_the_block_stay() -> None:
    timeline = Timeline().customer("09:05")
    blocked(timeline).customer("10:30", "spam again")
    evaluation = timeline.evaluate("20:00", always(POLICY))
    assert [miss.metric for miss in evaluation.misses] == ["first_response"]
    assert evaluation.status == "missed"
    assert evaluation.metrics["resolution"].status == "running"  # due 17:00, stopped at the block


def test_a_block_folded_from_a_checkpoint_and_delivered_late_judges_as_one_fold() -> None:
    timeline = Timeline().customer("09:05").agent("09:20").customer("09:40")
    blocked(timeline).customer("10:30", "spam again").customer("10:31")
    expected = timeline.evaluate("20:00", always(POLICY))
    for order in (timeline.events, [*timeline.events[:3], *timeline.events[4:], timeline.events[3]]):
        store = MemoryStore()
        for event in order:
            store.deliver([event], always(POLICY), "rules-v1", event.occurred_at)
        live = store.deliver([], always(POLICY), "rules-v1", t("20:00"))
        assert live.to_replay_json() == expected.to_replay_json()
        assert (live.misses, live.next_check_at) == (expected.misses, None)
