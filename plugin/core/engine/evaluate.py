"""The engine's entry point: a conversation's state, the rules and an instant -> its SLA evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from plugin.core.engine.clocks import (
    NONE,
    Judgement,
    MetricResult,
    Miss,
    collect_misses,
    conversation_status,
    judge_metric,
    settle,
)
from plugin.core.engine.facts import Facts, Matcher, PolicySegment, Prioritizer, fold
from plugin.core.engine.state import ConversationState
from plugin.core.events import Conversation, format_time
from plugin.core.policy import METRICS, NEXT_RESPONSE, Policy


@dataclass(frozen=True)
class Evaluation:
    """A conversation's SLA at one instant: policy, status, metrics, misses, and when to look again."""

    account_id: int
    conversation_id: int
    at: datetime
    policy: Policy | None
    rule: str | None
    status: str
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    misses: tuple[Miss, ...] = ()
    resolved: bool = False
    conversation: Conversation | None = None
    created_at: datetime | None = None
    next_check_at: datetime | None = None
    applied_at: datetime | None = None
    prioritized: str | None = None  # the priority a prioritize rule gave the conversation, not yet in the helpdesk
    prioritized_by: str | None = None  # that rule's name
    facts: Facts | None = field(default=None, compare=False, repr=False)
    segments: tuple[PolicySegment, ...] = field(default=(), compare=False, repr=False)
    judgements: dict[str, list[Judgement]] = field(default_factory=dict, compare=False, repr=False)

    def to_replay_json(self) -> dict[str, Any]:
        """The output object of ``sla-plugin replay`` (docs/contracts.md section 2)."""
        metrics = {}
        for name, result in self.metrics.items():
            item = {
                "status": result.status,
                "started_at": format_time(result.started_at),
                "due_at": format_time(result.due_at),
                "stopped_at": format_time(result.stopped_at),
                "missed_at": format_time(result.missed_at),
                "misses": result.misses,
            }
            if name == NEXT_RESPONSE:
                item["misses_per_message"] = result.misses_per_message
            metrics[name] = item
        return {
            "account_id": self.account_id,
            "conversation_id": self.conversation_id,
            "policy": self.policy.id if self.policy else None,
            "policy_version": self.policy.version if self.policy else None,
            "status": self.status,
            "metrics": metrics,
        }


def evaluate(
    state: ConversationState,
    matcher: Matcher | None,
    rules_hash: str,
    now: datetime,
    prioritizer: Prioritizer | None = None,
) -> tuple[ConversationState, Evaluation]:
    """Evaluate a conversation at ``now``; returns the state folded up to ``now``, and the evaluation.

    The state returned has its checkpoint moved past every event up to ``now`` (its timeline keeps the
    events after ``now``) and the decisions made on the way. ``matcher`` is the rule set's first-match
    function (None: keep the decisions already stored); ``prioritizer`` its first-match ``prioritize`` rule
    (see :func:`fold`).
    """
    folded = fold(state, matcher, rules_hash, now, prioritizer)
    state = replace(
        state,
        timeline=state.timeline[folded.folded :],
        checkpoint=folded.checkpoint,
        decisions=folded.decisions,
        pins=folded.pins,
    )
    facts = folded.facts
    resolved = facts is not None and facts.resolved_at is not None
    evaluation = partial(
        Evaluation,
        account_id=state.account_id,
        conversation_id=state.conversation_id,
        at=now,
        facts=facts,
        conversation=facts.latest if facts else None,
        created_at=facts.created_at if facts else None,
        resolved=resolved,
        prioritized=None if folded.prioritized is None else folded.prioritized.priority,
        prioritized_by=None if folded.prioritized is None else folded.prioritized.name,
    )
    if facts is None or not folded.segments:
        return state, evaluation(policy=None, rule=None, status=NONE)
    segments = folded.segments
    frozen = folded.checkpoint.frozen if folded.checkpoint is not None else None
    if facts.blocked_at is not None and frozen is not None:
        # The contact was blocked while the SLA ran: judge the clocks as they stood then, and never again.
        now = facts.blocked_at
        facts, segments = frozen.facts, frozen.segments or segments
        resolved = facts.resolved_at is not None
    metrics: dict[str, MetricResult] = {}
    judgements: dict[str, list[Judgement]] = {}
    for metric in METRICS:
        result, judged = judge_metric(metric, segments, facts, now)
        judgements[metric] = judged
        if result is not None:
            metrics[metric] = result
    checks = [result.next_change_at for result in metrics.values() if result.next_change_at is not None]
    current = segments[-1]
    if folded.checkpoint is not None and frozen is None:
        settled = settle(facts, folded.checkpoint.at, judgements[NEXT_RESPONSE])
        if settled is not facts:
            state = replace(state, checkpoint=replace(folded.checkpoint, facts=settled))
    return state, evaluation(
        policy=current.policy,
        rule=current.rule,
        status=conversation_status(metrics, resolved),
        resolved=resolved,
        metrics=metrics,
        misses=collect_misses(judgements),
        next_check_at=min(checks) if checks and facts.blocked_at is None else None,
        applied_at=segments[0].start,
        segments=tuple(segments),
        judgements=judgements,
    )
