"""Judging the SLA clocks: facts + policy timeline + an instant -> per-metric and conversation status.

Everything here is a pure function of its arguments. A clock *instance* is one run of a metric: the first
response, each next-response waiting cycle, each resolution run (one, or one per reopen with
``"on_reopen": "restart"``). Each instance is judged by the first policy segment in which it becomes final
(hit or missed); a metric already final is never re-judged by a later switch (docs/contracts.md section 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from plugin.core.engine.facts import Facts, PolicySegment, SettledCycles, SettledMiss
from plugin.core.events import RESOLVED, SNOOZED
from plugin.core.policy import FIRST_RESPONSE, METRICS, NEXT_RESPONSE, Policy

RUNNING, PAUSED, AT_RISK, HIT, MISSED = "running", "paused", "at_risk", "hit", "missed"
NOT_STARTED = "not_started"  # next_response only: no waiting cycle has ever started
ON_TRACK, NONE = "on_track", "none"
ONE_SECOND = timedelta(seconds=1)

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Instance:
    """One run of a metric's clock: its anchor, its stop (if stopped) and its own extra breaks."""

    index: int
    start: datetime
    stop: datetime | None
    breaks: tuple[Interval, ...] = ()
    customer_messages: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class Judgement:
    """The outcome of one instance at the evaluation instant."""

    instance: Instance
    policy: Policy
    status: str  # RUNNING, PAUSED, AT_RISK, HIT or MISSED
    due_at: datetime
    at_risk_at: datetime | None = None
    next_change_at: datetime | None = None


@dataclass(frozen=True)
class Miss:
    """A recorded miss: which metric, which instance, when it was due, under which policy version."""

    metric: str
    index: int
    due_at: datetime
    policy_id: str
    policy_name: str
    policy_version: str
    calendar_timezone: str


@dataclass(frozen=True)
class MetricResult:
    """One metric's state, as the replay contract (docs/contracts.md section 2) prints it."""

    status: str  # RUNNING, PAUSED, AT_RISK, HIT, MISSED or (next_response only) NOT_STARTED
    started_at: datetime | None
    due_at: datetime | None
    stopped_at: datetime | None
    missed_at: datetime | None
    misses: int
    misses_per_message: int | None = None  # next_response only
    next_change_at: datetime | None = None
    # First response and resolution, once stopped: the working, unpaused seconds from start to stop under
    # the policy that judged it, and that policy's target (what "targets that fit" reports compare).
    working_seconds: int | None = None
    target_seconds: int | None = None


def pause_spans(policy: Policy, facts: Facts, now: datetime) -> list[tuple[datetime, datetime, str]]:
    """The intervals in which ``policy``'s clocks are paused, each with the status that paused them.

    A pause lasts from the change into a ``pause_when`` status to the next change or ``snoozed_until``,
    whichever comes first; one still going on is counted up to ``now``.
    """
    if not policy.pause_when:
        return []
    paused: list[tuple[datetime, datetime, str]] = []
    spans = facts.spans
    for position, span in enumerate(spans):
        if span.status not in policy.pause_when:
            continue
        end = spans[position + 1].start if position + 1 < len(spans) else now
        if span.status == SNOOZED and span.snoozed_until is not None:
            end = min(end, span.snoozed_until)
        if end > span.start:
            paused.append((span.start, end, span.status))
    return paused


def pause_breaks(policy: Policy, facts: Facts, now: datetime) -> list[Interval]:
    """The pause intervals as calendar breaks."""
    return [(start, end) for start, end, _ in pause_spans(policy, facts, now)]


def is_paused(policy: Policy, facts: Facts, now: datetime) -> bool:
    """Whether a ``pause_when`` status holds at ``now``."""
    span = facts.spans[-1]
    if span.status not in policy.pause_when:
        return False
    return not (span.status == SNOOZED and span.snoozed_until is not None and span.snoozed_until <= now)


def judge(
    instance: Instance, metric: str, segments: Sequence[PolicySegment], facts: Facts, now: datetime
) -> Judgement | None:
    """Judge one clock instance across the policy timeline; None when no policy tracks the metric."""
    for position, segment in enumerate(segments):
        policy = segment.policy
        target = policy.targets.get(metric)
        if target is None:
            continue
        segment_end = segments[position + 1].start if position + 1 < len(segments) else None
        if segment_end is not None and instance.start >= segment_end:
            continue
        breaks = pause_breaks(policy, facts, now) + list(instance.breaks)
        due = policy.calendar.add_working(instance.start, target, breaks)
        stop = instance.stop
        hit = stop is not None and stop <= due
        if segment_end is not None:
            # A switch happens at segment_end: only what became final before it belongs to this policy.
            if hit and stop is not None and stop < segment_end:
                return Judgement(instance, policy, HIT, due)
            if not hit and due < segment_end:
                return Judgement(instance, policy, MISSED, due)
            continue
        if hit:
            return Judgement(instance, policy, HIT, due)
        if stop is not None or now > due:
            return Judgement(instance, policy, MISSED, due)
        return _running(instance, metric, policy, facts, now, target, due, breaks)
    return None


def _running(
    instance: Instance,
    metric: str,
    policy: Policy,
    facts: Facts,
    now: datetime,
    target: int,
    due: datetime,
    breaks: list[Interval],
) -> Judgement:
    if is_paused(policy, facts, now):
        span = facts.spans[-1]
        wake = span.snoozed_until if span.status == SNOOZED else None
        return Judgement(instance, policy, PAUSED, due, next_change_at=wake)
    at_risk_at = None
    if policy.warn_before is not None:
        warn = policy.warn_before.for_target(target)
        at_risk_at = policy.calendar.add_working(instance.start, max(target - warn, 0), breaks)
    if at_risk_at is not None and at_risk_at <= now:
        return Judgement(instance, policy, AT_RISK, due, at_risk_at, next_change_at=due + ONE_SECOND)
    next_change = at_risk_at if at_risk_at is not None else due + ONE_SECOND
    return Judgement(instance, policy, RUNNING, due, at_risk_at, next_change_at=next_change)


def instances(metric: str, policy: Policy, facts: Facts) -> list[Instance]:
    """The clock instances of ``metric`` under ``policy``'s reopen setting."""
    first_resolution = next((span.start for span in facts.spans if span.status == RESOLVED), None)
    if metric == FIRST_RESPONSE:
        stops = [moment for moment in (facts.first_reply_at, first_resolution) if moment is not None]
        return [Instance(0, facts.created_at, min(stops) if stops else None)]
    if metric == NEXT_RESPONSE:
        return [
            Instance(index, cycle.start, cycle.stop, customer_messages=tuple(cycle.customer_messages))
            for index, cycle in enumerate(facts.cycles, start=facts.settled.count)
        ]
    return _resolution_instances(policy, facts)


def _resolution_instances(policy: Policy, facts: Facts) -> list[Instance]:
    runs: list[tuple[datetime, datetime | None]] = []  # (run start, resolved at)
    start: datetime | None = facts.created_at
    for span in facts.spans[1:]:
        if span.status == RESOLVED and start is not None:
            runs.append((start, span.start))
            start = None
        elif span.status != RESOLVED and start is None:
            start = span.start
    if start is not None:
        runs.append((start, None))
    if policy.on_reopen == "restart":
        return [Instance(index, run_start, stop) for index, (run_start, stop) in enumerate(runs)]
    # Resume: one clock from creation; the time spent resolved between runs does not count.
    resolved_gaps = tuple(
        (resolved_at, reopened_at)
        for (_, resolved_at), (reopened_at, _) in pairwise(runs)
        if resolved_at is not None  # every run but the last has ended
    )
    return [Instance(0, facts.created_at, runs[-1][1], breaks=resolved_gaps)]


def judge_metric(
    metric: str, segments: Sequence[PolicySegment], facts: Facts, now: datetime
) -> tuple[MetricResult | None, list[Judgement]]:
    """Judge every instance of a metric; returns the contract's result and the judgements behind it.

    Settled next-response cycles (see :func:`settle`) count as they were judged: their misses are listed
    first, the met ones only in the count of cycles.
    """
    current = segments[-1].policy
    settled = facts.settled if metric == NEXT_RESPONSE else SettledCycles()
    live = [
        judgement
        for instance in instances(metric, current, facts)
        if (judgement := judge(instance, metric, segments, facts, now)) is not None
    ]
    judgements = [_settled_judgement(miss) for miss in settled.misses] + live
    missed = [judgement for judgement in judgements if judgement.status == MISSED]
    if metric not in current.targets and not missed:
        return None, judgements
    open_judgement = next((j for j in live if j.status in (RUNNING, PAUSED, AT_RISK)), None)
    if missed:
        status = MISSED
    elif open_judgement is not None:
        status = open_judgement.status
    elif metric == NEXT_RESPONSE and not live and not settled.count:
        status = NOT_STARTED  # nothing to answer yet is not an answer in time (docs/semantics.md)
    else:
        status = HIT
    latest = live[-1] if live else None
    if metric == NEXT_RESPONSE:
        started = open_judgement.instance.start if open_judgement else None
        due = open_judgement.due_at if open_judgement else None
        stopped = None if open_judgement else latest.instance.stop if latest else settled.last_stop
    else:
        started = latest.instance.start if latest else facts.created_at
        due = latest.due_at if latest else None
        stopped = latest.instance.stop if latest else None
    elapsed = _working_time(metric, latest, facts, now) if metric != NEXT_RESPONSE else None
    result = MetricResult(
        working_seconds=elapsed,
        target_seconds=latest.policy.targets.get(metric) if elapsed is not None and latest is not None else None,
        status=status,
        started_at=started,
        due_at=due,
        stopped_at=stopped,
        missed_at=missed[0].due_at if missed else None,
        misses=len(missed),
        misses_per_message=(
            sum(1 + miss.late_messages for miss in settled.misses)
            + _misses_per_message([judgement for judgement in live if judgement.status == MISSED], now)
            if metric == NEXT_RESPONSE
            else None
        ),
        next_change_at=open_judgement.next_change_at if open_judgement else None,
    )
    return result, judgements


def _working_time(metric: str, judgement: Judgement | None, facts: Facts, now: datetime) -> int | None:
    """The working, unpaused seconds a stopped clock ran, on the judging policy's calendar."""
    stop = judgement.instance.stop if judgement is not None else None
    if judgement is None or stop is None:
        return None
    breaks = pause_breaks(judgement.policy, facts, now) + list(judgement.instance.breaks)
    return judgement.policy.calendar.working_between(judgement.instance.start, stop, breaks)


def _settled_judgement(miss: SettledMiss) -> Judgement:
    return Judgement(Instance(miss.index, miss.start, miss.stop), miss.policy, MISSED, miss.due_at)


def settle(facts: Facts, at: datetime, judgements: Sequence[Judgement]) -> Facts:
    """``facts`` with the next-response cycles that no later event can re-judge folded into their outcome.

    ``at`` is the time of the last folded event, ``judgements`` the cycles' judgements on these facts. An
    event folded later in time order comes at or after ``at``: it can add a status span or a policy segment
    from then on, nothing before. A cycle that stopped before ``at`` and was met, or missed with its due
    time before its stop, keeps that outcome (a met cycle stays met whatever is added after its stop; a
    missed one's due time lies before anything that could move it). Only a leading run of such cycles is
    settled, so the cycles kept keep their indexes. Returns ``facts`` itself when nothing settles.
    """
    by_index = {judgement.instance.index: judgement for judgement in judgements}
    settled = facts.settled
    keep_from = 0
    for cycle in facts.cycles:
        judgement = by_index.get(settled.count + keep_from)
        if judgement is None or cycle.stop is None or cycle.stop >= at:
            break
        if not (judgement.status == HIT or (judgement.status == MISSED and judgement.due_at < cycle.stop)):
            break
        keep_from += 1
    if keep_from == 0:
        return facts
    result = facts.copy()
    for cycle in facts.cycles[:keep_from]:
        judgement = by_index[result.settled.count]
        assert cycle.stop is not None  # checked above
        if judgement.status == MISSED:
            late = sum(1 for moment in cycle.customer_messages if judgement.due_at < moment <= cycle.stop)
            result.settled.misses.append(
                SettledMiss(result.settled.count, cycle.start, cycle.stop, judgement.due_at, judgement.policy, late)
            )
        result.settled.count += 1
        result.settled.last_stop = cycle.stop
    del result.cycles[:keep_from]
    return result


def _misses_per_message(missed: list[Judgement], now: datetime) -> int:
    """For each missed cycle: 1 + the customer messages received after its due time until it stopped."""
    total = 0
    for judgement in missed:
        end = judgement.instance.stop or now
        total += 1 + sum(1 for moment in judgement.instance.customer_messages if judgement.due_at < moment <= end)
    return total


def conversation_status(metrics: dict[str, MetricResult], resolved: bool) -> str:
    """``on_track`` / ``at_risk`` / ``missed`` while open; ``hit`` / ``missed`` once resolved."""
    statuses = {result.status for result in metrics.values()}
    if MISSED in statuses:
        return MISSED
    if resolved:
        return HIT
    return AT_RISK if AT_RISK in statuses else ON_TRACK


def collect_misses(judgements: dict[str, list[Judgement]]) -> tuple[Miss, ...]:
    """Every recorded miss, ordered by metric then instance."""
    return tuple(
        Miss(
            metric,
            judgement.instance.index,
            judgement.due_at,
            judgement.policy.id,
            judgement.policy.name,
            judgement.policy.version,
            judgement.policy.calendar.timezone,
        )
        for metric in METRICS
        for judgement in judgements.get(metric, ())
        if judgement.status == MISSED
    )
