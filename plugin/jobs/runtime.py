"""The composition root: the one place that turns settings into the services the plugin runs on (Redis, the
SQL store, the rules, the connectors, the helpdesk's REST client, the report queries).

The web app (:mod:`plugin.web`), the workers and the sweeper, and the CLI commands all take their services
from a :class:`Runtime`. Each service is built on first use, so a process builds only what it uses: the
webhook receiver never opens the database, ``sla-plugin report`` never starts Redis. Workers build one runtime
per process and reuse it for every job (opening a database engine or parsing the rule files per job would cost
more than the job).
"""

from __future__ import annotations

import functools
from functools import cached_property

from redis import Redis

from connectors import Connectors
from connectors.chatwoot.client import ChatwootClient
from connectors.outbound import Helpdesk
from plugin.adapters.report_queries import Reports
from plugin.adapters.rule_files import RulesHolder
from plugin.adapters.services import redis_connection
from plugin.adapters.settings import Settings
from plugin.adapters.store import Store
from plugin.core.rules import RulesError


class Runtime:
    """The services of one process, built from one :class:`Settings` on first use."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        self.settings = settings
        if redis is not None:
            self.redis = redis

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> Runtime:
        """A worker's runtime, its database schema brought up to date (idempotent)."""
        runtime = cls(settings, redis)
        runtime.store.migrate()
        return runtime

    @cached_property
    def redis(self) -> Redis:
        """The configured Redis (or the embedded server), failing fast on a request path."""
        return redis_connection(self.settings)

    def blocking_redis(self) -> Redis:
        """A new Redis client without a socket timeout, for an RQ worker that waits on its queues for minutes."""
        return redis_connection(self.settings, blocking=True)

    @cached_property
    def store(self) -> Store:
        """The SQL store (its engine connects on first query)."""
        return Store.from_url(self.settings.DATABASE_URL)

    @cached_property
    def rules(self) -> RulesHolder:
        """The rule set of ``SLA_RULES_DIR``, re-read when its files change."""
        return RulesHolder(self.settings.SLA_RULES_DIR)

    @cached_property
    def connectors(self) -> Connectors:
        """The inbound connectors, each built on first use."""
        return Connectors(self.settings.as_mapping())

    def helpdesk(self) -> Helpdesk:
        """The helpdesk's REST API as the configured account and token (write-back, reconciler, names);
        raises ValueError naming a missing or unusable setting."""
        return ChatwootClient.from_settings(self.settings.as_mapping())

    def reports(self, own_labels: frozenset[str] | None = None) -> Reports:
        """The report queries on the store's database, told the plugin's own labels (default: those of the
        rules in force, none while the rules are broken: /healthz says so, and the reports still answer)."""
        if own_labels is None:
            try:
                own_labels = self.rules.current().owned_label_titles
            except RulesError:
                own_labels = frozenset()
        return Reports(self.store.engine, self.settings.CHATWOOT_URL, own_labels)


@functools.lru_cache(maxsize=1)
def current_runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    return Runtime.from_settings(Settings.from_env())
