"""``rules check``'s core: every problem of a rules directory, errors and warnings, without raising."""
from __future__ import annotations

from pathlib import Path

from plugin.rules.load import build_rule_set, read_sources
from plugin.rules.model import ERROR, RuleProblem, RulesError


def check_rules(directory: str | Path) -> list[RuleProblem]:
    """Every problem in *directory*'s rule files (errors and warnings such as unreachable rules), in file
    and line order; an empty list means the files load cleanly. Never raises for bad files."""
    try:
        sources = read_sources(directory)
    except RulesError as error:
        return list(error.problems)
    return build_rule_set(sources)[1]


def has_errors(problems: list[RuleProblem]) -> bool:
    """Whether *problems* would stop the rules from loading (warnings alone do not)."""
    return any(problem.severity == ERROR for problem in problems)
