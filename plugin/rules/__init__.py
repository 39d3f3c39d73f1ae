"""The rule DSL: JSON rule files -> calendars, policies and the rules that choose a policy (DESIGN.md 5, 10.1).

``load_rules(directory)`` builds a :class:`RuleSet` (or raises :class:`RulesError` listing every problem
as FILE:LINE: JSON-pointer: message); ``RuleSet.match(context)`` is the first matching rule;
``check_rules`` lists errors and warnings for ``sla-plugin rules check``; :class:`RulesHolder` hot-reloads
a directory for long-running processes. Format and semantics: docs/rules.md.
"""
from plugin.rules.check import check_rules
from plugin.rules.evaluate import ConditionResult
from plugin.rules.load import load_rules
from plugin.rules.model import LabelSpec, RuleExplanation, RuleMatch, RuleProblem, RuleSet, RulesError
from plugin.rules.reload import RulesHolder

__all__ = ["ConditionResult", "LabelSpec", "RuleExplanation", "RuleMatch", "RuleProblem", "RuleSet",
           "RulesError", "RulesHolder", "check_rules", "load_rules"]
