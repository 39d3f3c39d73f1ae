"""The composition root (plugin.jobs.runtime): one Settings in, each service built on first use and once."""

from __future__ import annotations

import pytest

from plugin.adapters.settings import Settings
from plugin.jobs.runtime import Runtime


@pytest.fixture
def settings(tmp_path):
    # A Redis nobody listens on: building a runtime, its store or its reports must not need it.
    return Settings.from_env({"REDIS_URL": "redis://127.0.0.1:9/0", "SLA_RULES_DIR": "rules"}, instance_path=tmp_path)


def test_services_are_built_on_first_use_and_once(settings):
    runtime = Runtime(settings)
    assert not {"redis", "store", "rules", "connectors"} & set(vars(runtime))  # nothing built yet

    assert runtime.store is runtime.store
    assert runtime.store.backend == "sqlite"
    assert runtime.reports().engine.dialect.name == "sqlite"
    assert "redis" not in vars(runtime)  # reports never start or reach Redis


def test_a_given_redis_client_is_used(settings):
    client = object()
    assert Runtime(settings, redis=client).redis is client


def test_the_helpdesk_client_needs_its_settings(settings):
    with pytest.raises(ValueError, match="CHATWOOT_URL, CHATWOOT_ACCOUNT_ID, CHATWOOT_API_TOKEN"):
        Runtime(settings).helpdesk()
    configured = Settings.from_env(
        {"CHATWOOT_URL": "https://chat.example.com", "CHATWOOT_ACCOUNT_ID": "3", "CHATWOOT_API_TOKEN": "t0ken"},
        instance_path=settings.instance_path,
    )
    assert Runtime(configured).helpdesk().account_id == 3
