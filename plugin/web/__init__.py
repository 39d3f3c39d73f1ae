"""The web app: webhook receiver, health and metrics (``gunicorn "plugin.web:create_app()"``).

The receiver only verifies, deduplicates and hands webhook bodies to the workers through Redis
(:mod:`plugin.adapters.streams`); no SLA logic runs in a request (docs/architecture.md, "Data flows one way").
"""

from __future__ import annotations

import logging
import os

from flask import Flask
from redis import Redis

from plugin.adapters.accounts import Accounts
from plugin.adapters.logging import configure_logging
from plugin.adapters.metrics import CounterBuffer
from plugin.adapters.settings import Settings
from plugin.adapters.store import DatabaseError, Store
from plugin.jobs.runtime import Runtime
from plugin.web import health, reports, sidebar, webhooks


class SlaExtension(Runtime):
    """What the app's requests share, kept at ``app.extensions["sla"]``: the runtime's services (each built on
    first use) and the buffered webhook counters."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        super().__init__(settings, redis)
        self.counters = CounterBuffer(self.redis)


def create_app(settings: Settings | None = None, redis: Redis | None = None) -> Flask:
    """Build the Flask app from *settings* (default: the environment) and a Redis client (default: the one
    the settings name, or the embedded server). Raises :class:`plugin.adapters.accounts.AccountsError` for
    an accounts file that cannot be used."""
    settings = settings or Settings.from_env()
    accounts = Accounts(settings)
    configure_logging(settings.SLA_LOG_LEVEL, settings.secret_values() + accounts.secret_values())
    app = Flask(__name__, instance_path=os.path.abspath(settings.instance_path))
    # Werkzeug caps every body read at this (one sent without a Content-Length too) but silently stops at
    # the cap, so one byte more than the limit is let through for the receiver to see the excess and 413.
    app.config["MAX_CONTENT_LENGTH"] = settings.SLA_MAX_BODY_BYTES + 1
    os.makedirs(app.instance_path, exist_ok=True)
    sla = app.extensions["sla"] = SlaExtension(settings, redis)
    sla.accounts = accounts
    for account in accounts.unauthenticated():
        # `sla-plugin serve` refuses this unless told otherwise; gunicorn started by hand must still say so.
        logging.getLogger(__name__).warning(
            "webhooks are accepted without authentication: set CHATWOOT_WEBHOOK_SECRET or SLA_WEBHOOK_TOKEN"
            if account.id is None or not accounts.from_file
            else f"webhooks of account {account.id} are accepted without authentication: set its webhook_secret "
            "or webhook_token in SLA_ACCOUNTS_FILE"
        )
    _migrate(sla.store)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(reports.blueprint)
    app.register_blueprint(sidebar.blueprint)
    return app


def _migrate(store: Store) -> None:
    """Bring the schema up to date so reports work before any worker ran; the receiver never needs the
    database, so an unreachable one is logged (and shown by /healthz), not fatal."""
    try:
        store.migrate()
    except DatabaseError as error:
        logging.getLogger(__name__).warning("database not migrated at start: %s", error.__class__.__name__)
