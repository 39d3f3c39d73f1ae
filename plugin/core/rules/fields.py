"""Rule conditions: the fields they read, the operators they apply, and their compilation into closures.

One table of operators (:data:`OPERATORS`) and one leaf builder (:func:`leaf_test`) define what every leaf
means; :class:`ConditionCompiler` turns a rule file's condition into closures once, at load, and
:func:`interpret` evaluates the same JSON straight from the tree (the benchmark's baseline and a cross-check
in the tests). Both go through the same table, so the two paths cannot disagree.

Semantics (docs/contracts.md section 1, decisions in docs/rules.md):

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
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from plugin.core.calendar import Calendar
from plugin.core.events import INCOMING, OUTGOING, STATUSES, MatchContext

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


def show_value(value: Any) -> str:
    """A rule value as an admin wrote it (JSON), for messages."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


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
LABELS = FieldKind(
    "labels",
    _EQUALITY + ("contains", "not_contains"),
    multiple=True,
    aliases=(("contains", "equals"), ("not_contains", "not_equals")),
)
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
        for prefix, reader in (
            (CONVERSATION_ATTRIBUTE_PREFIX, _conversation_attribute),
            (CONTACT_ATTRIBUTE_PREFIX, _contact_attribute),
        ):
            if name.startswith(prefix) and len(name) > len(prefix):
                return Field(name, ATTRIBUTE, reader(name[len(prefix) :]))
    raise ValueError(
        f"unknown field {show_value(name)}; expected one of {', '.join(FIELDS)}, "
        f"custom_attributes.<key> or contact.custom_attributes.<key>"
    )


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
        return lambda facts: (
            None if (values := read(facts.context, environment)) is None else tuple(map(convert, values))
        )
    return lambda facts: None if (value := read(facts.context, environment)) is None else convert(value)
