"""The demo as ``sla-plugin dev`` runs it: the helpdesk in this process, the plugin pointed at it, the script.

:meth:`DemoSession.prepare` starts the helpdesk on a spare loopback port, runs ``install`` against it (labels,
the webhook, whose generated secret the plugin then checks, and the Dashboard App) and returns the settings
the plugin's processes need. :meth:`DemoSession.play_in_background` waits for the plugin to answer, plays the
scripted morning and prints the hit rate. Every line goes to the terminal: what the script does, and each
label change and note the helpdesk receives from the plugin.
"""

from __future__ import annotations

import secrets
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import requests

from connectors.chatwoot.client import ChatwootClient
from plugin.adapters.manifest import load_manifest
from plugin.adapters.settings import mask_url_password
from plugin.cli.install import install
from plugin.demo import script
from plugin.demo.helpdesk import ACCOUNT_ID, DEMO_API_TOKEN, PLUGIN_USER_ID, DemoHelpdesk, HelpdeskServer
from plugin.demo.receiver import NotificationReceiver
from plugin.resources import shipped

DEMO_RULES = shipped("demo", "rules")
DEMO_DATABASE = "demo.sqlite3"
READY_TIMEOUT_SECONDS = 60
# The summary waits until the plugin has written nothing for this long (its last label or note is in).
QUIET_SECONDS = 3
QUIET_TIMEOUT_SECONDS = 30


class DemoSession:
    """One demo run next to the plugin's processes listening on *plugin_port*."""

    def __init__(self, plugin_port: int, echo: Callable[[str], None] = click.echo) -> None:
        self.plugin_url = f"http://127.0.0.1:{plugin_port}"
        self.echo = echo
        self.helpdesk = DemoHelpdesk(announce=lambda line: self.say("helpdesk", line))
        self.server: HelpdeskServer | None = None
        # Where the demo rules send SLA events: a Slack-style and a signed webhook receiver that print them.
        self.receiver = NotificationReceiver(
            secret=secrets.token_urlsafe(18), announce=lambda line: self.say("notify", line)
        )
        self.settings: dict[str, str] = {}
        self._stop = threading.Event()

    def say(self, source: str, line: str) -> None:
        """One line on the terminal: local time, who speaks, what happened."""
        self.echo(f"{datetime.now().strftime('%H:%M:%S')}  {source:<8}  {line}")

    def prepare(self, environ: Mapping[str, str], instance_path: str | Path) -> dict[str, str]:
        """Start the helpdesk and install the plugin into it; returns the environment variables to set.

        Settings the environment already has win, except the helpdesk's own (URL, account, token, secret).
        Without ``DATABASE_URL`` the demo gets a fresh SQLite file of its own, ``instance/demo.sqlite3``,
        so a second run does not meet the first run's conversations under the same ids.
        """
        self.server = HelpdeskServer(self.helpdesk).start()
        self.receiver.start()
        settings = {
            "CHATWOOT_URL": self.server.url,
            "CHATWOOT_ACCOUNT_ID": str(ACCOUNT_ID),
            "CHATWOOT_API_TOKEN": DEMO_API_TOKEN,
            "CHATWOOT_PLUGIN_USER_ID": str(PLUGIN_USER_ID),
        }
        defaults = {
            "SLA_RULES_DIR": str(DEMO_RULES),
            "SLA_ADMIN_TOKEN": secrets.token_urlsafe(18),
            "SLA_SIDEBAR_TOKEN": secrets.token_urlsafe(18),
            # The terminal is for the story; a warning or an error still shows.
            "SLA_LOG_LEVEL": "WARNING",
            "SLA_DEMO_SLACK_URL": f"{self.receiver.url}/slack",
            "SLA_DEMO_WEBHOOK_URL": f"{self.receiver.url}/webhook",
            "SLA_DEMO_WEBHOOK_SECRET": self.receiver.secret or "",
        }
        if not environ.get("DATABASE_URL"):
            database = Path(instance_path) / DEMO_DATABASE
            for leftover in (
                database,
                database.with_name(database.name + "-wal"),
                database.with_name(database.name + "-shm"),
            ):
                leftover.unlink(missing_ok=True)
            defaults["DATABASE_URL"] = f"sqlite:///{database}"
        settings.update({name: value for name, value in defaults.items() if not environ.get(name)})
        rules_dir = environ.get("SLA_RULES_DIR") or settings["SLA_RULES_DIR"]
        sidebar_token = environ.get("SLA_SIDEBAR_TOKEN") or settings["SLA_SIDEBAR_TOKEN"]
        self.say(
            "demo",
            f"helpdesk on {self.server.url} (account {ACCOUNT_ID}, token {DEMO_API_TOKEN}); rules from {rules_dir}",
        )
        report = install(
            ChatwootClient(self.server.url, ACCOUNT_ID, DEMO_API_TOKEN),
            load_manifest(),
            self.plugin_url,
            labels=_label_specs(rules_dir),
            sidebar_token=sidebar_token,
            dashboard_app=True,
        )
        for line in report.lines:
            self.say("install", line)
        settings["CHATWOOT_WEBHOOK_SECRET"] = report.webhook_secret or ""
        self.settings = {**environ, **settings}
        return settings

    def play_in_background(self) -> threading.Thread:
        """Play the script in a daemon thread (it ends with the process, or at :meth:`stop`)."""
        thread = threading.Thread(target=self._play, name="demo-script", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop the script and the helpdesk."""
        self._stop.set()
        if self.server is not None:
            self.server.stop()
        self.receiver.stop()

    def _play(self) -> None:
        try:
            if not self._wait_until_ready():
                self.say(
                    "demo",
                    f"the plugin did not answer on {self.plugin_url}/healthz within "
                    f"{READY_TIMEOUT_SECONDS} s; the script is not played",
                )
                return
            admin_token = self.settings["SLA_ADMIN_TOKEN"]
            self.say("demo", f"reports page: {self.plugin_url}/reports?token={admin_token}")
            for line in self.address_lines():
                self.say("demo", line)
            self.say(
                "demo",
                f"playing a helpdesk morning at {script.DEFAULT_SPEED:g}x (one scripted minute a "
                f"second; SLA clocks run on real time)",
            )
            script.play(self.helpdesk, lambda line: self.say("script", line), stop=self._stop)
            self._wait_for_quiet()
            for line in self.summary_lines():
                self.say("summary", line)
            self.say("demo", "still running: the helpdesk, the plugin and its sweeper; Ctrl-C stops everything")
        except script.Stopped:
            return

    def address_lines(self) -> list[str]:
        """Where to look besides the terminal: the report command that reads this demo's database (another
        terminal would read the default one) and the sidebar's address (Chatwoot frames it as a Dashboard
        App, which install registered)."""
        database = mask_url_password(self.settings["DATABASE_URL"])
        return [
            f"reports in a terminal: DATABASE_URL={shlex.quote(database)} sla-plugin report",
            f"sidebar (Dashboard App): {self.plugin_url}/sidebar?token={self.settings['SLA_SIDEBAR_TOKEN']}",
        ]

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                if requests.get(f"{self.plugin_url}/healthz", timeout=2).status_code == 200:
                    return True
            except requests.RequestException:
                pass  # not listening yet
            self._stop.wait(0.5)
        return False

    def _wait_for_quiet(self) -> None:
        """Until the plugin has written nothing for a while since the script's last step (bounded)."""
        script_end = time.monotonic()
        deadline = script_end + QUIET_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if time.monotonic() - max(script_end, self.helpdesk.last_api_write_at) >= QUIET_SECONDS:
                return
            if self._stop.wait(0.5):
                raise script.Stopped

    def summary_lines(self) -> list[str]:
        """The hit rate from the reports API (or, if that fails, from the store), the labels and notes."""
        try:
            lines = _report_lines(self.plugin_url, self.settings["SLA_ADMIN_TOKEN"])
        except (requests.RequestException, KeyError, TypeError, ValueError) as error:
            lines = [
                f"(reports API unavailable: {error}; figures read from the store)",
                *_store_lines(self.settings.get("DATABASE_URL") or ""),
            ]
        conversations = self.helpdesk.all_conversations()
        labels = ", ".join(
            f"#{conversation.id} {'+'.join(conversation.labels) or '-'}" for conversation in conversations
        )
        notes = sum(
            1
            for conversation in conversations
            for message in conversation.messages
            if message.private and message.sender is not None and message.sender.id == PLUGIN_USER_ID
        )
        return [*lines, f"labels in the helpdesk: {labels}", f"private notes posted by the plugin: {notes}"]


def _report_lines(plugin_url: str, admin_token: str) -> list[str]:
    response = requests.get(
        f"{plugin_url}/api/reports/summary", headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
    )
    response.raise_for_status()
    report = response.json()
    overall = report["overall"]
    lines = [
        f"hit rate {overall['hit_rate_text']}: {overall['conversations_on_time']} of {overall['applied']} "
        f"conversations under an SLA kept it, {overall['conversations_missed']} missed "
        f"({overall['misses']} misses in all)"
    ]
    for policy in report["policies"]:
        lines.append(
            f"  {policy['name']}: {policy['hit_rate_text']}"
            + (f"; {policy['target_text']}" if policy.get("target_text") else "")
        )
    return lines


def _store_lines(database_url: str) -> list[str]:
    """The hit rate straight from ``sla_applied`` (Chatwoot's formula: applied minus conversations with a miss)."""
    import sqlalchemy as sa

    from plugin.adapters.store import applied, make_engine

    with make_engine(database_url).connect() as connection:
        count, missed = connection.execute(
            sa.select(sa.func.count(), sa.func.sum(sa.case((applied.c.any_miss, 1), else_=0)))
        ).one()
    missed = int(missed or 0)
    rate = f"{(count - missed) / count * 100:.2f}%" if count else "n/a"
    return [f"hit rate {rate}: {count - missed} of {count} conversations under an SLA kept it, {missed} missed"]


def _label_specs(rules_dir: str) -> dict[str, dict[str, Any]] | None:
    """The status labels the rules name (install creates them), or None for the manifest's."""
    from plugin.adapters.rule_files import load_rules
    from plugin.core.rules import RulesError

    try:
        return {
            key: {"title": spec.title, "color": spec.color, "description": spec.description}
            for key, spec in load_rules(rules_dir).labels.items()
        }
    except RulesError:
        return None
