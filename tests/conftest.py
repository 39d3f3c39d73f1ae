"""Shared fixtures: private Redis and PostgreSQL servers, settings, Chatwoot payloads, hypothesis profiles.

Tests never touch the machine's shared Redis (6379) or its existing PostgreSQL databases: Redis is a private
``redis-server`` on a unix socket in a temporary folder, and PostgreSQL tests get a database created for
the session and dropped afterwards. A missing service fails the run (it is never skipped): ``bin/test``
installs or starts what is missing.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg import sql
from sqlalchemy.engine import make_url

from plugin.adapters.services import EmbeddedRedis
from plugin.adapters.settings import Settings

from databases import empty_public_schema

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if IN_CI else "dev")

TIERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder it lives in (tests/unit, tests/integration, tests/system), so
    ``-m unit`` and ``bin/test --fast`` select by tier without a decorator on every test."""
    for item in items:
        tier = Path(str(item.fspath)).resolve().relative_to(Path(__file__).resolve().parent).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A private redis-server on a unix socket for the whole session (``.url``, ``.connection()``)."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis(redis_server: EmbeddedRedis):
    """A client of the private Redis, emptied before the test."""
    connection = redis_server.connection()
    connection.flushall()
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def postgres_url():
    """A SQLAlchemy URL of a fresh PostgreSQL database, created for this session and dropped after it.

    The server is ``SLA_TEST_POSTGRES_URL`` (``bin/test`` sets it, starting a private server if needed),
    else the local one on 127.0.0.1:5432.
    """
    server_url = os.environ.get("SLA_TEST_POSTGRES_URL") or LOCAL_POSTGRES_URL
    try:
        admin = psycopg.connect(server_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"No PostgreSQL server at {make_url(server_url).render_as_string(hide_password=True)} "
            f"({error}). Run the tests with bin/test, which starts one, or set SLA_TEST_POSTGRES_URL.",
            pytrace=False,
        )
    name = f"sla_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield (
                make_url(server_url)
                .set(drivername="postgresql+psycopg", database=name)
                .render_as_string(hide_password=False)
            )
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path):
    """The URL of an empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sla.sqlite3'}"
        return
    url = request.getfixturevalue("postgres_url")
    # The session's database is shared by every test (some use postgres_url directly): start empty.
    empty_public_schema(url)
    yield url
    empty_public_schema(url)


@pytest.fixture
def settings_factory(tmp_path: Path, redis_server: EmbeddedRedis) -> Callable[..., Settings]:
    """Build :class:`Settings` for a test from environment-style values: ``settings_factory(
    CHATWOOT_WEBHOOK_SECRET="s3cret")``; a value of None leaves the variable unset.

    Defaults: the private Redis, a SQLite file in the test's folder, the project's rules, no secrets.
    """

    def build(**overrides: Any) -> Settings:
        environ = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'sla.sqlite3'}",
            "REDIS_URL": redis_server.url,
            "SLA_RULES_DIR": str(PROJECT_ROOT / "rules"),
            "CHATWOOT_URL": "http://chatwoot.test",
        }
        environ.update({name: str(value) for name, value in overrides.items() if value is not None})
        for name in [name for name, value in overrides.items() if value is None]:
            environ.pop(name, None)
        return Settings.from_env(environ, instance_path=tmp_path / "instance")

    return build


@pytest.fixture
def fixture_payload() -> Callable[[str], dict]:
    """Load ``tests/fixtures/chatwoot/<name>.json``, a real Chatwoot webhook body."""

    def load(name: str) -> dict:
        return json.loads((FIXTURES / "chatwoot" / f"{name}.json").read_text())

    return load


@pytest.fixture
def make_app(settings_factory, redis):
    """Build the web app with ``settings_factory(**overrides)`` against the private Redis (emptied first)."""
    # Imported here, not at the top: a broken web app must fail the web tests, not every test of the suite.
    from plugin.web import create_app

    apps = []

    def build(**overrides: Any):
        app = create_app(settings_factory(**overrides))
        app.testing = True
        apps.append(app)
        return app

    yield build
    # A later test's Redis must not receive this test's buffered counters.
    for app in apps:
        app.extensions["sla"].counters.close()


@pytest.fixture
def runtime_environment(monkeypatch):
    """Point the runtime workers build from the environment (``plugin.jobs.runtime.current_runtime``) at new
    values: ``runtime_environment(DATABASE_URL=..., CHATWOOT_URL=None)``; None unsets a variable."""
    from plugin.jobs.runtime import current_runtime

    def apply(**values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        current_runtime.cache_clear()

    yield apply
    current_runtime.cache_clear()


@pytest.fixture
def runtime_factory(tmp_path: Path, redis_server: EmbeddedRedis, redis, database_url: str, runtime_environment):
    """Build the process runtime workers use from a rule set and environment overrides, on the private Redis
    and on each database (SQLite and PostgreSQL)."""
    from plugin.jobs.runtime import current_runtime

    def build(rules: dict, **environment: str):
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir(exist_ok=True)
        (rules_dir / "rules.json").write_text(json.dumps(rules))
        runtime_environment(
            **{
                "CHATWOOT_URL": None,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_server.url,
                "SLA_RULES_DIR": str(rules_dir),
                **environment,
            }
        )
        return current_runtime()

    return build


@pytest.fixture(params=["unsigned", "signed", "current"])
def chatwoot(request):
    """The fake Chatwoot (``plugin.demo.helpdesk``) of each version profile, its REST API served on loopback.
    Webhooks are not sent: tests collect them with ``chatwoot.helpdesk.capturing()`` and post them themselves
    (``fake_chatwoot.post_deliveries``)."""
    from plugin.demo.helpdesk import PROFILES, DemoHelpdesk, HelpdeskServer

    assert set(PROFILES) == {"unsigned", "signed", "current"}, "a new profile must be added to the parameters"
    server = HelpdeskServer(DemoHelpdesk(profile=request.param))
    server.start(send_webhooks=False)
    yield server
    server.stop()
