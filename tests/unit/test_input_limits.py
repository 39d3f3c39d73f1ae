"""Inputs are bounded where they enter: a rule file's size, a message's kept text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from plugin.adapters.rule_files import MAX_RULE_FILE_BYTES, check_rules
from plugin.core.events import CONTACT, INCOMING, MAX_MESSAGE_TEXT, Event, Message, event_from_json


def test_a_rule_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    rules = {
        "$comment": "x" * MAX_RULE_FILE_BYTES,
        "policies": {"p": {"first_response": "1h"}},
        "rules": [{"name": "r", "when": {"all": []}, "apply": "p"}],
    }
    (tmp_path / "10-big.json").write_text(json.dumps(rules))

    problems = check_rules(tmp_path)

    assert len(problems) == 1, problems
    assert "10-big.json" in str(problems[0])
    assert "more than the 1,048,576 a rule file may have" in problems[0].message


def test_a_message_keeps_the_first_ten_thousand_characters_of_its_text() -> None:
    moment = datetime(2026, 1, 14, 9, tzinfo=UTC)
    message = Message(1, moment, INCOMING, CONTACT, content="refund " + "x" * 500_000)
    assert len(message.content) == MAX_MESSAGE_TEXT == 10_000
    assert message.content.startswith("refund x")
    event = Event("message_created", "k", 1, 2, moment, message=message)
    assert event_from_json(json.loads(json.dumps(event.to_json()))) == event
