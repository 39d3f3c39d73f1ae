"""Delivery of SLA events to notification destinations (docs/notifications.md).

The drain records one ``sla_notifications`` row per event and destination in the same transaction as the
SLA state, then queues one job per destination on the RQ queue ``notifications``. A job sends that
destination's due rows oldest first, each claimed with a lease so two workers never send one row at once:
- a 2xx answer marks the row done (exactly one delivery per event and destination; a worker that dies
  between the POST and recording it leaves the row to be sent again when its lease ends, with the same
  ``X-SLA-Delivery`` id, by which a receiver recognises it);
- anything else (timeout, refused connection, 4xx, 5xx, a redirect, which is never followed) puts the row
  back with exponential backoff and holds the whole destination until then, so a destination that is down
  costs one attempt per backoff step, not one per event; after 24 h of failures the row is dropped,
  counted and logged;
- a destination whose URL variable is unset, or which the rule files no longer define, is skipped (logged).
Every destination has its own job, so a slow or failing one never delays another, nor labels and notes
(which run on their own queue). URLs and secrets are read from the environment at send time and never
logged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from redis import Redis

from plugin.adapters import metrics, redis_keys
from plugin.adapters.destinations import Outcome, post
from plugin.adapters.store import as_utc
from plugin.core.events import format_time, parse_time
from plugin.core.notifications import signature, slack_message, webhook_body
from plugin.core.rules.model import Destination
from plugin.jobs.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)

RETRY_WINDOW = timedelta(hours=24)
LEASE = timedelta(seconds=60)  # longer than one POST can take (connect + read timeouts)
FIRST_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
MAX_PER_JOB = 100  # then the job hands over to a fresh one, so no job holds a worker for long


def backoff(attempts: int) -> timedelta:
    """The wait after the *attempts*-th failed attempt: 30 s, 1 min, 2 min, ... at most 1 h."""
    return timedelta(seconds=min(FIRST_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def enqueue_deliveries(redis: Redis, destinations: Iterable[str]) -> None:
    """Queue one delivery job per destination (a job already queued for it is enough)."""
    from rq import Queue

    queue = Queue(redis_keys.NOTIFICATIONS_QUEUE, connection=redis)
    for destination in sorted(set(destinations)):
        job_id = redis_keys.notify_job(destination)
        existing = queue.fetch_job(job_id)
        if existing is not None and existing.get_status(refresh=False) in ("queued", "deferred", "scheduled"):
            continue
        queue.enqueue(
            "plugin.jobs.notify.deliver",
            destination,
            job_id=job_id,
            job_timeout=MAX_PER_JOB * 20,
            result_ttl=60,
            failure_ttl=24 * 3600,
        )


def deliver(destination: str) -> int:
    """RQ job: send the due deliveries of one destination; returns how many were delivered."""
    return Notifier(current_runtime()).deliver(destination)


def requeue_due(runtime: Runtime, now: datetime) -> int:
    """Queue a job for every destination with a delivery due and no hold (the sweeper calls this)."""
    due = [
        destination
        for destination in runtime.store.due_notification_destinations(now)
        if held_until(runtime.redis, destination, now) is None
    ]
    enqueue_deliveries(runtime.redis, due)
    return len(due)


def held_until(redis: Redis, destination: str, now: datetime) -> datetime | None:
    """When a destination that failed may be tried again, or None when it may be tried now."""
    raw = redis.get(redis_keys.notify_hold(destination))
    until = parse_time(raw.decode() if isinstance(raw, bytes) else raw) if raw else None
    return until if until is not None and until > now else None


class Notifier:
    """Sends one destination's due deliveries; time, environment and HTTP session are injectable."""

    def __init__(
        self,
        runtime: Runtime,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        environ: Mapping[str, str] = os.environ,
        session: requests.Session | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.environ = environ
        self.session = session or requests.Session()

    def deliver(self, destination_id: str) -> int:
        """Send due rows oldest first until none is due, one fails (then the destination is held), or
        :data:`MAX_PER_JOB` were sent (then a fresh job takes over)."""
        store, redis = self.runtime.store, self.runtime.redis
        delivered = 0
        for _ in range(MAX_PER_JOB):
            now = self.clock()
            if held_until(redis, destination_id, now) is not None:
                return delivered
            row = store.claim_notification(destination_id, now, now + LEASE)
            if row is None:
                return delivered
            outcome = self._attempt(row, destination_id, now)
            if outcome is None:
                continue  # skipped or dropped without a request
            if outcome.delivered:
                delivered += 1
                continue
            self._hold(destination_id, row, now)
            return delivered
        enqueue_deliveries(redis, [destination_id])
        return delivered

    def _attempt(self, row: Any, destination_id: str, now: datetime) -> Outcome | None:
        """Send one claimed row and record the result; None when it was skipped or dropped unsent."""
        store = self.runtime.store
        context = {
            "destination": destination_id,
            "event": row.event,
            "event_id": row.event_id,
            "account_id": row.account_id,
            "conversation_id": row.conversation_id,
        }
        created_at = as_utc(row.created_at) or now
        if now - created_at > RETRY_WINDOW:
            self._drop(row, destination_id, now, row.last_error or "not sent within 24 h", context)
            return None
        rules = self.runtime.accounts.rules_for(row.account_id)
        destination = rules.current().destinations.get(destination_id) if rules is not None else None
        url = self.environ.get(destination.url_env) if destination is not None else None
        if destination is None or not url:
            reason = "not defined in the rule files" if destination is None else f"{destination.url_env} is not set"
            store.finish_notification(row.event_id, destination_id, now, "skipped", last_error=reason)
            metrics.incr(self.runtime.redis, "sla_notifications_skipped_total", {"destination": destination_id})
            log.warning("SLA notification skipped: destination %s", reason, extra=context)
            return None
        outcome = post(self.session, url, *self._request(destination, json.loads(row.payload), row.event_id, now))
        if outcome.delivered:
            store.finish_notification(row.event_id, destination_id, self.clock(), "done")
            metrics.incr(self.runtime.redis, "sla_notifications_sent_total", {"destination": destination_id})
            log.info("SLA notification delivered", extra={**context, "attempt": row.attempts})
            return outcome
        metrics.incr(
            self.runtime.redis,
            "sla_notifications_failed_total",
            {"destination": destination_id, "reason": outcome.reason},
        )
        retry_at = now + backoff(row.attempts)
        if retry_at - created_at > RETRY_WINDOW:
            self._drop(row, destination_id, now, outcome.reason, context)
        else:
            store.finish_notification(
                row.event_id, destination_id, now, "pending", next_attempt_at=retry_at, last_error=outcome.reason
            )
            log.warning(
                "SLA notification failed (%s); retrying at %s",
                outcome.reason,
                format_time(retry_at),
                extra={**context, "attempt": row.attempts},
            )
        return outcome

    def _request(
        self, destination: Destination, stored: Mapping[str, Any], event_id: str, now: datetime
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one attempt (the timestamp and signature are fresh on every attempt)."""
        conversation_url = self._conversation_url(stored["body"])
        if destination.type == "slack":
            return json.dumps(slack_message(stored, conversation_url, now)).encode(), {}
        body = json.dumps(webhook_body(stored, conversation_url), separators=(",", ":")).encode()
        timestamp = str(int(now.timestamp()))
        headers = {"X-SLA-Event": stored["body"]["event"], "X-SLA-Delivery": event_id, "X-SLA-Timestamp": timestamp}
        secret = self.environ.get(destination.secret_env) if destination.secret_env else None
        if secret:
            headers["X-SLA-Signature"] = signature(secret, timestamp, body)
        return body, headers

    def _conversation_url(self, body: Mapping[str, Any]) -> str | None:
        account = self.runtime.accounts.get(body["account_id"])
        base = account.chatwoot_url if account is not None else None
        if not base:
            return None
        return f"{base.rstrip('/')}/app/accounts/{body['account_id']}/conversations/{body['conversation_id']}"

    def _hold(self, destination_id: str, row: Any, now: datetime) -> None:
        """Send nothing more to a failing destination until the failed row's next attempt."""
        until = now + backoff(row.attempts)
        self.runtime.redis.set(
            redis_keys.notify_hold(destination_id), until.isoformat(), ex=int(RETRY_WINDOW.total_seconds())
        )

    def _drop(self, row: Any, destination_id: str, now: datetime, reason: str, context: dict[str, Any]) -> None:
        self.runtime.store.finish_notification(row.event_id, destination_id, now, "dropped", last_error=reason)
        metrics.incr(self.runtime.redis, "sla_notifications_dropped_total", {"destination": destination_id})
        log.error(
            "SLA notification dropped after retrying for 24 h (%s)", reason, extra={**context, "attempts": row.attempts}
        )
