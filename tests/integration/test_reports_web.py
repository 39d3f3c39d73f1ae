"""The reports over HTTP: tokens, JSON endpoints, spreadsheet-safe CSV, the server-rendered page."""

from __future__ import annotations

import csv
import io
import json
import logging

import pytest

from plugin.adapters.rollups import rebuild as rebuild_rollups
from plugin.adapters.store import Store, applied
from plugin.core.reports.csv_export import neutralise, to_csv

from report_timelines import (  # noqa: F401 (fixtures)
    load_scenario,
    report_rules,
    report_runtime,
    stretch_first_responses,
    synthetic_rows,
)

ADMIN = "admin-token-0123456789"
SIDEBAR = "sidebar-token-9876543210"
WEEK = "since=2026-03-02&until=2026-03-08"
BEARER = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def client(report_runtime, fixture_payload, make_app, database_url):
    load_scenario(report_runtime.redis, fixture_payload)
    app = make_app(
        DATABASE_URL=database_url,
        SLA_ADMIN_TOKEN=ADMIN,
        SLA_SIDEBAR_TOKEN=SIDEBAR,
        CHATWOOT_URL="https://chat.example.com",
    )
    return app.test_client()


ENDPOINTS = [
    "/api/reports/summary",
    "/api/reports/series?bucket=day",
    "/api/reports/grid",
    "/api/reports/breakdown?by=inbox",
    "/api/reports/conversations",
    "/api/reports/conversations/1/2",
    "/api/reports/summary.csv",
    "/reports",
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_reports_need_the_admin_token(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    # The sidebar's token opens one conversation's SLA and nothing else.
    assert client.get(path, headers={"Authorization": f"Bearer {SIDEBAR}"}).status_code == 401
    separator = "&" if "?" in path else "?"
    assert client.get(f"{path}{separator}token={SIDEBAR}").status_code == 401
    assert client.get(path, headers=BEARER).status_code == 200


def test_the_json_api_takes_the_token_only_as_a_header(client):
    assert client.get(f"/api/reports/summary?token={ADMIN}").status_code == 401
    assert client.get(f"/api/reports/summary.csv?token={ADMIN}").status_code == 200
    assert client.get(f"/api/reports/summary?format=csv&token={ADMIN}").status_code == 200
    assert client.get(f"/reports?token={ADMIN}").status_code == 200


def test_the_admin_token_in_the_query_opens_csv_downloads_and_pages_only(client):
    # ?format=csv on an endpoint without CSV used to let the token ride in the URL for its JSON.
    for path in ("/api/reports/conversations/1/2", "/api/reports/conversations/1/2?format=csv"):
        separator = "&" if "?" in path else "?"
        assert client.get(f"{path}{separator}token={ADMIN}").status_code == 401, path
    assert client.get("/api/reports/conversations/1/2", headers=BEARER).status_code == 200
    assert client.get(f"/api/reports/conversations.csv?{WEEK}&token={ADMIN}").status_code == 200


@pytest.mark.parametrize("path", ["/api/reports/summary", "/reports", "/sidebar", "/api/sidebar/conversations/1/2"])
def test_nothing_is_open_when_the_tokens_are_not_configured(make_app, path):
    client = make_app().test_client()
    response = client.get(path, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403
    assert "SLA_ADMIN_TOKEN" in response.get_json()["error"] or "SLA_SIDEBAR_TOKEN" in response.get_json()["error"]


def test_tokens_are_never_logged(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get(f"/reports?token={ADMIN}")
        client.get("/api/reports/summary", headers={"Authorization": "Bearer wrong-guess-123"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert ADMIN not in logged and "wrong-guess-123" not in logged


def test_json_endpoints(client):
    summary = client.get(f"/api/reports/summary?{WEEK}", headers=BEARER).get_json()
    assert (summary["overall"]["applied"], summary["overall"]["hit_rate_text"]) == (8, "37.5%")
    assert summary["filters"]["since"] == "2026-03-02T00:00:00Z"
    series = client.get(f"/api/reports/series?{WEEK}&bucket=hour", headers=BEARER).get_json()
    assert series["bucket"] == "hour" and len(series["points"]) == 7 * 24
    grid = client.get(f"/api/reports/grid?{WEEK}&inbox=1", headers=BEARER).get_json()
    assert grid["total"] == 2
    by_label = client.get(f"/api/reports/breakdown?{WEEK}&by=label", headers=BEARER).get_json()
    assert {row["key"]: row["applied"] for row in by_label["rows"]} == {"billing": 2, "vip": 1, None: 6}
    page = client.get(f"/api/reports/conversations?{WEEK}&missed=true&per_page=2&page=2", headers=BEARER).get_json()
    assert (page["total"], page["pages"], len(page["items"])) == (5, 3, 2)
    detail = client.get("/api/reports/conversations/1/6", headers=BEARER).get_json()
    assert [entry["kind"] for entry in detail["log"]][0] == "applied"
    assert client.get("/api/reports/conversations/1/404", headers=BEARER).status_code == 404


@pytest.mark.parametrize(
    "query", ["since=tomorrow", "bucket=minute", "by=moon", "per_page=0", "mode=dark", "tz=Europe/Atlantis"]
)
def test_bad_parameters_get_400_with_the_reason(client, query):
    kind = (
        "series"
        if "bucket" in query
        else "breakdown"
        if "by=" in query
        else "conversations"
        if "per_page" in query
        else "summary"
    )
    response = client.get(f"/api/reports/{kind}?{query}", headers=BEARER)
    assert response.status_code == 400 and response.get_json()["error"]
    if query.startswith("tz="):
        assert "'Europe/Atlantis'" in response.get_json()["error"]


def test_the_report_zone_defaults_to_the_setting(report_runtime, fixture_payload, make_app, database_url):
    load_scenario(report_runtime.redis, fixture_payload)
    app = make_app(DATABASE_URL=database_url, SLA_ADMIN_TOKEN=ADMIN, SLA_REPORT_TIMEZONE="Europe/Berlin")
    client = app.test_client()
    series = client.get(f"/api/reports/series?{WEEK}", headers=BEARER).get_json()
    assert series["timezone"] == "Europe/Berlin" and series["filters"]["since"] == "2026-03-01T23:00:00Z"
    assert series["points"][0]["local"] == "2026-03-02T00:00:00+01:00"
    grid = client.get(f"/api/reports/grid?{WEEK}&tz=UTC", headers=BEARER).get_json()
    assert grid["timezone"] == "UTC"


def test_unknown_report_is_404(client):
    assert client.get("/api/reports/everything", headers=BEARER).status_code == 404
    assert client.get("/api/reports/summary.xlsx", headers=BEARER).status_code == 404


def read_csv(response) -> list[dict]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_csv_exports_of_summaries_and_drill_down(client):
    summary = read_csv(client.get(f"/api/reports/summary.csv?{WEEK}", headers=BEARER))
    assert summary[0]["scope"] == "all" and summary[0]["applied"] == "8" and summary[0]["hit_rate_text"] == "37.5%"
    standard = next(row for row in summary if row["policy"] == "standard")
    assert standard["over_budget"] == "3" and standard["target"] == "0.9"
    daily = read_csv(client.get(f"/api/reports/series.csv?{WEEK}&bucket=day", headers=BEARER))
    assert [row["applied"] for row in daily] == ["3", "3", "2", "0", "0", "0", "0"]
    conversations = read_csv(client.get(f"/api/reports/conversations.csv?{WEEK}&missed=true", headers=BEARER))
    assert sorted(int(row["conversation_id"]) for row in conversations) == [2, 3, 4, 7, 8]
    three = next(row for row in conversations if row["conversation_id"] == "3")
    assert three["misses"] == "next_response 2026-03-02T12:20:00Z"
    assert three["link"] == "https://chat.example.com/app/accounts/1/conversations/3"
    grid = read_csv(client.get(f"/api/reports/grid?{WEEK}&format=csv", headers=BEARER))
    assert [row["weekday"] for row in grid] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    by_inbox = read_csv(client.get(f"/api/reports/breakdown.csv?{WEEK}&by=inbox", headers=BEARER))
    assert {row["inbox"]: row["applied"] for row in by_inbox} == {"1": "4", "2": "3", "9": "1"}


@pytest.mark.parametrize("text", ['=HYPERLINK("http://evil")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\r=1"])
def test_formula_cells_are_neutralised(text):
    assert neutralise(text) == "'" + text
    header, row = csv.reader(io.StringIO(to_csv(["a", "b"], [[text, 5]]), newline=""))
    assert header == ["a", "b"] and row == ["'" + text, "5"]


def test_plain_cells_stay_as_they_are():
    assert [neutralise(value) for value in ("Standard", "a=b", 3, -2, 0.5, None, True)] == [
        "Standard",
        "a=b",
        3,
        -2,
        0.5,
        "",
        "true",
    ]


def test_csv_export_neutralises_formulas_from_the_store(database_url, make_app):
    store = Store.from_url(database_url)
    store.migrate()
    rows = synthetic_rows(2, 1, policy="=cmd|' /C calc'!A0")
    rows[0]["labels"] = ",@evil,"
    rows[1]["channel"] = "+Channel"
    with store.engine.begin() as connection:
        connection.execute(applied.insert(), rows)
        rebuild_rollups(connection)  # written around the store: the rollups are rebuilt
    client = make_app(DATABASE_URL=database_url, SLA_ADMIN_TOKEN=ADMIN).test_client()
    text = client.get("/api/reports/conversations.csv?since=2026-03-01", headers=BEARER).get_data(as_text=True)
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert "'=cmd|' /C calc'!A0" in cells and "'@evil" in cells
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    summary = client.get("/api/reports/breakdown.csv?since=2026-03-01&by=channel", headers=BEARER).get_data(
        as_text=True
    )
    assert "'+Channel" in summary
    store.engine.dispose()


def test_a_formula_inside_a_label_list_is_neutralised_too(database_url, make_app):
    store = Store.from_url(database_url)
    store.migrate()
    rows = synthetic_rows(1, 1)
    rows[0]["labels"] = ',billing,=HYPERLINK("http://evil"),'
    with store.engine.begin() as connection:
        connection.execute(applied.insert(), rows)
        rebuild_rollups(connection)  # written around the store: the rollups are rebuilt
    client = make_app(DATABASE_URL=database_url, SLA_ADMIN_TOKEN=ADMIN).test_client()
    text = client.get("/api/reports/conversations.csv?since=2026-03-01", headers=BEARER).get_data(as_text=True)
    (row,) = csv.DictReader(io.StringIO(text))
    # Split at ";" (as a spreadsheet in a ";" locale would), no part starts a formula.
    assert row["labels"] == 'billing;\'=HYPERLINK("http://evil")'
    store.engine.dispose()


def test_the_page_renders_figures_tables_and_chart_data(client):
    response = client.get(f"/reports?{WEEK}&token={ADMIN}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert 'id="hit-rate">37.5%<' in html
    assert "answered 2 of 5 on time against a target of 90 %: 3 missed against target" in html
    assert 'id="report-data"' in html and 'id="breakdown-label"' in html
    data = json.loads(html.split('id="report-data">')[1].split("</script>")[0])
    assert len(data["daily"]) == 7 and data["grid"]["total"] == 6
    # The drill-down lists the conversations with a miss; links carry the filters and the token.
    assert html.count('class="misses"') == 5
    assert (
        "/api/reports/conversations.csv?since=2026-03-02T00%3A00%3A00Z&amp;until=2026-03-09T00%3A00%3A00Z"
        f"&amp;tz=UTC&amp;token={ADMIN}" in html
    )
    detail = client.get(f"/reports/conversations/1/6?token={ADMIN}").get_data(as_text=True)
    assert "miss corrected" in detail and 'class="corrected"' in detail


def test_the_page_reports_a_bad_filter(client):
    response = client.get(f"/reports?since=soon&token={ADMIN}")
    assert response.status_code == 400 and "since must be" in response.get_data(as_text=True)


def test_the_page_shows_names_and_offers_them_in_pickers(client):
    html = client.get(f"/reports?{WEEK}&token={ADMIN}").get_data(as_text=True)
    breakdown = html.split('id="breakdown-inbox"')[1].split("</table>")[0]
    assert "Website Chat" in breakdown and "Inbox 2" not in breakdown
    assert '<datalist id="choices-inbox">' in html and '<option value="Website Chat" label="#2">' in html
    assert '<option value="Standard" label="standard">' in html  # policies by name
    assert '<option value="billing">' in html.split('id="choices-label"')[1].split("</datalist>")[0]
    # A breakdown row links to the report filtered by it, keeping the token.
    assert (
        f"/reports?since=2026-03-02T00%3A00%3A00Z&amp;until=2026-03-09T00%3A00%3A00Z&amp;tz=UTC&amp;token={ADMIN}&amp;inbox=2"
        in html
    )


def test_a_name_typed_in_a_filter_is_resolved_or_refused_with_what_to_do(client):
    by_name = client.get(f"/api/reports/summary?{WEEK}&inbox=website%20chat", headers=BEARER).get_json()
    assert by_name["filters"]["inbox"] == [2] and by_name["overall"]["applied"] == 3
    page = client.get(f"/reports?{WEEK}&agent=Lee%20Park&token={ADMIN}").get_data(as_text=True)
    assert 'id="filter-agent"' in page and 'value="Lee Park"' in page
    detail = client.get(f"/reports/conversations/1/3?token={ADMIN}").get_data(as_text=True)
    assert "inbox Website Chat · team Billing · agent Lee Park" in detail
    refused = client.get(f"/api/reports/summary?{WEEK}&inbox=Helpdesk", headers=BEARER)
    assert refused.status_code == 400
    assert "no inbox is called 'Helpdesk': choose one from the inbox list" in refused.get_json()["error"]
    error_page = client.get(f"/reports?policy=Gold&token={ADMIN}")
    text = error_page.get_data(as_text=True)
    assert error_page.status_code == 400 and "no policy is called &#39;Gold&#39;" in text
    assert f'href="/reports?token={ADMIN}" id="start-again"' in text  # the way back keeps the token


def test_the_label_breakdown_leaves_out_the_plugins_own_labels(client, report_runtime):
    from plugin.adapters.store import applied

    with report_runtime.store.engine.begin() as connection:
        connection.execute(applied.update().where(applied.c.labels.is_(None)).values(labels=",sla-on-track,"))
        rebuild_rollups(connection)  # written around the store: the rollups are rebuilt
    by_label = client.get(f"/api/reports/breakdown?{WEEK}&by=label", headers=BEARER).get_json()
    assert {row["key"]: row["applied"] for row in by_label["rows"]} == {"billing": 2, "vip": 1, None: 6}


EXTREME = [
    ("until=9999-12-31", "until must lie between"),
    ("since=0001-01-01T00:00:00%2B05:00", "since must lie between"),  # before year 1 once in UTC
    ("until=9999-12-31T23:59:59-05:00", "until must lie between"),  # after year 9999 once in UTC
    ("since=9999-12-30&until=9999-12-31", "must lie between"),
    ("since=0001-01-01&until=0001-01-02&tz=Asia/Tokyo", "must lie between"),
    ("page=99999999999999999999", "page must be at most"),
    ("page=9223372036854775807&missed=true", "page must be at most"),
]
EXTREME_ENDPOINTS = [
    "/api/reports/summary",
    "/api/reports/series?bucket=hour",
    "/api/reports/grid",
    "/api/reports/breakdown?by=inbox",
    "/api/reports/conversations",
    "/api/reports/summary.csv",
    "/reports",
]


@pytest.mark.parametrize("query, message", EXTREME)
def test_extreme_dates_and_pages_are_a_clear_400_never_a_500(client, query, message):
    for endpoint in EXTREME_ENDPOINTS:
        if query.startswith("page") and "conversations" not in endpoint and endpoint != "/reports":
            continue  # only the drill-down pages
        separator = "&" if "?" in endpoint else "?"
        response = client.get(f"{endpoint}{separator}{query}", headers=BEARER)
        assert response.status_code == 400, (endpoint, response.status_code, response.get_data(as_text=True)[:300])
        assert message in response.get_data(as_text=True), endpoint


def test_targets_that_fit_in_json_csv_and_on_the_page(client):
    data = client.get(f"/api/reports/targets?{WEEK}", headers=BEARER).get_json()
    assert {row["policy"] for row in data["policies"]} == {"standard", "urgent", "trial"}
    text = client.get(f"/api/reports/targets.csv?{WEEK}", headers=BEARER).get_data(as_text=True)
    header, *rows = text.splitlines()
    assert header.startswith("policy,name,mode,metric,count,target_seconds,p50,p90,p95,hit_rate_at_0.5x")
    assert "standard,Standard,live,first_response,5,7200,1800,10800,10800,0.8,0.8,0.8,1.0,1.0" in rows
    html = client.get(f"/reports?{WEEK}&token={ADMIN}").get_data(as_text=True)
    row = html.split('<tr data-policy="standard" data-metric="first_response">')[1].split("</tr>")[0]
    assert "<td>2h</td>" in row and '<td class="p90">3h</td>' in row and "80.0 %" in row


def test_a_percentile_over_ten_times_the_target_says_so(client, report_runtime):
    stretch_first_responses(report_runtime.store, "standard", 11 * 7200)  # 11 x the 2 h target
    data = client.get(f"/api/reports/targets?{WEEK}", headers=BEARER).get_json()
    (standard,) = [row["first_response"] for row in data["policies"] if row["policy"] == "standard"]
    assert (data["percentile_step"], data["percentile_cap"]) == (0.05, 10)
    assert (standard["count"], standard["p50"], standard["over_cap"]) == (5, None, ["p50", "p90", "p95"])
    assert [rate["hit_rate"] for rate in standard["hit_rates"]] == [0, 0, 0, 0, 0]
    html = client.get(f"/reports?{WEEK}&token={ADMIN}").get_data(as_text=True)
    row = html.split('<tr data-policy="standard" data-metric="first_response">')[1].split("</tr>")[0]
    assert '<td class="p90">over 10x</td>' in row


def test_a_range_longer_than_an_hourly_series_still_shows_the_page(client):
    response = client.get(f"/reports?since=2025-01-01&until=2026-12-31&token={ADMIN}")
    assert response.status_code == 200
    data = json.loads(response.get_data(as_text=True).split('id="report-data">')[1].split("</script>")[0])
    assert data["hourly_bucket"] == "day" and len(data["hourly"]) == 730
    week = client.get(f"/reports?{WEEK}&token={ADMIN}").get_data(as_text=True)
    assert '"hourly_bucket": "hour"' in week
