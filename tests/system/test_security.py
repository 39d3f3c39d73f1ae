"""Security: webhook signatures and their replay window, who may read the reports and the sidebar, secrets
never in logs (a whole flow's logs grepped for every secret), no request to any host but the configured
helpdesk, spreadsheet-safe CSV, and the dependency audit command.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import responses
from rq import Queue, SimpleWorker

from connectors.chatwoot.client import ChatwootClient, ChatwootError
from plugin.adapters import redis_keys
from plugin.adapters.store import Store
from plugin.demo.helpdesk import chatwoot_headers
from plugin.jobs.runtime import Runtime, current_runtime
from plugin.web import webhooks

from faults import (
    PROJECT_ROOT,
    Traffic,
    child_environment,
    enqueue_scheduled_now,
    fake_helpdesk,
    labels_of,
    markers,
    stop_process,
    wait_until,
    write_rules,
)

SECRET = "whsec-security-9d8c7b6a5f4e"
API_TOKEN = "api-token-security-1q2w3e4r"
ADMIN_TOKEN = "admin-token-security-5t6y7u8i"
SIDEBAR_TOKEN = "sidebar-token-security-9o0p1a2s"
WEBHOOK_TOKEN = "url-token-security-3d4f5g6h"
DB_PASSWORD = "db-password-security-7j8k9l0z"
BASE = "http://chatwoot.test"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "chatwoot"


def signed(body: bytes, timestamp: int | None = None, secret: str = SECRET, delivery: str | None = None) -> dict:
    return chatwoot_headers(body, secret, sent_at=timestamp, delivery_id=delivery or str(uuid.uuid4()))


@pytest.fixture
def environment(monkeypatch, tmp_path, redis_server, runtime_environment):
    """The worker side reads the environment: same Redis, database and rules as the app under test."""
    rules_dir = write_rules(tmp_path / "rules")
    values = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'sla.sqlite3'}",
        "REDIS_URL": redis_server.url,
        "SLA_RULES_DIR": str(rules_dir),
        "CHATWOOT_URL": BASE,
        "CHATWOOT_ACCOUNT_ID": "1",
        "CHATWOOT_API_TOKEN": API_TOKEN,
        "CHATWOOT_WEBHOOK_SECRET": SECRET,
        "SLA_ADMIN_TOKEN": ADMIN_TOKEN,
        "SLA_SIDEBAR_TOKEN": SIDEBAR_TOKEN,
        "SLA_RECONCILE_SECONDS": "0",
        "SLA_NAMES_REFRESH_SECONDS": "0",
    }
    runtime_environment(**values)
    monkeypatch.setattr(
        Runtime,
        "helpdesk",
        lambda *_: ChatwootClient(BASE, 1, API_TOKEN, sleep=lambda seconds: None),
    )
    return values


@pytest.fixture
def app(make_app, environment):
    return make_app(
        **{
            name: value
            for name, value in environment.items()
            if name not in ("SLA_RECONCILE_SECONDS", "SLA_NAMES_REFRESH_SECONDS")
        }
    )


def work(redis) -> None:
    """Real RQ workers drain both queues; retries scheduled for later (a write-back round after a helpdesk
    failure) run at once."""
    queues = [Queue(redis_keys.EVENTS_QUEUE, connection=redis), Queue(redis_keys.WRITEBACK_QUEUE, connection=redis)]
    SimpleWorker(queues, connection=redis).work(burst=True, logging_level="ERROR")
    for _ in range(30):
        if not enqueue_scheduled_now(redis):
            return
        SimpleWorker(queues, connection=redis).work(burst=True, logging_level="ERROR")


# -- signatures and the replay window ----------------------------------------------------------------------


def test_captured_signed_request_replayed_after_six_minutes_is_refused(app, redis, monkeypatch):
    client = app.test_client()
    body = (FIXTURES / "message_created-incoming.json").read_bytes()
    captured = signed(body)
    assert client.post("/webhooks/chatwoot", data=body, headers=captured).status_code == 202

    class SixMinutesLater(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + timedelta(minutes=6)

    monkeypatch.setattr(webhooks, "datetime", SixMinutesLater)
    # The same bytes, again (a new delivery id changes nothing: only the signed timestamp counts).
    for headers in (captured, {**captured, "X-Chatwoot-Delivery": "attacker-chosen"}):
        response = client.post("/webhooks/chatwoot", data=body, headers=headers)
        assert response.status_code == 401
    assert redis.xlen(redis_keys.EVENT_STREAM) == 1


def test_same_delivery_replayed_within_the_window_is_a_duplicate_processed_once(app, redis):
    client = app.test_client()
    body = Traffic().conversation(0, "missed")[0]
    headers = signed(body, delivery="delivery-replayed-1")
    answers = [client.post("/webhooks/chatwoot", data=body, headers=headers).get_json()["status"] for _ in range(3)]
    assert answers == ["queued", "duplicate", "duplicate"]
    # Within the window, the same signed bytes under another delivery id are queued, and the engine drops
    # the event as one it already has (its key): processed once in effect.
    other = {**headers, "X-Chatwoot-Delivery": "delivery-replayed-2"}
    assert client.post("/webhooks/chatwoot", data=body, headers=other).get_json()["status"] == "queued"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = fake_helpdesk(API_TOKEN)
        helpdesk.register(mock, BASE)
        work(redis)
    runtime = current_runtime()
    state = runtime.store.history((1, 1000))
    assert len(state.timeline) == 1
    assert [entry["kind"] for entry in runtime.store.log_entries((1, 1000))].count("applied") == 1
    assert sum(markers(helpdesk, 1000).values()) == 1  # one miss, one note


@pytest.mark.parametrize(
    "tamper",
    [
        "body",
        "secret",
        "no signature",
        "no timestamp",
        "future",
        "token instead",
        "signature of empty body",
        "uppercase scheme",
    ],
)
def test_forged_or_incomplete_signatures_are_refused(app, redis, tamper):
    client = app.test_client()
    body = (FIXTURES / "conversation_created.json").read_bytes()
    headers = signed(body)
    path = "/webhooks/chatwoot"
    if tamper == "body":
        body = body.replace(b'"open"', b'"resolved"')
    elif tamper == "secret":
        headers = signed(body, secret="not-the-secret")
    elif tamper == "no signature":
        del headers["X-Chatwoot-Signature"]
    elif tamper == "no timestamp":
        del headers["X-Chatwoot-Timestamp"]
    elif tamper == "future":
        headers = signed(body, timestamp=int(time.time()) + 400)
    elif tamper == "token instead":
        headers, path = {"Content-Type": "application/json"}, f"/webhooks/chatwoot?token={SECRET}"
    elif tamper == "signature of empty body":
        headers = signed(b"")
    else:
        headers["X-Chatwoot-Signature"] = headers["X-Chatwoot-Signature"].replace("sha256=", "SHA512=")
    assert client.post(path, data=body, headers=headers).status_code == 401
    assert not redis.exists(redis_keys.EVENT_STREAM)


def test_url_token_installs_need_the_token(make_app, redis):
    client = make_app(SLA_WEBHOOK_TOKEN=WEBHOOK_TOKEN).test_client()
    body = (FIXTURES / "conversation_created.json").read_bytes()
    plain = {"Content-Type": "application/json"}
    assert client.post("/webhooks/chatwoot", data=body, headers=plain).status_code == 401
    assert client.post("/webhooks/chatwoot?token=wrong", data=body, headers=plain).status_code == 401
    assert client.post(f"/webhooks/chatwoot?token={WEBHOOK_TOKEN}", data=body, headers=plain).status_code == 202


# -- who may read what -----------------------------------------------------------------------------------------

REPORT_PATHS = [
    "/api/reports/summary",
    "/api/reports/series?bucket=hour",
    "/api/reports/grid",
    "/api/reports/breakdown?by=label",
    "/api/reports/conversations",
    "/api/reports/conversations.csv",
    "/api/reports/summary?format=csv",
    "/api/reports/conversations/1/1000",
    "/reports",
    "/reports/conversations/1/1000",
]
SIDEBAR_PATHS = ["/sidebar", "/api/sidebar/conversations/1/1000"]
PUBLIC = {"/webhooks/<connector_name>", "/webhooks/<connector_name>/<account_id>", "/healthz", "/metrics"}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", REPORT_PATHS)
def test_report_endpoints_need_the_admin_token(app, path):
    client = app.test_client()
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer("wrong")).status_code == 401
    assert client.get(path, headers=bearer(SIDEBAR_TOKEN)).status_code == 401  # the sidebar token opens no report
    assert client.get(path, headers={"Authorization": ADMIN_TOKEN}).status_code == 401  # not a Bearer header
    assert client.get(path, headers=bearer(ADMIN_TOKEN)).status_code in (200, 404)


@pytest.mark.parametrize(
    "path",
    [
        "/api/reports/summary",
        "/api/reports/conversations/1/1000",
        # Asking for CSV where there is none used to let the token ride in the URL for the JSON answer.
        "/api/reports/conversations/1/1000?format=csv",
    ],
)
def test_json_reports_do_not_take_the_admin_token_from_the_url(app, path):
    # A URL ends up in browser history, proxies' logs and Referer headers; only pages and CSV links take it.
    separator = "&" if "?" in path else "?"
    assert app.test_client().get(f"{path}{separator}token={ADMIN_TOKEN}").status_code == 401


@pytest.mark.parametrize("path", SIDEBAR_PATHS)
def test_sidebar_token_opens_the_sidebar_and_only_it(app, path):
    client = app.test_client()
    assert client.get(path).status_code == 401
    assert client.get(f"{path}{'&' if '?' in path else '?'}token=wrong").status_code == 401
    assert client.get(f"{path}?token={SIDEBAR_TOKEN}").status_code == 200
    assert client.get(path, headers=bearer(ADMIN_TOKEN)).status_code == 200


def test_unconfigured_tokens_close_their_endpoints(make_app):
    client = make_app().test_client()
    for path in REPORT_PATHS + SIDEBAR_PATHS:
        assert client.get(path, headers=bearer("anything")).status_code == 403, path


def test_every_route_but_webhooks_health_and_metrics_needs_a_token(app):
    client = app.test_client()
    checked = []
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC or rule.endpoint.endswith("static"):
            continue
        path = re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method)
            assert response.status_code in (401, 403, 405), (method, path, response.status_code)
            checked.append((method, path))
    assert len(checked) >= 5, checked


# -- secrets never in logs -------------------------------------------------------------------------------------


def test_no_secret_ever_reaches_a_log_line(app, redis, environment, caplog, capfd):
    secrets = [SECRET, API_TOKEN, ADMIN_TOKEN, SIDEBAR_TOKEN]
    client = app.test_client()
    logging.getLogger().setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        bodies = [body for bodies in Traffic().conversations(5) for body in bodies]
        for body in bodies:
            assert client.post("/webhooks/chatwoot", data=body, headers=signed(body)).status_code == 202
        body = bodies[0]
        client.post("/webhooks/chatwoot", data=body, headers=signed(body, secret="wrong-secret"))
        client.post(f"/webhooks/chatwoot?token={SECRET}", data=body, headers={"Content-Type": "application/json"})
        client.get(f"/reports?token={ADMIN_TOKEN}x")
        client.get(f"/reports?token={ADMIN_TOKEN}")
        client.get("/api/reports/summary", headers=bearer(SIDEBAR_TOKEN))
        client.get(f"/sidebar?token={SIDEBAR_TOKEN}")
        client.get("/healthz")
        client.get("/metrics")
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            helpdesk = fake_helpdesk(API_TOKEN)
            helpdesk.register(mock, BASE)
            helpdesk.fail_next(6, "5xx")  # retries and their warnings
            work(redis)
            helpdesk.replace_token("rotated")  # then the token is revoked: an error is logged
            for body in Traffic(first_conversation=3000).conversation(0, "missed"):
                client.post("/webhooks/chatwoot", data=body, headers=signed(body))
            work(redis)
        assert any("refused the API token" in record.getMessage() for record in caplog.records)
    captured = capfd.readouterr()
    texts = [captured.out, captured.err]
    for record in caplog.records:
        texts += [record.getMessage(), repr(vars(record))]
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    everything = "\n".join(texts)
    assert '"level"' in captured.err  # the JSON log lines were captured too
    for secret in secrets:
        assert secret not in everything, f"a secret appeared in the logs: {secret[:6]}..."


def test_health_check_never_shows_the_database_password(make_app, caplog):
    app = make_app(DATABASE_URL=f"postgresql://sla:{DB_PASSWORD}@127.0.0.1:1/sla")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert DB_PASSWORD not in response.get_data(as_text=True)
    assert all(DB_PASSWORD not in record.getMessage() for record in caplog.records)


def test_the_production_server_access_log_never_shows_url_tokens_nor_forged_lines(tmp_path, redis_server):
    """`sla-plugin serve` logs every request; the sidebar and report links and unsigned installs carry
    tokens in the URL, so the access log must not print query strings."""
    from plugin.adapters.services import pick_free_port

    port = pick_free_port()
    environment = child_environment(
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 's.db'}",
        SLA_RULES_DIR=str(write_rules(tmp_path / "rules")),
        SLA_WEBHOOK_TOKEN=WEBHOOK_TOKEN,
        SLA_ADMIN_TOKEN=ADMIN_TOKEN,
        SLA_SIDEBAR_TOKEN=SIDEBAR_TOKEN,
    )
    log_path = tmp_path / "serve.log"
    Store.from_url(environment["DATABASE_URL"]).migrate()  # as a worker does when it starts
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "plugin.cli", "serve", "--port", str(port), "--workers", "1"],
            env=environment,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def get(path):
            try:
                return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            except requests.ConnectionError:
                return None

        wait_until(lambda: get("/healthz") is not None, 30, "the server answers")
        body = (FIXTURES / "conversation_created.json").read_bytes()
        assert (
            requests.post(
                f"http://127.0.0.1:{port}/webhooks/chatwoot?token={WEBHOOK_TOKEN}", data=body, timeout=5
            ).status_code
            == 202
        )
        assert get(f"/reports?token={ADMIN_TOKEN}").status_code == 200
        assert get(f"/sidebar?token={SIDEBAR_TOKEN}").status_code == 200
        # An encoded newline in the path must not start a forged line of its own.
        assert get("/healthz%0A6.6.6.6%20%22GET%20/forged%22%20200%20-%200.1s").status_code == 404
        wait_until(lambda: log_path.read_text().count("GET /") >= 4, 15, "the access log is written")
    finally:
        stop_process(server)
    text = log_path.read_text()
    assert "/webhooks/chatwoot" in text
    assert not [line for line in text.splitlines() if line.startswith("6.6.6.6")], text
    assert '/healthz%0A6.6.6.6 %22GET /forged%22 200 - 0.1s"' in text
    for secret in (WEBHOOK_TOKEN, ADMIN_TOKEN, SIDEBAR_TOKEN):
        assert secret not in text, f"the access log shows a token: {secret[:8]}..."


# -- no request to any host but the helpdesk -----------------------------------------------------------------


def test_urls_in_payloads_never_cause_a_request_elsewhere(app, redis):
    client = app.test_client()
    traffic = Traffic()
    bodies = []
    for body in [body for bodies in traffic.conversations(5) for body in bodies]:
        payload = json.loads(body)
        holder = payload.get("conversation", payload)
        if isinstance(holder, dict) and "meta" in holder:
            holder["meta"].setdefault("sender", {})["thumbnail"] = "http://evil.example/pixel.png"
            holder["additional_attributes"] = {
                "referer": "http://evil.example/page",
                "browser": {"url": "https://169.254.169.254/latest/meta-data"},
            }
            holder["custom_attributes"] = {"callback_url": "http://127.0.0.1:9/", "url": "file:///etc/passwd"}
        if payload.get("event") == "message_created":
            payload["content"] = "see http://evil.example/a and https://evil.example/b"
            payload["attachments"] = [{"data_url": "http://evil.example/file", "thumb_url": "http://evil.example/t"}]
        bodies.append(json.dumps(payload).encode())
    bodies.append(
        json.dumps(
            {
                "event": "webhook_updated",
                "account": {"id": 1},
                "webhook": {"url": "http://evil.example/hook"},
                "url": "http://evil.example/",
            }
        ).encode()
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = fake_helpdesk(API_TOKEN)
        helpdesk.register(mock, BASE)
        elsewhere = []
        for method in (responses.GET, responses.POST, responses.PUT, responses.DELETE, responses.PATCH):
            mock.add_callback(
                method,
                re.compile(r"^(?!http://chatwoot\.test/).*"),
                callback=lambda request: elsewhere.append(request.url) or (599, {}, ""),
            )
        for body in bodies:
            assert client.post("/webhooks/chatwoot", data=body, headers=signed(body)).status_code == 202
        work(redis)
        client.get(f"/sidebar?token={SIDEBAR_TOKEN}")
        client.get("/api/sidebar/conversations/1/1000", headers=bearer(SIDEBAR_TOKEN))
        client.get(f"/reports?token={ADMIN_TOKEN}")
        hosts = {urlsplit(call.request.url).hostname for call in mock.calls}
    assert elsewhere == []
    assert hosts == {"chatwoot.test"}, hosts
    assert any(labels_of(helpdesk, key) for key in helpdesk.conversations)  # the helpdesk itself was written to


def test_the_helpdesk_client_never_follows_a_redirect_elsewhere():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.GET,
            f"{BASE}/api/v1/accounts/1/conversations/5/labels",
            status=302,
            headers={"Location": "http://evil.example/steal"},
        )
        stolen = mock.add(responses.GET, "http://evil.example/steal", json={"payload": []})
        with pytest.raises(ChatwootError, match="redirected"):
            ChatwootClient(BASE, 1, API_TOKEN, sleep=lambda seconds: None).conversation_labels(5)
        assert stolen.call_count == 0


# -- CSV injection ---------------------------------------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("http://evil.example","click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


def test_report_csv_is_safe_to_open_in_a_spreadsheet(app, redis):
    client = app.test_client()
    traffic = Traffic()
    for number, formula in enumerate(FORMULAS):
        for body in traffic.conversation(number, "missed"):
            payload = json.loads(body)
            holder = payload.get("conversation", payload)
            if isinstance(holder, dict) and "channel" in holder:
                holder["channel"] = formula
                holder["labels"] = ["vip", formula]  # the formula after the list separator
            body = json.dumps(payload).encode()
            assert client.post("/webhooks/chatwoot", data=body, headers=signed(body)).status_code == 202
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=redis)], connection=redis).work(
        burst=True, logging_level="ERROR"
    )
    cells = []
    for path in (
        "/api/reports/conversations.csv?missed=false",
        "/api/reports/breakdown.csv?by=label",
        "/api/reports/breakdown.csv?by=channel",
    ):
        response = client.get(path, headers=bearer(ADMIN_TOKEN))
        assert response.status_code == 200 and response.mimetype == "text/csv"
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert len(rows) > len(FORMULAS)
        cells += [cell for row in rows for cell in row]
    # Also each part of a list joined with ";" (labels): a spreadsheet may split cells there.
    dangerous = [part for cell in cells for part in cell.split(";") if part[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert dangerous == []
    assert "'" + FORMULAS[0] in cells  # shown as text, not dropped
    page = client.get(f"/reports?token={ADMIN_TOKEN}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page  # the traffic's custom attribute text is escaped if shown


# -- the dependency audit ----------------------------------------------------------------------------------------


def test_dependency_audit_is_a_separate_command_with_its_own_extra():
    audit = PROJECT_ROOT / ".ci" / "audit"
    assert audit.is_file() and os.access(audit, os.X_OK)
    assert "pip_audit" in audit.read_text() or "pip-audit" in audit.read_text()
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert re.search(r'^audit = \[.*"pip-audit', pyproject, re.MULTILINE)
    assert "audit" not in (PROJECT_ROOT / ".ci" / "run").read_text()  # not part of the test command
