"""The SLA semantics of docs/semantics.md and docs/contracts.md section 4, pinned on the pure engine."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.core.engine import ConversationState, add_events, evaluate
from plugin.core.engine.effects import changes
from plugin.core.events import AUTOMATION, BOT, PENDING, RESOLVED, SNOOZED

from engine_helpers import Choice, MemoryStore, Timeline, always, make_policy, t

STANDARD = make_policy(first_response="2h", next_response="2h", resolution="24h", warn_before="15m")
OFFICE = {"timezone": "Europe/Berlin", "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}}


def metric(evaluation, name):
    return evaluation.to_replay_json()["metrics"][name]


def test_contract_example_of_design_10_2():
    timeline = Timeline().customer("09:00").agent("09:42:10").customer("10:05")
    output = timeline.evaluate("12:00", always(STANDARD)).to_replay_json()
    assert output["status"] == "at_risk"
    assert output["policy"] == "standard" and len(output["policy_version"]) == 64
    assert output["metrics"] == {
        "first_response": {
            "status": "hit",
            "started_at": "2026-01-14T09:00:00Z",
            "due_at": "2026-01-14T11:00:00Z",
            "stopped_at": "2026-01-14T09:42:10Z",
            "missed_at": None,
            "misses": 0,
        },
        "next_response": {
            "status": "at_risk",
            "started_at": "2026-01-14T10:05:00Z",
            "due_at": "2026-01-14T12:05:00Z",
            "stopped_at": None,
            "missed_at": None,
            "misses": 0,
            "misses_per_message": 0,
        },
        "resolution": {
            "status": "running",
            "started_at": "2026-01-14T09:00:00Z",
            "due_at": "2026-01-15T09:00:00Z",
            "stopped_at": None,
            "missed_at": None,
            "misses": 0,
        },
    }


def test_a_reply_exactly_at_the_due_time_is_a_hit_one_second_later_a_miss():
    on_time = Timeline().customer("09:00").agent("11:00:00").evaluate("12:00", always(STANDARD))
    late = Timeline().customer("09:00").agent("11:00:01").evaluate("12:00", always(STANDARD))
    assert metric(on_time, "first_response")["status"] == "hit"
    assert metric(late, "first_response")["status"] == "missed"
    assert metric(late, "first_response")["missed_at"] == "2026-01-14T11:00:00Z"
    assert late.status == "missed"


def test_a_running_clock_is_missed_at_any_instant_after_its_due_time():
    timeline = Timeline().customer("09:00")
    assert metric(timeline.evaluate("11:00:00", always(STANDARD)), "first_response")["status"] == "at_risk"
    after = timeline.evaluate("11:00:01", always(STANDARD))
    assert metric(after, "first_response")["status"] == "missed"
    assert metric(after, "first_response")["missed_at"] == "2026-01-14T11:00:00Z"


def test_bots_automation_and_private_notes_never_answer_a_customer():
    timeline = (
        Timeline()
        .customer("09:00")
        .agent("09:01", sender_kind=BOT)
        .agent("09:02", sender_kind=AUTOMATION)
        .agent("09:03", private=True)
    )
    result = metric(timeline.evaluate("10:00", always(STANDARD)), "first_response")
    assert result["status"] == "running" and result["stopped_at"] is None


def test_first_response_stops_at_resolution():
    timeline = Timeline().customer("09:00").status("10:00", RESOLVED)
    evaluation = timeline.evaluate("15:00", always(STANDARD))
    assert metric(evaluation, "first_response")["status"] == "hit"
    assert metric(evaluation, "first_response")["stopped_at"] == "2026-01-14T10:00:00Z"
    assert evaluation.status == "hit"


def test_next_response_is_not_started_before_the_first_cycle_and_met_between_cycles():
    before = Timeline().customer("09:00").customer("09:05").evaluate("10:00", always(STANDARD))
    assert metric(before, "next_response") == {
        "status": "not_started",
        "started_at": None,
        "due_at": None,
        "stopped_at": None,
        "missed_at": None,
        "misses": 0,
        "misses_per_message": 0,
    }
    between = Timeline().customer("09:00").agent("09:10").customer("09:20").agent("09:30")
    result = metric(between.evaluate("10:00", always(STANDARD)), "next_response")
    assert result["status"] == "hit" and result["started_at"] is None
    assert result["stopped_at"] == "2026-01-14T09:30:00Z"


def test_a_resolved_conversation_whose_next_response_never_started_is_hit_and_logs_no_next_response_hit():
    timeline = Timeline().customer("09:00").agent("09:10").status("09:20", RESOLVED)
    evaluation = timeline.evaluate("10:00", always(STANDARD))
    assert metric(evaluation, "next_response")["status"] == "not_started"
    assert evaluation.status == "hit"
    assert not [change for change in changes(None, evaluation) if change.metric == "next_response"]


def test_later_customer_messages_do_not_move_a_waiting_cycle_and_count_per_message():
    timeline = (
        Timeline()
        .customer("09:00")
        .agent("09:10")
        .customer("09:20")
        .customer("10:00")
        .customer("11:30")
        .customer("12:00")
        .agent("12:30")
    )
    result = metric(timeline.evaluate("13:00", always(STANDARD)), "next_response")
    # The cycle began 09:20 and was due 11:20; 11:30 and 12:00 came after the due time.
    assert result["status"] == "missed"
    assert result["missed_at"] == "2026-01-14T11:20:00Z"
    assert result["misses"] == 1
    assert result["misses_per_message"] == 3


def test_resolution_stops_a_running_waiting_cycle():
    timeline = Timeline().customer("09:00").agent("09:10").customer("09:20").status("10:00", RESOLVED)
    result = metric(timeline.evaluate("15:00", always(STANDARD)), "next_response")
    assert result["status"] == "hit" and result["stopped_at"] == "2026-01-14T10:00:00Z"


def test_a_customer_message_reopens_a_resolved_conversation_and_resolution_resumes():
    timeline = Timeline().customer("09:00").agent("09:10").status("10:00", RESOLVED).customer("14:00", "still broken")
    evaluation = timeline.evaluate("15:00", always(STANDARD))
    resolution = metric(evaluation, "resolution")
    # 1h used before resolving; resolved 10:00-14:00 does not count: due 09:00 + 24h + 4h.
    assert resolution["status"] == "running"
    assert resolution["due_at"] == "2026-01-15T13:00:00Z"
    assert metric(evaluation, "next_response")["started_at"] == "2026-01-14T14:00:00Z"
    assert metric(evaluation, "first_response")["status"] == "hit"  # final, not re-opened
    assert evaluation.status == "on_track"


def test_on_reopen_restart_gives_a_fresh_resolution_budget_from_the_reopen():
    policy = make_policy(resolution="2h", on_reopen="restart")
    timeline = Timeline().customer("09:00").status("10:00", RESOLVED).customer("14:00")
    result = metric(timeline.evaluate("15:00", always(policy)), "resolution")
    assert result["started_at"] == "2026-01-14T14:00:00Z"
    assert result["due_at"] == "2026-01-14T16:00:00Z"


def test_a_late_resolution_is_a_miss_even_when_nobody_looked_while_overdue():
    policy = make_policy(resolution="2h")
    evaluation = Timeline().customer("09:00").status("12:00", RESOLVED).evaluate("12:00", always(policy))
    assert metric(evaluation, "resolution")["status"] == "missed"
    assert evaluation.status == "missed"


def test_pause_when_statuses_pause_every_clock_and_shift_due_times():
    policy = make_policy(first_response="2h", resolution="8h", pause_when=["pending", "snoozed"])
    timeline = Timeline().customer("09:00").status("10:00", PENDING)
    paused = timeline.evaluate("12:00", always(policy))
    assert metric(paused, "first_response")["status"] == "paused"
    assert paused.status == "on_track"
    resumed = timeline.status("13:00", "open").evaluate("13:30", always(policy))
    # Paused 10:00-13:00: due 11:00 + 3h.
    assert metric(resumed, "first_response")["due_at"] == "2026-01-14T14:00:00Z"
    assert metric(resumed, "first_response")["status"] == "running"


def test_a_snooze_pause_ends_at_snoozed_until_without_a_status_event():
    policy = make_policy(first_response="2h", pause_when=["snoozed"])
    timeline = Timeline().customer("09:00").status("10:00", SNOOZED, snoozed_until="2026-01-14T11:00:00Z")
    result = metric(timeline.evaluate("11:30", always(policy)), "first_response")
    assert result["status"] == "running"
    assert result["due_at"] == "2026-01-14T12:00:00Z"


def test_without_a_pause_setting_pending_does_not_pause():
    timeline = Timeline().customer("09:00").status("10:00", PENDING)
    assert metric(timeline.evaluate("11:30", always(STANDARD)), "first_response")["status"] == "missed"


def test_warn_before_as_a_percentage_of_the_target():
    policy = make_policy(first_response="10h", warn_before="20%")
    timeline = Timeline().customer("09:00")
    assert metric(timeline.evaluate("16:59:59", always(policy)), "first_response")["status"] == "running"
    assert metric(timeline.evaluate("17:00", always(policy)), "first_response")["status"] == "at_risk"


def test_without_warn_before_a_clock_is_never_at_risk():
    policy = make_policy(first_response="1h")
    assert (
        metric(Timeline().customer("09:00").evaluate("09:59:59", always(policy)), "first_response")["status"]
        == "running"
    )


def test_business_hours_calendar_moves_due_times_over_the_weekend():
    policy = make_policy(first_response="1h", calendar=OFFICE)
    # Friday 2026-01-16 16:55 Berlin = 15:55 UTC; one working hour -> Monday 09:55 Berlin = 08:55 UTC.
    timeline = Timeline(created="2026-01-16T15:55:00Z").customer("2026-01-16T15:55:00Z")
    result = metric(timeline.evaluate("2026-01-17T12:00:00Z", always(policy)), "first_response")
    assert result["due_at"] == "2026-01-19T08:55:00Z"
    assert result["status"] == "running"  # outside hours a clock stays running, never "paused"
    assert result["started_at"] == "2026-01-16T15:55:00Z"


def test_no_rule_matching_gives_no_policy():
    evaluation = Timeline().customer("09:00").evaluate("10:00", lambda context: None)
    assert evaluation.to_replay_json() == {
        "account_id": 1,
        "conversation_id": 87,
        "policy": None,
        "policy_version": None,
        "status": "none",
        "metrics": {},
    }


def _switching_matcher(urgent_policy, sticky=False):
    """Urgent once the conversation's priority is urgent, standard otherwise."""
    standard, urgent = Choice("Default", STANDARD, sticky), Choice("Urgent", urgent_policy)
    return lambda context: urgent if context.conversation.priority == "urgent" else standard


def test_a_switch_keeps_the_clock_start_and_a_past_due_time_is_a_miss_at_the_new_due_time():
    urgent = make_policy("urgent", first_response="30m", resolution="4h")
    timeline = Timeline().customer("09:00").status("10:00", "open", priority="urgent")
    evaluation = timeline.evaluate("10:30", _switching_matcher(urgent))
    assert evaluation.policy.id == "urgent"
    first = metric(evaluation, "first_response")
    assert first["status"] == "missed" and first["missed_at"] == "2026-01-14T09:30:00Z"
    assert metric(evaluation, "resolution")["due_at"] == "2026-01-14T13:00:00Z"
    assert "next_response" not in evaluation.to_replay_json()["metrics"]


def test_a_metric_already_hit_is_not_rejudged_by_a_switch():
    urgent = make_policy("urgent", first_response="30m", resolution="4h")
    timeline = Timeline().customer("09:00").agent("09:50").status("10:00", "open", priority="urgent")
    first = metric(timeline.evaluate("10:30", _switching_matcher(urgent)), "first_response")
    assert first["status"] == "hit"


def test_sticky_rule_keeps_the_first_policy():
    urgent = make_policy("urgent", first_response="30m")
    timeline = Timeline().customer("09:00").status("10:00", "open", priority="urgent")
    assert timeline.evaluate("10:30", _switching_matcher(urgent, sticky=True)).policy.id == "standard"


def test_a_policy_applied_later_is_judged_from_created_at():
    matcher = lambda context: Choice("Late", STANDARD) if context.at >= t("12:00") else None  # noqa: E731
    timeline = Timeline().customer("09:00").customer("12:00")
    evaluation = timeline.evaluate("12:00", matcher)
    assert metric(evaluation, "first_response")["missed_at"] == "2026-01-14T11:00:00Z"


def test_decisions_made_under_older_rules_are_not_rewritten_by_an_edit():
    timeline = Timeline().customer("09:00")
    state, _ = add_events(ConversationState(1, 87), timeline.events)
    state, first = evaluate(state, always(STANDARD), "rules-v1", t("09:30"))
    edited = make_policy(first_response="10m")
    _, second = evaluate(state, always(edited), "rules-v2", t("09:30"))
    assert second.policy.version == first.policy.version
    assert metric(second, "first_response")["due_at"] == "2026-01-14T11:00:00Z"


def test_a_new_version_of_a_policy_is_pinned_per_conversation():
    timeline = Timeline().customer("09:00")
    state, _ = add_events(ConversationState(1, 87), timeline.events)
    state, first = evaluate(state, always(STANDARD), "rules-v1", t("09:30"))
    state, _ = add_events(state, Timeline().customer("09:40").events[1:2])
    edited = replace(make_policy(first_response="10m"), id="standard")
    _, second = evaluate(state, always(edited), "rules-v2", t("09:45"))
    assert second.policy.version == first.policy.version  # the SLA keeps the version it was given


def test_events_after_the_evaluation_instant_are_ignored():
    timeline = Timeline().customer("09:00").agent("10:00")
    result = metric(timeline.evaluate("09:30", always(STANDARD)), "first_response")
    assert result["status"] == "running"


_TIMELINE = (
    Timeline()
    .customer("09:00", "my order is late")
    .agent("09:42:10")
    .customer("10:05")
    .status("10:10", PENDING)
    .status("10:40", "open")
    .customer("11:00")
    .agent("13:30")
    .status("14:00", RESOLVED)
    .customer("16:00", "again")
    .agent("16:20")
)
_PAUSING = make_policy(
    first_response="1h", next_response="1h", resolution="6h", warn_before="10m", pause_when=["pending"]
)


@settings(deadline=None, max_examples=150)
@given(
    order=st.permutations(range(len(_TIMELINE.events))),
    duplicates=st.lists(st.integers(0, len(_TIMELINE.events) - 1), max_size=6),
    at=st.sampled_from(["10:30", "12:00", "13:45", "16:10", "18:00"]),
)
def test_out_of_order_and_duplicate_deliveries_end_in_the_in_order_state(order, duplicates, at):
    in_order = _TIMELINE.evaluate(at, always(_PAUSING))
    shuffled = [_TIMELINE.events[index] for index in order] + [_TIMELINE.events[index] for index in duplicates]
    state = ConversationState(1, 87)
    for event in shuffled:  # one delivery at a time, as the worker sees them
        state, _ = add_events(state, [event])
    _, evaluation = evaluate(state, always(_PAUSING), "rules-v1", t(at))
    assert evaluation.to_replay_json() == in_order.to_replay_json()
    assert evaluation.misses == in_order.misses
    # The worker's way: each delivery stored and folded from the checkpoint (again from the first when late).
    store = MemoryStore()
    for event in shuffled:
        store.deliver([event], always(_PAUSING), "rules-v1", event.occurred_at)
    live = store.deliver([], always(_PAUSING), "rules-v1", t(at))
    assert live.to_replay_json() == in_order.to_replay_json()
    assert live.misses == in_order.misses


def test_a_clock_timeline_shows_running_outside_hours_holiday_and_pauses_in_the_calendar_zone():
    from zoneinfo import ZoneInfo

    from plugin.core.engine.timeline import clock_timeline, timelines_json

    calendar = dict(OFFICE, holidays={"dates": ["2026-01-19"]})
    policy = make_policy(first_response="4h", calendar=calendar, pause_when=["pending"])
    # Friday 2026-01-16 15:00 Berlin (14:00 UTC); pending 16:00-16:30; the Monday is a holiday.
    timeline = (
        Timeline(created="2026-01-16T14:00:00Z")
        .customer("2026-01-16T14:00:00Z")
        .status("2026-01-16T15:00:00Z", PENDING)
        .status("2026-01-16T15:30:00Z", "open")
    )
    evaluation = timeline.evaluate("2026-01-20T09:00:00Z", always(policy))
    states = [
        (piece.state, piece.start.astimezone(ZoneInfo("Europe/Berlin")).strftime("%a %H:%M"))
        for piece in clock_timeline(evaluation, "first_response")
    ]
    assert states == [
        ("running", "Fri 15:00"),
        ("paused (pending)", "Fri 16:00"),
        ("running", "Fri 16:30"),
        ("outside hours", "Fri 17:00"),
        ("holiday: listed in holidays.dates", "Mon 00:00"),
        ("outside hours", "Tue 00:00"),
        ("running", "Tue 09:00"),
    ]
    # 1.5h on Friday + 2.5h on Tuesday: due Tuesday 11:30 Berlin.
    assert metric(evaluation, "first_response")["due_at"] == "2026-01-20T10:30:00Z"
    assert timelines_json(evaluation)["first_response"][0]["from"] == "2026-01-16T15:00:00+01:00"


def test_stopped_clocks_carry_their_working_time_and_target():
    evaluation = _TIMELINE.evaluate("15:00", always(_PAUSING))
    first, resolution = evaluation.metrics["first_response"], evaluation.metrics["resolution"]
    assert (first.working_seconds, first.target_seconds) == (42 * 60 + 10, 3600)
    # 09:00 to the resolution at 14:00, less the 30 minutes pending (a pause of this policy).
    assert (resolution.working_seconds, resolution.target_seconds) == (4 * 3600 + 30 * 60, 6 * 3600)
    running = _TIMELINE.evaluate("09:30", always(_PAUSING)).metrics["first_response"]
    assert (running.working_seconds, running.target_seconds) == (None, None)
    assert evaluation.metrics["next_response"].working_seconds is None


def test_a_message_record_names_its_sender_kind_in_one_letter_and_one_stored_with_the_name_reads_the_same():
    import json

    policy = make_policy(first_response="1h")
    timeline = Timeline().customer("09:05").agent("09:20").agent("09:30", sender_kind=BOT)
    store = MemoryStore()
    for event in timeline.events:
        store.deliver([event], always(policy), "rules-v1", event.occurred_at)
    items = [json.loads(text)["body"]["m"] for text in store.records.values() if '"m"' in text]
    assert [item[:2] for item in items] == [["i", "c"], ["o", "h"], ["o", "b"]]
    expected = store.deliver([], always(policy), "rules-v1", t("12:00"))
    # Records stored before the letters held the names: rewritten so, they read back to the same evaluation.
    names = {"c": "contact", "h": "human", "b": "bot"}
    for key, text in store.records.items():
        record = json.loads(text)
        if "m" in record["body"]:
            record["body"]["m"][1] = names[record["body"]["m"][1]]
            store.records[key] = json.dumps(record)
    store.head_json = json.dumps(dict(json.loads(store.head_json), checkpoint=None))  # fold every record again
    assert store.deliver([], always(policy), "rules-v1", t("12:00")).to_replay_json() == expected.to_replay_json()
