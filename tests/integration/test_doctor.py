"""``sla-plugin doctor`` against the fake Chatwoot of every version profile, with each fault it can inject,
and against the real Redis and databases."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from plugin.adapters import redis_keys
from plugin.adapters.directory import Directory, Name
from plugin.adapters.store import Store
from plugin.cli.main import main
from plugin.demo.helpdesk import DemoHelpdesk, HelpdeskServer

PUBLIC_URL = "https://sla.example.com"
WEBHOOK_TOKEN = "url-token-for-doctor"


@pytest.fixture
def environment(chatwoot, redis_server, redis, database_url, tmp_path):
    """The settings of a deployment installed into the fake Chatwoot (install itself, through the CLI), with a
    sweeper holding its lock."""
    base = {
        "CHATWOOT_URL": chatwoot.url,
        "CHATWOOT_ACCOUNT_ID": "1",
        "CHATWOOT_API_TOKEN": chatwoot.helpdesk.api_token,
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url,
        "SLA_WEBHOOK_TOKEN": "" if chatwoot.helpdesk.profile.signed else WEBHOOK_TOKEN,
    }
    secret_file = tmp_path / ".env"
    result = CliRunner().invoke(
        main,
        ["install", "--public-url", PUBLIC_URL, "--dashboard-app", "--secret-file", str(secret_file)],
        env={**base, "CHATWOOT_WEBHOOK_SECRET": ""},
    )
    assert result.exit_code == 0, result.output
    saved = dict(line.split("=", 1) for line in secret_file.read_text().splitlines()) if secret_file.exists() else {}
    redis.set(redis_keys.SWEEPER_LEADER, "a-worker", ex=60)
    return {**base, "CHATWOOT_WEBHOOK_SECRET": saved.get("CHATWOOT_WEBHOOK_SECRET", "")}


def doctor(environment, *arguments):
    return CliRunner().invoke(main, ["doctor", "--public-url", PUBLIC_URL, *arguments], env=environment)


def test_a_fresh_install_is_in_order_on_every_chatwoot_version(environment, chatwoot):
    result = doctor(environment)
    assert result.exit_code == 0, result.output
    assert "administrator of account 1" in result.output
    assert f"{PUBLIC_URL}/webhooks/chatwoot" in result.output
    expected = "CHATWOOT_WEBHOOK_SECRET matches" if chatwoot.helpdesk.profile.signed else "the URL token matches"
    assert expected in result.output
    assert "PROBLEM" not in result.output and "everything checked is in order" in result.output
    assert environment["CHATWOOT_WEBHOOK_SECRET"] not in result.output or not environment["CHATWOOT_WEBHOOK_SECRET"]
    assert WEBHOOK_TOKEN not in result.output


@pytest.mark.parametrize(
    "fault, options, words",
    [
        ("down", {}, "cannot reach Chatwoot at"),
        ("slow", {"seconds": 1.5}, "did not answer in time"),
        ("5xx", {"status": 502}, "Chatwoot failed (HTTP 502)"),
        ("429", {"seconds": 30}, "rate-limiting this host"),
        ("401", {}, "refused the API token"),
    ],
)
# The faults are the same on every version: one profile is enough.
@pytest.mark.parametrize("chatwoot", ["current"], indirect=True)
def test_each_helpdesk_fault_is_named_in_plain_words(environment, chatwoot, fault, options, words):
    chatwoot.helpdesk.fail_next(20, fault, **options)
    result = doctor(environment, "--timeout", "0.5")
    assert result.exit_code == 1, result.output
    assert words in result.output
    assert "[ok     ] redis" in result.output and "[ok     ] database" in result.output


def test_a_wrong_secret_a_missing_label_and_no_sweeper_are_problems(environment, chatwoot, redis):
    if chatwoot.helpdesk.profile.name == "unsigned":
        environment["SLA_WEBHOOK_TOKEN"] = "another-token"
        wrong = "the webhook URL's token differs from SLA_WEBHOOK_TOKEN"
    else:
        environment["CHATWOOT_WEBHOOK_SECRET"] = "not-the-secret"
        wrong = "CHATWOOT_WEBHOOK_SECRET differs from the webhook's secret"
    [label] = [label for label in chatwoot.helpdesk.account_labels.values() if label["title"] == "sla-missed"]
    chatwoot.helpdesk.api_delete_label(label["id"])
    redis.delete(redis_keys.SWEEPER_LEADER)
    result = doctor(environment)
    assert result.exit_code == 1
    assert wrong in result.output
    assert "missing: sla-missed" in result.output
    assert "no sweeper is running" in result.output
    assert "not-the-secret" not in result.output and "another-token" not in result.output


def test_an_agent_token_is_a_warning_naming_its_inboxes(environment, chatwoot):
    from plugin.demo import script

    with chatwoot.helpdesk.capturing():
        chatwoot.helpdesk.open_conversation(script.JANE, script.CHAT, "Hello")
    chatwoot.helpdesk.add_token("agent-token", script.SAM, inbox_ids=[script.CHAT.id])
    # The plugin has met the e-mail inbox in webhooks (names learned into its database).
    store = Store.from_url(environment["DATABASE_URL"])
    store.migrate()
    Directory(store.engine).learn([Name(1, "inbox", str(script.EMAIL.id), script.EMAIL.name)])
    result = doctor({**environment, "CHATWOOT_API_TOKEN": "agent-token"})
    assert "[WARNING] token" in result.output and "Sam Agent" in result.output and "Website Chat" in result.output
    assert f"It cannot see: Support Email (inbox {script.EMAIL.id})" in result.output
    # An agent may not list webhooks: Chatwoot answers 401 "You are not authorized to do this action".
    assert "only an administrator may" in result.output
    assert result.exit_code == 1


def test_missing_helpdesk_settings_and_unreachable_redis(environment):
    result = doctor({**environment, "CHATWOOT_URL": "", "REDIS_URL": "redis://127.0.0.1:9/0"})
    assert result.exit_code == 1
    assert "CHATWOOT_URL, CHATWOOT_ACCOUNT_ID and CHATWOOT_API_TOKEN must all be set" in result.output
    assert "[PROBLEM] redis: unreachable" in result.output


def test_every_account_of_an_accounts_file_is_checked_against_its_own_helpdesk(
    redis_server, redis, database_url, tmp_path
):

    acme = HelpdeskServer(DemoHelpdesk(profile="signed", account_id=1, api_token="acme-token")).start(
        send_webhooks=False
    )
    globex = HelpdeskServer(DemoHelpdesk(profile="unsigned", account_id=2, api_token="globex-token")).start(
        send_webhooks=False
    )
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text('{"accounts": {}}')
    environment = {"SLA_ACCOUNTS_FILE": str(accounts_file), "REDIS_URL": redis_server.url, "DATABASE_URL": database_url}
    try:
        assert "lists no account" in doctor(environment).output
        for server, account, token in ((acme, "1", "acme-token"), (globex, "2", "globex-token")):
            arguments = ["install", "--url", server.url, "--account", account, "--token", token]
            installed = CliRunner().invoke(main, [*arguments, "--public-url", PUBLIC_URL], env=environment)
            assert installed.exit_code == 0, installed.output
        redis.set(redis_keys.SWEEPER_LEADER, "a-worker", ex=60)

        result = doctor(environment)
        assert result.exit_code == 0, result.output
        assert "account 1: token: valid;" in result.output and "administrator of account 1" in result.output
        assert "account 2: token: valid;" in result.output and "administrator of account 2" in result.output
        assert f"account 1: webhook: {PUBLIC_URL}/webhooks/chatwoot/1 " in result.output
        assert f"account 2: webhook: {PUBLIC_URL}/webhooks/chatwoot/2 " in result.output
        assert "account 1: webhook secret: signed deliveries; webhook_secret matches" in result.output
        assert "account 2: webhook secret: unsigned deliveries" in result.output
        file_text = accounts_file.read_text()
        assert all(secret not in result.output for secret in ("acme-token", "globex-token"))
        assert "token" in file_text  # the secrets are in the file, and only there

        # Globex loses a label: only account 2 has the problem.
        [label] = [label for label in globex.helpdesk.account_labels.values() if label["title"] == "sla-missed"]
        globex.helpdesk.api_delete_label(label["id"])
        result = doctor(environment)
        assert result.exit_code == 1
        assert "[PROBLEM] account 2: labels: missing: sla-missed" in result.output
        assert "[ok     ] account 1: labels: present" in result.output
    finally:
        acme.stop()
        globex.stop()

    # Acme's helpdesk is gone: named for account 1 alone.
    result = doctor(environment, "--timeout", "0.5")
    assert "[PROBLEM] account 1: token: cannot reach Chatwoot at" in result.output

    accounts_file.write_text('{"accounts": {"1": {"api_token": 12.5}}}')
    result = doctor(environment)
    assert result.exit_code == 1
    assert f"[PROBLEM] accounts file: {accounts_file}: /accounts/1/api_token: " in result.output
    assert "[ok     ] redis: Redis answers" in result.output
