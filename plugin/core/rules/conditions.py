"""Compiled conditions: a rule's JSON condition turned into closures once, at load; guards that let
:class:`FirstMatch` skip rules by a dictionary look-up; and :func:`interpret`, the uncompiled baseline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plugin.core.events import MatchContext
from plugin.core.rules.fields import ConditionError, Environment, Facts, Field, Test, field_value, show_value
from plugin.core.rules.operators import Operator, describe_leaf, leaf_test, parse_leaf

# --- compiled conditions ------------------------------------------------------------------------------

ALL, ANY, NOT, LEAF = "all", "any", "not", "leaf"


@dataclass(frozen=True)
class Guard:
    """A necessary condition of a compiled condition: the value at ``facts[slot]`` (one of the values, when
    the field has several) is in ``values``. :class:`FirstMatch` uses guards to skip rules by a dictionary
    lookup instead of evaluating them."""

    slot: int
    multiple: bool
    values: frozenset


def _guard_of(kind: str, children: list[CompiledCondition]) -> Guard | None:
    """An all has its most selective member's guard; an any has a guard only when every member guards the
    same field (then the union of their values)."""
    guards = [child.guard for child in children if child.guard is not None]
    if kind == ALL:
        return min(guards, key=lambda guard: len(guard.values), default=None)
    if guards and len(guards) == len(children) and all(guard.slot == guards[0].slot for guard in guards):
        return Guard(guards[0].slot, guards[0].multiple, frozenset().union(*(guard.values for guard in guards)))
    return None


@dataclass(frozen=True)
class CompiledCondition:
    """One node of a compiled condition: its closure, and what :func:`explain` needs to show it.

    ``cost`` is a rough relative price of evaluating the node; an all / any tests its cheaper members
    first (tests are pure, so the order changes only the time taken, never the result).
    """

    kind: str
    pointer: str
    test: Test
    children: tuple[CompiledCondition, ...] = ()
    text: str = ""
    read: Callable[[MatchContext], Any] | None = None  # a leaf's field value as the context has it
    cost: int = 1
    guard: Guard | None = None
    field: str = ""  # a leaf's field name

    def reads(self, field: str) -> bool:
        """Whether this condition tests ``field`` anywhere."""
        return self.field == field or any(child.reads(field) for child in self.children)


def _all_of(tests: list[Test]) -> Test:
    if not tests:
        return lambda facts: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda facts: first(facts) and second(facts)

    def all_hold(facts: Facts) -> bool:
        return all(test(facts) for test in tests)

    return all_hold


def _any_of(tests: list[Test]) -> Test:
    if not tests:
        return lambda facts: False
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda facts: first(facts) or second(facts)

    def any_holds(facts: Facts) -> bool:
        return any(test(facts) for test in tests)

    return any_holds


def condition_kind(node: Any) -> str:
    """``all``, ``any``, ``not`` or ``leaf``: which form a condition object has (by its keys)."""
    if isinstance(node, Mapping):
        for kind in (ALL, ANY, NOT):
            if kind in node:
                return kind
    return LEAF


class ConditionCompiler:
    """Compiles conditions into closures over :class:`Facts`.

    Each (field, form) a condition reads gets a slot in the facts; identical leaves (same field, operator
    and value, in any rule) share one closure, and a costly leaf's result gets a slot of its own, so
    twenty rules testing "created within office hours" consult the calendar once per event.
    Problems are collected in :attr:`problems`.
    """

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.problems: list[ConditionError] = []
        self._slots: dict[tuple, int] = {}
        self._computations: list[Callable[[Facts], Any]] = []
        self._leaf_tests: dict[tuple, Test] = {}

    def compile(
        self, node: Any, pointer: str, skip: Callable[[str], bool] = lambda pointer: False
    ) -> CompiledCondition | None:
        """The compiled condition, or None when it (or a part of it) has a problem.

        ``skip(pointer)`` is true for subtrees whose problems were already reported (by the JSON Schema);
        they are not checked again.
        """
        kind = condition_kind(node)
        if kind == LEAF:
            return self._leaf(node, pointer, skip)
        if kind == NOT:
            child = self.compile(node[NOT], f"{pointer}/{NOT}", skip)
            if child is None:
                return None
            child_test = child.test
            return CompiledCondition(NOT, pointer, lambda facts: not child_test(facts), (child,), NOT, cost=child.cost)
        members = node[kind]
        if not isinstance(members, list):
            if not skip(pointer):
                self.problems.append(
                    ConditionError(f"{pointer}/{kind}", f"expected a list of conditions, got {show_value(members)}")
                )
            return None
        compiled = [self.compile(member, f"{pointer}/{kind}/{index}", skip) for index, member in enumerate(members)]
        children = [child for child in compiled if child is not None]
        if len(children) < len(compiled):
            return None
        tests = [child.test for child in sorted(children, key=lambda child: child.cost)]
        test = _all_of(tests) if kind == ALL else _any_of(tests)
        return CompiledCondition(
            kind,
            pointer,
            test,
            tuple(children),
            kind,
            cost=sum(child.cost for child in children),
            guard=_guard_of(kind, children),
        )

    def facts(self, context: MatchContext) -> Facts:
        """Fresh facts for one context; values are computed as the compiled conditions ask for them."""
        return Facts(context, self._computations)

    def _leaf(self, node: Any, pointer: str, skip: Callable[[str], bool]) -> CompiledCondition | None:
        if skip(pointer):
            return None
        if not isinstance(node, Mapping):
            self.problems.append(ConditionError(pointer, f"expected a condition object, got {show_value(node)}"))
            return None
        try:
            field, operator, prepared = parse_leaf(node, pointer, self.environment)
        except ConditionError as error:
            self.problems.append(error)
            return None
        environment, multiple = self.environment, field.kind.multiple
        value_slot = self._slot(("field", field.name, operator.form), field_value(field, operator.form, environment))
        guard = None
        if operator.name in ("equals", "in"):
            expected = prepared[1]
            guard = Guard(value_slot, multiple, expected if operator.name == "in" else frozenset({expected}))
        return CompiledCondition(
            LEAF,
            pointer,
            self._leaf_closure(field, operator, prepared, node.get("value"), value_slot),
            text=describe_leaf(node),
            read=lambda context: field.read(context, environment),
            cost=(8 if operator.costly else 1) * (2 if multiple else 1),
            guard=guard,
            field=field.name,
        )

    def _leaf_closure(self, field: Field, operator: Operator, prepared: Any, value: Any, value_slot: int) -> Test:
        key = ("leaf", field.name, operator.name, json.dumps(value, sort_keys=True))
        if key in self._leaf_tests:
            return self._leaf_tests[key]
        test = leaf_test(operator, prepared, field.kind.multiple, value_slot)
        if operator.costly:
            result_slot = self._slot(key, test)
            test = lambda facts: facts[result_slot]  # noqa: E731
        self._leaf_tests[key] = test
        return test

    def _slot(self, key: tuple, computation: Callable[[Facts], Any]) -> int:
        if key not in self._slots:
            self._slots[key] = len(self._computations)
            self._computations.append(computation)
        return self._slots[key]


class FirstMatch:
    """The first of an ordered list of compiled conditions that holds on some facts.

    Conditions with a :class:`Guard` are indexed by the values their guard accepts: for each event only
    the unguarded conditions and those whose guard value occurs are evaluated, still in list order, so
    the answer is the sequential first match's (guards are necessary conditions).
    """

    def __init__(self, conditions: Sequence[CompiledCondition]) -> None:
        self._tests = [condition.test for condition in conditions]
        self._unguarded: list[int] = []
        self._tables: dict[int, tuple[bool, dict[Any, list[int]]]] = {}
        for position, condition in enumerate(conditions):
            guard = condition.guard
            if guard is None:
                self._unguarded.append(position)
                continue
            table = self._tables.setdefault(guard.slot, (guard.multiple, {}))[1]
            for value in guard.values:
                table.setdefault(value, []).append(position)

    def first(self, facts: Facts) -> int | None:
        """The position of the first condition that holds, or None."""
        candidates = set(self._unguarded)
        for slot, (multiple, table) in self._tables.items():
            value = facts[slot]
            if value is None:
                continue
            # A dictionary lookup finds every key equal to the value, so it never misses a candidate.
            for item in value if multiple else (value,):
                candidates.update(table.get(item, ()))
        tests = self._tests
        for position in sorted(candidates):
            if tests[position](facts):
                return position
        return None


def constant_result(condition: CompiledCondition) -> bool | None:
    """True or False when a condition's result does not depend on the context (``{"all": []}``), else None."""
    if condition.kind == LEAF:
        return None
    results = [constant_result(child) for child in condition.children]
    if condition.kind == NOT:
        return None if results[0] is None else not results[0]
    decisive = condition.kind == ANY  # the child result that decides an any (True) or an all (False)
    if decisive in results:
        return decisive
    return (not decisive) if all(result is not None for result in results) else None


def interpret(node: Any, context: MatchContext, environment: Environment) -> bool:
    """Evaluate a condition straight from its parsed JSON, preparing each leaf on every call.

    Rules in force are compiled; this is the baseline the benchmark compares with and the cross-check of
    the compiled path in the tests. Raises :class:`ConditionError` on a condition that would not compile.
    """
    kind = condition_kind(node)
    if kind == ALL:
        return all(interpret(child, context, environment) for child in node[ALL])
    if kind == ANY:
        return any(interpret(child, context, environment) for child in node[ANY])
    if kind == NOT:
        return not interpret(node[NOT], context, environment)
    field, operator, prepared = parse_leaf(node, "", environment)
    facts = Facts(context, [field_value(field, operator.form, environment)])
    return leaf_test(operator, prepared, field.kind.multiple)(facts)
