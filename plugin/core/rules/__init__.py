"""The rule language (pure): rule files' JSON -> calendars, policies and the rules that choose a policy.

:func:`build_rule_set` turns rule sources into a :class:`RuleSet` (or every problem found, as FILE:LINE:
JSON-pointer: message); ``RuleSet.match(context)`` is the first matching rule. Reading the files and hot
reload live in plugin/adapters/rule_files.py. Format and semantics: docs/rules.md.
"""

from plugin.core.rules.build import RuleSource, build_rule_set, content_hash
from plugin.core.rules.explain import ConditionResult
from plugin.core.rules.model import LabelSpec, RuleExplanation, RuleMatch, RuleProblem, RulesError, RuleSet

__all__ = [
    "ConditionResult",
    "LabelSpec",
    "RuleExplanation",
    "RuleMatch",
    "RuleProblem",
    "RuleSet",
    "RuleSource",
    "RulesError",
    "build_rule_set",
    "content_hash",
]
