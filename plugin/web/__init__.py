"""The web app: webhook receiver, health and metrics (``gunicorn "plugin.web:create_app()"``).

The receiver only verifies, deduplicates and hands webhook bodies to the workers through Redis
(:mod:`plugin.adapters.streams`); no SLA logic runs in a request (docs/architecture.md, "Data flows one way").
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from flask import Flask
from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors import Connectors
from plugin.adapters.logging import configure_logging
from plugin.adapters.metrics import CounterBuffer
from plugin.adapters.rule_files import RulesHolder
from plugin.adapters.services import redis_connection
from plugin.adapters.settings import Settings
from plugin.adapters.store import Store, make_engine
from plugin.web import health, reports, sidebar, webhooks


@dataclass
class SlaExtension:
    """What the app's requests share, kept at ``app.extensions["sla"]``."""

    settings: Settings
    redis: Redis
    rules: RulesHolder
    counters: CounterBuffer
    connectors: Connectors
    _database_engine: Engine | None = None

    def database_engine(self) -> Engine:
        """The store's SQLAlchemy engine, created on first use (the webhook receiver never needs it)."""
        if self._database_engine is None:
            self._database_engine = make_engine(self.settings.DATABASE_URL)
        return self._database_engine


def create_app(settings: Settings | None = None, redis: Redis | None = None) -> Flask:
    """Build the Flask app from *settings* (default: the environment) and a Redis client (default: the one
    the settings name, or the embedded server)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.SLA_LOG_LEVEL, settings.secret_values())
    app = Flask(__name__, instance_path=os.path.abspath(settings.instance_path))
    # Werkzeug caps every body read at this (one sent without a Content-Length too) but silently stops at
    # the cap, so one byte more than the limit is let through for the receiver to see the excess and 413.
    app.config["MAX_CONTENT_LENGTH"] = settings.SLA_MAX_BODY_BYTES + 1
    os.makedirs(app.instance_path, exist_ok=True)
    redis = redis if redis is not None else redis_connection(settings)
    app.extensions["sla"] = SlaExtension(
        settings=settings,
        redis=redis,
        rules=RulesHolder(settings.SLA_RULES_DIR),
        counters=CounterBuffer(redis),
        connectors=Connectors(settings.as_mapping()),
    )
    if not (settings.CHATWOOT_WEBHOOK_SECRET or settings.SLA_WEBHOOK_TOKEN):
        # `sla-plugin serve` refuses this unless told otherwise; gunicorn started by hand must still say so.
        logging.getLogger(__name__).warning(
            "webhooks are accepted without authentication: set CHATWOOT_WEBHOOK_SECRET or SLA_WEBHOOK_TOKEN"
        )
    _migrate(settings)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(reports.blueprint)
    app.register_blueprint(sidebar.blueprint)
    return app


def _migrate(settings: Settings) -> None:
    """Bring the schema up to date so reports work before any worker ran; the receiver never needs the
    database, so an unreachable one is logged (and shown by /healthz), not fatal."""
    try:
        Store.from_url(settings.DATABASE_URL).migrate()
    except SQLAlchemyError as error:
        logging.getLogger(__name__).warning("database not migrated at start: %s", error.__class__.__name__)
