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
    Event,
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


# The customer text kept for ``content`` conditions, per conversation: the first this many characters.
# Bounded so that a conversation's cost per event does not grow with its length (docs/contracts.md section 1).
CONTENT_BUDGET = 8000


@dataclass
class SettledCycles:
    """Next-response cycles that no later in-order event can re-judge, folded into what they leave behind.

    A checkpoint keeps these instead of the cycles themselves, so its size and the cost of judging it do not
    grow with the conversation's length; ``misses`` are the settled cycles that were missed, as judged.
    """

    count: int = 0
    last_stop: datetime | None = None
    misses: list[SettledMiss] = field(default_factory=list)


@dataclass(frozen=True)
class SettledMiss:
    """A missed cycle whose judgement is final: its index, span, due time, policy, and how many customer
    messages came after its due time until it stopped."""

    index: int
    start: datetime
    stop: datetime
    due_at: datetime
    policy: Policy  # the policy that judged it (stored by id: it is one of the conversation's pinned policies)
    late_messages: int


@dataclass(frozen=True)
class Prioritized:
    """A ``prioritize`` rule's choice, as a checkpoint keeps it."""

    name: str
    priority: str


@dataclass
class Facts:
    """The policy-independent facts the clocks are judged on."""

    created_at: datetime
    spans: list[StatusSpan]
    first_reply_at: datetime | None = None
    cycles: list[Cycle] = field(default_factory=list)
    latest: Conversation | None = None  # the latest attributes seen (report dimensions)
    # When an event first showed the contact blocked while an SLA ran: its clocks stop there, without a miss.
    blocked_at: datetime | None = None
    settled: SettledCycles = field(default_factory=SettledCycles)

    @property
    def status(self) -> str:
        """The conversation's status after the last event."""
        return self.spans[-1].status

    @property
    def resolved_at(self) -> datetime | None:
        """When the conversation was resolved, if it is resolved now."""
        return self.spans[-1].start if self.spans[-1].status == RESOLVED else None

    @property
    def waiting_cycle(self) -> Cycle | None:
        """The running waiting cycle (always the last one: a new cycle starts only when none runs)."""
        return self.cycles[-1] if self.cycles and self.cycles[-1].stop is None else None

    def copy(self) -> Facts:
        """A copy the fold may extend without touching this one."""
        return replace(
            self,
            spans=list(self.spans),
            cycles=[replace(cycle, customer_messages=list(cycle.customer_messages)) for cycle in self.cycles],
            settled=replace(self.settled, misses=list(self.settled.misses)),
        )


@dataclass
class Frozen:
    """The facts and policy timeline as they stood when the contact was blocked (every event up to then)."""

    facts: Facts
    segments: list[PolicySegment]


@dataclass
class Checkpoint:
    """The fold after its last event: everything the next event in time order needs, and nothing older.

    ``at`` is the time of the last folded event: an event at or after it continues from here; one before it
    (a late delivery) needs the fold again from the conversation's first event.
    """

    at: datetime
    facts: Facts
    segments: list[PolicySegment] = field(default_factory=list)
    sticky: bool = False
    customer_texts: list[str] = field(default_factory=list)
    blocked: bool = False  # the contact is blocked now: no rule is evaluated
    prioritized: Prioritized | None = None
    priority_seen: bool = False  # an event showed a priority set in the helpdesk
    frozen: Frozen | None = None  # set once the contact was blocked while an SLA ran

    def copy(self) -> Checkpoint:
        """A copy the fold may extend without touching this one."""
        return replace(
            self, facts=self.facts.copy(), segments=list(self.segments), customer_texts=list(self.customer_texts)
        )


@dataclass
class FoldResult:
    """The fold's checkpoint (None before the first event), and the decisions and pins to store back."""

    checkpoint: Checkpoint | None
    decisions: dict[str, Decision]
    pins: dict[str, dict]
    folded: int = 0  # how many timeline entries were folded (the rest lie after the evaluation instant)

    @property
    def facts(self) -> Facts | None:
        """The clock facts, None before the first event."""
        return self.checkpoint.facts if self.checkpoint else None

    @property
    def segments(self) -> list[PolicySegment]:
        """The policy timeline."""
        return self.checkpoint.segments if self.checkpoint else []

    @property
    def prioritized(self) -> Prioritized | None:
        """The priority a ``prioritize`` rule gave, while no event showed one set in the helpdesk."""
        point = self.checkpoint
        return None if point is None or point.priority_seen else point.prioritized


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
    """Fold the timeline up to ``now`` into facts and the policy timeline, from the state's checkpoint.

    ``prioritizer`` (the ``prioritize`` rules) gives a conversation whose priority is empty a priority, once:
    the first match holds from that event on, and rules see it at once, until an event shows a priority set
    in the helpdesk (the echo of ours, or an agent's), which then always wins.

    Events after ``now`` are ignored. A decision stored under another rules version is kept as it was
    (history is not rewritten by an edit); decisions under the current version are made again, so a late
    delivery (folded again from the first event) is judged as if it had arrived in order.
    """
    decisions: dict[str, Decision] = dict(state.decisions)
    pins: dict[str, dict] = {key: dict(value) for key, value in state.pins.items()}
    point = state.checkpoint.copy() if state.checkpoint is not None else None
    folded = 0
    for entry in state.timeline:
        if entry.event.occurred_at > now:
            break
        point = _step(point, entry.event, matcher, rules_hash, decisions, pins, prioritizer)
        folded += 1
    return FoldResult(checkpoint=point, decisions=decisions, pins=pins, folded=folded)


def _step(
    point: Checkpoint | None,
    event: Event,
    matcher: Matcher | None,
    rules_hash: str,
    decisions: dict[str, Decision],
    pins: dict[str, dict],
    prioritizer: Prioritizer | None,
) -> Checkpoint:
    """Fold one event (the next in time order) into the checkpoint; returns it."""
    at = event.occurred_at
    if point is None:
        created = event.conversation.created_at if event.conversation else at
        initial = OPEN
        if event.kind == CONVERSATION_CREATED and event.conversation is not None:
            initial = event.conversation.status
        start = min(created, at)
        point = Checkpoint(at, Facts(created_at=start, spans=[StatusSpan(start, initial)]))
    point.at = at
    facts = point.facts
    if event.kind == CONTACT_UPDATED and event.contact is not None:
        point.blocked = event.contact.blocked
        if point.blocked and point.segments and facts.blocked_at is None:
            facts.blocked_at = at
    if event.conversation is not None:
        facts.latest = event.conversation
        point.blocked = event.conversation.contact.blocked
        point.priority_seen = point.priority_seen or event.conversation.priority is not None
        if point.blocked and point.segments and facts.blocked_at is None:
            facts.blocked_at = at

    if event.kind == STATUS_CHANGED and event.new_status:
        snoozed_until = event.conversation.snoozed_until if event.conversation else None
        _change_status(facts, at, event.new_status, snoozed_until)
    elif event.kind == MESSAGE_CREATED and event.message is not None:
        message = event.message
        if message.is_customer_message:
            if message.content:
                _keep_text(point.customer_texts, message.content)
            reopened = facts.status in (RESOLVED, SNOOZED)
            if reopened:
                facts.spans.append(StatusSpan(at, OPEN))
            waiting_cycle = facts.waiting_cycle
            if waiting_cycle is not None:
                waiting_cycle.customer_messages.append(at)
            elif facts.first_reply_at is not None or reopened:
                facts.cycles.append(Cycle(start=at, customer_messages=[at]))
        elif message.is_human_reply:
            if facts.first_reply_at is None:
                facts.first_reply_at = at
            waiting_cycle = facts.waiting_cycle
            if waiting_cycle is not None:
                waiting_cycle.stop = at

    _decide(point, event, matcher, rules_hash, decisions, pins, prioritizer)
    if facts.blocked_at is not None and facts.blocked_at == at:
        # The clocks are judged as they stood at the blocking instant: every event up to it, and no later one.
        point.frozen = Frozen(facts.copy(), list(point.segments))
    return point


def _decide(
    point: Checkpoint,
    event: Event,
    matcher: Matcher | None,
    rules_hash: str,
    decisions: dict[str, Decision],
    pins: dict[str, dict],
    prioritizer: Prioritizer | None,
) -> None:
    """Evaluate the rules on one event and extend the policy timeline with their choice."""
    facts, at = point.facts, event.occurred_at
    # Rules are evaluated on every event until resolution (and again after a reopen); a blocked contact's
    # conversation gets no SLA (as in Chatwoot), so no rule is evaluated while the contact is blocked.
    if matcher is None or facts.status == RESOLVED or event.conversation is None or point.blocked:
        return
    decision = decisions.get(event.key)
    if decision is None or decision.rules_hash == rules_hash:
        context = MatchContext(
            conversation=event.conversation, at=at, message=event.message, customer_texts=tuple(point.customer_texts)
        )
        if prioritizer is not None and not point.priority_seen:
            if point.prioritized is None and (given := prioritizer(context)) is not None:
                point.prioritized = Prioritized(given.name, given.priority)
            if point.prioritized is not None:
                context = replace(
                    context, conversation=replace(event.conversation, priority=point.prioritized.priority)
                )
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
    if decision.snapshot is None or point.sticky:
        return
    policy = policy_of(decision.snapshot)
    segments = point.segments
    if not segments or segments[-1].policy.id != policy.id or segments[-1].policy.version != policy.version:
        segments.append(PolicySegment(start=at, policy=policy, rule=decision.rule))
        point.sticky = decision.sticky


def _keep_text(texts: list[str], text: str) -> None:
    """Keep a customer text for ``content`` conditions, within the conversation's :data:`CONTENT_BUDGET`."""
    room = CONTENT_BUDGET - sum(map(len, texts))
    if room > 0:
        texts.append(text[:room])


def _change_status(facts: Facts, at: datetime, status: str, snoozed_until: datetime | None) -> None:
    """Record a status change; resolution stops the running waiting cycle."""
    if status == facts.status and status != SNOOZED:
        return
    facts.spans.append(StatusSpan(at, status, snoozed_until if status == SNOOZED else None))
    waiting_cycle = facts.waiting_cycle
    if status == RESOLVED and waiting_cycle is not None:
        waiting_cycle.stop = at
