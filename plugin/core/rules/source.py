"""A rule file's JSON with the line of every value, so problems can say FILE:LINE: JSON-pointer.

The standard ``json`` module parses and reports syntax errors with its own line and column; a second,
position-tracking pass over the (then known to be valid) text records where each JSON pointer starts and
finds keys that occur twice in one object, which ``json`` would silently collapse to the last one.
Pure: works on text, no file access.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]  # public in json.decoder, missing from typeshed
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")


def _match_end(pattern: re.Pattern[str], text: str, index: int) -> int:
    """Where ``pattern`` matched at ``index`` ends; the scanner reads text json.loads accepted, so it matches."""
    match = pattern.match(text, index)
    assert match is not None
    return match.end()


def escape_token(token: str) -> str:
    """One JSON-pointer reference token (RFC 6901: ``~`` is ``~0``, ``/`` is ``~1``)."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer_of(path: Any) -> str:
    """The JSON pointer of a sequence of keys and indexes."""
    return "".join("/" + escape_token(str(part)) for part in path)


@dataclass(frozen=True)
class DuplicateKey:
    """A key that occurs twice in one JSON object: where the second occurrence is."""

    pointer: str
    line: int


@dataclass(frozen=True)
class JsonDocument:
    """Parsed JSON plus the 1-based line where each pointer's member key (or array item) starts."""

    data: Any
    lines: dict[str, int]
    duplicate_keys: tuple[DuplicateKey, ...]

    def line_of(self, pointer: str) -> int:
        """The line of *pointer*, or of its nearest ancestor that exists in the document."""
        while pointer not in self.lines and pointer:
            pointer = pointer.rpartition("/")[0]
        return self.lines.get(pointer, 1)


def _reject_constant(name: str) -> Any:
    # json accepts NaN and Infinity by default; they are not JSON and no rule value needs them.
    raise ValueError(f"{name} is not valid JSON")


def parse_document(text: str) -> JsonDocument:
    """Parse *text*; raises :class:`json.JSONDecodeError` (with ``lineno``) or ``ValueError`` when invalid."""
    data = json.loads(text, parse_constant=_reject_constant)
    return _PositionScanner(text).scan(data)


class _PositionScanner:
    """Walks valid JSON text, recording the line of every pointer and every repeated key."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0] + [found.end() for found in re.finditer("\n", text)]
        self.lines: dict[str, int] = {}
        self.duplicates: list[DuplicateKey] = []

    def scan(self, data: Any) -> JsonDocument:
        start = self._skip(0)
        self.lines[""] = self._line(start)
        self._value(start, "")
        return JsonDocument(data, self.lines, tuple(self.duplicates))

    def _line(self, index: int) -> int:
        return bisect.bisect_right(self.line_starts, index)

    def _skip(self, index: int) -> int:
        return _match_end(_WHITESPACE, self.text, index)

    def _value(self, index: int, pointer: str) -> int:
        """Scan the value starting at *index*; return the index just after it."""
        character = self.text[index]
        if character == "{":
            return self._object(index, pointer)
        if character == "[":
            return self._array(index, pointer)
        if character == '"':
            return scanstring(self.text, index + 1)[1]
        return _match_end(_SCALAR, self.text, index)

    def _object(self, index: int, pointer: str) -> int:
        seen: set[str] = set()
        index = self._skip(index + 1)
        if self.text[index] == "}":
            return index + 1
        while True:
            key_start = index
            key, index = scanstring(self.text, index + 1)
            member = f"{pointer}/{escape_token(key)}"
            line = self._line(key_start)
            if key in seen:
                self.duplicates.append(DuplicateKey(member, line))
            else:
                seen.add(key)
                self.lines[member] = line
            index = self._skip(self._skip(index) + 1)  # past the colon
            index = self._skip(self._value(index, member))
            if self.text[index] == "}":
                return index + 1
            index = self._skip(index + 1)  # past the comma

    def _array(self, index: int, pointer: str) -> int:
        index = self._skip(index + 1)
        if self.text[index] == "]":
            return index + 1
        position = 0
        while True:
            item = f"{pointer}/{position}"
            self.lines[item] = self._line(index)
            index = self._skip(self._value(index, item))
            if self.text[index] == "]":
                return index + 1
            index = self._skip(index + 1)
            position += 1
