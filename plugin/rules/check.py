"""``rules check``'s core: every problem of a rules directory, errors and warnings, without raising."""
from __future__ import annotations

from pathlib import Path

from plugin.rules.load import build_rule_set, read_sources
from plugin.rules.model import RuleProblem, RuleSet, RulesError


def check_directory(directory: str | Path) -> tuple[RuleSet | None, list[RuleProblem]]:
    """The rule set of *directory* (None when it has errors) and every problem found, in file and line
    order. Never raises for bad files."""
    try:
        sources = read_sources(directory)
    except RulesError as error:
        return None, list(error.problems)
    return build_rule_set(sources)


def check_rules(directory: str | Path) -> list[RuleProblem]:
    """Every problem in *directory*'s rule files: errors, and warnings such as rules that can never match.
    An empty list means the files load cleanly."""
    return check_directory(directory)[1]
