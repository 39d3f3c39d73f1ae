"""Settings from the environment: pinned names, defaults, parsing, masked secrets, the generated reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.adapters.settings import SETTINGS, Settings, SettingsError, load_dotenv_for_dev, settings_reference_markdown
from plugin.resources import shipped

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PINNED_NAMES = [
    "DATABASE_URL",
    "REDIS_URL",
    "SLA_RULES_DIR",
    "CHATWOOT_URL",
    "CHATWOOT_ACCOUNT_ID",
    "CHATWOOT_API_TOKEN",
    "CHATWOOT_WEBHOOK_SECRET",
    "SLA_ADMIN_TOKEN",
    "SLA_WEBHOOK_TOKEN",
    "SLA_SIDEBAR_TOKEN",
]  # docs/contracts.md section 3


def test_every_pinned_and_manifest_setting_exists():
    names = [spec.name for spec in SETTINGS]
    manifest = json.loads((PROJECT_ROOT / "manifest.json").read_text())

    assert set(PINNED_NAMES) <= set(names)
    assert {setting["name"] for setting in manifest["settings"]} <= set(names)
    secret_in_manifest = {setting["name"] for setting in manifest["settings"] if setting.get("secret")}
    assert secret_in_manifest == {spec.name for spec in SETTINGS if spec.secret}


def test_defaults(tmp_path):
    settings = Settings.from_env({}, instance_path=tmp_path)

    assert f"sqlite:///{tmp_path}/sla.sqlite3" == settings.DATABASE_URL
    assert settings.REDIS_URL is None
    assert settings.SLA_RULES_DIR == "rules"
    assert settings.CHATWOOT_ACCOUNT_ID is None
    assert settings.SLA_MAX_BODY_BYTES == 1024 * 1024
    assert settings.CHATWOOT_PLUGIN_USER_ID is None
    assert settings.SLA_LOG_LEVEL == "INFO"
    assert settings.SLA_REPORT_TIMEZONE == "UTC"
    assert settings.CHATWOOT_WEBHOOK_SECRET is None


def test_rules_default_to_the_shipped_rules_where_the_working_directory_has_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert str(shipped("rules")) == Settings.from_env({}).SLA_RULES_DIR
    assert (shipped("rules") / "90-default.json").is_file()


def test_default_instance_folder_is_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_env({})

    assert settings.instance_path == str(tmp_path / "instance")
    assert f"sqlite:///{tmp_path}/instance/sla.sqlite3" == settings.DATABASE_URL


def test_values_are_parsed_and_empty_means_unset(tmp_path):
    settings = Settings.from_env(
        {
            "CHATWOOT_ACCOUNT_ID": " 3 ",
            "SLA_MAX_BODY_BYTES": "2048",
            "CHATWOOT_PLUGIN_USER_ID": "12",
            "SLA_LOG_LEVEL": "debug",
            "REDIS_URL": "",
            "CHATWOOT_WEBHOOK_SECRET": "  ",
        },
        instance_path=tmp_path,
    )

    assert settings.CHATWOOT_ACCOUNT_ID == 3
    assert settings.SLA_MAX_BODY_BYTES == 2048
    assert settings.CHATWOOT_PLUGIN_USER_ID == 12
    assert settings.SLA_LOG_LEVEL == "DEBUG"
    assert settings.REDIS_URL is None
    assert settings.CHATWOOT_WEBHOOK_SECRET is None


@pytest.mark.parametrize(
    "name, value",
    [
        ("CHATWOOT_ACCOUNT_ID", "one"),
        ("SLA_MAX_BODY_BYTES", "1MB"),
        ("SLA_MAX_BODY_BYTES", "0"),
        ("CHATWOOT_PLUGIN_USER_ID", "1.5"),
        ("SLA_REPORT_TIMEZONE", "Berlin"),
    ],
)
def test_bad_values_name_the_variable(tmp_path, name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value}, instance_path=tmp_path)


def test_repr_masks_every_secret_and_url_passwords(tmp_path):
    secrets = {spec.name: f"value-of-{spec.name.lower()}" for spec in SETTINGS if spec.secret}
    urls = {
        "DATABASE_URL": "postgresql://sla:db-password@db.example/sla",
        "REDIS_URL": "redis://:redis-password@cache:6379/0",
    }
    settings = Settings.from_env({**secrets, **urls}, instance_path=tmp_path)

    shown = repr(settings) + str(settings)

    hidden = {*secrets.values(), "db-password", "redis-password"}
    for value in hidden:
        assert value not in shown
    assert "postgresql://sla:********@db.example/sla" in shown
    assert "redis://:********@cache:6379/0" in shown
    assert "CHATWOOT_API_TOKEN='********'" in shown
    assert set(settings.secret_values()) == hidden


def test_as_mapping_is_environment_style(tmp_path):
    settings = Settings.from_env({"CHATWOOT_ACCOUNT_ID": "3"}, instance_path=tmp_path)

    mapping = settings.as_mapping()

    assert mapping["CHATWOOT_ACCOUNT_ID"] == "3"
    assert "REDIS_URL" not in mapping
    assert Settings.from_env(mapping, instance_path=tmp_path) == settings


def test_dotenv_is_read_without_overriding_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLA_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("SLA_RULES_DIR", "unset below; restored to its original state after the test")
    monkeypatch.delenv("SLA_RULES_DIR")
    (tmp_path / ".env").write_text("SLA_LOG_LEVEL=DEBUG\nSLA_RULES_DIR=my-rules\n")

    assert load_dotenv_for_dev()
    settings = Settings.from_env(instance_path=tmp_path)

    assert settings.SLA_LOG_LEVEL == "WARNING"
    assert settings.SLA_RULES_DIR == "my-rules"


def test_no_dotenv_file_is_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert load_dotenv_for_dev() is False


def test_configuration_reference_is_current():
    document = (PROJECT_ROOT / "docs" / "configuration.md").read_text()

    assert document == settings_reference_markdown(), (
        "docs/configuration.md is out of date: run `python -m plugin.adapters.settings > docs/configuration.md`"
    )
    for spec in SETTINGS:
        assert f"`{spec.name}`" in document
