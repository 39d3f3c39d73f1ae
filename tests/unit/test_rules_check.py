"""`rules check` finds every class of mistake and names FILE:LINE: JSON-pointer precisely.

The cases live in tests/rules_cases/ (one folder per error class, see its README); a few more are written
into tmp_path where the file's shape matters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.adapters.rule_files import check_rules, load_rules
from plugin.cli.rules import _problem_line
from plugin.core.rules import RuleProblem, RulesError

CASES = Path(__file__).resolve().parents[1] / "rules_cases"
CASE_NAMES = sorted(path.name for path in CASES.iterdir() if path.is_dir())


def _printed(problem: RuleProblem, directory: Path) -> str:
    line = _problem_line(problem)
    prefix = f"{directory}/"
    return line[len(prefix) :] if line.startswith(prefix) else line


@pytest.mark.parametrize("case", CASE_NAMES)
def test_case_reports_its_one_problem_at_the_right_place(case: str) -> None:
    directory = CASES / case
    first, *also = (directory / "expected.txt").read_text(encoding="utf-8").strip().splitlines()
    problems = check_rules(directory)
    printed = [_printed(problem, directory) for problem in problems]
    assert len(printed) == 1, printed
    assert printed[0].startswith(first), printed[0]
    for text in also:
        assert text in printed[0]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_load_refuses_exactly_the_cases_with_errors(case: str) -> None:
    directory = CASES / case
    is_warning = ": warning: " in (directory / "expected.txt").read_text(encoding="utf-8")
    if is_warning:
        rule_set = load_rules(directory)
        assert [problem.severity for problem in rule_set.warnings] == ["warning"]
    else:
        with pytest.raises(RulesError) as raised:
            load_rules(directory)
        assert [problem.severity for problem in raised.value.problems] == ["error"]


def test_every_error_class_has_a_case() -> None:
    assert len(CASE_NAMES) >= 30


def test_many_problems_are_all_reported_in_file_and_line_order(tmp_path: Path) -> None:
    (tmp_path / "10-a.json").write_text(
        json.dumps(
            {
                "policies": {"p": {"first_response": "1h", "calendar": "nowhere"}},
                "rules": [{"name": "r", "apply": "q", "when": {"field": "inbox_id", "op": "gt", "value": "5"}}],
            },
            indent=2,
        )
    )
    (tmp_path / "20-b.json").write_text('{"policies": {"p": {"resolution": "1d"}}}')
    problems = check_rules(tmp_path)
    assert [(Path(problem.file).name, problem.pointer) for problem in problems] == [
        ("10-a.json", "/policies/p/calendar"),
        ("10-a.json", "/rules/0/apply"),
        ("10-a.json", "/rules/0/when/value"),
        ("20-b.json", "/policies/p"),
    ]
    lines = [problem.line for problem in problems[:3]]
    assert lines == [5, 11, 15]


def test_a_problem_prints_as_file_line_pointer_message() -> None:
    problem = RuleProblem("rules/10-a.json", 7, "/rules/0/apply", "unknown policy 'gold'")
    assert str(problem) == "rules/10-a.json:7: /rules/0/apply: unknown policy 'gold'"
    assert problem.severity == "error"


def test_errors_inside_a_part_the_schema_rejected_are_reported_once(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "policies": {"p": {"first_response": "1h"}},
                "rules": [{"name": "r", "apply": "p", "when": {"field": "status", "op": "gt", "value": 1, "x": 2}}],
            }
        )
    )
    problems = check_rules(tmp_path)
    assert [problem.pointer for problem in problems] == ["/rules/0/when/x"]


def test_a_missing_directory_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    problems = check_rules(tmp_path / "nowhere")
    assert len(problems) == 1 and "rules directory not found" in problems[0].message


def test_non_utf8_and_nan_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b'{"rules": "\xff"}')
    (tmp_path / "b.json").write_text('{"policies": {"p": {"first_response": NaN}}}')
    messages = [problem.message for problem in check_rules(tmp_path)]
    assert "not UTF-8" in messages[0]
    assert "NaN is not valid JSON" in messages[1]


def test_a_calendar_error_points_at_the_key_its_message_names(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        '{"calendars": {"c": {"timezone": "UTC",\n "hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}}}'
    )
    problems = check_rules(tmp_path)
    assert [(problem.line, problem.pointer) for problem in problems] == [(2, "/calendars/c/hours/mon")]
    assert "overlap" in problems[0].message


def test_a_condition_of_the_wrong_type_is_reported_once_saying_what_a_condition_is(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "policies": {"p": {"first_response": "1h"}},
                "rules": [
                    {"name": "r", "apply": "p", "when": "always"},
                    {"name": "s", "apply": "p", "when": {"not": []}},
                ],
            }
        )
    )
    problems = check_rules(tmp_path)
    assert [problem.pointer for problem in problems] == ["/rules/0/when", "/rules/1/when/not"]
    assert all(problem.message.startswith('expected a condition: {"all": [...]}') for problem in problems)


def test_schema_messages_say_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "calendars": {"c": {"timezone": "UTC", "hours": {"monday": ["09:00-17:00"]}}},
                "policies": {"p": {"first_response": "1h", "pause_when": ["open"]}},
                "labels": {"missed": {"title": "late", "color": "red"}},
            },
            indent=2,
        )
    )
    messages = {problem.pointer: problem.message for problem in check_rules(tmp_path)}
    assert messages == {
        "/calendars/c/hours/monday": 'unknown key "monday"; expected one of mon, tue, wed, thu, fri, sat, sun',
        "/policies/p/pause_when/0": "'open' is not one of ['pending', 'snoozed']",
        "/labels/missed/color": "expected a colour '#RRGGBB' such as '#C62828'",
    }
