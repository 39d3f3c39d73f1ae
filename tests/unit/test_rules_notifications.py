"""The rule-file sections of notifications and actions: destinations, notify routes, mention, prioritize,
labels.hit and writeback.custom_attributes, as loaded into a rule set (their mistakes: tests/rules_cases)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from plugin.adapters.manifest import manifest_labels
from plugin.adapters.rule_files import load_rules, read_sources
from plugin.core.events import Conversation, MatchContext
from plugin.core.rules import build_rule_set

CREATED = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)

DOCUMENT = {
    "notifications": {
        "support-slack": {"type": "slack", "url_env": "SLA_SLACK_SUPPORT_URL"},
        "ops": {"type": "webhook", "url_env": "SLA_OPS_URL", "secret_env": "SLA_OPS_SECRET"},
    },
    "policies": {
        "high-priority": {
            "first_response": "2h",
            "notify": [
                {"on": ["at_risk", "missed"], "to": ["support-slack", "ops"]},
                {"on": ["sla.missed", "hit"], "to": ["ops"]},
            ],
            "mention": ["assignee"],
        }
    },
    "rules": [
        {"name": "urgent", "when": {"field": "priority", "op": "equals", "value": "urgent"}, "apply": "high-priority"}
    ],
    "prioritize": [
        {
            "name": "Orange e-mail is urgent",
            "priority": "urgent",
            "when": {
                "all": [
                    {"field": "custom_attributes.product", "op": "equals", "value": "Orange"},
                    {"field": "channel", "op": "equals", "value": "Channel::Email"},
                ]
            },
        },
        {
            "name": "Apple is low",
            "priority": "low",
            "when": {"field": "custom_attributes.product", "op": "equals", "value": "Apple"},
        },
    ],
    "labels": {"hit": {"title": "sla-hit", "color": "#1565C0"}},
    "writeback": {"custom_attributes": True},
}


def context(**conversation) -> MatchContext:
    return MatchContext(Conversation(account_id=1, conversation_id=87, created_at=CREATED, **conversation), at=CREATED)


def test_the_documented_example_loads_with_every_section(tmp_path: Path) -> None:
    (tmp_path / "10-a.json").write_text(json.dumps(DOCUMENT, indent=2))
    rule_set = load_rules(tmp_path)
    assert set(rule_set.destinations) == {"support-slack", "ops"}
    ops = rule_set.destinations["ops"]
    assert (ops.type, ops.url_env, ops.secret_env) == ("webhook", "SLA_OPS_URL", "SLA_OPS_SECRET")
    policy = rule_set.policies["high-priority"]
    assert policy.destinations_for("missed") == ("support-slack", "ops")
    assert policy.destinations_for("at_risk") == ("support-slack", "ops")
    assert policy.destinations_for("hit") == ("ops",)
    assert policy.destinations_for("applied") == ()
    assert policy.mention == ("assignee",)
    assert rule_set.labels["hit"].title == "sla-hit"
    assert "sla-hit" in rule_set.owned_label_titles
    assert rule_set.custom_attributes is True


def test_prioritize_is_first_match_in_order(tmp_path: Path) -> None:
    (tmp_path / "10-a.json").write_text(json.dumps(DOCUMENT))
    rule_set = load_rules(tmp_path)
    orange_mail = context(channel="Channel::Email", custom_attributes={"product": "Orange"})
    assert rule_set.priority_for(orange_mail).priority == "urgent"
    assert rule_set.priority_for(context(custom_attributes={"product": "Apple"})).priority == "low"
    assert rule_set.priority_for(context(channel="Channel::Email", custom_attributes={"product": "Pear"})) is None


def test_without_the_new_sections_nothing_changes(tmp_path: Path) -> None:
    rule_set = load_rules(tmp_path)
    assert rule_set.destinations == {} and rule_set.prioritize == () and rule_set.custom_attributes is False
    assert "hit" not in rule_set.labels
    assert rule_set.priority_for(context()) is None


def test_unset_variables_warn_only_when_the_environment_is_given(tmp_path: Path) -> None:
    (tmp_path / "10-a.json").write_text(json.dumps(DOCUMENT, indent=2))
    sources = read_sources(tmp_path)
    assert build_rule_set(sources, default_labels=manifest_labels())[1] == []
    environ = {"SLA_SLACK_SUPPORT_URL": "https://hooks.slack.test/x", "SLA_OPS_URL": "http://ops.test/"}
    rule_set, problems = build_rule_set(sources, environ, default_labels=manifest_labels())
    assert rule_set is not None
    assert [(problem.pointer, problem.severity) for problem in problems] == [
        ("/notifications/ops/secret_env", "warning")
    ]
    assert "SLA_OPS_SECRET is not set" in problems[0].message
    assert "https://" not in problems[0].message  # the message names variables, never their values


def test_a_hit_label_may_not_share_a_status_labels_title(tmp_path: Path) -> None:
    document = {"labels": {"hit": {"title": "sla-on-track"}}}
    (tmp_path / "10-a.json").write_text(json.dumps(document))
    rule_set, problems = build_rule_set(read_sources(tmp_path), default_labels=manifest_labels())
    assert rule_set is None
    assert "each status needs its own label" in problems[0].message
