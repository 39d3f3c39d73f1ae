"""SLA events from evaluations, and the messages that carry them (pure: plugin/core/notifications.py)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from plugin.core.engine.effects import changes, summary
from plugin.core.notifications import routed, signature, sla_events, slack_message, webhook_body

from engine_helpers import Timeline, always, make_policy, t

POLICY = make_policy(
    "quick",
    first_response="1h",
    resolution="8h",
    warn_before="10m",
    notify=[{"on": ["at_risk", "sla.missed"], "to": ["slack"]}, {"on": ["missed", "hit", "corrected"], "to": ["ops"]}],
)


def step(timeline: Timeline, previous: dict | None, at: str, events=None):
    evaluation = timeline.evaluate(at, always(POLICY), events)
    current = summary(evaluation)
    found = sla_events(previous, current, changes(previous, evaluation), evaluation)
    return current, found, evaluation


def test_a_conversation_lives_through_applied_at_risk_missed_and_their_destinations() -> None:
    timeline = Timeline()
    first, applied, _ = step(timeline, None, "09:01")
    assert [event.name for event in applied] == ["sla.applied"]
    second, at_risk, _ = step(timeline, first, "09:51")
    assert [(event.name, event.body["metric"], event.body["due_at"]) for event in at_risk] == [
        ("sla.at_risk", "first_response", "2026-01-14T10:00:00Z")
    ]
    third, missed, evaluation = step(timeline, second, "10:00:01")
    assert [event.name for event in missed] == ["sla.missed"]
    assert missed[0].body["occurred_at"] == "2026-01-14T10:00:00Z" and missed[0].body["status"] == "missed"
    assert [(event.name, destination) for event, destination in routed(missed, evaluation)] == [
        ("sla.missed", "slack"),
        ("sla.missed", "ops"),
    ]
    # Evaluated again (a retry, a duplicate webhook): nothing new, and the same facts keep the same ids.
    assert step(timeline, third, "10:05")[1] == []
    assert step(timeline, second, "10:00:01")[1][0].id == missed[0].id


def test_a_late_reply_corrects_the_miss_and_a_resolution_within_target_is_a_hit() -> None:
    timeline = Timeline()
    missed_summary, missed, _ = step(timeline, None, "10:30")
    assert "sla.missed" in [event.name for event in missed]
    timeline.agent("09:30").status("11:00", "resolved")
    _, later, evaluation = step(timeline, missed_summary, "11:00")
    assert [event.name for event in later] == ["sla.corrected", "sla.hit"]
    assert later[0].body["due_at"] == "2026-01-14T10:00:00Z"
    assert later[1].body["occurred_at"] == "2026-01-14T11:00:00Z"
    assert [destination for _, destination in routed(later, evaluation)] == ["ops", "ops"]


def test_a_late_reply_missed_says_when_it_was_answered() -> None:
    timeline = Timeline().agent("10:20")
    current, found, _ = step(timeline, None, "10:21")
    missed = next(event for event in found if event.name == "sla.missed")
    assert missed.stopped_at == "2026-01-14T10:20:00Z"
    text = slack_message(missed.to_json(), None, t("12:00"))["text"]
    assert "answered 10:20, 20m late" in text and "conversation #87" in text
    assert "UTC (UTC)" not in text


def test_shadow_policies_have_no_events() -> None:
    shadow = make_policy("shadow", first_response="1h", mode="shadow", notify=[{"on": ["missed"], "to": ["ops"]}])
    evaluation = Timeline().evaluate("10:30", always(shadow))
    assert sla_events(None, summary(evaluation), changes(None, evaluation), evaluation) == []


def test_the_webhook_body_has_the_documented_keys_and_the_signature_is_hmac_of_timestamp_dot_body() -> None:
    _, found, _ = step(Timeline(), None, "10:30")
    body = webhook_body(found[-1].to_json(), "https://chat.example/app/accounts/1/conversations/87")
    assert list(body) == [
        "event", "id", "occurred_at", "account_id", "conversation_id", "conversation_url",
        "policy", "metric", "due_at", "status",
    ]  # fmt: skip
    raw = b'{"event":"sla.missed"}'
    expected = hmac.new(b"s3cret", b"1768381200." + raw, hashlib.sha256).hexdigest()
    assert signature("s3cret", "1768381200", raw) == f"sha256={expected}"


def test_slack_text_for_a_clock_still_running_past_its_due_time_counts_the_lateness_to_now() -> None:
    _, found, _ = step(Timeline(), None, "10:30")
    missed = next(event for event in found if event.name == "sla.missed")
    message = slack_message(missed.to_json(), "https://chat.example/c/87", t("10:00") + timedelta(minutes=95))
    assert message["text"] == (
        ":red_circle: SLA missed: <https://chat.example/c/87|conversation #87> (Quick): "
        "first response was due 10:00 UTC; still open, 1h 35m late"
    )
    assert [block["type"] for block in message["blocks"]] == ["section", "context"]


def test_the_demo_receiver_checks_signatures_and_prints_one_line_per_notification() -> None:
    import json

    import requests

    from plugin.demo.receiver import NotificationReceiver

    lines: list[str] = []
    receiver = NotificationReceiver(secret="s3cret", announce=lines.append).start()
    try:
        _, found, _ = step(Timeline(), None, "10:30")
        missed = next(event for event in found if event.name == "sla.missed")
        body = json.dumps(webhook_body(missed.to_json(), None)).encode()
        headers = {"X-SLA-Event": "sla.missed", "X-SLA-Timestamp": "1768381200"}
        good = {**headers, "X-SLA-Signature": signature("s3cret", "1768381200", body)}
        requests.post(f"{receiver.url}/webhook", data=body, headers=good, timeout=5)
        requests.post(f"{receiver.url}/webhook", data=body, headers={**good, "X-SLA-Timestamp": "1"}, timeout=5)
        slack = slack_message(missed.to_json(), "https://chat.example/c/87", t("10:40"))
        requests.post(f"{receiver.url}/slack", json=slack, timeout=5)
    finally:
        receiver.stop()
    assert [item.signature_ok for item in receiver.received] == [True, False, None]
    assert lines[0].startswith("webhook  sla.missed first_response conversation 87") and "signature ok" in lines[0]
    assert "BAD SIGNATURE" in lines[1]
    assert lines[2].startswith("Slack    :red_circle: SLA missed: conversation #87 (Quick)")
