"""Private notes in people's words, with Chatwoot mentions (plugin/core/wording.py), and the intents that ask
for them (plugin/core/engine/effects.py)."""

from __future__ import annotations

import re

from plugin.core.engine.effects import changes, summary, writeback_intents
from plugin.core.wording import legacy_note_marker, mention_markup, note_marker, note_text

from engine_helpers import Timeline, always, make_policy, t

MISS = {
    "kind": "miss",
    "miss": "first_response#0",
    "metric": "first_response",
    "due_at": "2026-01-14T08:15:00Z",
    "policy": "high-priority",
    "policy_name": "High-Priority Support",
    "policy_version": "9f2c41d0aabbccdd",
    "timezone": "Europe/Berlin",
}
MARKER = note_marker(1, 87, "note:first_response#0")
# Chatwoot's Messages::MentionService reads mentions with these expressions (app/services/messages/mention_service.rb).
USER_MENTIONS = re.compile(r"\(mention://user/(\d+)/(.+?)\)")
TEAM_MENTIONS = re.compile(r"\(mention://team/(\d+)/(.+?)\)")


def test_a_miss_noticed_at_its_due_time_says_when_in_one_zone_without_zero_late() -> None:
    text = note_text(MISS, t("08:15:03"), MARKER)
    first_line = text.splitlines()[0]
    assert first_line == "SLA missed: first response missed at 09:15 (due 09:15 Europe/Berlin)."
    assert "0m late" not in text and "CET" not in text and "(Europe/Berlin)" not in text


def test_a_late_reply_says_when_it_came_and_how_late() -> None:
    text = note_text({**MISS, "stopped_at": "2026-01-14T08:40:00Z"}, t("08:41"), MARKER)
    assert text.startswith("SLA missed: first response answered at 09:40 (due 09:15 Europe/Berlin), 25m late.")


def test_utc_is_named_once_and_another_day_shows_its_date() -> None:
    text = note_text({**MISS, "timezone": "UTC"}, t("2026-01-15T10:00:00Z"), MARKER)
    assert "missed at 2026-01-14 08:15 (due 2026-01-14 08:15 UTC)" in text
    assert "UTC (UTC)" not in text


def test_the_marker_is_the_quiet_last_line_and_the_policy_is_named() -> None:
    lines = note_text(MISS, t("08:16"), MARKER).split("\n\n")
    assert lines[-1] == "ref sla-plugin/1/87/note:first_response#0"
    assert lines[-2] == "Policy: High-Priority Support (version 9f2c41d0)."
    assert legacy_note_marker(1, 87, "note:first_response#0") == "[sla-plugin 1/87 note:first_response#0]"


def test_mentions_come_first_in_chatwoots_markup() -> None:
    people = [{"type": "user", "id": 7, "name": "Sam Agent"}, {"type": "team", "id": 2, "name": "support (EU)"}]
    text = note_text({**MISS, "mentions": people}, t("08:16"), MARKER)
    assert text.startswith("[@Sam Agent](mention://user/7/Sam%20Agent) [@support (EU)](mention://team/2/")
    assert USER_MENTIONS.findall(text) == [("7", "Sam%20Agent")]
    assert TEAM_MENTIONS.findall(text) == [("2", "support%20%28EU%29")]
    assert mention_markup({"type": "user", "id": 3, "name": "A ] B"}) == "[@A  B](mention://user/3/A%20%5D%20B)"


def test_at_risk_and_correction_notes() -> None:
    at_risk = note_text({**MISS, "kind": "at_risk"}, t("08:05"), MARKER)
    assert at_risk.startswith("SLA at risk: first response is due 09:15 Europe/Berlin, 10m left.")
    correction = note_text({**MISS, "kind": "correction"}, t("09:00"), MARKER)
    assert correction.startswith("SLA correction: the first response miss noted earlier did not happen (due 09:15")


MENTIONING = make_policy("quick", first_response="1h", warn_before="10m", mention=["assignee", "team"])


def intents_over(timeline: Timeline, policy, instants: list[str]) -> list[tuple[str, dict]]:
    previous, found = None, []
    for at in instants:
        evaluation = timeline.evaluate(at, always(policy))
        current = summary(evaluation)
        found += writeback_intents(previous, current, changes(previous, evaluation), evaluation)
        previous = current
    return found


def test_with_mention_at_risk_gets_one_note_per_episode_and_notes_name_the_assignee_and_team() -> None:
    timeline = Timeline(assignee_id=7, assignee_name="Sam Agent", team_id=2, team_name="support")
    notes = [
        item for item in intents_over(timeline, MENTIONING, ["09:01", "09:51", "09:55", "10:01"]) if item[0] != "labels"
    ]
    assert [key for key, _ in notes] == ["at_risk:first_response@2026-01-14T10:00:00Z", "note:first_response#0"]
    for _, payload in notes:
        assert payload["mentions"] == [
            {"type": "user", "id": 7, "name": "Sam Agent"},
            {"type": "team", "id": 2, "name": "support"},
        ]


def test_without_mention_at_risk_gets_no_note_and_a_bot_assignee_is_never_mentioned() -> None:
    plain = make_policy("quick", first_response="1h", warn_before="10m")
    keys = [key for key, _ in intents_over(Timeline(assignee_id=7, assignee_name="Sam"), plain, ["09:51", "10:01"])]
    assert keys == ["labels", "labels", "note:first_response#0"]
    bot = Timeline(assignee_id=9)  # the connector leaves the name out when a bot is assigned
    notes = [payload for key, payload in intents_over(bot, MENTIONING, ["10:01"]) if key.startswith("note:")]
    assert notes[0]["mentions"] == []
