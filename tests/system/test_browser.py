"""The reports page and the Dashboard App in a real browser: Debian's headless Chromium driven by Selenium.

The app is served on a loopback port with real data (the report scenario through a real RQ worker). The
sidebar is loaded the way Chatwoot loads it: in an iframe of a parent page on another origin (the one
configured as CHATWOOT_URL), which answers 'chatwoot-dashboard-app:fetch-info' with the appContext JSON
string. A third origin, framed beside it, posts a context too and must be ignored. Screenshots go to
tests/artifacts/ (git-ignored). Nothing here downloads a browser: bin/test installs Debian's chromium and
chromium-driver when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import UTC
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from report_timelines import (  # noqa: F401 (report_runtime is a fixture)
    closed_now_rules,
    load_running,
    load_scenario,
    report_runtime,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
APP_CONTEXT = Path(__file__).resolve().parents[1] / "fixtures" / "dashboard-app-appContext-example.json"
ADMIN = "admin-token-0123456789"
SIDEBAR = "sidebar-token-9876543210"
WEEK = "since=2026-03-02&until=2026-03-08"

PARENT_PAGE = """<!doctype html><html><head><title>Chatwoot stand-in</title>
<style>body{margin:0;font:13px sans-serif;display:flex}#left{flex:1;padding:16px;background:#f4f6fb}
iframe{border:0;border-left:1px solid #ddd}</style></head><body>
<div id="left"><h3>Conversation (a stand-in for Chatwoot)</h3><p id="asked">fetch-info requests: 0</p></div>
<iframe id="sidebar" src="%(sidebar)s" width="380" height="760"></iframe>
<iframe id="other" src="%(other)s" width="1" height="1"></iframe>
<script>
  // Like Chatwoot's Frame.vue: answer the app's plain-string request with the JSON string of appContext.
  window.contextToSend = null;
  window.fetchInfoRequests = 0;
  function send() {
    if (window.contextToSend) {
      document.getElementById("sidebar").contentWindow.postMessage(JSON.stringify(window.contextToSend), "*");
    }
  }
  window.addEventListener("message", function (event) {
    if (event.data === "chatwoot-dashboard-app:fetch-info") {
      window.fetchInfoRequests += 1;
      document.getElementById("asked").textContent = "fetch-info requests: " + window.fetchInfoRequests;
      send();
    }
  });
</script></body></html>"""

OTHER_PAGE = """<!doctype html><html><body><script>
  // Another origin framed beside the app tries to make it show a conversation it chose.
  window.addEventListener("load", function () {
    var forged = JSON.stringify({event: "appContext", data: {conversation: {id: 2, account_id: 1}}});
    var send = function () { window.parent.frames[0].postMessage(forged, "*"); };
    send();
    window.setInterval(send, 200);
  });
</script></body></html>"""


class Server:
    """A WSGI app on a loopback port, served from a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def database_url(tmp_path):
    """One database is enough for the browser: SQLite (the figures are checked on both elsewhere)."""
    return f"sqlite:///{tmp_path / 'sla.sqlite3'}"


@pytest.fixture
def report_rules():
    from datetime import datetime

    return closed_now_rules(datetime.now(UTC))


@pytest.fixture
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "Chromium is not installed: run the tests with bin/test, which installs Debian's chromium "
            "and chromium-driver",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sla-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(30)
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def servers(report_runtime, fixture_payload, make_app, database_url):
    """The plugin, a Chatwoot stand-in and another origin, each on its own loopback port."""
    load_scenario(report_runtime.redis, fixture_payload)
    load_running(report_runtime.redis, fixture_payload)
    pages = Flask("pages")
    started = []
    try:
        chatwoot = Server(pages)
        started.append(chatwoot)
        plugin = Server(
            make_app(
                DATABASE_URL=database_url,
                SLA_ADMIN_TOKEN=ADMIN,
                SLA_SIDEBAR_TOKEN=SIDEBAR,
                CHATWOOT_URL=chatwoot.url,
                CHATWOOT_ACCOUNT_ID=1,
            )
        )
        started.append(plugin)
        other = Server(pages)
        started.append(other)
        pages.add_url_rule(
            "/parent",
            "parent",
            lambda: PARENT_PAGE % {"sidebar": f"{plugin.url}/sidebar?token={SIDEBAR}", "other": f"{other.url}/other"},
        )
        pages.add_url_rule("/other", "other", lambda: OTHER_PAGE)
        yield {"plugin": plugin.url, "chatwoot": chatwoot.url}
    finally:
        for server in started:
            server.stop()


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def test_reports_page_shows_figures_and_charts(browser, servers):
    from selenium.webdriver.common.by import By

    browser.get(f"{servers['plugin']}/reports?{WEEK}&token={ADMIN}")
    wait_for(
        lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "ready", what="the charts"
    )
    assert browser.find_element(By.ID, "hit-rate").text == "37.5%"
    assert browser.find_element(By.ID, "applied").text == "8"
    assert browser.find_element(By.ID, "over-budget").text == "5"  # standard 3, urgent 1, trial 1
    policies = browser.find_element(By.ID, "policies").text
    assert "answered 2 of 5 on time against a target of 90 %: 3 missed against target" in policies
    assert "shadow" in policies
    # Hit rate per day: three days with SLAs, and the target line.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-hit-rate circle.point")) == 3
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-hit-rate path.target-line")
    # Misses by hour of day: due hours 9, 11 (two), 12, 14, 16.
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-misses-by-hour rect.bar")
    assert sorted(int(bar.get_attribute("data-value")) for bar in bars) == [1, 1, 1, 1, 2]
    cells = browser.find_elements(By.CSS_SELECTOR, "#chart-grid rect.grid-cell")
    assert len(cells) == 7 * 24
    assert sum(int(cell.get_attribute("data-value")) for cell in cells) == 6
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-hourly rect.bar.missed")
    # Targets that fit: the standard policy's first responses, with the current target marked.
    standard = browser.find_element(
        By.CSS_SELECTOR, '#targets tr[data-policy="standard"][data-metric="first_response"]'
    )
    assert standard.find_element(By.CSS_SELECTOR, "td.p90").text == "3h"
    assert standard.find_element(By.CSS_SELECTOR, "td.current").text == "80.0 %"
    # A week of hours is drawn in 2-hour blocks (84 slots), not 168 hair-thin bars.
    assert browser.find_element(By.ID, "hourly-caption").text == "Applied and missed per 2 hours"
    rows = browser.find_elements(By.CSS_SELECTOR, "#conversations tbody tr")
    assert len(rows) == 5 and "next response 2026-03-04T11:20:00Z" in browser.find_element(By.ID, "conversations").text
    # Breakdowns and the drill-down show names, not ids.
    by_inbox = browser.find_element(By.ID, "breakdown-inbox").text
    assert "Support Email" in by_inbox and "Inbox 1" not in by_inbox
    assert "Sam Agent" in browser.find_element(By.ID, "breakdown-agent").text
    assert "Billing" in browser.find_element(By.ID, "breakdown-team").text
    assert "Website Chat" in browser.find_element(By.ID, "conversations").text
    browser.set_window_size(1400, browser.execute_script("return document.body.scrollHeight") + 40)
    screenshot(browser, "reports.png")
    browser.set_window_size(1400, 1000)

    # The zone picker: the same week in Berlin (UTC+1 in March) moves every due hour one hour later.
    zone = browser.find_element(By.ID, "tz")
    assert zone.get_attribute("value") == "UTC" and zone.get_attribute("list") == "zones"
    assert browser.find_elements(By.CSS_SELECTOR, "#zones option[value='Europe/Berlin']")
    zone.clear()
    zone.send_keys("Europe/Berlin")
    zone.submit()
    wait_for(lambda: "tz=Europe%2FBerlin" in browser.current_url, what="the report in Berlin time")
    wait_for(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "ready", what="charts")
    assert "(Europe/Berlin, until excluded)" in browser.find_element(By.ID, "range").text
    assert browser.find_element(By.ID, "range").text.startswith("2026-03-02 00:00 to 2026-03-09 00:00")
    by_hour = browser.execute_script(
        "return JSON.parse(document.getElementById('report-data').textContent).grid.by_hour"
    )
    assert [hour for hour, count in enumerate(by_hour) for _ in range(count)] == [10, 12, 12, 13, 15, 17]
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-misses-by-hour rect.bar")
    assert any(bar.find_element(By.TAG_NAME, "title").get_attribute("textContent").startswith("10h") for bar in bars)

    # The pickers offer names: typing one filters the report by that inbox (its id in the links).
    options = browser.find_elements(By.CSS_SELECTOR, "#choices-inbox option")
    assert {option.get_attribute("value") for option in options} == {
        "Support Email",
        "Website Chat",
        "Partner API",
        "Sales Email",  # the running conversations' inboxes: known, though not in this week
        "Sales Chat",
    }
    assert {o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#choices-agent option")} == {
        "Sam Agent",
        "Lee Park",
    }
    picker = browser.find_element(By.ID, "filter-inbox")
    picker.send_keys("Website Chat")
    picker.submit()
    wait_for(lambda: "inbox=Website+Chat" in browser.current_url, what="the report for Website Chat")
    assert browser.find_element(By.ID, "applied").text == "3"
    assert browser.find_element(By.ID, "filter-inbox").get_attribute("value") == "Website Chat"
    assert "(Europe/Berlin, until excluded)" in browser.find_element(By.ID, "range").text  # the zone is kept
    # A breakdown row opens the report filtered by it.
    browser.find_element(By.LINK_TEXT, "Lee Park").click()
    wait_for(lambda: "agent=8" in browser.current_url, what="the report for Lee Park")
    assert browser.find_element(By.ID, "filter-agent").get_attribute("value") == "Lee Park"
    assert browser.find_element(By.ID, "applied").text == "3"  # 3, 5 and 8: Lee Park's, all on Website Chat
    # A name nobody has is refused with what to do, and the way back keeps the token.
    picker = browser.find_element(By.ID, "filter-team")
    picker.send_keys("Nightshift")
    picker.submit()
    wait_for(lambda: browser.find_elements(By.ID, "start-again"), what="the error page")
    assert "no team is called 'Nightshift'" in browser.find_element(By.CSS_SELECTOR, "p.error").text
    browser.find_element(By.ID, "start-again").click()
    wait_for(lambda: browser.find_elements(By.ID, "hit-rate"), what="the report again")
    # The default 30 days: 720 hours in 8-hour blocks.
    wait_for(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "ready", what="charts")
    assert browser.find_element(By.ID, "hourly-caption").text == "Applied and missed per 8 hours"
    browser.get(f"{servers['plugin']}/reports?{WEEK}&token={ADMIN}")

    # The drill-down's timeline link shows a conversation's event log.
    browser.find_element(
        By.CSS_SELECTOR, "#conversations tbody tr:last-child a[href*='/reports/conversations/']"
    ).click()
    wait_for(lambda: browser.find_elements(By.ID, "log"), what="the conversation page")
    assert "applied" in browser.find_element(By.ID, "log").text


def test_sidebar_shows_the_conversation_chatwoot_posts_and_ignores_other_origins(browser, servers):
    from selenium.webdriver.common.by import By

    browser.get(f"{servers['chatwoot']}/parent")
    sidebar = wait_for(lambda: browser.find_elements(By.ID, "sidebar"), what="the app's iframe")[0]
    # The app asks its parent for context, and the forged messages of the other origin are ignored.
    wait_for(lambda: browser.execute_script("return window.fetchInfoRequests") >= 1, what="fetch-info")
    browser.switch_to.frame(sidebar)
    app = browser.find_element(By.ID, "app")
    wait_for(lambda: int(app.get_attribute("data-ignored") or 0) >= 2, what="ignored messages")
    assert app.get_attribute("data-state") == "waiting"
    assert app.get_attribute("data-conversation") is None

    # Chatwoot answers with the appContext of conversation 60 (created ten minutes ago, no reply yet).
    context = json.loads(APP_CONTEXT.read_text())
    context.pop("_note", None)
    running = copy.deepcopy(context)
    running["data"]["conversation"]["id"] = 60
    browser.switch_to.default_content()
    browser.execute_script("window.contextToSend = arguments[0]; send();", running)
    browser.switch_to.frame(sidebar)
    wait_for(lambda: app.get_attribute("data-state") == "ready", what="the SLA")
    assert app.get_attribute("data-conversation") == "1/60"  # the account from CHATWOOT_ACCOUNT_ID
    assert browser.find_element(By.ID, "policy-name").text == "Standard"
    assert not browser.find_element(By.ID, "mode").is_displayed()  # a live policy has no shadow badge
    countdown = browser.find_element(By.CSS_SELECTOR, '[data-metric="first_response"] .countdown')
    first = int(wait_for(lambda: countdown.get_attribute("data-seconds"), what="the countdown"))
    assert 6500 < first <= 6600 and countdown.text.endswith("left")  # 2 h target, 10 minutes gone
    wait_for(lambda: int(countdown.get_attribute("data-seconds")) < first, timeout=5, what="a tick")
    assert "SLA applied" in browser.find_element(By.ID, "timeline").text
    browser.switch_to.default_content()
    screenshot(browser, "sidebar-running.png")

    # A conversation whose calendar is closed now: the clock stands still and says so.
    closed = copy.deepcopy(context)
    closed["data"]["conversation"]["id"] = 50
    browser.execute_script("window.contextToSend = arguments[0]; send();", closed)
    browser.switch_to.frame(sidebar)
    wait_for(lambda: app.get_attribute("data-conversation") == "1/50", what="conversation 50")
    hours = browser.find_element(By.CSS_SELECTOR, '[data-metric="first_response"] .hours')
    wait_for(lambda: "outside business hours" in hours.text, what="the closed calendar")
    seconds = browser.find_element(By.CSS_SELECTOR, '[data-metric="first_response"] .countdown')
    assert seconds.get_attribute("data-seconds") == "3600"
    time.sleep(1.2)
    assert seconds.get_attribute("data-seconds") == "3600"  # no working time passes while closed
    browser.switch_to.default_content()
    screenshot(browser, "sidebar-outside-hours.png")

    # A resolved conversation with a miss: statuses, no countdown, the miss in the timeline.
    missed = copy.deepcopy(context)
    missed["data"]["conversation"].update(id=2, account_id=1)
    browser.execute_script("window.contextToSend = arguments[0]; send();", missed)
    browser.switch_to.frame(sidebar)
    wait_for(lambda: app.get_attribute("data-conversation") == "1/2", what="conversation 2")
    assert browser.find_element(By.ID, "status").text == "missed"
    assert "Missed: first response" in browser.find_element(By.ID, "timeline").text
    # No customer message after the reply: the next response never started, and the app does not say "met".
    next_response = browser.find_element(By.CSS_SELECTOR, '[data-metric="next_response"] .badge')
    assert next_response.text == "not started"
    assert "Met: next response" not in browser.find_element(By.ID, "timeline").text
    browser.switch_to.default_content()
    screenshot(browser, "sidebar-missed.png")
