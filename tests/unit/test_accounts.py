"""The accounts registry: the accounts file's contract, environment references, errors that name the file and
the JSON pointer, hot reload that keeps the last good file, and the single-account settings as a registry of
one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from plugin.adapters.accounts import Accounts, AccountsError, parse_accounts_file
from plugin.adapters.redis_keys import EVENT_STREAM as STREAM
from plugin.adapters.settings import Settings

PROJECT_RULES = str(Path(__file__).resolve().parents[2] / "rules")


def settings(tmp_path: Path, **environ: str) -> Settings:
    return Settings.from_env({"SLA_RULES_DIR": PROJECT_RULES, **environ}, instance_path=tmp_path / "instance")


def write(path: Path, document) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_every_key_of_an_account_is_read_and_environment_references_are_resolved(tmp_path):
    (tmp_path / "acme-rules").mkdir()
    accounts = parse_accounts_file(
        tmp_path / "accounts.json",
        json.dumps(
            {
                "accounts": {
                    "7": {
                        "chatwoot_url": "https://chat.example.com",
                        "api_token": {"env": "ACME_TOKEN"},
                        "webhook_secret": {"env": "ACME_SECRET"},
                        "webhook_token": "url-token",
                        "rules_dir": "acme-rules",
                        "admin_token": "acme-admin",
                        "sidebar_token": "acme-sidebar",
                        "writeback_concurrency": 2,
                    }
                }
            }
        ).encode(),
        {"ACME_TOKEN": "token-from-env", "ACME_SECRET": "secret-from-env"},
        PROJECT_RULES,
    )
    account = accounts[7]
    assert (account.id, account.chatwoot_url, account.api_token, account.webhook_secret) == (
        7,
        "https://chat.example.com",
        "token-from-env",
        "secret-from-env",
    )
    assert (account.webhook_token, account.admin_token, account.sidebar_token) == (
        "url-token",
        "acme-admin",
        "acme-sidebar",
    )
    assert account.rules_dir == str(tmp_path / "acme-rules")  # relative to the file's folder
    assert account.writeback_concurrency == 2
    assert account.stream != STREAM
    shown = repr(account)
    for secret in ("token-from-env", "secret-from-env", "url-token", "acme-admin", "acme-sidebar"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("document", "pointer", "message"),
    [
        ("{ not json", "/", "not JSON"),
        ([], "/", "must be a JSON object"),
        ({"accounts": []}, "/accounts", "required"),
        ({"accounts": {}, "extra": 1}, "/extra", "unknown key"),
        ({"accounts": {"acme": {}}}, "/accounts/acme", "positive whole number"),
        ({"accounts": {"07": {}}}, "/accounts/07", "without leading zeros"),
        ({"accounts": {"1": "token"}}, "/accounts/1", "must be an object"),
        ({"accounts": {"1": {"api_tokn": "x"}}}, "/accounts/1/api_tokn", "unknown key"),
        ({"accounts": {"1": {"api_token": {"env": "UNSET_VARIABLE"}}}}, "/accounts/1/api_token", "UNSET_VARIABLE"),
        ({"accounts": {"1": {"api_token": {"env": "X", "default": "y"}}}}, "/accounts/1/api_token", '{"env"'),
        ({"accounts": {"1": {"api_token": ["x"]}}}, "/accounts/1/api_token", "must be a string"),
        ({"accounts": {"1": {"chatwoot_url": "chat.example.com"}}}, "/accounts/1/chatwoot_url", "http(s) URL"),
        ({"accounts": {"1": {"writeback_concurrency": "many"}}}, "/accounts/1/writeback_concurrency", "whole"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused_with_file_pointer_and_message(tmp_path, document, pointer, message):
    path = write(tmp_path / "accounts.json", document)
    with pytest.raises(AccountsError) as refused:
        Accounts(settings(tmp_path, SLA_ACCOUNTS_FILE=str(path)))
    text = str(refused.value)
    assert text.startswith(f"{path}: {pointer}: "), text
    assert message in text


def test_a_missing_file_is_refused_at_start(tmp_path):
    with pytest.raises(AccountsError, match="cannot read the accounts file"):
        Accounts(settings(tmp_path, SLA_ACCOUNTS_FILE=str(tmp_path / "nowhere.json")))


def test_without_a_file_the_single_account_settings_are_a_registry_of_one(tmp_path):
    registry = Accounts(
        settings(
            tmp_path,
            CHATWOOT_URL="https://chat.example.com",
            CHATWOOT_ACCOUNT_ID="3",
            CHATWOOT_API_TOKEN="api",
            CHATWOOT_WEBHOOK_SECRET="signing",
            SLA_SIDEBAR_TOKEN="side",
        )
    )
    (only,) = registry.all()
    assert registry.default() is only
    assert (only.id, only.chatwoot_url, only.api_token, only.webhook_secret, only.stream) == (
        3,
        "https://chat.example.com",
        "api",
        "signing",
        STREAM,
    )
    assert registry.get(3) is only and registry.get(4) is None
    assert registry.rules_for(3).current().content_hash
    assert registry.status()["ok"] is True


def test_a_single_account_without_an_id_serves_every_account_as_it_always_did(tmp_path):
    registry = Accounts(settings(tmp_path))
    assert registry.get(1) is registry.get(99) is registry.default()


def test_the_file_is_reloaded_when_it_changes_and_a_broken_version_keeps_the_last_good_one(tmp_path, caplog):
    path = write(tmp_path / "accounts.json", {"accounts": {"1": {"api_token": "one"}}})
    clock = Clock()
    registry = Accounts(settings(tmp_path, SLA_ACCOUNTS_FILE=str(path)), clock=clock)
    assert [account.id for account in registry.all()] == [1]
    assert registry.default() is None  # each account has its own webhook URL

    write(path, {"accounts": {"1": {"api_token": "one"}, "2": {"api_token": "two"}}})
    assert registry.get(2) is None  # not re-read within the interval
    clock.now += 1
    assert registry.get(2).api_token == "two"

    write(path, {"accounts": {"1": {"api_token": "one"}, "2": {"api_token": 5.5}}})
    clock.now += 1
    with caplog.at_level(logging.ERROR, logger="plugin.accounts"):
        assert [account.id for account in registry.all()] == [1, 2]
        clock.now += 1
        registry.all()  # the same broken content is logged once
    assert registry.error.startswith(f"{path}: /accounts/2/api_token: ")
    assert registry.status()["ok"] is False
    assert len([record for record in caplog.records if "not loaded" in record.getMessage()]) == 1

    write(path, {"accounts": {"2": {"api_token": "two"}}})
    clock.now += 1
    assert [account.id for account in registry.all()] == [2]
    assert registry.error is None and registry.get(1) is None


def test_each_account_has_its_own_rules_and_a_broken_folder_names_its_account(tmp_path):
    good, broken = tmp_path / "good", tmp_path / "broken"
    good.mkdir()
    broken.mkdir()
    write(good / "rules.json", {"policies": {"p": {"first_response": "1h"}}, "rules": []})
    write(broken / "rules.json", "{ broken")
    path = write(tmp_path / "accounts.json", {"accounts": {"1": {"rules_dir": "good"}, "2": {"rules_dir": "broken"}}})
    registry = Accounts(settings(tmp_path, SLA_ACCOUNTS_FILE=str(path)))
    assert set(registry.rules_for(1).current().policies) == {"p"}
    status = registry.status()
    assert status["ok"] is False
    assert status["accounts"]["1"]["ok"] is True
    assert status["accounts"]["2"]["ok"] is False and "rules.json" in status["accounts"]["2"]["error"]
