"""``GET /healthz`` (is every part usable?) and ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from plugin.adapters import metrics, redis_keys
from plugin.adapters.settings import MASK
from plugin.adapters.store import Store
from plugin.adapters.streams import oldest_entry_age

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Redis, the database, the rules in force and the event queue: 200 when every check passes, else 503
    with ``"status": "degraded"`` and the failing check's error. The queue fails when its oldest event has
    waited longer than ``SLA_QUEUE_STUCK_SECONDS`` (no worker, or a batch that keeps failing).
    ``notifications`` shows, per destination, the deliveries waiting or given up (docs/notifications.md)."""
    sla = current_app.extensions["sla"]
    checks = {
        "redis": _check(lambda: _redis_state(sla.redis)),
        "database": _check(lambda: _database_state(sla.store)),
        "rules": _check(sla.accounts.status),  # each account's rules, re-read from their folders when due
        "queue": _queue_state(sla.redis, sla.settings.SLA_QUEUE_STUCK_SECONDS),
        # Informational: a receiver that is down is the receiver's problem, not the plugin's health.
        "notifications": _check(lambda: {"ok": True, "backlog": sla.store.notification_backlog()}),
    }
    healthy = all(check.get("ok") for check in checks.values())
    body = {"status": "ok" if healthy else "degraded", **checks}
    return jsonify(body), 200 if healthy else 503


@blueprint.get("/metrics")
def metrics_text() -> Response:
    """Every counter, histogram and gauge, as Prometheus scrapes them."""
    sla = current_app.extensions["sla"]
    sla.counters.flush()  # this process's latest counts; other processes' are at most a second old
    try:
        text_body = metrics.render(sla.redis)
    except RedisError as error:
        log.error("metrics unavailable: redis unreachable", extra={"error": type(error).__name__})
        return Response("# redis unavailable\n", status=503, mimetype="text/plain")
    return Response(text_body, mimetype="text/plain; version=0.0.4")


def _check(probe) -> dict[str, Any]:
    """Run one probe; any failure becomes ``{"ok": false, "error": ...}``, never an error page."""
    try:
        return probe()
    except Exception as error:  # a health check reports every failure instead of raising it
        return {"ok": False, "error": _describe(error)}


def _redis_state(redis: Redis) -> dict[str, Any]:
    started = time.perf_counter()
    redis.ping()
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _database_state(store: Store) -> dict[str, Any]:
    started = time.perf_counter()
    store.ping()
    return {"ok": True, "backend": store.backend, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _queue_state(redis: Redis, stuck_after_seconds: int) -> dict[str, Any]:
    try:
        stream_length, pending = metrics.event_stream_state(redis)
        oldest = oldest_entry_age(redis)
    except RedisError:
        # Redis's own check says why; the queue cannot be judged without it.
        return {
            "ok": True,
            redis_keys.EVENTS_QUEUE: None,
            "stream_length": None,
            "pending": None,
            "oldest_seconds": None,
        }
    state: dict[str, Any] = {
        "ok": oldest is None or oldest <= stuck_after_seconds,
        redis_keys.EVENTS_QUEUE: Queue(redis_keys.EVENTS_QUEUE, connection=redis).count,
        "stream_length": stream_length,
        "pending": pending,
        "oldest_seconds": None if oldest is None else round(oldest, 1),
    }
    if not state["ok"]:
        state["error"] = f"the oldest event has waited {oldest:.0f} s (more than {stuck_after_seconds} s): stuck"
    return state


def _describe(error: Exception) -> str:
    """The error's type and first line, masked: drivers put connection details in their messages."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    description = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    for secret in current_app.extensions["sla"].settings.secret_values():
        description = description.replace(secret, MASK)
    return description
