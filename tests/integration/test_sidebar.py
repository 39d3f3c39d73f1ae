"""The Dashboard App's JSON endpoint and page: token limits, per-metric status, the calendar state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from plugin.core.calendar import parse_calendar
from plugin.core.events import parse_time

from report_timelines import (  # noqa: F401 (report_runtime is a fixture)
    RULES,
    closed_now_rules,
    load_running,
    load_scenario,
    report_runtime,
)

ADMIN = "admin-token-0123456789"
SIDEBAR = "sidebar-token-9876543210"
UTC = UTC


@pytest.fixture
def report_rules():
    return closed_now_rules(datetime.now(UTC))


@pytest.fixture
def client(report_runtime, fixture_payload, make_app, database_url):
    load_scenario(report_runtime.redis, fixture_payload)
    load_running(report_runtime.redis, fixture_payload)
    app = make_app(
        DATABASE_URL=database_url,
        SLA_ADMIN_TOKEN=ADMIN,
        SLA_SIDEBAR_TOKEN=SIDEBAR,
        CHATWOOT_URL="https://chat.example.com/app",
        CHATWOOT_ACCOUNT_ID=1,
    )
    return app.test_client()


def sidebar(client, account, conversation, **headers):
    return client.get(f"/api/sidebar/conversations/{account}/{conversation}", headers=headers)


def test_the_sidebar_token_reads_one_conversation(client):
    assert sidebar(client, 1, 2).status_code == 401
    assert sidebar(client, 1, 2, Authorization="Bearer wrong").status_code == 401
    data = client.get(f"/api/sidebar/conversations/1/2?token={SIDEBAR}").get_json()
    assert data["policy"]["id"] == "standard" and data["status"] == "missed"
    assert data["metrics"]["first_response"]["status"] == "missed"
    assert data["metrics"]["first_response"]["missed_at"] == "2026-03-02T11:00:00Z"
    assert [miss["miss"] for miss in data["misses"]] == ["first_response#0"]
    # The customer never wrote again after the reply: the next response never started, and is not "met".
    assert data["metrics"]["next_response"]["status"] == "not_started"
    assert "next_response" not in [entry["metric"] for entry in data["timeline"]]
    assert "applied" in [entry["kind"] for entry in data["timeline"]]
    times = [entry["at"] for entry in data["timeline"]]
    assert times == sorted(times)  # in the order things happened, not the order they were recorded
    # The admin token works here too; the sidebar token opens no report.
    assert sidebar(client, 1, 2, Authorization=f"Bearer {ADMIN}").status_code == 200
    assert client.get("/api/reports/summary", headers={"Authorization": f"Bearer {SIDEBAR}"}).status_code == 401


def test_a_corrected_miss_is_not_shown_and_nrt_counts_both_ways(client):
    six = sidebar(client, 1, 6, Authorization=f"Bearer {SIDEBAR}").get_json()
    assert six["misses"] == [] and six["status"] == "hit"
    assert "miss_corrected" in [entry["kind"] for entry in six["timeline"]]
    eight = sidebar(client, 1, 8, Authorization=f"Bearer {SIDEBAR}").get_json()
    assert (eight["metrics"]["next_response"]["misses"], eight["metrics"]["next_response"]["misses_per_message"]) == (
        2,
        3,
    )


def test_unknown_conversations_and_other_accounts(client):
    unknown = sidebar(client, 1, 999, Authorization=f"Bearer {SIDEBAR}").get_json()
    assert unknown["policy"] is None and unknown["status"] == "none"
    assert sidebar(client, 2, 2, Authorization=f"Bearer {SIDEBAR}").status_code == 404


def test_a_running_clock_outside_business_hours(client):
    data = sidebar(client, 1, 50, Authorization=f"Bearer {SIDEBAR}").get_json()
    first = data["metrics"]["first_response"]
    assert first["status"] == "running" and first["calendar_open_now"] is False
    # Nothing of the hour has been worked yet: all of it is left, and the calendar opens at the due day.
    assert first["remaining_working_seconds"] == 3600
    opens = parse_time(first["calendar_changes_at"])
    assert opens.weekday() == (datetime.now(UTC) + timedelta(days=3)).weekday() and opens.hour == 0
    assert parse_time(first["due_at"]) == opens + timedelta(hours=1)
    assert data["policy"]["timezone"] == "UTC" and data["policy"]["calendar"] == "later"


def test_calendar_state_follows_the_policys_calendar(client):
    data = sidebar(client, 1, 40, Authorization=f"Bearer {SIDEBAR}").get_json()
    first = data["metrics"]["first_response"]
    calendar = parse_calendar(RULES["calendars"]["office"])
    now = parse_time(data["now"])
    assert first["calendar_open_now"] is calendar.is_open(now)
    assert first["remaining_working_seconds"] == calendar.working_between(now, parse_time(first["due_at"]))
    assert data["policy"]["timezone"] == "Europe/Berlin"


def test_the_page_needs_the_sidebar_token_and_may_be_framed_only_by_chatwoot(client):
    assert client.get("/sidebar").status_code == 401
    response = client.get(f"/sidebar?token={SIDEBAR}")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == "frame-ancestors https://chat.example.com"
    html = response.get_data(as_text=True)
    assert 'data-chatwoot-origin="https://chat.example.com"' in html and 'data-default-account="1"' in html
    assert SIDEBAR not in html  # the script reads the token from its own URL
