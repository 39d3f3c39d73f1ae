"""Two accounts in one deployment, against two fake Chatwoots (one signed, one of the unsigned releases whose
conversation webhooks name no account): each account's webhook URL, credentials, rules, labels and notes
stay its own; accounts and rules change without a restart. Real Redis, real RQ workers, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from rq import Queue, SimpleWorker

from plugin.adapters import redis_keys
from plugin.adapters.redis_keys import EVENTS_QUEUE, WRITEBACK_QUEUE
from plugin.adapters.store import applied, as_utc
from plugin.cli.main import main
from plugin.demo import script
from plugin.demo.helpdesk import WEBHOOK_EVENTS, DemoHelpdesk, HelpdeskServer
from plugin.jobs import drain

PLUGIN = "http://plugin.test/webhooks/chatwoot"
GLOBEX_URL_TOKEN = "globex-url-token"


def rules(first_response: str, missed_title: str) -> dict:
    return {
        "policies": {"standard": {"name": "Standard", "first_response": first_response}},
        "rules": [{"name": "Everything", "when": {"all": []}, "apply": "standard"}],
        "labels": {
            "on_track": {"title": f"{missed_title}-on-track", "color": "#2E7D32"},
            "at_risk": {"title": f"{missed_title}-at-risk", "color": "#F9A825"},
            "missed": {"title": missed_title, "color": "#C62828"},
        },
    }


class TwoAccounts:
    """Account 1 (Acme) on a signed Chatwoot, account 2 (Globex) on an unsigned one, in one accounts file."""

    def __init__(self, tmp_path: Path, monkeypatch) -> None:
        self.acme = HelpdeskServer(DemoHelpdesk(profile="signed", account_id=1, api_token="acme-api-token"))
        self.globex = HelpdeskServer(DemoHelpdesk(profile="unsigned", account_id=2, api_token="globex-api-token"))
        for server in (self.acme, self.globex):
            server.start(send_webhooks=False)
        acme_hook = self.acme.helpdesk.api_create_webhook(f"{PLUGIN}/1", list(WEBHOOK_EVENTS), "SLA")
        self.globex.helpdesk.api_create_webhook(f"{PLUGIN}/2?token={GLOBEX_URL_TOKEN}", list(WEBHOOK_EVENTS), "SLA")
        self.folder = tmp_path
        for name, document in {
            "acme-rules": rules("1h", "acme-missed"),
            "globex-rules": rules("30m", "globex-missed"),
        }.items():
            (tmp_path / name).mkdir()
            (tmp_path / name / "rules.json").write_text(json.dumps(document))
        monkeypatch.setenv("ACME_API_TOKEN", "acme-api-token")
        monkeypatch.setenv("ACME_WEBHOOK_SECRET", acme_hook.secret)
        self.accounts = {
            "1": {
                "chatwoot_url": self.acme.url,
                "api_token": {"env": "ACME_API_TOKEN"},
                "webhook_secret": {"env": "ACME_WEBHOOK_SECRET"},
                "rules_dir": "acme-rules",
                "admin_token": "acme-reports",
                "sidebar_token": "acme-sidebar",
            },
            "2": {
                "chatwoot_url": self.globex.url,
                "api_token": "globex-api-token",
                "webhook_token": GLOBEX_URL_TOKEN,
                "rules_dir": "globex-rules",
                "admin_token": "globex-reports",
                "sidebar_token": "globex-sidebar",
            },
        }
        self.path = tmp_path / "accounts.json"
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps({"accounts": self.accounts}))

    def stop(self) -> None:
        for server in (self.acme, self.globex):
            server.stop()


@pytest.fixture
def two_accounts(tmp_path, monkeypatch):
    accounts = TwoAccounts(tmp_path, monkeypatch)
    yield accounts
    accounts.stop()


@pytest.fixture
def deployment(two_accounts, runtime_factory, make_app, database_url):
    """The workers' runtime and the web app, both serving the two accounts' file on one database."""
    runtime = runtime_factory(rules("1h", "unused"), SLA_ACCOUNTS_FILE=str(two_accounts.path))
    app = make_app(SLA_ACCOUNTS_FILE=str(two_accounts.path), CHATWOOT_URL=None, DATABASE_URL=database_url)
    return runtime, app


def work(redis) -> None:
    """Real RQ workers drain the events and write-back queues until both are empty."""
    SimpleWorker(
        [Queue(EVENTS_QUEUE, connection=redis), Queue(WRITEBACK_QUEUE, connection=redis)], connection=redis
    ).work(burst=True)


def post(client, deliveries, url: str | None = None) -> list[tuple[int, str]]:
    """POST each delivery as Chatwoot sends it (to its registered URL, or ``url``); the answers."""
    answers = []
    for delivery in deliveries:
        target = url or delivery.url
        path = target.removeprefix("http://plugin.test")
        response = client.post(path, data=delivery.body, headers=delivery.headers())
        answers.append((response.status_code, response.get_json()["status"]))
    return answers


def missed_conversation(helpdesk: DemoHelpdesk) -> tuple[int, list]:
    """A conversation opened two hours ago that nobody answered, and the webhooks it sent."""
    with helpdesk.capturing() as deliveries:
        conversation_id = helpdesk.open_conversation(
            script.JANE, script.CHAT, "Hello?", at=datetime.now(UTC) - timedelta(hours=2)
        )
    return conversation_id, deliveries


def test_each_account_is_verified_with_its_own_credentials_on_its_own_url(two_accounts, deployment):
    _runtime, app = deployment
    client = app.test_client()
    _, acme = missed_conversation(two_accounts.acme.helpdesk)
    _, globex = missed_conversation(two_accounts.globex.helpdesk)

    assert post(client, acme[:1]) == [(202, "queued")]
    assert post(client, globex[:1]) == [(202, "queued")]
    # Acme's signed delivery on Globex's URL lacks Globex's token; Globex's on Acme's URL lacks a signature.
    assert post(client, acme[1:], url=f"{PLUGIN}/2") == [(401, "rejected")]
    assert post(client, globex[1:], url=f"{PLUGIN}/1") == [(401, "rejected")]
    # A body that names account 1, verified with account 2's token: refused.
    acme_message = acme[1]
    assert json.loads(acme_message.body)["account"]["id"] == 1
    assert post(client, [acme_message], url=f"{PLUGIN}/2?token={GLOBEX_URL_TOKEN}") == [(401, "rejected")]

    # Accounts not served: one answer for every id, whatever exists.
    unknown = [
        client.post(path, data=b"{}")
        for path in ("/webhooks/chatwoot/3", "/webhooks/chatwoot/x", "/webhooks/chatwoot/0")
    ]
    assert {(response.status_code, response.get_data()) for response in unknown} == {
        (404, b'{"status":"unknown_account"}')
    }
    # Several accounts: the single-account URL serves none of them.
    assert client.post("/webhooks/chatwoot", data=acme[0].body, headers=acme[0].headers()).status_code == 404


def test_each_account_gets_its_own_rules_labels_and_notes_in_its_own_helpdesk(two_accounts, deployment):
    runtime, app = deployment
    client = app.test_client()
    acme_id, acme = missed_conversation(two_accounts.acme.helpdesk)
    globex_id, globex = missed_conversation(two_accounts.globex.helpdesk)
    assert acme_id == globex_id  # the same display id in both accounts
    # Globex's Chatwoot predates the account in conversation webhooks: its URL says whose they are.
    assert "account" not in json.loads(globex[0].body)

    assert set(post(client, acme + globex)) == {(202, "queued")}
    work(runtime.redis)

    acme_conversation = two_accounts.acme.helpdesk.conversations[acme_id]
    globex_conversation = two_accounts.globex.helpdesk.conversations[globex_id]
    assert acme_conversation.labels == ["acme-missed"]
    assert globex_conversation.labels == ["globex-missed"]
    acme_notes = [message.content for message in acme_conversation.messages if message.private]
    globex_notes = [message.content for message in globex_conversation.messages if message.private]
    assert len(acme_notes) == 1 and f"sla-plugin/1/{acme_id}/" in acme_notes[0]
    assert len(globex_notes) == 1 and f"sla-plugin/2/{globex_id}/" in globex_notes[0]
    # Each helpdesk was called with its own token only (the fake answers 401 to any other).
    for server in (two_accounts.acme, two_accounts.globex):
        assert server.helpdesk.calls and all(status < 400 for _method, _path, status in server.helpdesk.calls)

    with runtime.store.engine.connect() as connection:
        stored = connection.execute(
            sa.select(
                applied.c.account_id, applied.c.conversation_id, applied.c.frt_due_at, applied.c.applied_at
            ).order_by(applied.c.account_id)
        ).all()
    assert [(row.account_id, row.conversation_id) for row in stored] == [(1, acme_id), (2, globex_id)]
    # Each account's own policy: Acme's first response is due in an hour, Globex's in 30 minutes.
    created = two_accounts.acme.helpdesk.conversations[acme_id].created_at
    assert [as_utc(row.frt_due_at).timestamp() - int(created) for row in stored] == [3600, 1800]


def test_accounts_and_their_rules_change_without_a_restart(two_accounts, deployment, tmp_path):
    runtime, app = deployment
    client = app.test_client()
    accounts = app.extensions["sla"].accounts

    # A third account is installed into the file: its URL answers once the file is re-read.
    third = HelpdeskServer(DemoHelpdesk(profile="signed", account_id=3, api_token="third-token")).start(
        send_webhooks=False
    )
    arguments = ["--url", third.url, "--account", "3", "--token", "third-token", "--public-url", "http://plugin.test"]
    environment = {"SLA_ACCOUNTS_FILE": str(two_accounts.path), "SLA_RULES_DIR": str(tmp_path / "acme-rules")}
    try:
        installed = CliRunner().invoke(main, ["install", *arguments], env=environment)
        _, deliveries = missed_conversation(third.helpdesk)
    finally:
        third.stop()
    assert installed.exit_code == 0, installed.output
    assert deliveries[0].url.startswith(f"{PLUGIN}/3")
    assert post(client, deliveries[:1]) == [(404, "unknown_account")]  # not re-read yet
    accounts.refresh()
    assert post(client, deliveries[:1]) == [(202, "queued")]
    two_accounts.accounts = json.loads(two_accounts.path.read_text())["accounts"]

    # A broken edit of the file: the accounts in force stay, /healthz says why.
    two_accounts.path.write_text('{"accounts": {"1": {"api_token": 12.5}}}')
    accounts.refresh()
    assert post(client, deliveries[1:]) == [(202, "queued")]
    health = client.get("/healthz").get_json()
    assert health["rules"]["ok"] is False
    assert health["rules"]["accounts_file"]["error"].startswith(f"{two_accounts.path}: /accounts/1/api_token: ")

    # Globex's rules break: Acme's conversations are still judged, and /healthz names Globex.
    two_accounts.write()
    (tmp_path / "globex-rules" / "rules.json").write_text("{ broken")
    accounts.refresh()
    runtime.accounts.refresh()
    health = client.get("/healthz").get_json()
    assert health["rules"]["accounts"]["2"]["ok"] is False
    assert health["rules"]["accounts"]["1"]["ok"] is True
    acme_id, acme = missed_conversation(two_accounts.acme.helpdesk)
    assert set(post(client, acme)) == {(202, "queued")}
    work(runtime.redis)
    assert two_accounts.acme.helpdesk.conversations[acme_id].labels == ["acme-missed"]

    # Removing an account closes its URL.
    del two_accounts.accounts["3"]
    two_accounts.write()
    accounts.refresh()
    assert post(client, [deliveries[0].again()]) == [(404, "unknown_account")]


def test_report_and_sidebar_tokens_see_their_own_account_and_the_admin_token_sees_all(
    two_accounts, runtime_factory, make_app, database_url
):
    runtime = runtime_factory(rules("1h", "unused"), SLA_ACCOUNTS_FILE=str(two_accounts.path))
    app = make_app(
        SLA_ACCOUNTS_FILE=str(two_accounts.path), SLA_ADMIN_TOKEN="deployment-admin", DATABASE_URL=database_url
    )
    client = app.test_client()
    acme_id, acme = missed_conversation(two_accounts.acme.helpdesk)
    globex_id, globex = missed_conversation(two_accounts.globex.helpdesk)
    assert set(post(client, acme + globex)) == {(202, "queued")}
    work(runtime.redis)

    def get(path: str, token: str):
        return client.get(path, headers={"Authorization": f"Bearer {token}"})

    def accounts_listed(token: str, query: str = "") -> set[int]:
        items = get(f"/api/reports/conversations?missed=false{query}", token).get_json()["items"]
        return {item["account_id"] for item in items}

    assert accounts_listed("deployment-admin") == {1, 2}
    assert accounts_listed("acme-reports") == {1}
    assert accounts_listed("globex-reports") == {2}
    assert accounts_listed("acme-reports", "&account=2") == {1}  # naming another account changes nothing
    assert get("/api/reports/summary", "acme-reports").get_json()["overall"]["applied"] == 1
    assert get("/api/reports/summary", "deployment-admin").get_json()["overall"]["applied"] == 2
    # Links go to each account's own helpdesk.
    links = {
        item["account_id"]: item["link"]
        for item in get("/api/reports/conversations?missed=false", "deployment-admin").get_json()["items"]
    }
    assert links[1].startswith(two_accounts.acme.url) and links[2].startswith(two_accounts.globex.url)

    # One conversation: the other account's looks like one that does not exist.
    assert get(f"/api/reports/conversations/2/{globex_id}", "acme-reports").status_code == 404
    assert get(f"/api/reports/conversations/1/{acme_id}", "acme-reports").status_code == 200
    assert get(f"/api/reports/conversations/2/{globex_id}", "deployment-admin").status_code == 200

    # The sidebar token of one account reads that account's conversations and nothing else.
    assert get(f"/api/sidebar/conversations/1/{acme_id}", "acme-sidebar").get_json()["policy"]["id"] == "standard"
    assert get(f"/api/sidebar/conversations/2/{globex_id}", "acme-sidebar").status_code == 404
    assert get(f"/api/sidebar/conversations/2/{globex_id}", "globex-sidebar").status_code == 200
    assert get("/api/reports/summary", "acme-sidebar").status_code == 401
    page = client.get("/sidebar?token=globex-sidebar")
    assert page.status_code == 200
    assert f"frame-ancestors {two_accounts.globex.url}" in page.headers["Content-Security-Policy"]

    # The reports page offers an account picker to the deployment's token only.
    assert 'name="account"' in client.get("/reports?token=deployment-admin").get_data(as_text=True)
    assert 'name="account"' not in client.get("/reports?token=acme-reports").get_data(as_text=True)


# -- fairness: one account's flood or slow helpdesk never holds another back ------------------------------


def test_one_accounts_flood_of_events_does_not_hold_back_anothers_miss_detection(two_accounts, deployment):
    runtime, app = deployment
    client = app.test_client()
    acme = two_accounts.acme.helpdesk
    with acme.capturing() as flood:
        for number in range(40):
            conversation_id = acme.open_conversation(script.JANE, script.CHAT, "Hello?", at=datetime.now(UTC))
            for line in range(24):
                acme.customer_writes(conversation_id, f"message {number}-{line}")
    assert len(flood) >= 1000
    globex_id, globex = missed_conversation(two_accounts.globex.helpdesk)
    assert set(post(client, flood + globex)) == {(202, "queued")}  # Globex's webhooks arrive last

    # One batch of 200 entries: Globex's share holds its conversation; Acme's flood waits in its own stream.
    assert drain.process_stream(runtime, drain.utcnow, "fairness-test", batch_size=200) == 200
    with runtime.store.engine.connect() as connection:
        judged = connection.execute(
            sa.select(applied.c.frt_status).where(applied.c.account_id == 2, applied.c.conversation_id == globex_id)
        ).scalar()
    assert judged == "missed"
    assert runtime.redis.zcard(redis_keys.writeback_owed(2)) == 1  # its label and note are owed already
    assert runtime.redis.xlen(redis_keys.account_stream(1)) > 800


def test_one_accounts_slow_helpdesk_and_backlog_do_not_hold_back_anothers_write_back(two_accounts, deployment):
    runtime, app = deployment
    client = app.test_client()
    acme = two_accounts.acme.helpdesk
    with acme.capturing() as flood:
        acme_ids = [
            acme.open_conversation(script.JANE, script.CHAT, "Hello?", at=datetime.now(UTC) - timedelta(hours=2))
            for _ in range(30)
        ]
    globex_id, globex = missed_conversation(two_accounts.globex.helpdesk)
    assert set(post(client, flood + globex)) == {(202, "queued")}
    SimpleWorker([Queue(EVENTS_QUEUE, connection=runtime.redis)], connection=runtime.redis).work(burst=True)
    acme.fail_next(10_000, "slow", seconds=0.3)  # every call to Acme's helpdesk answers late

    # Two write-back workers; Acme's round was queued first and keeps one of them busy.
    command = [str(Path(sys.executable).parent / "sla-plugin"), "worker", "--burst", "--no-sweeper", "--queue"]
    workers = [subprocess.Popen([*command, WRITEBACK_QUEUE], stdout=subprocess.DEVNULL) for _ in range(2)]
    try:
        globex_conversation = two_accounts.globex.helpdesk.conversations[globex_id]
        waited = 0.0
        while not any(message.private for message in globex_conversation.messages) and waited < 120:
            time.sleep(0.1)  # waiting for the workers to act, not for a deadline
            waited += 0.1
        acme_noted = [
            conversation_id
            for conversation_id in acme_ids
            if any(message.private for message in acme.conversations[conversation_id].messages)
        ]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    assert globex_conversation.labels == ["globex-missed"]
    assert any(message.private for message in globex_conversation.messages)
    # Globex's miss was written while most of Acme's backlog still waited on its slow helpdesk.
    assert len(acme_noted) < len(acme_ids) / 2
