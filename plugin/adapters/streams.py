"""The hand-over from the webhook receiver to the workers, through Redis.

The receiver does no SLA work: it appends the raw body to a Redis stream and makes sure one "drain" job is
queued on the RQ queue ``events``. A drain job reads a batch from the stream with a consumer group, folds
every conversation's new events in one database transaction, and acknowledges them. One RQ job per webhook
cannot reach 1,000 events/s per worker (docs/architecture.md, "Where state lives"), and the stream's
pending-entries list gives at-least-once delivery across a worker killed mid-batch (the engine drops
duplicates by event key).
"""

from __future__ import annotations

from datetime import datetime

from redis import Redis

STREAM = "sla:events"
GROUP = "sla-workers"
DRAIN_PENDING = "sla:drain:pending"
DEDUPE_PREFIX = "sla:delivery:"
DEDUPE_TTL_SECONDS = 7 * 24 * 3600
# A pending marker outlives a killed worker only this long, then the next webhook enqueues a new drain.
DRAIN_MARKER_TTL_SECONDS = 30
EVENTS_QUEUE = "events"
WRITEBACK_QUEUE = "writeback"


def remember_delivery(redis: Redis, connector: str, delivery_key: str) -> bool:
    """Record a delivery; False when the same delivery was already accepted (a duplicate)."""
    return bool(redis.set(f"{DEDUPE_PREFIX}{connector}:{delivery_key}", 1, nx=True, ex=DEDUPE_TTL_SECONDS))


def forget_delivery(redis: Redis, connector: str, delivery_key: str) -> None:
    """Undo :func:`remember_delivery` when the delivery could not be queued, so a retry is not refused."""
    redis.delete(f"{DEDUPE_PREFIX}{connector}:{delivery_key}")


def submit(redis: Redis, connector: str, body: bytes, *, received_at: datetime, delivery_id: str | None = None) -> str:
    """Append one webhook body to the event stream and make sure a drain job will read it.

    Returns the stream entry id.
    """
    # One round trip for the append and the pending marker: this is the receiver's hot path.
    pipeline = redis.pipeline(transaction=False)
    pipeline.xadd(
        STREAM,
        {
            "connector": connector,
            "body": body,
            "received_at": received_at.isoformat(),
            "delivery_id": delivery_id or "",
        },
    )
    pipeline.set(DRAIN_PENDING, 1, nx=True, ex=DRAIN_MARKER_TTL_SECONDS)
    entry_id, marked = pipeline.execute()
    if marked:
        _enqueue_drain(redis)
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def oldest_entry_age(redis: Redis) -> float | None:
    """Seconds since the oldest entry still in the stream was added (by Redis's clock), None when empty.

    Entries are deleted once processed, so this is the age of the oldest event not yet processed.
    """
    oldest = redis.xrange(STREAM, count=1)
    if not oldest:
        return None
    entry_id = oldest[0][0]
    text = str(entry_id, "ascii") if isinstance(entry_id, bytes) else str(entry_id)
    added_ms = int(text.split("-")[0])
    seconds, microseconds = redis.time()
    return max(0.0, seconds + microseconds / 1e6 - added_ms / 1000)


def submit_tick(redis: Redis, account_id: int, conversation_id: int, connector: str = "chatwoot") -> None:
    """Ask the workers to re-evaluate one conversation now (a deadline or at-risk instant has come)."""
    redis.xadd(STREAM, {"connector": connector, "tick": f"{account_id}:{conversation_id}"})
    ensure_drain(redis)


def ensure_drain(redis: Redis) -> None:
    """Enqueue a drain job unless one is already pending (the marker expires after a crash)."""
    if redis.set(DRAIN_PENDING, 1, nx=True, ex=DRAIN_MARKER_TTL_SECONDS):
        _enqueue_drain(redis)


def _enqueue_drain(redis: Redis) -> None:
    from rq import Queue  # imported here so a process that only reads the stream never loads RQ

    Queue(EVENTS_QUEUE, connection=redis).enqueue(
        "plugin.jobs.drain.drain", job_timeout=120, result_ttl=0, failure_ttl=7 * 24 * 3600
    )
