"""The regular expressions of `matches`: written in Python's syntax, run by RE2, which matches in time linear
in the text whatever the expression (no backtracking), so no expression in a rule file can stall a worker.

An expression must compile with Python's ``re`` (the syntax rule authors know, and its precise error
messages) and with RE2, which lacks what needs backtracking: lookahead and lookbehind, backreferences,
atomic groups and possessive quantifiers, conditionals. ``\\d``, ``\\w`` and ``\\s`` (and their negations)
keep Python's Unicode meaning: they are rewritten into RE2's Unicode classes before compiling, and so is
``$``, which in Python also matches before a newline that ends the text. ``\\b`` and ``\\B`` are RE2's,
which count only ASCII letters, digits and ``_`` as word characters.
"""

from __future__ import annotations

import re
from typing import Any

import re2

# Python's classes for str patterns, as RE2 Unicode classes: the inside of a bracket expression.
_DIGIT = r"\p{Nd}"
_WORD = r"\p{L}\p{N}_"
_SPACE = r"\t\n\v\f\r\x1c-\x1f\x{85}\p{Z}"
_OUTSIDE = {"d": _DIGIT, "w": f"[{_WORD}]", "s": f"[{_SPACE}]", "D": r"\P{Nd}", "W": f"[^{_WORD}]", "S": f"[^{_SPACE}]"}
_INSIDE = {"d": _DIGIT, "w": _WORD, "s": _SPACE, "D": r"\P{Nd}"}

# Python's "$" outside multi-line mode: the end, or before a newline that ends the text. RE2 has no lookahead;
# consuming that newline changes nothing for a search, unless the expression itself matches a newline after
# its "$" (which only a newline at the very end can satisfy).
_END = r"(?:\n?\z)"
# An inline flag group turning on multi-line mode, where "$" means the same in both engines.
_MULTILINE = re.compile(r"\(\?[a-zA-Z]*m[a-zA-Z]*[:)]")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused expression is reported to the rule author, not to standard error


def compile_pattern(expression: str) -> Any:
    """Compile a rule's regular expression for matching; raises ``ValueError`` with the reason when Python's
    ``re`` does not accept it or RE2 cannot run it."""
    try:
        re.compile(expression)
    except re.error as error:
        raise ValueError(f"regular expression does not compile: {error}") from None
    try:
        return re2.compile(_for_re2(expression), options=_OPTIONS)
    except re2.error as error:
        reason = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else str(error)
        raise ValueError(
            f"regular expression uses what the linear-time matcher (RE2) does not have ({reason}): lookahead "
            f"and lookbehind, backreferences, atomic groups, possessive quantifiers and conditionals are not "
            f"available"
        ) from None


def _for_re2(expression: str) -> str:
    """*expression* with Python's Unicode ``\\d \\w \\s \\D \\W \\S``, ``\\uXXXX`` and ``\\Z`` spelled as RE2
    spells them (and ``$`` as Python means it); everything else is copied."""
    end = "$" if _MULTILINE.search(expression) else _END
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(expression):
        character = expression[index]
        if character == "\\" and index + 1 < len(expression):
            escaped = expression[index + 1]
            index += 2
            if escaped in _OUTSIDE:
                if in_class and escaped not in _INSIDE:
                    raise ValueError(
                        f"regular expression has \\{escaped} inside [...], which the linear-time matcher (RE2) "
                        f"cannot combine with other characters; write a negated class [^...] instead"
                    )
                out.append(_INSIDE[escaped] if in_class else _OUTSIDE[escaped])
            elif escaped in "uU":
                width = 4 if escaped == "u" else 8
                out.append(f"\\x{{{expression[index : index + width]}}}")
                index += width
            elif escaped == "Z":
                out.append(r"\z")
            else:
                out.append("\\" + escaped)
            continue
        if in_class:
            in_class = character != "]"
            out.append(character)
        elif character == "[":
            in_class = True
            out.append(character)
            # A "]" first in the class (after an optional "^") is a literal, not the end.
            if expression.startswith("^", index + 1):
                out.append("^")
                index += 1
            if expression.startswith("]", index + 1):
                out.append(r"\]")
                index += 1
        else:
            out.append(end if character == "$" else character)
        index += 1
    return "".join(out)
