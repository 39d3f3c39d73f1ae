"""Explanations for ``rules explain``: each leaf of a condition with the value it saw and its result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugin.core.rules.conditions import ANY, LEAF, CompiledCondition
from plugin.core.rules.fields import Facts, show_value

# --- explanations -------------------------------------------------------------------------------------

_SHOWN_TEXT_LENGTH = 120


def _show_actual(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str) and len(value) > _SHOWN_TEXT_LENGTH:
        value = value[:_SHOWN_TEXT_LENGTH] + "…"
    elif isinstance(value, tuple):
        value = [
            item[:_SHOWN_TEXT_LENGTH] + "…" if isinstance(item, str) and len(item) > _SHOWN_TEXT_LENGTH else item
            for item in value
        ]
    elif hasattr(value, "isoformat"):
        value = value.isoformat()
    return show_value(value)


@dataclass(frozen=True)
class ConditionResult:
    """How one condition node came out on one context, with the field values its leaves saw.

    Children are listed as far as evaluation went (an ``all`` stops at its first false member, an ``any``
    at its first true one), so a failed rule shows the leaf that failed and its actual value.
    """

    kind: str
    pointer: str
    matched: bool
    text: str
    actual: Any = None
    children: tuple[ConditionResult, ...] = ()

    def lines(self, indent: str = "") -> list[str]:
        """The result as indented lines: ``inbox_id in [5, 6] -> false (actual: 3)``."""
        outcome = "true" if self.matched else "false"
        if self.kind == LEAF:
            head = f"{indent}{self.text} -> {outcome} (actual: {_show_actual(self.actual)})"
        else:
            head = f"{indent}{self.text} -> {outcome}"
        return [head] + [line for child in self.children for line in child.lines(indent + "  ")]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def explain(condition: CompiledCondition, facts: Facts) -> ConditionResult:
    """Evaluate *condition* node by node, in the order written, on one context's facts."""
    if condition.kind == LEAF:
        assert condition.read is not None  # every leaf reads its field
        return ConditionResult(
            LEAF, condition.pointer, condition.test(facts), condition.text, condition.read(facts.context)
        )
    results = []
    for child in condition.children:
        results.append(explain(child, facts))
        if results[-1].matched == (condition.kind == ANY):  # the member that decides an all or an any
            break
    return ConditionResult(
        condition.kind, condition.pointer, condition.test(facts), condition.text, children=tuple(results)
    )
