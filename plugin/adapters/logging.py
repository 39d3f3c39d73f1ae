"""Structured logs: one JSON object per line on standard error, secrets masked.

Context such as ``delivery_id``, ``conversation_id`` or ``account_id`` is passed with ``extra=`` and becomes
fields of the JSON object. Code must not log secrets in the first place; the handler's masking of every
configured secret value is defence in depth. It masks the finished line rather than the record, because a
record is shared with every other handler (pytest's capture among them, which must see what code logged).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from plugin.adapters.settings import MASK

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is written as a field.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_HANDLER_NAME = "sla-json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, the ``extra`` fields, any traceback.

    Every value of *secrets* found in the line is replaced by a mask, as written and as JSON escapes it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        spellings = set()
        for secret in secrets:
            if secret:
                spellings |= {secret, json.dumps(secret, ensure_ascii=False)[1:-1]}
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted(spellings, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self.mask(json.dumps(entry, default=str, ensure_ascii=False))

    def mask(self, text: str) -> str:
        """*text* with every secret replaced by a mask."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class _StandardErrorHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not when the handler was made (a
    test runner or a process manager may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # StreamHandler.__init__ assigns it; the property always answers the current sys.stderr


def configure_logging(level: str | int = "INFO", secrets: Iterable[str] = ()) -> logging.Handler:
    """Send every log record at *level* or above to standard error as JSON, masking *secrets*.

    Calling it again replaces the handler it installed before (an app factory may run several times).
    Returns the handler.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = _StandardErrorHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter(secrets))
    root.addHandler(handler)
    root.setLevel(level)
    return handler
