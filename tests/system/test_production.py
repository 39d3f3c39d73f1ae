"""The production shape end to end, in subprocesses: gunicorn (2 workers) serving ``plugin.web:create_app()``,
two ``sla-plugin worker`` processes (RQ SimpleWorker + sweeper election), a private Redis, a PostgreSQL
database, and the demo helpdesk as the Chatwoot host, which sends signed webhooks and takes the plugin's
labels and notes. The conversations are timed relative to now (the workers use the real clock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import requests

from plugin.demo import script

from production_stack import ProductionStack

RULES = {
    "policies": {
        "standard": {
            "name": "Standard",
            "first_response": "1h",
            "resolution": "8h",
            "warn_before": "10m",
            "target": 0.9,
        }
    },
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "standard"}],
    "labels": {
        "on_track": {"title": "sla-on-track", "color": "#2E7D32"},
        "at_risk": {"title": "sla-at-risk", "color": "#F9A825"},
        "missed": {"title": "sla-missed", "color": "#C62828"},
    },
}


def test_gunicorn_two_workers_redis_and_postgresql_end_to_end(tmp_path, postgres_url):
    with ProductionStack(tmp_path, postgres_url, RULES, web_processes=2, worker_processes=2) as stack:
        helpdesk = stack.helpdesk
        now = datetime.now(UTC)
        # Unanswered for two hours against a one-hour target: missed.
        unanswered = helpdesk.open_conversation(
            script.JANE, script.CHAT, "Where is my order?", at=now - timedelta(hours=2)
        )
        # Answered after 10 minutes: on track. (Recent, so no batch that lacks the reply sees a miss: a
        # reply delivered after its conversation was judged missed would rightly add a correction note.)
        answered = helpdesk.open_conversation(
            script.OMAR, script.CHAT, "Change my address?", at=now - timedelta(minutes=40), assignee=script.PRIYA
        )
        helpdesk.agent_replies(answered, script.PRIYA, "Done!", at=now - timedelta(minutes=30))
        # Ten minutes old: on track.
        fresh = helpdesk.open_conversation(script.LEE, script.CHAT, "Open on Sunday?", at=now - timedelta(minutes=10))
        # Answered 90 minutes late, resolved since; an agent's own label stays beside the plugin's.
        late = helpdesk.open_conversation(script.ANA, script.CHAT, "Wrong VAT number", at=now - timedelta(hours=3))
        helpdesk.agent_adds_label(late, "vip", at=now - timedelta(hours=3) + timedelta(minutes=5))
        helpdesk.agent_replies(late, script.SAM, "Fixed.", at=now - timedelta(minutes=90))
        helpdesk.set_status(late, "resolved", at=now - timedelta(hours=1))

        expected_labels = {
            unanswered: ["sla-missed"],
            answered: ["sla-on-track"],
            fresh: ["sla-on-track"],
            late: ["vip", "sla-missed"],
        }
        stack.wait_for(
            lambda: (
                {conversation: helpdesk.conversations[conversation].labels for conversation in expected_labels}
                == expected_labels
            ),
            60,
            f"the labels {expected_labels}",
        )
        stack.wait_for(stack.settled(), 60, "the workers to finish every event and write-back")

        # Exactly one note per miss, whatever the echoes of the plugin's own writes did.
        assert [len(stack.notes(conversation)) for conversation in (unanswered, answered, fresh, late)] == [1, 0, 0, 1]
        assert "first response" in stack.notes(unanswered)[0] and "Standard" in stack.notes(unanswered)[0]
        store = stack.store()
        statuses = {conversation: store.summary((1, conversation))["status"] for conversation in expected_labels}
        assert statuses == {unanswered: "missed", answered: "on_track", fresh: "on_track", late: "missed"}
        applied = [
            entry["kind"]
            for conversation in expected_labels
            for entry in store.log_entries((1, conversation))
            if entry["kind"] == "applied"
        ]
        assert len(applied) == 4

        # A delivery Chatwoot sends twice (same X-Chatwoot-Delivery) is accepted once.
        with helpdesk.capturing() as deliveries:
            helpdesk.customer_writes(answered, "Thanks!")
        first, second = (
            requests.post(
                stack.url + "/webhooks/chatwoot", data=deliveries[0].body, headers=deliveries[0].headers(), timeout=10
            )
            for _ in range(2)
        )
        assert (first.json(), second.json()) == ({"status": "queued"}, {"status": "duplicate"})
        unsigned = requests.post(stack.url + "/webhooks/chatwoot", data=deliveries[0].body, timeout=10)
        assert unsigned.status_code == 401

        health = requests.get(stack.url + "/healthz", timeout=10)
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["status"] == "ok" and body["redis"]["ok"] and body["rules"]["ok"]
        assert body["database"] == {**body["database"], "ok": True, "backend": "postgresql"}

        received = 'sla_webhooks_received_total{connector="chatwoot",outcome="%s"}'

        def counted():
            # Each web process adds its counts to Redis within a second: poll until all of them have.
            metrics = stack.metrics()
            done = (
                metrics["sla_events_processed_total"] == metrics.get(received % "queued")
                and metrics.get(received % "duplicate") == 1
                and metrics.get(received % "rejected") == 1
            )
            return metrics if done else None

        metrics = stack.wait_for(counted, 30, "every webhook to be counted and every queued one processed")
        assert metrics["sla_events_processed_total"] >= 12
        assert metrics["sla_event_lag_seconds_count"] > 0
        assert metrics['sla_queue_depth{queue="events"}'] >= 0 and "sla_deadlines_pending" in metrics
        assert metrics["sla_writeback_failures_total"] == 0

        # Structured logs: one JSON object per line, with the delivery id of each webhook.
        web_log = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines() if line.startswith("{")]
        assert any(entry.get("delivery_id") == deliveries[0].delivery_id for entry in web_log)
