"""The shipped rule files and the published schema: valid, loadable together, in sync with the code."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from plugin.adapters.rule_files import check_rules, load_rules
from plugin.core.policy import canonical_json
from plugin.core.rules.fields import FIELDS
from plugin.core.rules.operators import OPERATOR_NAMES, OPERATORS
from plugin.core.rules.schema import SCHEMA_FILE_NAME, rules_schema
from plugin.resources import shipped

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
SHIPPED = sorted(path for path in RULES.glob("*.json") if not path.name.endswith(".schema.json"))


def test_the_shipped_files_are_the_seed_examples() -> None:
    assert [path.name for path in SHIPPED] == ["10-high-priority.json", "20-product-matrix.json", "90-default.json"]


def test_the_schema_is_a_valid_draft_2020_12_schema_published_beside_the_rules() -> None:
    assert shipped("rules", SCHEMA_FILE_NAME) == RULES / "sla-rules.schema.json"
    Draft202012Validator.check_schema(rules_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_each_shipped_file_validates_against_the_schema_and_names_it(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["$schema"] == "./sla-rules.schema.json"
    assert list(Draft202012Validator(rules_schema()).iter_errors(document)) == []


def test_the_shipped_files_load_together_without_a_problem() -> None:
    assert check_rules(RULES) == []
    rule_set = load_rules(RULES)
    assert [rule.name for rule in rule_set.rules] == [
        "Urgent conversations",
        "Orange, e-mail, urgent",
        "Orange, chat",
        "Apple, e-mail, not low priority",
        "Everything else",
    ]
    assert set(rule_set.policies) == {"high-priority", "orange-email-urgent", "orange-chat", "apple-email", "standard"}
    assert set(rule_set.calendars) == {"office"}


def test_the_seed_policies_have_the_targets_of_the_issue() -> None:
    policies = load_rules(RULES).policies
    high = policies["high-priority"]
    assert (high.name, dict(high.targets), high.calendar_id) == (
        "High-Priority Support",
        {"first_response": 7200, "resolution": 86400},
        "office",
    )
    assert high.warn_before.seconds == 900 and high.pause_when == {"pending", "snoozed"} and high.target == 0.8
    assert dict(policies["orange-email-urgent"].targets)["first_response"] == 1800
    standard = policies["standard"]
    assert dict(standard.targets) == {"first_response": 7200, "next_response": 7200, "resolution": 86400}
    assert standard.calendar_id is None and standard.target == 0.9 and standard.warn_before.seconds == 900


def test_a_policy_version_is_the_hash_of_the_policy_and_its_calendar() -> None:
    documents = {path.name: json.loads(path.read_text(encoding="utf-8")) for path in SHIPPED}
    raw_policy = documents["10-high-priority.json"]["policies"]["high-priority"]
    raw_calendar = documents["10-high-priority.json"]["calendars"]["office"]
    expected = hashlib.sha256(canonical_json({"policy": raw_policy, "calendar": raw_calendar}).encode()).hexdigest()
    assert load_rules(RULES).policies["high-priority"].version == expected
    standard = documents["90-default.json"]["policies"]["standard"]
    assert (
        load_rules(RULES).policies["standard"].version
        == hashlib.sha256(canonical_json({"policy": standard, "calendar": None}).encode()).hexdigest()
    )


def test_the_default_file_holds_the_labels() -> None:
    labels = load_rules(RULES).labels
    assert {status: (spec.title, spec.color) for status, spec in labels.items()} == {
        "on_track": ("sla-on-track", "#2E7D32"),
        "at_risk": ("sla-at-risk", "#F9A825"),
        "missed": ("sla-missed", "#C62828"),
    }


def test_the_catch_all_is_the_last_rule() -> None:
    rule_set = load_rules(RULES)
    assert rule_set.rules[-1].file.endswith("90-default.json")
    assert rule_set.rules[-1].policy.id == "standard"


def test_the_schema_lists_exactly_the_fields_and_operators_the_code_knows() -> None:
    definitions = rules_schema()["$defs"]
    assert definitions["leaf"]["properties"]["op"]["enum"] == list(OPERATOR_NAMES)
    assert set(OPERATOR_NAMES) == set(OPERATORS)
    assert definitions["field"]["anyOf"][0]["enum"] == list(FIELDS)


def test_the_fields_and_operators_are_those_of_design_10_1() -> None:
    assert set(FIELDS) == {
        "inbox_id",
        "team_id",
        "assignee_id",
        "status",
        "priority",
        "labels",
        "content",
        "message_type",
        "email",
        "phone_number",
        "country_code",
        "browser_language",
        "conversation_language",
        "referer",
        "mail_subject",
        "city",
        "company",
        "channel",
        "email_domain",
        "created_at",
    }
    assert set(OPERATOR_NAMES) == {
        "equals",
        "not_equals",
        "in",
        "not_in",
        "contains",
        "not_contains",
        "contains_any_word",
        "starts_with",
        "matches",
        "exists",
        "not_exists",
        "gt",
        "gte",
        "lt",
        "lte",
        "within_hours",
    }


def test_the_documentation_covers_every_field_and_operator() -> None:
    documentation = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    for name in [*FIELDS, *OPERATOR_NAMES, "custom_attributes.<key>", "contact.custom_attributes.<key>"]:
        assert f"`{name}`" in documentation, name


def contract_sample() -> str:
    """The format sample of docs/contracts.md section 1 (the first JSON block of that section)."""
    contracts = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = contracts.split("## 1. Rule files", 1)[1].split("\n## ", 1)[0]
    return section.split("```json\n", 1)[1].split("```", 1)[0]


def test_the_format_sample_of_the_contract_is_a_valid_rule_file(tmp_path: Path) -> None:
    (tmp_path / "sample.json").write_text(contract_sample())
    assert check_rules(tmp_path) == []
    assert load_rules(tmp_path).rules[0].policy.calendar.timezone == "Europe/Berlin"
