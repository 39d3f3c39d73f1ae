"""Scale-out on one machine: gunicorn with two web processes and three ``sla-plugin worker`` processes share one
Redis and one PostgreSQL database. A few hundred signed webhooks of 30 conversations are posted at once by
eight threads, some twice (the same delivery again, and the same event as a new delivery). Each event is
processed once, no conversation is folded by two workers at a time (its final state equals ``replay`` of the
same bodies), and no note is written twice."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import requests
import sqlalchemy as sa

from connectors.chatwoot.webhooks import ChatwootConnector
from plugin.adapters.rule_files import load_rules
from plugin.adapters.store import misses
from plugin.cli.replay import replay
from plugin.demo import script
from plugin.demo.helpdesk import DemoHelpdesk, Person

from production_stack import ProductionStack

CONVERSATIONS = 30
POSTING_THREADS = 8
RULES = {
    "policies": {
        "standard": {
            "name": "Standard",
            "first_response": "30m",
            "next_response": "30m",
            "resolution": "3h",
            "warn_before": "5m",
            "target": 0.8,
        }
    },
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "standard"}],
    "labels": {
        "on_track": {"title": "sla-on-track", "color": "#2E7D32"},
        "at_risk": {"title": "sla-at-risk", "color": "#F9A825"},
        "missed": {"title": "sla-missed", "color": "#C62828"},
    },
}
STATUS_LABELS = {"sla-on-track", "sla-at-risk", "sla-missed"}


def a_morning_of_conversations(helpdesk: DemoHelpdesk, now: datetime, randomness: random.Random) -> dict[int, bool]:
    """30 conversations between six and one hours ago, every one resolved in the end (so its outcome does
    not depend on when it is evaluated); some answered late, some reopened, some labelled by an agent.
    Returns each conversation's id and whether an agent labelled it ``vip``."""
    labelled = {}
    for number in range(CONVERSATIONS):
        contact = Person(1000 + number, f"Customer {number}", f"customer{number}@example.com", "contact")
        agent = (script.SAM, script.PRIYA)[number % 2]
        moment = now - timedelta(hours=6) + timedelta(minutes=2 * number)

        def later(low: int, high: int) -> datetime:
            nonlocal moment
            moment += timedelta(minutes=randomness.randint(low, high), seconds=randomness.randint(0, 59))
            return moment

        conversation = helpdesk.open_conversation(contact, script.CHAT, f"Question {number}", at=moment, assignee=agent)
        helpdesk.agent_replies(conversation, agent, "First answer", at=later(5, 50))
        labelled[conversation] = randomness.random() < 0.3
        if labelled[conversation]:
            helpdesk.agent_adds_label(conversation, "vip", at=later(0, 1))
        helpdesk.customer_writes(conversation, "One more thing", at=later(2, 20))
        helpdesk.agent_replies(conversation, agent, "Second answer", at=later(5, 45))
        helpdesk.set_status(conversation, "resolved", at=later(5, 30))
        if randomness.random() < 0.3:
            helpdesk.customer_writes(conversation, "It happened again", at=later(5, 20))
            helpdesk.agent_replies(conversation, agent, "Third answer", at=later(5, 40))
            helpdesk.set_status(conversation, "resolved", at=later(5, 30))
    return labelled


def conversation_of(body: bytes) -> int:
    payload = json.loads(body)
    return payload["conversation"]["id"] if payload["event"] == "message_created" else payload["id"]


def test_web_and_worker_processes_scale_out_processing_each_event_once_in_order(tmp_path, postgres_url):
    randomness = random.Random(6)
    # The reconciler is off: its bodies bypass the webhook counter this test balances against.
    with ProductionStack(
        tmp_path,
        postgres_url,
        RULES,
        web_processes=2,
        worker_processes=3,
        settings={"SLA_RECONCILE_SECONDS": "0", "SLA_NAMES_REFRESH_SECONDS": "0", "SLA_LOG_LEVEL": "INFO"},
    ) as stack:
        with stack.helpdesk.capturing() as deliveries:
            labelled = a_morning_of_conversations(stack.helpdesk, datetime.now(UTC), randomness)
        same_delivery_again = randomness.sample(deliveries, len(deliveries) // 10)
        same_event_again = [delivery.again() for delivery in randomness.sample(deliveries, len(deliveries) // 20)]
        # Each thread posts its conversations' webhooks in the helpdesk's order; the copies go to random
        # threads at random places, so they race with their originals.
        lanes = [
            [delivery for delivery in deliveries if conversation_of(delivery.body) % POSTING_THREADS == lane]
            for lane in range(POSTING_THREADS)
        ]
        for copy in same_delivery_again + same_event_again:
            lane = randomness.choice(lanes)
            lane.insert(randomness.randint(0, len(lane)), copy)
        answers: Counter[str] = Counter()
        answers_lock = threading.Lock()

        def post(lane):
            with requests.Session() as session:
                for delivery in lane:
                    response = session.post(
                        stack.url + "/webhooks/chatwoot", data=delivery.body, headers=delivery.headers(), timeout=30
                    )
                    with answers_lock:
                        answers[response.json()["status"]] += 1

        threads = [threading.Thread(target=post, args=(lane,)) for lane in lanes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(deliveries) >= 300
        assert answers == {"queued": len(deliveries) + len(same_event_again), "duplicate": len(same_delivery_again)}

        stack.wait_for(stack.settled(), 180, "every event and write-back to be done")

        received = 'sla_webhooks_received_total{connector="chatwoot",outcome="%s"}'

        def balanced():
            # Each web process adds its counts to Redis within a second: poll until all of them have.
            metrics = stack.metrics()
            return metrics["sla_events_processed_total"] == metrics.get(received % "queued") and metrics.get(
                received % "duplicate"
            ) == len(same_delivery_again)

        # Each queued event (the posted ones and the echoes of the plugin's own writes) processed once.
        stack.wait_for(balanced, 30, "the processed events to match the queued webhooks")

        store = stack.store()
        rules = load_rules(stack.rules_dir)
        expected = {
            evaluation.conversation_id: evaluation.to_replay_json()
            for evaluation in replay(
                [delivery.body.decode() for delivery in deliveries],
                ChatwootConnector(),
                rules.match,
                rules.content_hash,
            ).evaluations
        }
        assert len(expected) == CONVERSATIONS
        outcomes = Counter()
        for conversation, replayed in expected.items():
            stored = store.summary((1, conversation))
            assert {key: stored[key] for key in replayed} == replayed, f"conversation {conversation}"
            outcomes[replayed["status"]] += 1
            kinds = [entry["kind"] for entry in store.log_entries((1, conversation))]
            assert kinds.count("applied") == 1, f"conversation {conversation}: {kinds}"
            labels = stack.helpdesk.conversations[conversation].labels
            wanted = "sla-missed" if replayed["status"] == "missed" else "sla-on-track"
            assert [label for label in labels if label in STATUS_LABELS] == [wanted], f"#{conversation}: {labels}"
            assert ("vip" in labels) == labelled[conversation]
        assert outcomes["missed"] and outcomes["hit"]  # the morning has both

        # Notes: never two with the same marker; one per miss that stands; a correction only after its note.
        with store.engine.connect() as connection:
            recorded = connection.execute(
                sa.select(misses.c.conversation_id, misses.c.miss, misses.c.corrected_at)
            ).all()
        markers = Counter(note.rsplit("\n", 1)[1] for conversation in expected for note in stack.notes(conversation))
        assert max(markers.values()) == 1, markers.most_common(3)
        for row in recorded:
            note = f"ref sla-plugin/1/{row.conversation_id}/note:{row.miss}"
            correction = f"ref sla-plugin/1/{row.conversation_id}/correction:{row.miss}"
            if row.corrected_at is None:
                assert note in markers and correction not in markers, (row, markers)
            else:
                assert (note in markers) == (correction in markers), (row, markers)
        standing = {(row.conversation_id, row.miss) for row in recorded if row.corrected_at is None}
        assert len(standing) == sum(
            replayed["metrics"][metric]["misses"] for replayed in expected.values() for metric in replayed["metrics"]
        )
