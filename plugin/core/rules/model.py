"""A loaded rule set and what it answers: which rule (and policy) matches a context, and why.

Pure: a :class:`RuleSet` is built by :mod:`plugin.core.rules.build` and never touches a file afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from plugin.core.calendar import Calendar
from plugin.core.events import MatchContext
from plugin.core.policy import Policy
from plugin.core.rules.conditions import CompiledCondition, FirstMatch
from plugin.core.rules.explain import ConditionResult, explain
from plugin.core.rules.fields import Facts

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class RuleProblem:
    """One problem in a rule file, located by line and JSON pointer, saying what was expected."""

    file: str
    line: int
    pointer: str
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.pointer}: {self.message}"


class RulesError(Exception):
    """Rule files that cannot be loaded; ``problems`` lists every problem found (errors and warnings)."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        errors = [problem for problem in problems if problem.severity == ERROR]
        super().__init__("\n".join(str(problem) for problem in errors or problems))


@dataclass(frozen=True)
class LabelSpec:
    """A status label the plugin writes to the helpdesk."""

    title: str
    color: str
    description: str = ""


@dataclass(frozen=True)
class Destination:
    """Where SLA events go: a Slack incoming webhook or a generic webhook, its URL (and secret) named by
    environment variables so no URL or secret is ever written in a rule file."""

    id: str
    type: str  # "slack" or "webhook"
    url_env: str
    secret_env: str | None = None
    name: str = ""


@dataclass(frozen=True)
class PrioritizeRule:
    """One ``prioritize`` rule as loaded: the priority it sets and its compiled condition."""

    index: int
    name: str
    file: str
    line: int
    priority: str
    condition: CompiledCondition


@dataclass(frozen=True)
class RuleMatch:
    """The rule that chose a policy: its position in the rule set, its name, the policy, stickiness."""

    index: int
    name: str
    policy: Policy
    sticky: bool


@dataclass(frozen=True)
class Rule:
    """One rule as loaded: where it is written, what it applies, and its compiled condition."""

    index: int
    name: str
    file: str
    line: int
    pointer: str
    policy: Policy
    sticky: bool
    condition: CompiledCondition

    @property
    def match(self) -> RuleMatch:
        return RuleMatch(self.index, self.name, self.policy, self.sticky)


@dataclass(frozen=True)
class RuleExplanation:
    """How one rule came out on a context: matched, or the condition that failed with the actual values."""

    index: int
    name: str
    file: str
    line: int
    policy: Policy
    result: ConditionResult

    @property
    def matched(self) -> bool:
        return self.result.matched

    def __str__(self) -> str:
        head = f"rule {self.index + 1} {self.name!r} ({self.file}:{self.line}): " + (
            f"matched -> policy {self.policy.id} (version {self.policy.version[:12]})" if self.matched else "no match"
        )
        return "\n".join([head] + self.result.lines("  "))


class RuleSet:
    """Calendars, policies, rules and labels loaded from one rules directory.

    ``labels`` has the keys ``on_track``, ``at_risk`` and ``missed`` (and ``hit`` when a file sets it);
    ``owned_label_titles`` holds every status-label title the plugin owns (the current ones and
    manifest.json's defaults), which conditions never see. ``content_hash`` is the sha256 over the rule
    files' names and contents. ``destinations`` are the notification destinations by id, ``prioritize`` the
    priority rules in order, ``custom_attributes`` whether the SLA is also written as conversation attributes.
    """

    def __init__(
        self,
        *,
        rules: list[Rule],
        policies: Mapping[str, Policy],
        calendars: Mapping[str, Calendar],
        labels: Mapping[str, LabelSpec],
        owned_label_titles: frozenset[str],
        content_hash: str,
        facts: Callable[[MatchContext], Facts],
        files: tuple[str, ...] = (),
        warnings: tuple[RuleProblem, ...] = (),
        destinations: Mapping[str, Destination] | None = None,
        prioritize: Sequence[PrioritizeRule] = (),
        custom_attributes: bool = False,
    ) -> None:
        self.rules = tuple(rules)
        self.policies = dict(policies)
        self.calendars = dict(calendars)
        self.labels = dict(labels)
        self.owned_label_titles = owned_label_titles
        self.content_hash = content_hash
        self.files = files
        self.warnings = warnings
        self.destinations = dict(destinations or {})
        self.prioritize = tuple(prioritize)
        self.custom_attributes = custom_attributes
        self._facts = facts
        self._first_match = FirstMatch([rule.condition for rule in self.rules])
        self._matches = tuple(rule.match for rule in self.rules)
        self._first_priority = FirstMatch([rule.condition for rule in self.prioritize])

    @property
    def reads_content(self) -> bool:
        """Whether a rule tests the customers' message text (else the store need not keep it)."""
        return any(rule.condition.reads("content") for rule in self.rules)

    def match(self, context: MatchContext) -> RuleMatch | None:
        """The first rule whose condition holds (files by name, then position), or None."""
        position = self._first_match.first(self._facts(context))
        return None if position is None else self._matches[position]

    def priority_for(self, context: MatchContext) -> PrioritizeRule | None:
        """The first ``prioritize`` rule whose condition holds, or None."""
        if not self.prioritize:
            return None
        position = self._first_priority.first(self._facts(context))
        return None if position is None else self.prioritize[position]

    def explain(self, context: MatchContext) -> list[RuleExplanation]:
        """Every rule up to and including the first match, each with how its condition came out."""
        facts = self._facts(context)
        explanations = []
        for rule in self.rules:
            result = explain(rule.condition, facts)
            explanations.append(RuleExplanation(rule.index, rule.name, rule.file, rule.line, rule.policy, result))
            if result.matched:
                break
        return explanations

    def __repr__(self) -> str:
        return (
            f"RuleSet({len(self.rules)} rules, {len(self.policies)} policies, "
            f"{len(self.calendars)} calendars, {self.content_hash[:12]})"
        )
