"""`sla-plugin install` / `uninstall` against a stand-in Chatwoot (`responses`): idempotent, and they say
what they did without printing secrets."""

from __future__ import annotations

import json
import re
import stat

import pytest
import responses
from click.testing import CliRunner

from plugin.cli.main import main

BASE = "http://chatwoot.test"
API = f"{BASE}/api/v1/accounts/1"


class FakeAccount:
    """Account labels, webhooks and dashboard apps kept in memory, as Chatwoot's API serves them."""

    def __init__(self, mock: responses.RequestsMock):
        self.labels: list[dict] = [{"id": 1, "title": "billing", "color": "#000000"}]
        self.webhooks: list[dict] = []
        self.apps: list[dict] = []
        self.next_id = 100
        for method, path, handler in [
            (responses.GET, "/labels", lambda body: {"payload": self.labels}),
            (responses.POST, "/labels", self._create_label),
            (responses.GET, "/webhooks", lambda body: {"payload": {"webhooks": self.webhooks}}),
            (responses.POST, "/webhooks", self._create_webhook),
            (responses.GET, "/dashboard_apps", lambda body: self.apps),
            (responses.POST, "/dashboard_apps", self._create_app),
        ]:
            mock.add_callback(method, API + path, callback=self._respond(handler))
        mock.add_callback(
            responses.DELETE, re.compile(API + r"/(labels|webhooks|dashboard_apps)/\d+"), callback=self._delete
        )

    def _respond(self, handler):
        def callback(request):
            body = json.loads(request.body) if request.body else None
            return (200, {}, json.dumps(handler(body)))

        return callback

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _create_label(self, body):
        label = {"id": self._new_id(), **(body.get("label") or body)}
        self.labels.append(label)
        return label

    def _create_webhook(self, body):
        webhook = {"id": self._new_id(), **(body.get("webhook") or body), "secret": "generated-signing-secret"}
        self.webhooks.append(webhook)
        return {"payload": {"webhook": webhook}}

    def _create_app(self, body):
        app = {"id": self._new_id(), **(body.get("dashboard_app") or body)}
        self.apps.append(app)
        return app

    def _delete(self, request):
        kind, identifier = request.url.rsplit("/", 2)[-2:]
        collection = {"labels": self.labels, "webhooks": self.webhooks, "dashboard_apps": self.apps}[kind]
        collection[:] = [item for item in collection if str(item["id"]) != identifier]
        return (200, {}, "{}")


ARGUMENTS = ["--url", BASE, "--account", "1", "--token", "admin-token", "--public-url", "https://sla.example.com"]


@pytest.fixture
def account():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeAccount(mock)


def invoke(tmp_path, *arguments):
    result = CliRunner().invoke(main, list(arguments), env={"SLA_RULES_DIR": "rules"})
    assert result.exit_code == 0, result.output
    return result.output


def test_install_creates_labels_webhook_and_app_then_is_idempotent(account, tmp_path):
    secret_file = tmp_path / ".env"
    first = invoke(tmp_path, "install", *ARGUMENTS, "--dashboard-app", "--secret-file", str(secret_file))
    assert sorted(label["title"] for label in account.labels) == [
        "billing",
        "sla-at-risk",
        "sla-missed",
        "sla-on-track",
    ]
    assert {label["title"]: label["color"] for label in account.labels}["sla-missed"] == "#C62828"
    [webhook] = account.webhooks
    assert webhook["url"] == "https://sla.example.com/webhooks/chatwoot"
    assert set(webhook["subscriptions"]) == {
        "conversation_created",
        "conversation_updated",
        "conversation_status_changed",
        "message_created",
    }
    assert [app["title"] for app in account.apps] == ["SLA"]
    assert "label sla-missed: created" in first and "webhook https://sla.example.com/webhooks/chatwoot" in first
    assert "generated-signing-secret" not in first
    assert secret_file.read_text() == "CHATWOOT_WEBHOOK_SECRET=generated-signing-secret\n"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    second = invoke(tmp_path, "install", *ARGUMENTS, "--dashboard-app", "--secret-file", str(secret_file))
    assert len(account.labels) == 4 and len(account.webhooks) == 1 and len(account.apps) == 1
    assert "exists" in second and "created" not in second


def test_uninstall_removes_what_install_created_and_keeps_agent_labels(account, tmp_path):
    invoke(tmp_path, "install", *ARGUMENTS, "--dashboard-app", "--secret-file", str(tmp_path / ".env"))
    output = invoke(tmp_path, "uninstall", *ARGUMENTS)
    assert [label["title"] for label in account.labels] == ["billing"]
    assert account.webhooks == [] and account.apps == []
    assert "webhook https://sla.example.com/webhooks/chatwoot: removed" in output
    assert invoke(tmp_path, "uninstall", *ARGUMENTS).strip() == "nothing to remove"
