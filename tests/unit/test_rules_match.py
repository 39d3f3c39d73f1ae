"""Loading a rules directory and matching contexts: file order, first match, labels, explain, fixtures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors import get_connector
from plugin.adapters.manifest import manifest_labels
from plugin.adapters.rule_files import load_rules, read_sources
from plugin.core.events import Contact, Conversation, MatchContext
from plugin.core.rules import RuleMatch, RuleSet
from plugin.core.rules.build import content_hash

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = ROOT / "rules"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "chatwoot"
CREATED = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)
POLICY = {"first_response": "1h"}


def write(directory: Path, name: str, document: dict) -> Path:
    path = directory / name
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def context(**conversation) -> MatchContext:
    texts = conversation.pop("texts", ())
    return MatchContext(
        Conversation(account_id=1, conversation_id=87, created_at=CREATED, **conversation),
        at=CREATED,
        customer_texts=texts,
    )


def rule(name: str, when: dict, apply: str, **extra) -> dict:
    return {"name": name, "when": when, "apply": apply, **extra}


def test_an_empty_directory_is_a_valid_rule_set_that_matches_nothing(tmp_path: Path) -> None:
    rule_set = load_rules(tmp_path)
    assert isinstance(rule_set, RuleSet)
    assert rule_set.rules == () and rule_set.policies == {} and rule_set.calendars == {}
    assert rule_set.match(context()) is None
    assert rule_set.explain(context()) == []
    assert set(rule_set.labels) == {"on_track", "at_risk", "missed"}


def test_only_rule_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "sla-rules.schema.json").write_text("{ not even JSON")
    (tmp_path / ".#10-editing.json").write_text("{ an editor's lock file")
    (tmp_path / "notes.txt").write_text("not a rule file")
    (tmp_path / "subfolder.json").mkdir()
    write(tmp_path, "10-a.json", {"policies": {"p": POLICY}, "rules": [rule("r", {"all": []}, "p")]})
    rule_set = load_rules(tmp_path)
    assert rule_set.files == (str(tmp_path / "10-a.json"),)
    assert rule_set.match(context()).name == "r"


def test_first_match_wins_in_file_name_order_then_position(tmp_path: Path) -> None:
    write(
        tmp_path,
        "90-default.json",
        {"policies": {"standard": POLICY}, "rules": [rule("everything", {"all": []}, "standard")]},
    )
    write(
        tmp_path,
        "20-b.json",
        {
            "rules": [
                rule("vip", {"field": "labels", "op": "contains", "value": "vip"}, "gold", sticky=True),
                rule("inbox five", {"field": "inbox_id", "op": "equals", "value": 5}, "silver"),
            ]
        },
    )
    write(
        tmp_path,
        "10-a.json",
        {
            "policies": {"gold": POLICY, "silver": POLICY},
            "rules": [rule("urgent", {"field": "priority", "op": "equals", "value": "urgent"}, "gold")],
        },
    )
    rule_set = load_rules(tmp_path)
    assert [(item.index, item.name) for item in rule_set.rules] == [
        (0, "urgent"),
        (1, "vip"),
        (2, "inbox five"),
        (3, "everything"),
    ]
    both = context(priority="urgent", labels=("vip",), inbox_id=5)
    assert rule_set.match(both) == RuleMatch(0, "urgent", rule_set.policies["gold"], False)
    assert rule_set.match(context(labels=("VIP",), inbox_id=5)) == RuleMatch(1, "vip", rule_set.policies["gold"], True)
    assert rule_set.match(context(inbox_id=5)).name == "inbox five"
    assert rule_set.match(context(inbox_id=6)).policy.id == "standard"


def test_policies_and_calendars_may_be_used_across_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        "10-calendars.json",
        {"calendars": {"office": {"timezone": "Europe/Berlin", "hours": {"mon": ["09:00-17:00"]}}}},
    )
    write(tmp_path, "20-policies.json", {"policies": {"p": {"resolution": "8h", "calendar": "office"}}})
    write(
        tmp_path,
        "30-rules.json",
        {"rules": [rule("monday office hours", {"field": "created_at", "op": "within_hours", "value": "office"}, "p")]},
    )
    rule_set = load_rules(tmp_path)
    assert rule_set.policies["p"].calendar is not None and rule_set.policies["p"].calendar_id == "office"
    monday_morning = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
    on_monday = MatchContext(Conversation(1, 87, monday_morning), at=monday_morning)
    assert rule_set.match(on_monday).name == "monday office hours"
    assert rule_set.match(context()) is None  # created on a Wednesday, and the calendar opens on Mondays only


def test_labels_default_to_the_manifest_and_one_file_may_override(tmp_path: Path) -> None:
    assert load_rules(tmp_path).labels == dict(manifest_labels())
    write(tmp_path, "50-labels.json", {"labels": {"missed": {"title": "overdue"}}})
    rule_set = load_rules(tmp_path)
    assert rule_set.labels["missed"].title == "overdue"
    assert rule_set.labels["missed"].color == manifest_labels()["missed"].color
    assert rule_set.labels["on_track"] == manifest_labels()["on_track"]
    assert rule_set.owned_label_titles == {"overdue", "sla-missed", "sla-on-track", "sla-at-risk"}


def test_renamed_and_default_status_labels_are_both_invisible(tmp_path: Path) -> None:
    write(
        tmp_path,
        "10-a.json",
        {
            "policies": {"p": POLICY},
            "labels": {"missed": {"title": "overdue"}},
            "rules": [rule("labelled", {"field": "labels", "op": "exists"}, "p")],
        },
    )
    rule_set = load_rules(tmp_path)
    assert rule_set.match(context(labels=("overdue", "sla-missed", "SLA-On-Track"))) is None
    assert rule_set.match(context(labels=("overdue", "billing"))).name == "labelled"


def test_the_content_hash_covers_names_and_contents(tmp_path: Path) -> None:
    write(tmp_path, "10-a.json", {"policies": {"p": POLICY}})
    first = load_rules(tmp_path).content_hash
    assert first == content_hash(read_sources(tmp_path)) and len(first) == 64
    (tmp_path / "10-a.json").rename(tmp_path / "20-a.json")
    renamed = load_rules(tmp_path).content_hash
    write(tmp_path, "20-a.json", {"policies": {"p": {"first_response": "2h"}}})
    edited = load_rules(tmp_path).content_hash
    assert len({first, renamed, edited}) == 3


def test_a_warning_does_not_stop_loading(tmp_path: Path) -> None:
    write(
        tmp_path,
        "10-a.json",
        {
            "policies": {"p": POLICY},
            "rules": [
                rule("all", {"all": []}, "p"),
                rule("never", {"field": "inbox_id", "op": "equals", "value": 1}, "p"),
            ],
        },
    )
    rule_set = load_rules(tmp_path)
    assert [warning.severity for warning in rule_set.warnings] == ["warning"]
    assert rule_set.warnings[0].pointer == "/rules/1"


def test_explain_lists_each_rule_up_to_the_match_with_the_failing_leaf_and_actual_value() -> None:
    rule_set = load_rules(SHIPPED_RULES)
    on = context(inbox_id=3, channel="Channel::Email", priority="low", custom_attributes={"product": "Apple"})
    explanations = rule_set.explain(on)
    assert [(item.name, item.matched) for item in explanations] == [
        ("Urgent conversations", False),
        ("Orange, e-mail, urgent", False),
        ("Orange, chat", False),
        ("Apple, e-mail, not low priority", False),
        ("Everything else", True),
    ]
    urgent = str(explanations[0])
    assert "rule 1 'Urgent conversations' (rules/10-high-priority.json:" in urgent.replace(str(ROOT) + "/", "")
    assert "inbox_id in [5, 6] -> false (actual: 3)" in urgent
    assert 'content contains_any_word ["urgent", "emergency"] -> false (actual: missing)' in urgent
    apple = str(explanations[3])
    assert 'custom_attributes.product equals "Apple" -> true (actual: "Apple")' in apple
    assert 'priority equals "low" -> true (actual: "low")' in apple and "not -> false" in apple
    assert "matched -> policy standard (version " in str(explanations[4])


def test_explain_stops_at_the_first_match() -> None:
    rule_set = load_rules(SHIPPED_RULES)
    explanations = rule_set.explain(context(texts=("This is an EMERGENCY",)))
    assert len(explanations) == 1 and explanations[0].matched
    assert explanations[0].policy.id == "high-priority"
    assert 'content contains_any_word ["urgent", "emergency"] -> true' in str(explanations[0])


@pytest.mark.parametrize(
    "fixture",
    [
        "conversation_created.json",
        "message_created-incoming.json",
        "conversation_updated-labels.json",
        "conversation_status_changed-resolved.json",
    ],
)
def test_the_shared_fixture_payloads_fall_to_the_default_policy(fixture: str) -> None:
    payload = json.loads((FIXTURES / fixture).read_text(encoding="utf-8"))
    event = get_connector("chatwoot", {}).normalize(payload, received_at=datetime.now(UTC))
    message = event.message
    texts = (message.content,) if message is not None and message.is_customer_message else ()
    on = MatchContext(event.conversation, at=event.occurred_at, message=message, customer_texts=texts)
    rule_set = load_rules(SHIPPED_RULES)
    assert rule_set.match(on).policy.id == "standard"
    explanations = rule_set.explain(on)
    assert "inbox_id in [5, 6] -> false (actual: 3)" in str(explanations[0])
    assert explanations[-1].matched and explanations[-1].name == "Everything else"


def test_a_keyword_that_once_matched_keeps_matching() -> None:
    rule_set = load_rules(SHIPPED_RULES)
    later = context(texts=("URGENT: the shop is down", "ok, thanks for looking", "any news?"))
    assert rule_set.match(later).policy.id == "high-priority"


def test_the_product_matrix() -> None:
    rule_set = load_rules(SHIPPED_RULES)
    orange_mail = dict(channel="Channel::Email", custom_attributes={"product": "Orange"})
    assert rule_set.match(context(priority="urgent", **orange_mail)).policy.id == "orange-email-urgent"
    assert rule_set.match(context(priority="urgent", **orange_mail)).sticky is True
    assert rule_set.match(context(priority="high", **orange_mail)).policy.id == "standard"
    assert (
        rule_set.match(context(channel="Channel::WebWidget", custom_attributes={"product": "orange"})).policy.id
        == "orange-chat"
    )
    apple_mail = dict(
        channel="Channel::Email", custom_attributes={"product": "Apple"}, contact=Contact(email="x@example.com")
    )
    assert rule_set.match(context(priority=None, **apple_mail)).policy.id == "apple-email"
    assert rule_set.match(context(priority="low", **apple_mail)).policy.id == "standard"
    assert rule_set.policies["apple-email"].live is False
