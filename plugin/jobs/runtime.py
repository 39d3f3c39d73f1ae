"""One process's wiring of the shells around the core: settings, Redis, the store, the rules, connectors.

Workers and the sweeper build one :class:`Runtime` per process from the environment and reuse it for every
job (opening a database engine or parsing the rule files per job would cost more than the job).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from redis import Redis

from connectors import Connectors
from plugin.adapters.rule_files import RulesHolder
from plugin.adapters.services import redis_connection
from plugin.adapters.settings import Settings
from plugin.adapters.store import Store


@dataclass
class Runtime:
    """The services one process uses."""

    settings: Settings
    redis: Redis
    store: Store
    rules: RulesHolder
    connectors: Connectors

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> Runtime:
        """Wire a runtime; migrates the database schema (idempotent)."""
        store = Store.from_url(settings.DATABASE_URL)
        store.migrate()
        return cls(
            settings=settings,
            redis=redis or redis_connection(settings),
            store=store,
            rules=RulesHolder(settings.SLA_RULES_DIR),
            connectors=Connectors(settings.as_mapping()),
        )


@functools.lru_cache(maxsize=1)
def current_runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    return Runtime.from_settings(Settings.from_env())
