"""Rule files -> a :class:`RuleSet`, or every problem found, each located as FILE:LINE: JSON-pointer.

``rules/*.json`` except ``*.schema.json`` (and hidden files, as a shell glob would) are read in file-name
order (docs/contracts.md section 1). Checks run in layers: JSON syntax, then the JSON Schema, then the
meaning (ids that exist and are unique, calendars, durations, conditions, labels, rules that can never
match). A part the schema already rejected is not checked again, so each mistake is reported once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plugin.core.calendar import Calendar, CalendarError, parse_calendar
from plugin.core.policy import (
    METRICS,
    Policy,
    PolicyError,
    parse_duration,
    parse_warn_before,
    policy_from_snapshot,
    policy_snapshot,
)
from plugin.core.rules.conditions import CompiledCondition, ConditionCompiler, constant_result
from plugin.core.rules.fields import Environment, fold
from plugin.core.rules.model import (
    ERROR,
    WARNING,
    Destination,
    LabelSpec,
    PrioritizeRule,
    Rule,
    RuleProblem,
    RuleSet,
)
from plugin.core.rules.schema import schema_problems
from plugin.core.rules.source import JsonDocument, escape_token, parse_document

LABEL_STATUSES = ("on_track", "at_risk", "missed", "hit")  # hit is optional: no default in manifest.json
_CALENDAR_MESSAGE_PATH = re.compile(r"^(?P<path>(?:timezone|hours|holidays|overrides)(?:\.[\w-]+)?(?:\[\d+\])?): ")


@dataclass(frozen=True)
class RuleSource:
    """One rule file as read: the path problems name, its file name, its bytes (or why it was unreadable)."""

    path: str
    name: str
    content: bytes
    read_error: str | None = None


def content_hash(sources: list[RuleSource]) -> str:
    """sha256 over the files' names and contents (length-prefixed, so no two listings hash alike)."""
    digest = hashlib.sha256()
    for source in sources:
        name = source.name.encode()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(source.content).to_bytes(8, "big") + source.content)
    return digest.hexdigest()


@dataclass
class _File:
    source: RuleSource
    order: int
    document: JsonDocument | None = None
    schema_pointers: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        data = self.document.data if self.document is not None else None
        return data if isinstance(data, dict) else {}

    def section(self, name: str, kind: type) -> Any:
        value = self.data.get(name)
        return value if isinstance(value, kind) else kind()

    def has_pointer(self, pointer: str) -> bool:
        """Whether the document has a value at *pointer*."""
        return self.document is not None and pointer in self.document.lines

    def line_of(self, pointer: str) -> int:
        return self.document.line_of(pointer) if self.document is not None else 1

    def schema_rejected(self, pointer: str) -> bool:
        """Whether the schema reported a problem at *pointer* or inside it."""
        return any(found == pointer or found.startswith(pointer + "/") for found in self.schema_pointers)


@dataclass(frozen=True)
class _CompiledRule:
    """A rule whose condition compiled, for the reachability check."""

    file: _File
    pointer: str
    name: Any
    condition: CompiledCondition


@dataclass(frozen=True)
class _Definition:
    """Where a calendar or policy id is defined."""

    file: _File
    pointer: str
    spec: Any

    @property
    def place(self) -> str:
        return f"{self.file.source.path}:{self.file.line_of(self.pointer)}"


class _Builder:
    """One pass over a directory's rule files, collecting problems as it goes."""

    def __init__(self, sources: list[RuleSource], default_labels: Mapping[str, LabelSpec]) -> None:
        self.files = [_File(source, order) for order, source in enumerate(sources)]
        self.default_labels = default_labels
        self.problems: list[tuple[int, RuleProblem]] = []

    def report(self, file: _File, pointer: str, message: str, severity: str = ERROR, line: int | None = None) -> None:
        line = file.line_of(pointer) if line is None else line
        self.problems.append((file.order, RuleProblem(file.source.path, line, pointer, message, severity)))

    def sorted_problems(self) -> list[RuleProblem]:
        ordered = sorted(self.problems, key=lambda item: (item[0], item[1].line, item[1].pointer))
        return [problem for _, problem in ordered]

    # --- layers -------------------------------------------------------------------------------------

    def parse(self) -> None:
        for file in self.files:
            source = file.source
            if source.read_error is not None:
                self.report(file, "", source.read_error)
                continue
            try:
                file.document = parse_document(source.content.decode("utf-8-sig"))
            except UnicodeDecodeError as error:
                self.report(file, "", f"not UTF-8 text (byte {error.start}): save the file as UTF-8")
            except json.JSONDecodeError as error:
                self.report(file, "", f"not valid JSON: {error.msg} (column {error.colno})", line=error.lineno)
            except RecursionError:
                self.report(file, "", "not usable JSON: nested too deeply")
            except ValueError as error:  # NaN or Infinity
                self.report(file, "", f"not valid JSON: {error}")
            else:
                for duplicate in file.document.duplicate_keys:
                    self.report(
                        file,
                        duplicate.pointer,
                        "this key occurs twice in one object; JSON keeps only the last, so remove or rename one",
                        line=duplicate.line,
                    )

    def validate(self) -> None:
        for file in self.files:
            if file.document is None:
                continue
            for pointer, message in schema_problems(file.document.data):
                file.schema_pointers.append(pointer)
                self.report(file, pointer, message)

    def definitions(self, section: str, what: str) -> dict[str, _Definition]:
        """Every id of *section* across files; a repeated id is reported where it occurs again."""
        found: dict[str, _Definition] = {}
        for file in self.files:
            for identifier, spec in file.section(section, dict).items():
                pointer = f"/{section}/{escape_token(identifier)}"
                if identifier in found:
                    self.report(
                        file,
                        pointer,
                        f"{what} {identifier!r} is already defined at "
                        f"{found[identifier].place}; ids are unique across rule files",
                    )
                    continue
                found[identifier] = _Definition(file, pointer, spec)
        return found

    def calendars(self, definitions: dict[str, _Definition]) -> dict[str, Calendar | None]:
        calendars: dict[str, Calendar | None] = {}
        for identifier, definition in definitions.items():
            calendars[identifier] = None
            if definition.file.schema_rejected(definition.pointer):
                continue
            try:
                calendars[identifier] = parse_calendar(definition.spec)
            except CalendarError as error:
                self.report(definition.file, *self._calendar_problem(definition, str(error)))
        return calendars

    @staticmethod
    def _calendar_problem(definition: _Definition, message: str) -> tuple[str, str]:
        """Point a calendar error at the key its message names (``hours.mon[0]: ...``) when there is one."""
        found = _CALENDAR_MESSAGE_PATH.match(message)
        if found:
            parts = re.split(r"[.\[\]]+", found.group("path").rstrip("]"))
            pointer = definition.pointer + "".join(f"/{escape_token(part)}" for part in parts)
            if definition.file.has_pointer(pointer):
                return pointer, message[found.end() :]
        return definition.pointer, message

    def policies(
        self,
        definitions: dict[str, _Definition],
        calendar_definitions: dict[str, _Definition],
        calendars: Mapping[str, Calendar | None],
    ) -> dict[str, Policy]:
        policies = {}
        for identifier, definition in definitions.items():
            file, pointer, raw = definition.file, definition.pointer, definition.spec
            if file.schema_rejected(pointer):
                continue
            usable = True
            calendar_id = raw.get("calendar")
            if calendar_id is not None and calendar_id not in calendars:
                known = ", ".join(calendars) or "none defined"
                self.report(file, f"{pointer}/calendar", f"unknown calendar {calendar_id!r}; known: {known}")
                usable = False
            elif calendar_id is not None and calendars[calendar_id] is None:
                usable = False  # the calendar's own problem is reported on the calendar
            for key, parse in [(metric, parse_duration) for metric in METRICS] + [("warn_before", parse_warn_before)]:
                if key in raw:
                    try:
                        parse(raw[key])
                    except PolicyError as error:
                        self.report(file, f"{pointer}/{key}", str(error))
                        usable = False
            if not usable:
                continue
            calendar_spec = None if calendar_id is None else calendar_definitions[calendar_id].spec
            try:
                policies[identifier] = policy_from_snapshot(policy_snapshot(identifier, raw, calendar_spec))
            except (PolicyError, CalendarError) as error:
                self.report(file, pointer, str(error))
        return policies

    def labels(self) -> dict[str, LabelSpec]:
        labels = dict(self.default_labels)
        owner: _File | None = None
        for file in self.files:
            if "labels" not in file.data:
                continue
            if owner is not None:
                self.report(
                    file,
                    "/labels",
                    f"only one rule file may have a labels section; {owner.source.path} already has one",
                )
                continue
            owner = file
            if file.schema_rejected("/labels"):
                continue
            for status, spec in file.data["labels"].items():
                default = labels.get(status) or LabelSpec(spec["title"], "#1565C0")
                labels[status] = LabelSpec(
                    spec["title"], spec.get("color", default.color), spec.get("description", default.description)
                )
            statuses_by_title: dict[str, str] = {}
            for status in (status for status in LABEL_STATUSES if status in labels):
                title = fold(labels[status].title)
                if title in statuses_by_title:
                    pointer = f"/labels/{status}/title"
                    self.report(
                        file,
                        pointer if file.has_pointer(pointer) else "/labels",
                        f"title {labels[status].title!r} is also the {statuses_by_title[title]} label's; "
                        f"each status needs its own label",
                    )
                statuses_by_title.setdefault(title, status)
        return labels

    def destinations(
        self, definitions: dict[str, _Definition], environ: Mapping[str, str] | None
    ) -> dict[str, Destination]:
        """The notification destinations; with *environ*, a variable they name that is unset is a warning."""
        destinations = {}
        for identifier, definition in definitions.items():
            if definition.file.schema_rejected(definition.pointer):
                continue
            raw = definition.spec
            destination = Destination(
                identifier, raw["type"], raw["url_env"], raw.get("secret_env"), raw.get("name", identifier)
            )
            destinations[identifier] = destination
            if destination.type == "slack" and destination.secret_env:
                self.report(
                    definition.file,
                    f"{definition.pointer}/secret_env",
                    "Slack incoming webhooks are not signed; secret_env is used by webhook destinations only",
                    WARNING,
                )
            for key in ("url_env", "secret_env"):
                name = raw.get(key)
                if environ is not None and name and not environ.get(name):
                    self.report(
                        definition.file,
                        f"{definition.pointer}/{key}",
                        f"environment variable {name} is not set: destination {identifier!r} is skipped "
                        f"(and logged) until it is",
                        WARNING,
                    )
        return destinations

    def notify_routes(self, policy_definitions: dict[str, _Definition], destination_ids: set[str]) -> None:
        """Every destination a policy's ``notify`` names must be defined in some file's notifications."""
        known = ", ".join(sorted(destination_ids)) or "none defined (add a notifications section)"
        for definition in policy_definitions.values():
            routes = definition.spec.get("notify") if isinstance(definition.spec, dict) else None
            pointer = f"{definition.pointer}/notify"
            if not isinstance(routes, list) or definition.file.schema_rejected(pointer):
                continue
            for position, route in enumerate(routes):
                for index, destination in enumerate(route.get("to", ())):
                    if destination not in destination_ids:
                        self.report(
                            definition.file,
                            f"{pointer}/{position}/to/{index}",
                            f"unknown destination {destination!r}; known: {known}",
                        )

    def prioritize(self, compiler: ConditionCompiler) -> list[PrioritizeRule]:
        """The ``prioritize`` rules whose condition compiles, in file order."""
        found: list[PrioritizeRule] = []
        for file in self.files:
            for position, raw in enumerate(file.section("prioritize", list)):
                pointer = f"/prioritize/{position}"
                if not isinstance(raw, dict) or "when" not in raw:
                    continue
                reported = len(compiler.problems)
                condition = compiler.compile(raw["when"], f"{pointer}/when", file.schema_rejected)
                for problem in compiler.problems[reported:]:
                    self.report(file, problem.pointer, problem.message)
                if condition is not None and not file.schema_rejected(pointer):
                    found.append(
                        PrioritizeRule(
                            len(found), raw["name"], file.source.path, file.line_of(pointer), raw["priority"], condition
                        )
                    )
        return found

    def custom_attributes(self) -> bool:
        """Whether any file asks for the SLA as conversation custom attributes."""
        return any(file.section("writeback", dict).get("custom_attributes") is True for file in self.files)

    def rules(
        self, policy_ids: set[str], policies: Mapping[str, Policy], environment: Environment
    ) -> tuple[list[Rule], ConditionCompiler]:
        """The rules whose condition and policy are usable; every rule whose condition compiles is also
        checked for reachability, so ``rules check`` warns even while other parts have errors."""
        compiler = ConditionCompiler(environment)
        rules: list[Rule] = []
        compiled: list[_CompiledRule] = []
        index = 0
        for file in self.files:
            for position, raw in enumerate(file.section("rules", list)):
                pointer = f"/rules/{position}"
                rule_index, index = index, index + 1
                if not isinstance(raw, dict):
                    continue
                policy_id = raw.get("apply")
                if isinstance(policy_id, str) and policy_id not in policy_ids:
                    known = ", ".join(sorted(policy_ids)) or "none defined"
                    self.report(file, f"{pointer}/apply", f"unknown policy {policy_id!r}; known: {known}")
                reported = len(compiler.problems)
                condition = (
                    compiler.compile(raw["when"], f"{pointer}/when", file.schema_rejected) if "when" in raw else None
                )
                for problem in compiler.problems[reported:]:
                    self.report(file, problem.pointer, problem.message)
                if condition is None:
                    continue
                name = raw.get("name")
                compiled.append(_CompiledRule(file, pointer, name, condition))
                if (
                    isinstance(name, str)
                    and isinstance(policy_id, str)
                    and policy_id in policies
                    and not file.schema_rejected(pointer)
                ):
                    rules.append(
                        Rule(
                            rule_index,
                            name,
                            file.source.path,
                            file.line_of(pointer),
                            pointer,
                            policies[policy_id],
                            raw.get("sticky", False),
                            condition,
                        )
                    )
        self.reachability(compiled)
        return rules, compiler

    def reachability(self, rules: list[_CompiledRule]) -> None:
        """Warn about rules that can never match: after a rule that always matches, or always false."""
        catch_all: _CompiledRule | None = None
        for rule in rules:
            if catch_all is not None:
                self.report(
                    rule.file,
                    rule.pointer,
                    f"rule {rule.name!r} can never match: rule {catch_all.name!r} "
                    f"({catch_all.file.source.path}:{catch_all.file.line_of(catch_all.pointer)}) "
                    f"matches every conversation before it",
                    WARNING,
                )
                continue
            always = constant_result(rule.condition)
            if always is False:
                self.report(
                    rule.file,
                    f"{rule.pointer}/when",
                    f"rule {rule.name!r} can never match: its condition is always false",
                    WARNING,
                )
            elif always is True:
                catch_all = rule


def build_rule_set(
    sources: list[RuleSource], environ: Mapping[str, str] | None = None, *, default_labels: Mapping[str, LabelSpec]
) -> tuple[RuleSet | None, list[RuleProblem]]:
    """Check and build the rule set of *sources*: the set (None when there are errors) and every problem.

    *default_labels* are the status labels where no rule file's ``labels`` section overrides them
    (manifest.json's, read by the caller).
    *environ* (the process environment, passed in: the core reads none) lets the check warn about a
    destination whose URL or secret variable is unset; without it that check is skipped.
    """
    builder = _Builder(sources, default_labels)
    builder.parse()
    builder.validate()
    calendar_definitions = builder.definitions("calendars", "calendar")
    policy_definitions = builder.definitions("policies", "policy")
    calendars = builder.calendars(calendar_definitions)
    policies = builder.policies(policy_definitions, calendar_definitions, calendars)
    destination_definitions = builder.definitions("notifications", "destination")
    destinations = builder.destinations(destination_definitions, environ)
    builder.notify_routes(policy_definitions, set(destination_definitions))
    labels = builder.labels()
    owned_titles = frozenset(spec.title for spec in (*labels.values(), *default_labels.values()))
    environment = Environment(calendars, frozenset(fold(title) for title in owned_titles))
    rules, compiler = builder.rules(set(policy_definitions), policies, environment)
    prioritize = builder.prioritize(compiler)
    problems = builder.sorted_problems()
    if any(problem.severity == ERROR for problem in problems):
        return None, problems
    rule_set = RuleSet(
        rules=rules,
        policies=policies,
        calendars={identifier: calendar for identifier, calendar in calendars.items() if calendar is not None},
        labels=labels,
        owned_label_titles=owned_titles,
        content_hash=content_hash(sources),
        facts=compiler.facts,
        files=tuple(source.path for source in sources),
        warnings=tuple(problems),
        destinations=destinations,
        prioritize=prioritize,
        custom_attributes=builder.custom_attributes(),
    )
    return rule_set, problems
