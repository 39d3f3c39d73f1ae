"""Which regular expressions `matches` refuses: shapes that backtrack exponentially (a repetition inside
an unbounded repetition, overlapping alternatives under repetition), found on the stdlib's own parse tree.
"""

from __future__ import annotations

# The stdlib's own parse tree, to find nested repetition (typeshed does not describe re's private modules).
from re import _constants as regex_constants  # type: ignore[attr-defined]
from typing import Any

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
