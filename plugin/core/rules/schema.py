"""The published JSON Schema of rule files (``rules/sla-rules.schema.json``) and its validator.

Rule files are validated against the schema shipped with the plugin, not a copy in the admin's folder, so
an old or missing copy there cannot loosen the checks. The schema's non-standard ``errorMessage`` keyword
(which editors such as VS Code also show) replaces jsonschema's generic message where one is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from plugin.core.rules.source import escape_token, pointer_of
from plugin.resources import shipped

SCHEMA_FILE_NAME = "sla-rules.schema.json"


@cache
def rules_schema() -> dict[str, Any]:
    """The rule-file JSON Schema the plugin ships (part of its code, like a module), read once."""
    return json.loads(shipped("rules", SCHEMA_FILE_NAME).read_text(encoding="utf-8"))


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(rules_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_problems(document: Any) -> Iterator[tuple[str, str]]:
    """``(JSON pointer, message)`` for every place *document* breaks the schema.

    An unexpected key is reported at the key itself, with the keys that are allowed there; a value of
    the wrong type is reported once, however many branches of the schema expected another type.
    """
    mistyped: set[str] = set()
    for error in _validator().iter_errors(document):
        pointer = pointer_of(error.absolute_path)
        if error.validator == "type":
            if pointer in mistyped:
                continue
            mistyped.add(pointer)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            assert isinstance(error.schema, dict)  # the schema object that holds additionalProperties
            yield from _unexpected_keys(error.schema, error.instance, pointer)
            continue
        if "propertyNames" in error.relative_schema_path:
            pointer = f"{pointer}/{escape_token(str(error.instance))}"
        message = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
        yield pointer, message or error.message


def _unexpected_keys(schema: dict[str, Any], instance: dict[str, Any], pointer: str) -> Iterator[tuple[str, str]]:
    allowed = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    expected = f"expected one of {', '.join(allowed)}" if allowed else "no keys are allowed here"
    for key in instance:
        if key not in allowed and not any(re.search(pattern, key) for pattern in patterns):
            yield f"{pointer}/{escape_token(key)}", f"unknown key {json.dumps(key)}; {expected}"
