"""The composition root: the one place that turns settings into the services the plugin runs on (Redis, the
SQL store, the accounts served and each account's rules, connectors and helpdesk REST client, the report
queries).

The web app (:mod:`plugin.web`), the workers and the sweeper, and the CLI commands all take their services
from a :class:`Runtime`. Each service is built on first use, so a process builds only what it uses: the
webhook receiver never opens the database, ``sla-plugin report`` never starts Redis. Workers build one runtime
per process and reuse it for every job (opening a database engine or parsing the rule files per job would cost
more than the job).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from functools import cached_property

from redis import Redis

from connectors import Connector, get_connector
from connectors.chatwoot.client import ChatwootClient
from connectors.outbound import Helpdesk
from plugin.adapters.accounts import Account, Accounts
from plugin.adapters.report_queries import Reports
from plugin.adapters.request_budget import RequestBudget
from plugin.adapters.services import redis_connection
from plugin.adapters.settings import Settings, SettingsError
from plugin.adapters.store import Store
from plugin.core.rules import RulesError


class AccountConnectors:
    """Each account's inbound connectors (its webhook credentials, its default account id), built once per
    account settings: an account whose settings change in the accounts file gets new ones."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self._settings = settings
        self._built: dict[tuple[Account, str], Connector] = {}

    def get(self, account: Account, name: str) -> Connector:
        """The connector called ``name`` for ``account`` (raises like :func:`connectors.get_connector`)."""
        key = (account, name)
        connector = self._built.get(key)
        if connector is None:
            connector = self._built[key] = get_connector(name, account.connector_settings(self._settings))
        return connector


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
    def accounts(self) -> Accounts:
        """The accounts served (``SLA_ACCOUNTS_FILE``, or the one of the single-account settings), each with its
        rules re-read when its files change. Raises :class:`plugin.adapters.accounts.AccountsError` for an
        accounts file that cannot be used."""
        return Accounts(self.settings)

    @cached_property
    def connectors(self) -> AccountConnectors:
        """Each account's inbound connectors, each built on first use."""
        return AccountConnectors(self.settings.as_mapping())

    def helpdesk(self, account_id: int | None = None) -> Helpdesk:
        """The helpdesk's REST API of an account (default: the single account), with that account's URL and
        token (write-back, reconciler, names); raises ValueError naming a missing or unusable setting."""
        account = self.accounts.get(account_id) if account_id is not None else self.accounts.default()
        if account is None:
            raise SettingsError(f"account {account_id} is not served by this deployment (SLA_ACCOUNTS_FILE)")
        settings = account.connector_settings(self.settings.as_mapping())
        if account.id is None and account_id is not None:  # a single account without CHATWOOT_ACCOUNT_ID
            settings["CHATWOOT_ACCOUNT_ID"] = str(account_id)
        client = ChatwootClient.from_settings(settings)
        return client.paced(
            RequestBudget(self.redis, client.account_id, self.settings.SLA_HELPDESK_REQUESTS_PER_MINUTE)
        )

    def reports(self, own_labels: frozenset[str] | None = None) -> Reports:
        """The report queries on the store's database, told the plugin's own labels (default: those of every
        account's rules in force; an account whose rules are broken adds none: /healthz says so, and the
        reports still answer) and each account's helpdesk for conversation links."""
        accounts = self.accounts.all()
        if own_labels is None:
            own_labels = frozenset()
            for account in accounts:
                with contextlib.suppress(RulesError):
                    own_labels |= self.accounts.rules(account).current().owned_label_titles
        urls = {account.id: account.chatwoot_url for account in accounts if account.id and account.chatwoot_url}
        return Reports(self.store.engine, self.settings.CHATWOOT_URL, own_labels, chatwoot_urls=urls)


@functools.lru_cache(maxsize=1)
def current_runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    return Runtime.from_settings(Settings.from_env())
