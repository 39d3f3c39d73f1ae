"""The fold: a conversation's timeline -> clock facts and the policy in force over time.

Clock facts (creation, status intervals, first human reply, waiting cycles, customer messages) do not
depend on any policy, so a policy applied or switched to later is judged on them from ``created_at``
(docs/contracts.md section 4). The policy timeline records which policy the rules chose, event by event, with the
switching rules of docs/semantics.md (first match, switch on change, sticky, keep the last on no match).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from plugin.core.engine.state import ConversationState, Decision
from plugin.core.events import (
    CONTACT_UPDATED,
    CONVERSATION_CREATED,
    MESSAGE_CREATED,
    OPEN,
    RESOLVED,
    SNOOZED,
    STATUS_CHANGED,
    Conversation,
    MatchContext,
)
from plugin.core.policy import Policy, canonical_json, policy_from_snapshot


class RuleChoice(Protocol):
    """What a rule matcher returns: the matching rule's name, its policy and whether it is sticky."""

    @property
    def name(self) -> str: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def sticky(self) -> bool: ...


Matcher = Callable[[MatchContext], "RuleChoice | None"]


class PriorityChoice(Protocol):
    """What a prioritizer returns: the matching ``prioritize`` rule's name and the priority it sets."""

    @property
    def name(self) -> str: ...

    @property
    def priority(self) -> str: ...


Prioritizer = Callable[[MatchContext], "PriorityChoice | None"]


@dataclass(frozen=True)
class StatusSpan:
    """The conversation held ``status`` from ``start`` until the next span (or ``snoozed_until``)."""

    start: datetime
    status: str
    snoozed_until: datetime | None = None


@dataclass
class Cycle:
    """One next-response waiting cycle: from a customer message to the human reply or resolution."""

    start: datetime
    stop: datetime | None = None
    customer_messages: list[datetime] = field(default_factory=list)  # every customer message in the cycle


@dataclass(frozen=True)
class PolicySegment:
    """``policy`` was in force from ``start`` until the next segment's start."""

    start: datetime
    policy: Policy
    rule: str | None


@dataclass
class Facts:
    """The policy-independent facts the clocks are judged on."""

    created_at: datetime
    spans: list[StatusSpan]
    first_reply_at: datetime | None = None
    cycles: list[Cycle] = field(default_factory=list)
    customer_messages: list[datetime] = field(default_factory=list)
    latest: Conversation | None = None  # the latest attributes seen (report dimensions)
    # When an event first showed the contact blocked while an SLA ran: its clocks stop there, without a miss.
    blocked_at: datetime | None = None

    @property
    def status(self) -> str:
        """The conversation's status after the last event."""
        return self.spans[-1].status

    @property
    def resolved_at(self) -> datetime | None:
        """When the conversation was resolved, if it is resolved now."""
        return self.spans[-1].start if self.spans[-1].status == RESOLVED else None


@dataclass
class FoldResult:
    """Facts, the policy timeline, and the decisions and pins to store back."""

    facts: Facts | None
    segments: list[PolicySegment]
    decisions: dict[str, Decision]
    pins: dict[str, dict]
    prioritized: PriorityChoice | None = None


_policy_cache: dict[str, Policy] = {}


def policy_of(snapshot) -> Policy:
    """The :class:`Policy` for a stored snapshot (memoised: snapshots are immutable values)."""
    key = canonical_json(snapshot)
    policy = _policy_cache.get(key)
    if policy is None:
        if len(_policy_cache) > 4096:  # rule files are small; a bound only guards against a leak
            _policy_cache.clear()
        policy = _policy_cache[key] = policy_from_snapshot(snapshot)
    return policy


def fold(
    state: ConversationState,
    matcher: Matcher | None,
    rules_hash: str,
    now: datetime,
    prioritizer: Prioritizer | None = None,
) -> FoldResult:
    """Fold the timeline up to ``now`` into facts and the policy timeline.

    ``prioritizer`` (the ``prioritize`` rules) gives a conversation whose priority is empty a priority, once:
    the first match holds from that event on, and rules see it at once, until an event shows a priority set
    in the helpdesk (the echo of ours, or an agent's), which then always wins.

    Events after ``now`` are ignored. A decision stored under another rules version is kept as it was
    (history is not rewritten by an edit); decisions under the current version are made again from the
    full timeline, so a late delivery is judged as if it had arrived in order.
    """
    decisions: dict[str, Decision] = dict(state.decisions)
    pins: dict[str, dict] = {key: dict(value) for key, value in state.pins.items()}
    facts: Facts | None = None
    segments: list[PolicySegment] = []
    sticky = False
    customer_texts: list[str] = []
    waiting_cycle: Cycle | None = None
    blocked = False
    prioritized: PriorityChoice | None = None
    priority_seen = False

    for entry in state.timeline:
        event = entry.event
        at = event.occurred_at
        if at > now:
            break
        if facts is None:
            created = event.conversation.created_at if event.conversation else at
            initial = OPEN
            if event.kind == CONVERSATION_CREATED and event.conversation is not None:
                initial = event.conversation.status
            facts = Facts(created_at=min(created, at), spans=[StatusSpan(min(created, at), initial)])
        if event.kind == CONTACT_UPDATED and event.contact is not None:
            blocked = event.contact.blocked
            if blocked and segments and facts.blocked_at is None:
                facts.blocked_at = at
        if event.conversation is not None:
            facts.latest = event.conversation
            blocked = event.conversation.contact.blocked
            priority_seen = priority_seen or event.conversation.priority is not None
            if blocked and segments and facts.blocked_at is None:
                facts.blocked_at = at

        if event.kind == STATUS_CHANGED and event.new_status:
            snoozed_until = event.conversation.snoozed_until if event.conversation else None
            waiting_cycle = _change_status(facts, at, event.new_status, snoozed_until, waiting_cycle)
        elif event.kind == MESSAGE_CREATED and event.message is not None:
            message = event.message
            if message.is_customer_message:
                if message.content:
                    customer_texts.append(message.content)
                facts.customer_messages.append(at)
                reopened = facts.status in (RESOLVED, SNOOZED)
                if reopened:
                    facts.spans.append(StatusSpan(at, OPEN))
                if waiting_cycle is not None:
                    waiting_cycle.customer_messages.append(at)
                elif facts.first_reply_at is not None or reopened:
                    waiting_cycle = Cycle(start=at, customer_messages=[at])
                    facts.cycles.append(waiting_cycle)
            elif message.is_human_reply:
                if facts.first_reply_at is None:
                    facts.first_reply_at = at
                if waiting_cycle is not None:
                    waiting_cycle.stop = at
                    waiting_cycle = None

        # Rules are evaluated on every event until resolution (and again after a reopen); a blocked contact's
        # conversation gets no SLA (as in Chatwoot), so no rule is evaluated while the contact is blocked.
        if matcher is None or facts.status == RESOLVED or event.conversation is None or blocked:
            continue
        decision = decisions.get(event.key)
        if decision is None or decision.rules_hash == rules_hash:
            context = MatchContext(
                conversation=event.conversation, at=at, message=event.message, customer_texts=tuple(customer_texts)
            )
            if prioritizer is not None and not priority_seen:
                prioritized = prioritized or prioritizer(context)
                if prioritized is not None:
                    context = replace(context, conversation=replace(event.conversation, priority=prioritized.priority))
            choice = matcher(context)
            decision = (
                Decision(rules_hash=rules_hash)
                if choice is None
                else Decision(
                    rules_hash=rules_hash,
                    rule=choice.name,
                    sticky=choice.sticky,
                    snapshot=pins.setdefault(choice.policy.id, dict(choice.policy.snapshot)),
                )
            )
            decisions[event.key] = decision
        if decision.snapshot is None or sticky:
            continue
        policy = policy_of(decision.snapshot)
        if not segments or segments[-1].policy.id != policy.id or segments[-1].policy.version != policy.version:
            segments.append(PolicySegment(start=at, policy=policy, rule=decision.rule))
            sticky = decision.sticky
    return FoldResult(
        facts=facts,
        segments=segments,
        decisions=decisions,
        pins=pins,
        prioritized=None if priority_seen else prioritized,
    )


def _change_status(
    facts: Facts, at: datetime, status: str, snoozed_until: datetime | None, waiting_cycle: Cycle | None
) -> Cycle | None:
    """Record a status change; resolution stops the running waiting cycle. Returns the running cycle."""
    if status == facts.status and status != SNOOZED:
        return waiting_cycle
    facts.spans.append(StatusSpan(at, status, snoozed_until if status == SNOOZED else None))
    if status == RESOLVED and waiting_cycle is not None:
        waiting_cycle.stop = at
        return None
    return waiting_cycle
