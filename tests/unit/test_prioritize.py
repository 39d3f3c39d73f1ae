"""prioritize rules in the engine: an empty priority gets the first matching rule's, once, and SLA rules see
it from that event on; a priority set in the helpdesk always wins."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from plugin.adapters.rule_files import load_rules
from plugin.core.engine import ConversationState, Evaluation, add_events
from plugin.core.engine import evaluate as run
from plugin.core.engine.effects import changes, summary, writeback_intents

from engine_helpers import Timeline, t

RULES = {
    "policies": {"urgent": {"first_response": "1h"}, "standard": {"first_response": "4h"}},
    "rules": [
        {"name": "urgent", "when": {"field": "priority", "op": "equals", "value": "urgent"}, "apply": "urgent"},
        {"name": "rest", "when": {"all": []}, "apply": "standard"},
    ],
    "prioritize": [
        {"name": "said urgent", "priority": "urgent", "when": {"field": "content", "op": "contains", "value": "urgent"}}
    ],
}


def evaluate(tmp_path: Path, timeline: Timeline, at: str) -> Evaluation:
    (tmp_path / "rules.json").write_text(json.dumps(RULES))
    rules = load_rules(tmp_path)
    state, _ = add_events(ConversationState(1, 87), timeline.events)
    return run(state, rules.match, rules.content_hash, t(at), rules.priority_for)[1]


def test_the_first_match_sets_the_priority_rules_see_at_once(tmp_path: Path) -> None:
    timeline = Timeline().customer("09:00", "hello").customer("09:05", "this is URGENT please")
    evaluation = evaluate(tmp_path, timeline, "09:06")
    assert (evaluation.policy.id, evaluation.prioritized, evaluation.prioritized_by) == (
        "urgent",
        "urgent",
        "said urgent",
    )
    intents = writeback_intents(None, summary(evaluation), changes(None, evaluation), evaluation)
    assert ("priority", {"kind": "priority", "priority": "urgent", "rule": "said urgent"}) in intents


def test_a_priority_set_in_the_helpdesk_wins_and_nothing_is_set(tmp_path: Path) -> None:
    timeline = Timeline().customer("09:05", "urgent!")
    timeline.conversation = replace(timeline.conversation, priority="low")
    timeline.customer("09:10", "still urgent")  # an agent set "low" meanwhile: that event shows it
    evaluation = evaluate(tmp_path, timeline, "09:11")
    assert evaluation.policy is not None and evaluation.policy.id == "standard"
    assert evaluation.prioritized is None
    assert all(key != "priority" for key, _ in writeback_intents(None, summary(evaluation), [], evaluation))
