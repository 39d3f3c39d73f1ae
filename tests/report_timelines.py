"""Conversations with known SLA outcomes, built from the real Chatwoot payloads, for the report tests.

:func:`load_scenario` pushes the webhook bodies through the same hand-over the web receiver uses and a real RQ
worker into the store; the expected figures in ``tests/integration/test_reports.py`` are computed by hand from the
timelines below (all in the week of Monday 2026-03-02, UTC, every conversation resolved so nothing changes
with the wall clock the worker runs on).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rq import Queue, SimpleWorker

from plugin.adapters import redis_keys
from plugin.adapters import streams as ingest
from plugin.core.calendar import WEEKDAYS

UTC = UTC
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)

RULES = {
    "calendars": {
        "office": {
            "timezone": "Europe/Berlin",
            "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        }
    },
    "policies": {
        "trial": {"name": "Trial chat", "first_response": "30m", "target": 0.5, "mode": "shadow"},
        "urgent": {"name": "Urgent", "first_response": "1h", "next_response": "1h", "resolution": "8h", "target": 0.8},
        "standard": {
            "name": "Standard",
            "first_response": "2h",
            "next_response": "2h",
            "resolution": "24h",
            "target": 0.9,
        },
        "office": {"name": "Office hours", "first_response": "1h", "calendar": "office", "target": 0.8},
    },
    "rules": [
        {"name": "Trial inbox", "when": {"field": "inbox_id", "op": "equals", "value": 9}, "apply": "trial"},
        {"name": "Office inbox", "when": {"field": "inbox_id", "op": "equals", "value": 4}, "apply": "office"},
        {"name": "Urgent", "when": {"field": "priority", "op": "equals", "value": "urgent"}, "apply": "urgent"},
        {"name": "Everything else", "when": {"all": []}, "apply": "standard"},
    ],
}

CHANNELS = {
    1: "Channel::Email",
    2: "Channel::WebWidget",
    4: "Channel::Email",
    5: "Channel::WebWidget",
    9: "Channel::Api",
}
# The names the payloads show beside the ids (what reports learn and print).
INBOX_NAMES = {1: "Support Email", 2: "Website Chat", 4: "Sales Email", 5: "Sales Chat", 9: "Partner API"}
TEAM_NAMES = {10: "Billing", 20: "Tier 2"}
AGENT_NAMES = {7: "Sam Agent", 8: "Lee Park"}


def at(day: int, clock: str) -> datetime:
    """``day`` days after Monday 2026-03-02 at ``HH:MM`` UTC."""
    hours, minutes = map(int, clock.split(":"))
    return MONDAY + timedelta(days=day, hours=hours, minutes=minutes)


class Timeline:
    """The webhook bodies of one conversation, each carrying the same conversation attributes."""

    def __init__(
        self,
        fixture_payload: Callable[[str], dict],
        conversation_id: int,
        created: datetime,
        *,
        inbox: int,
        labels: tuple[str, ...] = (),
        priority: str | None = None,
        team: int | None = None,
        assignee: int | None = None,
        account: int = 1,
    ):
        self.load = fixture_payload
        self.id = conversation_id
        self.created = created
        self.account = account
        self.attributes = {
            "id": conversation_id,
            "inbox_id": inbox,
            "channel": CHANNELS[inbox],
            "labels": list(labels),
            "priority": priority,
            "created_at": int(created.timestamp()),
        }
        self.team = team
        self.assignee = assignee
        self.messages = 0

    def _conversation(self, template: dict[str, Any], status: str, updated: datetime) -> dict[str, Any]:
        conversation = copy.deepcopy(template)
        conversation.update(self.attributes, status=status, updated_at=updated.timestamp())
        conversation["account"] = {"id": self.account, "name": "Acme Support"}
        meta = conversation["meta"]
        meta["team"] = {"id": self.team, "name": TEAM_NAMES[self.team]} if self.team else None
        meta["assignee"] = (
            {"id": self.assignee, "name": AGENT_NAMES[self.assignee], "type": "user"} if self.assignee else None
        )
        return conversation

    def created_body(self) -> dict[str, Any]:
        payload = self.load("conversation_created")
        payload = self._conversation(payload, "open", self.created)
        payload["event"] = "conversation_created"
        return payload

    def _message(self, fixture: str, moment: datetime) -> dict[str, Any]:
        payload = self.load(fixture)
        self.messages += 1
        payload["id"] = self.id * 1000 + self.messages
        payload["created_at"] = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        payload["account"] = {"id": self.account, "name": "Acme Support"}
        payload["conversation"] = self._conversation(payload["conversation"], "open", moment)
        payload["inbox"] = {"id": self.attributes["inbox_id"], "name": INBOX_NAMES[self.attributes["inbox_id"]]}
        return payload

    def customer(self, moment: datetime) -> dict[str, Any]:
        """A public message from the customer."""
        return self._message("message_created-incoming", moment)

    def reply(self, moment: datetime) -> dict[str, Any]:
        """A public reply written by a human agent."""
        return self._message("message_created-outgoing", moment)

    def resolve(self, moment: datetime) -> dict[str, Any]:
        payload = self.load("conversation_status_changed-resolved")
        payload = self._conversation(payload, "resolved", moment)
        payload["changed_attributes"] = [{"status": {"previous_value": "open", "current_value": "resolved"}}]
        return payload


def scenario(fixture_payload: Callable[[str], dict]) -> tuple[list[dict], list[dict]]:
    """The report scenario: bodies of a first delivery, and late ones delivered after a worker run (which
    disprove a miss the first run recorded: conversation 6's reply at 10:00 arrives after its due 11:00)."""

    def timeline(conversation_id: int, created: datetime, **attributes: Any) -> Timeline:
        return Timeline(fixture_payload, conversation_id, created, **attributes)

    first: list[dict] = []
    late: list[dict] = []
    # 1: standard, inbox 1 (email), all in time.
    c = timeline(1, at(0, "09:00"), inbox=1, labels=("billing",), team=10, assignee=7)
    first += [c.created_body(), c.customer(at(0, "09:00")), c.reply(at(0, "09:30")), c.resolve(at(0, "12:00"))]
    # 2: standard, first reply at 12:00 against a due time of 11:00: one FRT miss.
    c = timeline(2, at(0, "09:00"), inbox=1, labels=("billing", "vip"), team=10, assignee=7)
    first += [c.created_body(), c.customer(at(0, "09:00")), c.reply(at(0, "12:00")), c.resolve(at(0, "13:00"))]
    # 3: standard, web chat: a waiting cycle from 10:20 (due 12:20) answered at 13:00, with two customer
    # messages after the due time: one NRT miss per cycle, three per customer message.
    c = timeline(3, at(0, "10:00"), inbox=2, team=10, assignee=8)
    first += [
        c.created_body(),
        c.customer(at(0, "10:00")),
        c.reply(at(0, "10:10")),
        c.customer(at(0, "10:20")),
        c.customer(at(0, "12:30")),
        c.customer(at(0, "12:40")),
        c.reply(at(0, "13:00")),
        c.resolve(at(0, "14:00")),
    ]
    # 4: urgent, resolved at 18:00 against a resolution due at 16:00: one RT miss.
    c = timeline(4, at(1, "08:00"), inbox=1, priority="urgent", team=20, assignee=7)
    first += [c.created_body(), c.customer(at(1, "08:00")), c.reply(at(1, "08:20")), c.resolve(at(1, "18:00"))]
    # 5: urgent, all in time.
    c = timeline(5, at(1, "08:00"), inbox=2, priority="urgent", team=20, assignee=8)
    first += [c.created_body(), c.customer(at(1, "08:00")), c.reply(at(1, "08:30")), c.resolve(at(1, "10:00"))]
    # 6: standard; the worker first sees no reply (FRT missed at 11:00), then the late reply timed 10:00:
    # the miss is corrected and does not count.
    c = timeline(6, at(1, "09:00"), inbox=1)
    first += [c.created_body(), c.customer(at(1, "09:00"))]
    late += [c.reply(at(1, "10:00")), c.resolve(at(1, "12:00"))]
    # 7: the shadow policy (inbox 9): first reply at 10:00 against 09:30.
    c = timeline(7, at(2, "09:00"), inbox=9)
    first += [c.created_body(), c.customer(at(2, "09:00")), c.reply(at(2, "10:00")), c.resolve(at(2, "10:30"))]
    # 8: standard, two missed waiting cycles: 09:20 (due 11:20) answered 11:30; 12:00 (due 14:00) with a
    # customer message at 14:30, answered 15:00: two misses per cycle, 1 + 2 = 3 per customer message.
    c = timeline(8, at(2, "09:00"), inbox=2, assignee=8)
    first += [
        c.created_body(),
        c.customer(at(2, "09:00")),
        c.reply(at(2, "09:10")),
        c.customer(at(2, "09:20")),
        c.reply(at(2, "11:30")),
        c.customer(at(2, "12:00")),
        c.customer(at(2, "14:30")),
        c.reply(at(2, "15:00")),
        c.resolve(at(2, "16:00")),
    ]
    return first, late


def synthetic_rows(
    count: int, missed: int, *, policy="urgent-email", target=0.8, start=MONDAY, mode="live", first_id=1
) -> list[dict]:
    """``count`` resolved applied SLAs of one policy, the first ``missed`` of them with an FRT miss."""
    rows = []
    for number in range(count):
        moment = start + timedelta(minutes=number)
        miss = number < missed
        rows.append(
            {
                "account_id": 1,
                "conversation_id": first_id + number,
                "policy_id": policy,
                "policy_name": policy,
                "policy_version": "v1",
                "mode": mode,
                "target": target,
                "applied_at": moment,
                "conversation_created_at": moment,
                "status": "missed" if miss else "hit",
                "resolved": True,
                "inbox_id": 1,
                "channel": "Channel::Email",
                "priority": "urgent",
                "labels": None,
                "frt_status": "missed" if miss else "hit",
                "frt_due_at": moment + timedelta(hours=1),
                "frt_misses": int(miss),
                "nrt_misses": 0,
                "rt_misses": 0,
                "nrt_misses_per_message": 0,
                "any_miss": miss,
                "evaluated_at": moment,
            }
        )
    return rows


def closed_now_rules(now: datetime) -> dict:
    """The scenario's rules plus a policy for inbox 5 whose calendar opens only three days from now."""
    rules = copy.deepcopy(RULES)
    later = WEEKDAYS[(now + timedelta(days=3)).weekday()]
    rules["calendars"]["later"] = {"timezone": "UTC", "hours": {later: ["00:00-24:00"]}}
    rules["policies"]["later"] = {
        "name": "Later",
        "first_response": "1h",
        "resolution": "8h",
        "calendar": "later",
        "target": 0.8,
    }
    rules["rules"].insert(
        0, {"name": "Inbox 5", "when": {"field": "inbox_id", "op": "equals", "value": 5}, "apply": "later"}
    )
    return rules


@pytest.fixture
def report_rules() -> dict:
    """The rules :func:`report_runtime` runs on (a test module may override this fixture)."""
    return RULES


def deliver_and_work(redis, bodies: list[dict]) -> None:
    """Hand the bodies to the workers as the web receiver does, then drain them with a real RQ worker."""
    for body in bodies:
        ingest.submit(redis, "chatwoot", json.dumps(body).encode(), received_at=datetime.now(UTC))
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=redis)], connection=redis).work(burst=True)


def load_running(redis, fixture_payload: Callable[[str], dict]) -> datetime:
    """Three conversations waiting for a first reply since ten minutes ago (re-timed to now, as the
    workers run on the real clock): 60 under the wall-clock standard policy, 40 under the office calendar,
    50 under :func:`closed_now_rules`' calendar, closed now. Returns their creation time."""
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    bodies = []
    for conversation_id, inbox in ((60, 1), (40, 4), (50, 5)):
        timeline = Timeline(fixture_payload, conversation_id, created, inbox=inbox, assignee=7)
        bodies += [timeline.created_body(), timeline.customer(created)]
    deliver_and_work(redis, bodies)
    return created


def load_scenario(redis, fixture_payload: Callable[[str], dict]) -> None:
    """Run the whole scenario through the workers (the runtime must point at the scenario's rules)."""
    first, late = scenario(fixture_payload)
    deliver_and_work(redis, first)
    deliver_and_work(redis, late)


def stretch_first_responses(store, policy_id: str, seconds: int) -> None:
    """Every stored first response of ``policy_id`` took ``seconds`` of working time (written around the
    store: the rollups are rebuilt)."""
    from plugin.adapters.rollups import rebuild
    from plugin.adapters.store import applied

    with store.engine.begin() as connection:
        connection.execute(
            applied.update()
            .where(applied.c.policy_id == policy_id, applied.c.frt_working_seconds.is_not(None))
            .values(frt_working_seconds=seconds)
        )
        rebuild(connection)


@pytest.fixture
def report_runtime(runtime_factory, report_rules):
    """The workers' runtime on ``report_rules`` and the test's database (import both fixtures into a test
    module)."""
    return runtime_factory(report_rules)
