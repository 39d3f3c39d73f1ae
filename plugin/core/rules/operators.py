"""The operators of rule conditions: each one's value preparation, its test, and the leaf builder every
condition goes through (compiled and interpreted alike).
"""

from __future__ import annotations

import operator as operator_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from plugin.core.calendar import Calendar
from plugin.core.rules.fields import (
    ATTRIBUTE,
    CHOICE,
    FOLDED,
    LABELS,
    MATCH_TEXT_LIMIT,
    NUMBER,
    RAW,
    WORDS,
    ConditionError,
    Environment,
    Facts,
    Field,
    Test,
    field_named,
    fold,
    show_value,
    words,
)
from plugin.core.rules.patterns import compile_pattern

# --- operators ----------------------------------------------------------------------------------------

_CATEGORY_TYPES: Mapping[type, frozenset[type]] = {
    # bool is kept apart from int: true must not equal 1, nor false equal 0.
    bool: frozenset({bool}),
    int: frozenset({int, float}),
    float: frozenset({int, float}),
    str: frozenset({str}),
}
_NUMBER_TYPES = _CATEGORY_TYPES[int]


def _scalar(value: Any, field: Field, environment: Environment) -> Any:
    """Check one ``equals`` / ``in`` value against the field's kind; return it case-folded."""
    kind = field.kind
    if kind is NUMBER:
        if type(value) is not int:
            raise ValueError(f"expected a whole number (an id) such as 5, got {show_value(value)}")
    elif kind is CHOICE:
        if not isinstance(value, str) or fold(value) not in field.choices:
            raise ValueError(f"expected one of {', '.join(field.choices)}; got {show_value(value)}")
    elif kind is ATTRIBUTE:
        if type(value) not in _CATEGORY_TYPES:
            raise ValueError(f"expected a text, a number, true or false, got {show_value(value)}")
    elif not isinstance(value, str):
        raise ValueError(f"expected a string, got {show_value(value)}")
    if kind is LABELS and fold(value) in environment.owned_label_titles:
        raise ValueError(f"{show_value(value)} is one of the plugin's own status labels, which conditions never see")
    return fold(value)


def _prepare_equals(value: Any, field: Field, environment: Environment) -> tuple[frozenset[type], Any]:
    scalar = _scalar(value, field, environment)
    return _CATEGORY_TYPES[type(scalar)], scalar


def _prepare_in(value: Any, field: Field, environment: Environment) -> tuple[frozenset[type], frozenset]:
    if not isinstance(value, list) or not value:
        raise ValueError(
            f'expected a non-empty list of values such as [5, 6] or ["low", "medium"], got {show_value(value)}'
        )
    scalars = [_scalar(item, field, environment) for item in value]
    categories = {_CATEGORY_TYPES[type(scalar)] for scalar in scalars}
    if len(categories) > 1:
        raise ValueError(
            f"expected values of one type (all texts, all numbers or all true/false), got {show_value(value)}"
        )
    return categories.pop(), frozenset(scalars)


def _prepare_text(value: Any, field: Field, environment: Environment) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {show_value(value)}")
    return fold(value)


def _prepare_words(value: Any, field: Field, environment: Environment) -> frozenset[str]:
    if isinstance(value, str):
        entries = [entry.strip() for entry in value.split(",")]
    elif isinstance(value, list) and all(isinstance(entry, str) for entry in value):
        entries = [entry.strip() for entry in value]
    else:
        raise ValueError(
            f'expected a list of words such as ["urgent", "emergency"] or a comma-separated '
            f"string, got {show_value(value)}"
        )
    entries = [entry for entry in entries if entry]
    if not entries:
        raise ValueError("expected at least one word")
    for entry in entries:
        if words(entry) != {fold(entry)}:
            raise ValueError(f"{show_value(entry)} is not a single word; use contains or matches for a phrase")
    return frozenset(fold(entry) for entry in entries)


def _prepare_pattern(value: Any, field: Field, environment: Environment) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a regular expression as a string, got {show_value(value)}")
    return compile_pattern(value)


def _prepare_number(value: Any, field: Field, environment: Environment) -> int | float:
    if type(value) not in _NUMBER_TYPES:
        raise ValueError(f"expected a number, got {show_value(value)}")
    return value


def _prepare_calendar(value: Any, field: Field, environment: Environment) -> Calendar | None:
    if not isinstance(value, str) or value not in environment.calendars:
        known = ", ".join(environment.calendars) or "none defined"
        raise ValueError(f"expected the id of a calendar (known: {known}), got {show_value(value)}")
    return environment.calendars[value]


# Each operator's predicate factory: from the prepared rule value to a test of one value (in the
# operator's form). Tests are made once per leaf at load, so nothing is unpacked or looked up per event.


def _equals(prepared: tuple[frozenset[type], Any]) -> Callable[[Any], bool]:
    types, expected = prepared
    return lambda value: type(value) in types and value == expected


def _in(prepared: tuple[frozenset[type], frozenset]) -> Callable[[Any], bool]:
    types, expected = prepared
    return lambda value: type(value) in types and value in expected


def _contains(expected: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and expected in value


def _starts_with(expected: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value.startswith(expected)


def _any_word(expected: frozenset[str]) -> Callable[[frozenset[str]], bool]:
    return lambda value: not expected.isdisjoint(value)


def _matches(pattern: Any) -> Callable[[Any], bool]:
    search = pattern.search
    # RE2 reads UTF-8: a lone surrogate (valid in JSON, not in UTF-8) is searched as "?" rather than failing.
    return lambda value: (
        isinstance(value, str) and search(value[:MATCH_TEXT_LIMIT].encode("utf-8", "replace")) is not None
    )


def _comparison(compare: Callable[[Any, Any], bool]) -> Callable[[float], Callable[[Any], bool]]:
    return lambda limit: lambda value: type(value) in _NUMBER_TYPES and compare(value, limit)


def _within_hours(calendar: Calendar) -> Callable[[Any], bool]:
    return calendar.is_open


@dataclass(frozen=True)
class Operator:
    """One operator: the form it reads values in, how it prepares the rule's value, its test of one value.

    ``predicate(prepared)`` makes the test of one value; it is None for ``exists`` / ``not_exists``, which
    look only at whether there is a value. ``negated`` operators hold when the value is present and the
    test fails for every value.
    """

    name: str
    form: str
    prepare: Callable[[Any, Field, Environment], Any] | None
    predicate: Callable[[Any], Callable[[Any], bool]] | None
    negated: bool = False
    costly: bool = False  # tested last within an all / any, and its result kept for the rest of the event


def _negation(name: str, positive: Operator) -> Operator:
    return replace(positive, name=name, negated=True)


_POSITIVE = (
    Operator("equals", FOLDED, _prepare_equals, _equals),
    Operator("in", FOLDED, _prepare_in, _in),
    Operator("contains", FOLDED, _prepare_text, _contains),
    Operator("contains_any_word", WORDS, _prepare_words, _any_word, costly=True),
    Operator("starts_with", FOLDED, _prepare_text, _starts_with),
    Operator("matches", RAW, _prepare_pattern, _matches, costly=True),
    Operator("exists", RAW, None, None),
    Operator("gt", RAW, _prepare_number, _comparison(operator_module.gt)),
    Operator("gte", RAW, _prepare_number, _comparison(operator_module.ge)),
    Operator("lt", RAW, _prepare_number, _comparison(operator_module.lt)),
    Operator("lte", RAW, _prepare_number, _comparison(operator_module.le)),
    Operator("within_hours", RAW, _prepare_calendar, _within_hours, costly=True),
)
_BY_NAME = {operator.name: operator for operator in _POSITIVE}
OPERATORS: Mapping[str, Operator] = {
    **_BY_NAME,
    "not_equals": _negation("not_equals", _BY_NAME["equals"]),
    "not_in": _negation("not_in", _BY_NAME["in"]),
    "not_contains": _negation("not_contains", _BY_NAME["contains"]),
    "not_exists": _negation("not_exists", _BY_NAME["exists"]),
}
OPERATOR_NAMES = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "contains_any_word",
    "starts_with",
    "matches",
    "exists",
    "not_exists",
    "gt",
    "gte",
    "lt",
    "lte",
    "within_hours",
)


def leaf_test(operator: Operator, prepared: Any, multiple: bool, slot: Any = 0) -> Test:
    """The test of one leaf, reading its field's value (in the operator's form) at ``facts[slot]``.

    The one place that decides missing values (false for all but ``not_exists``), negation, and fields
    with several values (any value for a positive operator, none for a negated one).
    """
    negated = operator.negated
    if operator.predicate is None:
        if multiple:
            return lambda facts: ((values := facts[slot]) is not None and len(values) > 0) != negated
        return lambda facts: (facts[slot] is not None) != negated
    holds = operator.predicate(prepared)
    if multiple:

        def some_value_holds(facts: Facts) -> bool:
            values = facts[slot]
            if values is None:
                return False
            for value in values:
                if holds(value):
                    return not negated
            return negated

        return some_value_holds
    if negated:
        return lambda facts: (value := facts[slot]) is not None and not holds(value)
    return lambda facts: (value := facts[slot]) is not None and holds(value)


def parse_leaf(node: Mapping[str, Any], pointer: str, environment: Environment) -> tuple[Field, Operator, Any]:
    """Check a leaf ``{"field", "op", "value"}``; return its field, operator and prepared value.

    Raises :class:`ConditionError` at the pointer of the key that is wrong.
    """
    try:
        field = field_named(node.get("field"))
    except ValueError as error:
        raise ConditionError(f"{pointer}/field", str(error)) from None
    name = node.get("op")
    if name not in field.kind.operators:
        raise ConditionError(
            f"{pointer}/op",
            f"operator {show_value(name)} does not apply to {field.name}; "
            f"expected one of {', '.join(field.kind.operators)}",
        )
    operator = OPERATORS[field.kind.resolve(name)]
    if operator.prepare is None:
        if "value" in node:
            raise ConditionError(f"{pointer}/value", f'{name} takes no value; remove "value"')
        return field, operator, None
    if "value" not in node:
        raise ConditionError(pointer, f'{name} needs a "value"')
    try:
        return field, operator, operator.prepare(node["value"], field, environment)
    except ValueError as error:
        raise ConditionError(f"{pointer}/value", f"{field.name} {name}: {error}") from None


def describe_leaf(node: Mapping[str, Any]) -> str:
    """A leaf as an admin wrote it, e.g. ``inbox_id in [5, 6]``."""
    text = f"{node.get('field')} {node.get('op')}"
    return f"{text} {show_value(node['value'])}" if "value" in node else text
