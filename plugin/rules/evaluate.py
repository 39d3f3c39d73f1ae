"""Rule conditions: the fields they read, the operators they apply, and their compilation into closures.

One table of operators (:data:`OPERATORS`) and one leaf builder (:func:`leaf_test`) define what every leaf
means; :class:`ConditionCompiler` turns a rule file's condition into closures once, at load, and
:func:`interpret` evaluates the same JSON straight from the tree (the benchmark's baseline and a cross-check
in the tests). Both go through the same table, so the two paths cannot disagree.

Semantics (DESIGN.md 10.1, decisions written into docs/rules.md):

- text comparisons ignore case (``str.casefold`` after NFC normalisation); ``matches`` uses the
  expression as written and searches only the first :data:`MATCH_TEXT_LIMIT` characters;
- every leaf but ``not_exists`` is false on a missing (absent or null) value, ``not_equals`` included;
- ``labels`` and ``content`` hold several values: a positive operator holds when any value satisfies it,
  its negation (``not_equals``, ``not_in``, ``not_contains``) when none does; on ``labels``, ``equals`` and
  ``contains`` both mean "has the label"; ``labels`` is never missing (no label is an empty list), ``content``
  is missing until the customer has written;
- the plugin's own status labels are invisible to conditions.

Pure: no I/O, nothing here reads a file or a clock.
"""
from __future__ import annotations

import json
import operator as operator_module
import re
import unicodedata
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from re import _constants as regex_constants  # the stdlib's own parse tree, to find nested repetition
from re import _parser as regex_parser
from typing import Any, Callable, Mapping, Sequence

from plugin.calendar import Calendar
from plugin.events import INCOMING, OUTGOING, STATUSES, MatchContext

MATCH_TEXT_LIMIT = 10_000
"""``matches`` searches only this many leading characters of a text, so one huge message cannot stall."""

PRIORITIES = ("low", "medium", "high", "urgent")
MESSAGE_TYPES = (INCOMING, OUTGOING)



class Facts(dict):
    """One context's field values, and the results of costly leaves, each computed on first use.

    Keys are slots handed out by :class:`ConditionCompiler`. A field read by a hundred rules is read and
    case-folded once per event, and a field no rule reaches before the first match is never read.
    """

    __slots__ = ("context", "_computations")

    def __init__(self, context: MatchContext, computations: Sequence[Callable[[Facts], Any]]) -> None:
        super().__init__()
        self.context = context
        self._computations = computations

    def __missing__(self, slot: int) -> Any:
        value = self[slot] = self._computations[slot](self)
        return value


Test = Callable[[Facts], bool]


class ConditionError(ValueError):
    """A condition that cannot be compiled: where (a JSON pointer) and what was expected."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer
        self.message = message


@dataclass(frozen=True)
class Environment:
    """What conditions may refer to besides the context.

    ``calendars`` maps every defined calendar id to its calendar, or to None when it failed to load (that
    failure is reported once, on the calendar). ``owned_label_titles`` are case-folded.
    """

    calendars: Mapping[str, Calendar | None]
    owned_label_titles: frozenset[str] = frozenset()


# --- fields -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldKind:
    """What kind of value a field holds and which operators apply to it."""

    name: str
    operators: tuple[str, ...]
    multiple: bool = False
    # (name, meaning) pairs of operators that mean another operator on this kind: on labels, "contains"
    # is "has the label", not a substring test.
    aliases: tuple[tuple[str, str], ...] = ()

    def resolve(self, operator_name: str) -> str:
        """The operator that *operator_name* means on this kind."""
        return dict(self.aliases).get(operator_name, operator_name)


_EQUALITY = ("equals", "not_equals", "in", "not_in", "exists", "not_exists")
_TEXT_ONLY = ("contains", "not_contains", "contains_any_word", "starts_with", "matches")
_ORDER = ("gt", "gte", "lt", "lte")

NUMBER = FieldKind("number", _EQUALITY + _ORDER)
CHOICE = FieldKind("choice", _EQUALITY)
TEXT = FieldKind("text", _EQUALITY + _TEXT_ONLY)
TEXTS = FieldKind("texts", _EQUALITY + _TEXT_ONLY, multiple=True)
LABELS = FieldKind("labels", _EQUALITY + ("contains", "not_contains"), multiple=True,
                   aliases=(("contains", "equals"), ("not_contains", "not_equals")))
ATTRIBUTE = FieldKind("attribute", _EQUALITY + _TEXT_ONLY + _ORDER)
TIME = FieldKind("time", ("within_hours",))

Reader = Callable[[MatchContext, Environment], Any]


@dataclass(frozen=True)
class Field:
    """A field conditions can test: its name, kind, and how to read its value from a context."""

    name: str
    kind: FieldKind
    read: Reader
    choices: tuple[str, ...] = ()


def _conversation(attribute: str) -> Reader:
    return lambda context, environment: getattr(context.conversation, attribute)


def _contact(attribute: str) -> Reader:
    return lambda context, environment: getattr(context.conversation.contact, attribute)


def _visible_labels(context: MatchContext, environment: Environment) -> tuple[str, ...]:
    owned = environment.owned_label_titles
    return tuple([label for label in context.conversation.labels if fold(label) not in owned])


def _customer_texts(context: MatchContext, environment: Environment) -> tuple[str, ...] | None:
    return context.customer_texts or None


def _message_type(context: MatchContext, environment: Environment) -> str | None:
    return None if context.message is None else context.message.direction


def _email_domain(context: MatchContext, environment: Environment) -> str | None:
    email = context.conversation.contact.email
    if not isinstance(email, str) or "@" not in email:
        return None
    return email.rpartition("@")[2].lower() or None


_FIXED_FIELDS = (
    Field("inbox_id", NUMBER, _conversation("inbox_id")),
    Field("team_id", NUMBER, _conversation("team_id")),
    Field("assignee_id", NUMBER, _conversation("assignee_id")),
    Field("status", CHOICE, _conversation("status"), STATUSES),
    Field("priority", CHOICE, _conversation("priority"), PRIORITIES),
    Field("labels", LABELS, _visible_labels),
    Field("content", TEXTS, _customer_texts),
    Field("message_type", CHOICE, _message_type, MESSAGE_TYPES),
    Field("email", TEXT, _contact("email")),
    Field("phone_number", TEXT, _contact("phone_number")),
    Field("country_code", TEXT, _contact("country_code")),
    Field("browser_language", TEXT, _conversation("browser_language")),
    Field("conversation_language", TEXT, _conversation("conversation_language")),
    Field("referer", TEXT, _conversation("referer")),
    Field("mail_subject", TEXT, _conversation("mail_subject")),
    Field("city", TEXT, _contact("city")),
    Field("company", TEXT, _contact("company")),
    Field("channel", TEXT, _conversation("channel")),
    Field("email_domain", TEXT, _email_domain),
    Field("created_at", TIME, _conversation("created_at")),
)
FIELDS: Mapping[str, Field] = {field.name: field for field in _FIXED_FIELDS}
CONVERSATION_ATTRIBUTE_PREFIX = "custom_attributes."
CONTACT_ATTRIBUTE_PREFIX = "contact.custom_attributes."


def _conversation_attribute(key: str) -> Reader:
    return lambda context, environment: (context.conversation.custom_attributes or {}).get(key)


def _contact_attribute(key: str) -> Reader:
    return lambda context, environment: (context.conversation.contact.custom_attributes or {}).get(key)


def field_named(name: Any) -> Field:
    """The field called *name*; raises ``ValueError`` saying which fields exist."""
    if isinstance(name, str):
        if name in FIELDS:
            return FIELDS[name]
        for prefix, reader in ((CONVERSATION_ATTRIBUTE_PREFIX, _conversation_attribute),
                               (CONTACT_ATTRIBUTE_PREFIX, _contact_attribute)):
            if name.startswith(prefix) and len(name) > len(prefix):
                return Field(name, ATTRIBUTE, reader(name[len(prefix):]))
    raise ValueError(f"unknown field {_show(name)}; expected one of {', '.join(FIELDS)}, "
                     f"custom_attributes.<key> or contact.custom_attributes.<key>")


# --- the forms a value is compared in -----------------------------------------------------------------

RAW, FOLDED, WORDS = "raw", "folded", "words"


def fold(value: Any) -> Any:
    """A text in the form case-insensitive comparisons use; other values unchanged."""
    if isinstance(value, str):
        # ASCII text is already in NFC; skipping the normalisation call halves the cost of the common case.
        return value.casefold() if value.isascii() else unicodedata.normalize("NFC", value).casefold()
    return value


@cache
def _word_pattern() -> re.Pattern[str]:
    # A word is a run of letters, digits, underscores and combining marks: Python's \w alone would cut
    # Devanagari or decomposed Latin words at every vowel sign or accent. Only the Basic Multilingual
    # Plane's marks are added: the regular-expression engine tests a class of those with a bitmap, while
    # the few marks beyond it (historic scripts) would make every character a linear search.
    ranges: list[list[int]] = []
    for code in range(0x10000):
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    mark_class = "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges)
    return re.compile(rf"[\w{mark_class}]+")


@lru_cache(maxsize=4096)
def _text_words(text: str) -> frozenset[str]:
    # Cached: every event of a conversation tests all its customer messages so far, mostly the same texts.
    return frozenset(_word_pattern().findall(fold(text)))


def words(value: Any) -> frozenset[str]:
    """The case-folded words of a text (Unicode word boundaries); no words for a value that is not text."""
    return _text_words(value) if isinstance(value, str) else frozenset()


_FORMS: Mapping[str, Callable[[Any], Any]] = {FOLDED: fold, WORDS: words}


def field_value(field: Field, form: str, environment: Environment) -> Callable[[Facts], Any]:
    """Reads *field* from ``facts.context`` in the *form* an operator compares in (each value of a
    several-valued field converted; None, a missing value, stays None)."""
    read = field.read
    if form == RAW:
        return lambda facts: read(facts.context, environment)
    convert = _FORMS[form]
    if field.kind.multiple:
        return lambda facts: None if (values := read(facts.context, environment)) is None \
            else tuple(map(convert, values))
    return lambda facts: None if (value := read(facts.context, environment)) is None else convert(value)


# --- operators ----------------------------------------------------------------------------------------

_CATEGORY_TYPES: Mapping[type, frozenset[type]] = {
    # bool is kept apart from int: true must not equal 1, nor false equal 0.
    bool: frozenset({bool}), int: frozenset({int, float}), float: frozenset({int, float}), str: frozenset({str}),
}
_NUMBER_TYPES = _CATEGORY_TYPES[int]


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _scalar(value: Any, field: Field, environment: Environment) -> Any:
    """Check one ``equals`` / ``in`` value against the field's kind; return it case-folded."""
    kind = field.kind
    if kind is NUMBER:
        if type(value) is not int:
            raise ValueError(f"expected a whole number (an id) such as 5, got {_show(value)}")
    elif kind is CHOICE:
        if not isinstance(value, str) or fold(value) not in field.choices:
            raise ValueError(f"expected one of {', '.join(field.choices)}; got {_show(value)}")
    elif kind is ATTRIBUTE:
        if type(value) not in _CATEGORY_TYPES:
            raise ValueError(f"expected a text, a number, true or false, got {_show(value)}")
    elif not isinstance(value, str):
        raise ValueError(f"expected a string, got {_show(value)}")
    if kind is LABELS and fold(value) in environment.owned_label_titles:
        raise ValueError(f"{_show(value)} is one of the plugin's own status labels, which conditions never see")
    return fold(value)


def _prepare_equals(value: Any, field: Field, environment: Environment) -> tuple[frozenset[type], Any]:
    scalar = _scalar(value, field, environment)
    return _CATEGORY_TYPES[type(scalar)], scalar


def _prepare_in(value: Any, field: Field, environment: Environment) -> tuple[frozenset[type], frozenset]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of values such as [5, 6] or [\"low\", \"medium\"], "
                         f"got {_show(value)}")
    scalars = [_scalar(item, field, environment) for item in value]
    categories = {_CATEGORY_TYPES[type(scalar)] for scalar in scalars}
    if len(categories) > 1:
        raise ValueError(f"expected values of one type (all texts, all numbers or all true/false), "
                         f"got {_show(value)}")
    return categories.pop(), frozenset(scalars)


def _prepare_text(value: Any, field: Field, environment: Environment) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {_show(value)}")
    return fold(value)


def _prepare_words(value: Any, field: Field, environment: Environment) -> frozenset[str]:
    if isinstance(value, str):
        entries = [entry.strip() for entry in value.split(",")]
    elif isinstance(value, list) and all(isinstance(entry, str) for entry in value):
        entries = [entry.strip() for entry in value]
    else:
        raise ValueError(f"expected a list of words such as [\"urgent\", \"emergency\"] or a comma-separated "
                         f"string, got {_show(value)}")
    entries = [entry for entry in entries if entry]
    if not entries:
        raise ValueError("expected at least one word")
    for entry in entries:
        if words(entry) != {fold(entry)}:
            raise ValueError(f"{_show(entry)} is not a single word; use contains or matches for a phrase")
    return frozenset(fold(entry) for entry in entries)


def _prepare_pattern(value: Any, field: Field, environment: Environment) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a regular expression as a string, got {_show(value)}")
    try:
        pattern = re.compile(value)
    except re.error as error:
        raise ValueError(f"regular expression does not compile: {error}") from None
    nested = _nested_repetition(regex_parser.parse(value))
    if nested:
        raise ValueError(f"regular expression repeats a repetition ({nested}), which can take exponential "
                         f"time on some texts; rewrite it without an unbounded quantifier inside another")
    return pattern


def _prepare_number(value: Any, field: Field, environment: Environment) -> int | float:
    if type(value) not in _NUMBER_TYPES:
        raise ValueError(f"expected a number, got {_show(value)}")
    return value


def _prepare_calendar(value: Any, field: Field, environment: Environment) -> Calendar | None:
    if not isinstance(value, str) or value not in environment.calendars:
        known = ", ".join(environment.calendars) or "none defined"
        raise ValueError(f"expected the id of a calendar (known: {known}), got {_show(value)}")
    return environment.calendars[value]


_UNBOUNDED_REPEATS = (regex_constants.MAX_REPEAT, regex_constants.MIN_REPEAT)
# Inside these the engine never backtracks into an earlier choice, so an outer repetition is harmless.
_NO_BACKTRACK = (regex_constants.POSSESSIVE_REPEAT, regex_constants.ATOMIC_GROUP)


def _nested_repetition(items: Any, inside_unbounded: bool = False, inside_repeat: bool = False) -> str:
    """Describe a pattern shape that backtracks exponentially, or ``""`` when there is none.

    Refused: an unbounded repetition inside another (``(a+)+``, ``(.*)*``); an unbounded repetition inside a
    repeated group (``(a+){10}``); alternatives inside a repetition that can start alike (``(a|a)*``,
    ``(a|aa)+``: the stdlib's parser factors out common prefixes, leaving alternatives that are empty or do
    not start with distinct literal characters). Matching also bounds the text's length.
    """
    for operation, argument in items:
        if operation in _UNBOUNDED_REPEATS:
            _, maximum, body = argument
            unbounded = maximum == regex_constants.MAXREPEAT
            if unbounded and (inside_unbounded or inside_repeat):
                return "an unbounded quantifier inside a repeated group"
            found = _nested_repetition(body, inside_unbounded or unbounded, inside_repeat or maximum > 1)
        elif operation in _NO_BACKTRACK:
            body = argument[2] if operation == regex_constants.POSSESSIVE_REPEAT else argument
            found = _nested_repetition(body)
        elif operation == regex_constants.BRANCH and inside_repeat and _alternatives_overlap(argument[1]):
            found = "alternatives that can match the same text inside a repeated group"
        else:
            found = ""
            for part in _subpatterns(operation, argument):
                found = found or _nested_repetition(part, inside_unbounded, inside_repeat)
        if found:
            return found
    return ""


def _alternatives_overlap(alternatives: list) -> bool:
    """Whether two alternatives may start with the same character (empty ones always may)."""
    first_characters = []
    for alternative in alternatives:
        if not alternative or alternative[0][0] != regex_constants.LITERAL:
            return True
        first_characters.append(alternative[0][1])
    return len(set(first_characters)) != len(first_characters)


def _subpatterns(operation: Any, argument: Any) -> list:
    if operation == regex_constants.SUBPATTERN:
        return [argument[3]]
    if operation == regex_constants.BRANCH:
        return list(argument[1])
    if operation in (regex_constants.ASSERT, regex_constants.ASSERT_NOT):
        return [argument[1]]
    if operation == regex_constants.GROUPREF_EXISTS:
        return [part for part in argument[1:] if part is not None]
    return []


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


def _matches(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
    search = pattern.search
    return lambda value: isinstance(value, str) and search(value, 0, MATCH_TEXT_LIMIT) is not None


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
OPERATOR_NAMES = ("equals", "not_equals", "in", "not_in", "contains", "not_contains", "contains_any_word",
                  "starts_with", "matches", "exists", "not_exists", "gt", "gte", "lt", "lte", "within_hours")


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


def parse_leaf(node: Mapping[str, Any], pointer: str,
               environment: Environment) -> tuple[Field, Operator, Any]:
    """Check a leaf ``{"field", "op", "value"}``; return its field, operator and prepared value.

    Raises :class:`ConditionError` at the pointer of the key that is wrong.
    """
    try:
        field = field_named(node.get("field"))
    except ValueError as error:
        raise ConditionError(f"{pointer}/field", str(error)) from None
    name = node.get("op")
    if name not in field.kind.operators:
        raise ConditionError(f"{pointer}/op", f"operator {_show(name)} does not apply to {field.name}; "
                                              f"expected one of {', '.join(field.kind.operators)}")
    operator = OPERATORS[field.kind.resolve(name)]
    if operator.prepare is None:
        if "value" in node:
            raise ConditionError(f"{pointer}/value", f"{name} takes no value; remove \"value\"")
        return field, operator, None
    if "value" not in node:
        raise ConditionError(pointer, f"{name} needs a \"value\"")
    try:
        return field, operator, operator.prepare(node["value"], field, environment)
    except ValueError as error:
        raise ConditionError(f"{pointer}/value", f"{field.name} {name}: {error}") from None


def describe_leaf(node: Mapping[str, Any]) -> str:
    """A leaf as an admin wrote it, e.g. ``inbox_id in [5, 6]``."""
    text = f"{node.get('field')} {node.get('op')}"
    return f"{text} {_show(node['value'])}" if "value" in node else text


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
    guards = [child.guard for child in children]
    if kind == ALL:
        return min((guard for guard in guards if guard is not None), key=lambda guard: len(guard.values),
                   default=None)
    if guards and all(guard is not None and guard.slot == guards[0].slot for guard in guards):
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


def _all_of(tests: list[Test]) -> Test:
    if not tests:
        return lambda facts: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda facts: first(facts) and second(facts)

    def all_hold(facts: Facts) -> bool:
        for test in tests:
            if not test(facts):
                return False
        return True
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
        for test in tests:
            if test(facts):
                return True
        return False
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

    def compile(self, node: Any, pointer: str,
                skip: Callable[[str], bool] = lambda pointer: False) -> CompiledCondition | None:
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
            return CompiledCondition(NOT, pointer, lambda facts: not child_test(facts), (child,), NOT,
                                     cost=child.cost)
        members = node[kind]
        if not isinstance(members, list):
            if not skip(pointer):
                self.problems.append(ConditionError(f"{pointer}/{kind}", f"expected a list of conditions, "
                                                                         f"got {_show(members)}"))
            return None
        children = [self.compile(member, f"{pointer}/{kind}/{index}", skip)
                    for index, member in enumerate(members)]
        if any(child is None for child in children):
            return None
        tests = [child.test for child in sorted(children, key=lambda child: child.cost)]
        test = _all_of(tests) if kind == ALL else _any_of(tests)
        return CompiledCondition(kind, pointer, test, tuple(children), kind,
                                 cost=sum(child.cost for child in children), guard=_guard_of(kind, children))

    def facts(self, context: MatchContext) -> Facts:
        """Fresh facts for one context; values are computed as the compiled conditions ask for them."""
        return Facts(context, self._computations)

    def _leaf(self, node: Any, pointer: str, skip: Callable[[str], bool]) -> CompiledCondition | None:
        if skip(pointer):
            return None
        if not isinstance(node, Mapping):
            self.problems.append(ConditionError(pointer, f"expected a condition object, got {_show(node)}"))
            return None
        try:
            field, operator, prepared = parse_leaf(node, pointer, self.environment)
        except ConditionError as error:
            self.problems.append(error)
            return None
        environment, multiple = self.environment, field.kind.multiple
        value_slot = self._slot(("field", field.name, operator.form),
                                field_value(field, operator.form, environment))
        guard = None
        if operator.name in ("equals", "in"):
            expected = prepared[1]
            guard = Guard(value_slot, multiple, expected if operator.name == "in" else frozenset({expected}))
        return CompiledCondition(LEAF, pointer, self._leaf_closure(field, operator, prepared, node.get("value"),
                                                                   value_slot),
                                 text=describe_leaf(node), read=lambda context: field.read(context, environment),
                                 cost=(8 if operator.costly else 1) * (2 if multiple else 1), guard=guard)

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
            for item in (value if multiple else (value,)):
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


# --- explanations -------------------------------------------------------------------------------------

_SHOWN_TEXT_LENGTH = 120


def _show_actual(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str) and len(value) > _SHOWN_TEXT_LENGTH:
        value = value[:_SHOWN_TEXT_LENGTH] + "…"
    elif isinstance(value, tuple):
        value = [item[:_SHOWN_TEXT_LENGTH] + "…" if isinstance(item, str) and len(item) > _SHOWN_TEXT_LENGTH
                 else item for item in value]
    elif hasattr(value, "isoformat"):
        value = value.isoformat()
    return _show(value)


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
        return ConditionResult(LEAF, condition.pointer, condition.test(facts), condition.text,
                               condition.read(facts.context))
    results = []
    for child in condition.children:
        results.append(explain(child, facts))
        if results[-1].matched == (condition.kind == ANY):  # the member that decides an all or an any
            break
    return ConditionResult(condition.kind, condition.pointer, condition.test(facts), condition.text,
                           children=tuple(results))
