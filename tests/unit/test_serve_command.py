"""``sla-plugin serve`` refuses to accept unauthenticated webhooks unless told to, and ``dev`` says so loudly.

gunicorn is never started here: ``os.execvp`` (which would replace the test process) is recorded instead.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from plugin.cli import main as cli_module

NO_AUTH = {"CHATWOOT_WEBHOOK_SECRET": "", "SLA_WEBHOOK_TOKEN": ""}


@pytest.fixture
def executed(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli_module.os, "execvp", lambda file, arguments: calls.append(arguments))
    return calls


def test_serve_refuses_to_start_without_a_webhook_secret_or_token(executed) -> None:
    result = CliRunner().invoke(cli_module.main, ["serve"], env=NO_AUTH)

    assert result.exit_code == 2, result.output
    assert "refusing to start" in result.output
    assert "CHATWOOT_WEBHOOK_SECRET" in result.output and "--insecure-no-webhook-auth" in result.output
    assert executed == []  # gunicorn never started


@pytest.mark.parametrize(
    "environment, arguments",
    [
        ({**NO_AUTH, "CHATWOOT_WEBHOOK_SECRET": "signing-secret"}, []),
        ({**NO_AUTH, "SLA_WEBHOOK_TOKEN": "url-token"}, []),
        (NO_AUTH, ["--insecure-no-webhook-auth"]),
    ],
)
def test_serve_starts_with_a_secret_a_token_or_the_explicit_flag(executed, environment, arguments) -> None:
    result = CliRunner().invoke(cli_module.main, ["serve", *arguments], env=environment)

    assert result.exit_code == 0, result.output
    assert len(executed) == 1 and "plugin.web:create_app()" in executed[0]
    assert "refusing" not in result.output


def test_serve_refuses_a_malformed_accounts_file_with_file_pointer_and_message(executed, tmp_path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text('{"accounts": {"7": {"webhook_secret": {"env": "UNSET_ACME_SECRET"}}}}')
    result = CliRunner().invoke(cli_module.main, ["serve"], env={**NO_AUTH, "SLA_ACCOUNTS_FILE": str(accounts)})

    assert result.exit_code == 1, result.output
    assert f"{accounts}: /accounts/7/webhook_secret: environment variable UNSET_ACME_SECRET is not set" in result.output
    assert executed == []


def test_serve_refuses_an_accounts_file_with_an_unauthenticated_account(executed, tmp_path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text('{"accounts": {"7": {"webhook_secret": "s"}, "8": {"api_token": "t"}}}')
    environment = {**NO_AUTH, "SLA_ACCOUNTS_FILE": str(accounts)}
    refused = CliRunner().invoke(cli_module.main, ["serve"], env=environment)
    accounts.write_text('{"accounts": {"7": {"webhook_secret": "s"}, "8": {"webhook_token": "t"}}}')
    started = CliRunner().invoke(cli_module.main, ["serve"], env=environment)

    assert refused.exit_code == 2 and "refusing to start" in refused.output
    assert started.exit_code == 0 and len(executed) == 1
