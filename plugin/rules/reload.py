"""Hot reload of the rule files for long-running processes (web app, workers).

:class:`RulesHolder` re-reads the rules directory when the files' content hash changes, checked at most
once per ``min_interval_seconds``. A set that fails to load never replaces the one in force: the last good
set stays live, the error is kept for ``/healthz`` and logged once per broken content (DESIGN.md 5).
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from plugin.events import format_time
from plugin.rules.load import build_rule_set, content_hash, read_sources
from plugin.rules.model import ERROR, RuleProblem, RuleSet, RulesError

logger = logging.getLogger("plugin.rules")


class RulesHolder:
    """The rule set in force for one rules directory, reloaded when the files change.

    Safe to share between threads. Built without raising: when the files are broken from the start,
    :meth:`current` raises :class:`RulesError` until they are fixed (there is no good set to fall back on),
    while :meth:`status` reports the error.
    """

    def __init__(self, directory: str | Path, min_interval_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = Path(directory)
        self.min_interval_seconds = min_interval_seconds
        self.error: str | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._live: RuleSet | None = None
        self._loaded_at: datetime | None = None
        self._problems: list[RuleProblem] = []
        self._failed_hash: str | None = None
        self._checked_at = clock()
        self._refresh()

    def current(self) -> RuleSet:
        """The rule set in force, re-read first when the interval has passed and the files changed."""
        if self._clock() - self._checked_at >= self.min_interval_seconds:
            with self._lock:
                if self._clock() - self._checked_at >= self.min_interval_seconds:
                    self._checked_at = self._clock()
                    self._refresh()
        if self._live is None:
            raise RulesError(self._problems)
        return self._live

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: whether the live set is the files' current content, its hash, when, the error."""
        return {"ok": self._live is not None and self.error is None,
                "content_hash": None if self._live is None else self._live.content_hash,
                "loaded_at": format_time(self._loaded_at),
                "error": self.error}

    def _refresh(self) -> None:
        try:
            sources = read_sources(self.directory)
        except RulesError as error:
            self._fail(f"unreadable: {error}", error.problems)
            return
        digest = content_hash(sources)
        if self._live is not None and digest == self._live.content_hash:
            self.error = None
            self._failed_hash = None
            return
        if digest == self._failed_hash:
            return
        rule_set, problems = build_rule_set(sources)
        if rule_set is None:
            self._fail(digest, problems)
            return
        self._live, self._loaded_at = rule_set, datetime.now(timezone.utc)
        self.error, self._failed_hash, self._problems = None, None, []
        logger.info("rules loaded from %s: %d rules, %d policies, content hash %s", self.directory,
                    len(rule_set.rules), len(rule_set.policies), rule_set.content_hash)
        for warning in rule_set.warnings:
            logger.warning("rules: %s", warning)

    def _fail(self, digest: str, problems: list[RuleProblem]) -> None:
        if digest == self._failed_hash:
            return
        self._failed_hash, self._problems = digest, problems
        errors = [problem for problem in problems if problem.severity == ERROR] or problems
        self.error = "; ".join(str(problem) for problem in errors)
        kept = "no earlier rules to keep" if self._live is None else \
            f"keeping the rules loaded at {format_time(self._loaded_at)} ({self._live.content_hash[:12]})"
        logger.error("rules in %s not loaded, %s: %s", self.directory, kept, self.error)
