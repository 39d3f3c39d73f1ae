"""Hot reload of the rule files for long-running processes (web app, workers).

:class:`RulesHolder` re-reads the rules directory when the files' content hash changes, checked at most
once per ``min_interval_seconds``. A set that fails to load never replaces the one in force: the last good
set stays live, the error is kept for ``/healthz`` and logged once per broken content (docs/rules.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plugin.adapters.manifest import manifest_labels
from plugin.core.events import format_time
from plugin.core.rules.build import RuleSource, build_rule_set, content_hash
from plugin.core.rules.model import ERROR, RuleProblem, RulesError, RuleSet

logger = logging.getLogger("plugin.rules")

MAX_RULE_FILE_BYTES = 1024 * 1024
"""A rule file larger than this is refused unread (the shipped files are a few KB)."""


def is_rule_file(path: Path) -> bool:
    """Whether *path* is a rule file: ``*.json``, not ``*.schema.json``, not hidden."""
    return (
        path.suffix == ".json"
        and not path.name.endswith(".schema.json")
        and not path.name.startswith(".")
        and path.is_file()
    )


def read_sources(directory: str | Path) -> list[RuleSource]:
    """The rule files of *directory* in file-name order; raises :class:`RulesError` if it is not a folder."""
    folder = Path(directory)
    if not folder.is_dir():
        raise RulesError(
            [
                RuleProblem(
                    str(folder),
                    0,
                    "",
                    "rules directory not found (set SLA_RULES_DIR or pass the folder of the rule files)",
                )
            ]
        )
    sources = []
    for path in sorted((path for path in folder.iterdir() if is_rule_file(path)), key=lambda path: path.name):
        try:
            size = path.stat().st_size
            if size > MAX_RULE_FILE_BYTES:
                # Not read at all: an 11 MB file took 20 s and 561 MB of memory to load.
                sources.append(
                    RuleSource(
                        str(path),
                        path.name,
                        b"",
                        f"the file is {size:,} bytes, more than the {MAX_RULE_FILE_BYTES:,} a rule file may have; "
                        f"split it into several files",
                    )
                )
                continue
            sources.append(RuleSource(str(path), path.name, path.read_bytes()))
        except OSError as error:
            sources.append(RuleSource(str(path), path.name, b"", f"cannot read the file: {error.strerror}"))
    return sources


def build_rules(sources: list[RuleSource]) -> tuple[RuleSet | None, list[RuleProblem]]:
    """:func:`build_rule_set` with this process's environment and manifest.json's status labels."""
    return build_rule_set(sources, os.environ, default_labels=manifest_labels())


def load_rules(directory: str | Path) -> RuleSet:
    """Load every rule file of *directory*; raises :class:`RulesError` listing every problem found."""
    rule_set, problems = build_rules(read_sources(directory))
    if rule_set is None:
        raise RulesError(problems)
    return rule_set


def check_directory(directory: str | Path) -> tuple[RuleSet | None, list[RuleProblem]]:
    """The rule set of *directory* (None when it has errors) and every problem found, in file and line
    order. Never raises for bad files."""
    try:
        sources = read_sources(directory)
    except RulesError as error:
        return None, list(error.problems)
    return build_rules(sources)


def check_rules(directory: str | Path) -> list[RuleProblem]:
    """Every problem in *directory*'s rule files: errors, and warnings such as rules that can never match.
    An empty list means the files load cleanly."""
    return check_directory(directory)[1]


class RulesHolder:
    """The rule set in force for one rules directory, reloaded when the files change.

    Safe to share between threads. Built without raising: when the files are broken from the start,
    :meth:`current` raises :class:`RulesError` until they are fixed (there is no good set to fall back on),
    while :meth:`status` reports the error.
    """

    def __init__(
        self, directory: str | Path, min_interval_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
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
        self._refresh_when_due()
        if self._live is None:
            raise RulesError(self._problems)
        return self._live

    def refresh(self) -> None:
        """Re-read the files now if they changed, whatever the interval (an operator's reload, tests)."""
        with self._lock:
            self._checked_at = self._clock()
            self._refresh()

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: whether the live set is the files' current content, its hash, when, the error.

        Re-reads the folder first when due, as :meth:`current` does: a process that never evaluates rules
        (the web app) still shows a broken or changed folder.
        """
        self._refresh_when_due()
        return {
            "ok": self._live is not None and self.error is None,
            "content_hash": None if self._live is None else self._live.content_hash,
            "loaded_at": format_time(self._loaded_at),
            "error": self.error,
        }

    def _refresh_when_due(self) -> None:
        if self._clock() - self._checked_at >= self.min_interval_seconds:
            with self._lock:
                if self._clock() - self._checked_at >= self.min_interval_seconds:
                    self._checked_at = self._clock()
                    self._refresh()

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
        rule_set, problems = build_rules(sources)
        if rule_set is None:
            self._fail(digest, problems)
            return
        self._live, self._loaded_at = rule_set, datetime.now(UTC)
        self.error, self._failed_hash, self._problems = None, None, []
        logger.info(
            "rules loaded from %s: %d rules, %d policies, content hash %s",
            self.directory,
            len(rule_set.rules),
            len(rule_set.policies),
            rule_set.content_hash,
        )
        for warning in rule_set.warnings:
            logger.warning("rules: %s", warning)

    def _fail(self, digest: str, problems: list[RuleProblem]) -> None:
        if digest == self._failed_hash:
            return
        self._failed_hash, self._problems = digest, problems
        errors = [problem for problem in problems if problem.severity == ERROR] or problems
        self.error = "; ".join(str(problem) for problem in errors)
        kept = (
            "no earlier rules to keep"
            if self._live is None
            else f"keeping the rules loaded at {format_time(self._loaded_at)} ({self._live.content_hash[:12]})"
        )
        logger.error("rules in %s not loaded, %s: %s", self.directory, kept, self.error)
