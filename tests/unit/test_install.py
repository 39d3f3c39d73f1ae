"""`sla-plugin install` / `uninstall` against the fake Chatwoot (served through `responses`): idempotent, they
say what they did without printing secrets, and an agent's token is refused."""

from __future__ import annotations

import json
import stat

import pytest
import responses
from click.testing import CliRunner

from plugin.cli.main import main
from plugin.demo import script
from plugin.demo.helpdesk import DemoHelpdesk

BASE = "http://chatwoot.test"


ARGUMENTS = ["--url", BASE, "--account", "1", "--token", "admin-token", "--public-url", "https://sla.example.com"]


class Account:
    """What the fake Chatwoot holds, in the shapes these tests compare."""

    def __init__(self, helpdesk: DemoHelpdesk):
        self.helpdesk = helpdesk

    @property
    def labels(self) -> list[dict]:
        return list(self.helpdesk.account_labels.values())

    @property
    def webhooks(self) -> list[dict]:
        return [hook.to_json() for hook in self.helpdesk.webhooks.values()]

    @property
    def apps(self) -> list[dict]:
        return list(self.helpdesk.dashboard_apps.values())


@pytest.fixture
def helpdesk():
    desk = DemoHelpdesk(api_token="admin-token")
    desk.api_create_label("billing", "", "#000000", True)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        desk.register(mock, BASE)
        yield desk


@pytest.fixture
def account(helpdesk):
    return Account(helpdesk)


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
        "contact_updated",  # a contact blocked later stops its conversations' clocks
    }
    assert [app["title"] for app in account.apps] == ["SLA"]
    assert "label sla-missed: created" in first and "webhook https://sla.example.com/webhooks/chatwoot" in first
    assert webhook["secret"] not in first
    assert secret_file.read_text() == f"CHATWOOT_WEBHOOK_SECRET={webhook['secret']}\n"
    assert "administrator of account 1" in first
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


def test_an_agent_token_is_refused_naming_what_it_sees(helpdesk, account, tmp_path):
    # An agent's token sees only its inboxes (InboxPolicy): refused before anything is changed.
    with helpdesk.capturing():
        helpdesk.open_conversation(script.JANE, script.CHAT, "Hello")
        helpdesk.open_conversation(script.OMAR, script.EMAIL, "Invoice?")
    helpdesk.add_token("agent-token", script.SAM, inbox_ids=[script.CHAT.id])
    arguments = [*ARGUMENTS[:5], "agent-token", *ARGUMENTS[6:]]
    result = CliRunner().invoke(main, ["install", *arguments, "--secret-file", str(tmp_path / ".env")])
    assert result.exit_code == 1
    assert "Sam Agent" in result.stderr and "an agent of account 1" in result.stderr
    assert "Website Chat (inbox 1)" in result.stderr and "Support Email" not in result.stderr
    assert "--allow-agent-token" in result.stderr
    assert [label["title"] for label in account.labels] == ["billing"] and account.webhooks == []


def test_an_agent_token_goes_on_when_allowed_and_says_what_it_could_not_do(helpdesk, account, tmp_path):
    helpdesk.add_token("agent-token", script.SAM, inbox_ids=[script.CHAT.id])
    arguments = [*ARGUMENTS[:5], "agent-token", *ARGUMENTS[6:]]
    output = invoke(tmp_path, "install", *arguments, "--allow-agent-token", "--secret-file", str(tmp_path / ".env"))
    assert "Going on (--allow-agent-token)" in output
    assert "label sla-missed: NOT created, only an administrator may create labels" in output
    assert "NOT registered, only an administrator may register webhooks" in output
    assert account.webhooks == []


def test_install_defines_the_sla_attributes_and_the_hit_label_when_the_rules_ask(account, helpdesk, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "10-a.json").write_text(
        '{"writeback": {"custom_attributes": true}, "labels": {"hit": {"title": "sla-hit", "color": "#1565C0"}}}'
    )
    arguments = ["install", *ARGUMENTS, "--secret-file", str(tmp_path / ".env")]
    for _ in range(2):
        result = CliRunner().invoke(main, arguments, env={"SLA_RULES_DIR": str(rules)})
        assert result.exit_code == 0, result.output
    definitions = list(helpdesk.attribute_definitions.values())
    assert [(item["attribute_key"], item["attribute_display_type"]) for item in definitions] == [
        ("sla_status", "list"),
        ("sla_policy", "text"),
        ("sla_next_due_at", "date"),
    ]
    assert {item["attribute_model"] for item in definitions} == {"conversation_attribute"}
    assert "custom attribute sla_status: exists, kept" in result.output
    assert "sla-hit" in [label["title"] for label in account.labels]


def test_the_refusal_names_the_inboxes_the_plugin_has_met_that_the_token_cannot_see(helpdesk):
    from connectors.chatwoot.client import ChatwootClient
    from plugin.cli.install import InstallRefused, check_token

    with helpdesk.capturing():
        helpdesk.open_conversation(script.JANE, script.CHAT, "Hello")
    helpdesk.add_token("agent-token", script.SAM, inbox_ids=[script.CHAT.id])
    known = {"1": "Website Chat", "2": "Support Email"}  # what webhooks told the plugin
    with pytest.raises(InstallRefused) as refused:
        check_token(ChatwootClient(BASE, 1, "agent-token", max_attempts=1), known_inboxes=known)
    assert "sees only the inboxes it is a member of: Website Chat (inbox 1)" in str(refused.value)
    assert "It cannot see: Support Email (inbox 2)" in str(refused.value)


# -- one account of an accounts file ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["signed", "unsigned"])
def test_install_account_adds_it_to_the_accounts_file_and_uninstall_removes_it(tmp_path, profile):
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text('{"accounts": {"9": {"api_token": {"env": "OTHER_TOKEN"}}}}')
    desk = DemoHelpdesk(api_token="admin-token", profile=profile, account_id=4)
    arguments = ["--url", BASE, "--account", "4", "--token", "admin-token", "--public-url", "https://sla.example.com"]
    environment = {"SLA_RULES_DIR": "rules", "SLA_ACCOUNTS_FILE": str(accounts_file)}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        desk.register(mock, BASE)
        first = CliRunner().invoke(main, ["install", *arguments, "--dashboard-app"], env=environment)
        again = CliRunner().invoke(main, ["install", *arguments], env=environment)
        saved = json.loads(accounts_file.read_text())

        assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
        entry = saved["accounts"]["4"]
        assert saved["accounts"]["9"] == {"api_token": {"env": "OTHER_TOKEN"}}  # the others are left as they were
        (hook,) = desk.webhooks.values()
        assert hook.url.split("?")[0] == "https://sla.example.com/webhooks/chatwoot/4"
        assert entry["chatwoot_url"] == BASE and entry["api_token"] == "admin-token"
        assert hook.url.endswith(f"?token={entry['webhook_token']}")  # unsigned releases need the URL token
        assert entry.get("webhook_secret") == hook.secret  # signed releases: the secret Chatwoot generated
        assert "sidebar_token" in entry
        assert stat.S_IMODE(accounts_file.stat().st_mode) == 0o600
        for secret in ("admin-token", entry["webhook_token"], entry["sidebar_token"], hook.secret or "admin-token"):
            assert secret not in first.output + again.output
        assert "saved to" in first.output

        # The helpdesk's URL and token are the account's in the file.
        uninstall = ["uninstall", "--account", "4", "--public-url", "https://sla.example.com"]
        removed = CliRunner().invoke(main, uninstall, env=environment)
    assert removed.exit_code == 0, removed.output
    assert desk.webhooks == {}
    assert set(json.loads(accounts_file.read_text())["accounts"]) == {"9"}


def test_install_account_keeps_environment_references_that_hold_the_value(tmp_path):
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text('{"accounts": {"1": {"api_token": {"env": "ACME_TOKEN"}}}}')
    desk = DemoHelpdesk(api_token="admin-token")
    environment = {"SLA_RULES_DIR": "rules", "SLA_ACCOUNTS_FILE": str(accounts_file), "ACME_TOKEN": "admin-token"}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        desk.register(mock, BASE)
        result = CliRunner().invoke(main, ["install", *ARGUMENTS], env=environment)
    assert result.exit_code == 0, result.output
    assert json.loads(accounts_file.read_text())["accounts"]["1"]["api_token"] == {"env": "ACME_TOKEN"}


def test_install_account_refuses_a_broken_accounts_file_before_touching_the_helpdesk(tmp_path, helpdesk):
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text('{"accounts": {"1": {"api_tokn": "x"}}}')
    result = CliRunner().invoke(
        main, ["install", *ARGUMENTS], env={"SLA_RULES_DIR": "rules", "SLA_ACCOUNTS_FILE": str(accounts_file)}
    )
    assert result.exit_code == 1
    assert f"{accounts_file}: /accounts/1/api_tokn: unknown key" in result.output
    assert helpdesk.webhooks == {}


def test_uninstall_without_an_accounts_file_still_needs_the_url_and_token(tmp_path, helpdesk):
    result = CliRunner().invoke(
        main, ["uninstall", "--account", "1", "--public-url", "https://sla.example.com"], env={"SLA_RULES_DIR": "rules"}
    )
    assert result.exit_code == 2 and "--url" in result.output
