"""The hand-over from the webhook receiver to the workers, through Redis.

The receiver does no SLA work: it appends the raw body to a Redis stream and makes sure one "drain" job is
queued on the RQ queue ``events``. A drain job reads a batch from the stream with a consumer group, folds
every conversation's new events in one database transaction, and acknowledges them. One RQ job per webhook
cannot reach 1,000 events/s per worker (docs/architecture.md, "Where state lives"), and the stream's
pending-entries list gives at-least-once delivery across a worker killed mid-batch (the engine drops
duplicates by event key).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from redis import Redis

from plugin.adapters import redis_keys

DEDUPE_TTL_SECONDS = 7 * 24 * 3600
# A pending marker outlives a killed worker only this long, then the next webhook enqueues a new drain.
DRAIN_MARKER_TTL_SECONDS = 30


# Accept one delivery in one atomic step: refuse it if its dedupe key exists, else append it to the stream,
# then remember it and set the drain's pending marker. Redis runs a script as a whole or (the XADD failing)
# before anything is written, so the dedupe key never exists without its entry. When the answer is lost (a
# stalled Redis, a timeout) the script either ran in full, and the helpdesk's retry is a duplicate of an
# entry that is queued, or not at all, and the retry is queued: no retry is refused for a lost delivery.
_ACCEPT_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local entry = redis.call('XADD', KEYS[2], '*', 'connector', ARGV[3], 'body', ARGV[4], 'received_at', ARGV[5],
                         'delivery_id', ARGV[6], 'account', ARGV[7])
if KEYS[2] ~= ARGV[8] then redis.call('SADD', KEYS[4], KEYS[2]) end
redis.call('SET', KEYS[1], 1, 'EX', ARGV[1])
local marked = redis.call('SET', KEYS[3], 1, 'NX', 'EX', ARGV[2])
return {entry, marked and 1 or 0}
"""


def submit_once(
    redis: Redis,
    connector: str,
    delivery_key: str,
    body: bytes,
    *,
    received_at: datetime,
    stream: str = redis_keys.EVENT_STREAM,
    account_id: int | None = None,
) -> str | None:
    """Append a webhook body to ``stream`` unless the same delivery was accepted before (then None), and make
    sure a drain job will read it; returns the stream entry id.

    ``account_id`` is the account the webhook's URL names: the entry carries it (a conversation webhook that
    names no account is that account's) and the delivery is remembered per account.

    One round trip, atomic (see ``_ACCEPT_ONCE``). The drain job is enqueued after the script: should that
    fail, the entry is already safe in the stream and the sweeper queues a drain once the marker expires.
    """
    script = redis.register_script(_ACCEPT_ONCE)
    answer = script(
        keys=[
            redis_keys.delivery(connector, delivery_key, account_id),
            stream,
            redis_keys.DRAIN_PENDING,
            redis_keys.ACCOUNT_STREAMS,
        ],
        args=[
            DEDUPE_TTL_SECONDS,
            DRAIN_MARKER_TTL_SECONDS,
            connector,
            body,
            received_at.isoformat(),
            delivery_key,
            "" if account_id is None else str(account_id),
            redis_keys.EVENT_STREAM,
        ],
    )
    if not answer:
        return None
    entry_id, marked = answer
    if marked:
        _enqueue_drain(redis)
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def submit(
    redis: Redis,
    connector: str,
    body: bytes,
    *,
    received_at: datetime,
    delivery_id: str | None = None,
    stream: str = redis_keys.EVENT_STREAM,
    account_id: int | None = None,
) -> str:
    """Append one webhook body of ``account_id`` (when known) to ``stream`` and make sure a drain job will read
    it (no dedupe: the reconciler's bodies, which the engine deduplicates by event key).

    Returns the stream entry id.
    """
    # One round trip for the append and the pending marker: this is the receiver's hot path.
    pipeline = redis.pipeline(transaction=False)
    pipeline.xadd(
        stream,
        {
            "connector": connector,
            "body": body,
            "received_at": received_at.isoformat(),
            "delivery_id": delivery_id or "",
            "account": "" if account_id is None else str(account_id),
        },
    )
    pipeline.set(redis_keys.DRAIN_PENDING, 1, nx=True, ex=DRAIN_MARKER_TTL_SECONDS)
    if stream != redis_keys.EVENT_STREAM:
        pipeline.sadd(redis_keys.ACCOUNT_STREAMS, stream)
    entry_id, marked = pipeline.execute()[:2]
    if marked:
        _enqueue_drain(redis)
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def event_streams(redis: Redis) -> list[str]:
    """Every event stream: the single-account one and each account stream that ever held an event."""
    members = redis.smembers(redis_keys.ACCOUNT_STREAMS)
    return [
        redis_keys.EVENT_STREAM,
        *sorted(member.decode() if isinstance(member, bytes) else member for member in members),
    ]


def oldest_entry_age(redis: Redis) -> float | None:
    """Seconds since the oldest entry still in an event stream was added (by Redis's clock), None when they
    are all empty.

    Entries are deleted once processed, so this is the age of the oldest event not yet processed.
    """
    added = []
    for stream in event_streams(redis):
        oldest = redis.xrange(stream, count=1)
        if oldest:
            entry_id = oldest[0][0]
            text = str(entry_id, "ascii") if isinstance(entry_id, bytes) else str(entry_id)
            added.append(int(text.split("-")[0]))
    if not added:
        return None
    seconds, microseconds = redis.time()
    return max(0.0, seconds + microseconds / 1e6 - min(added) / 1000)


def submit_ticks(
    redis: Redis,
    keys: Iterable[tuple[int, int]],
    connector: str = "chatwoot",
    stream: str = redis_keys.EVENT_STREAM,
) -> int:
    """Ask the workers to re-evaluate these conversations now (their deadline or at-risk instant has come);
    returns how many ticks were queued.

    One round trip for all of them: a sweep may find thousands due in the same second, and a round trip per
    tick would make the sweeper, not the workers, what a miss waits for.
    """
    pipeline = redis.pipeline(transaction=False)
    for account_id, conversation_id in keys:
        pipeline.xadd(stream, {"connector": connector, "tick": f"{account_id}:{conversation_id}"})
    queued = len(pipeline)
    if not queued:
        return 0
    if stream != redis_keys.EVENT_STREAM:
        pipeline.sadd(redis_keys.ACCOUNT_STREAMS, stream)
    pipeline.execute()
    ensure_drain(redis)
    return queued


def ensure_drain(redis: Redis) -> None:
    """Enqueue a drain job unless one is already pending (the marker expires after a crash)."""
    if redis.set(redis_keys.DRAIN_PENDING, 1, nx=True, ex=DRAIN_MARKER_TTL_SECONDS):
        _enqueue_drain(redis)


def _enqueue_drain(redis: Redis) -> None:
    from rq import Queue  # imported here so a process that only reads the stream never loads RQ

    Queue(redis_keys.EVENTS_QUEUE, connection=redis).enqueue(
        "plugin.jobs.drain.drain", job_timeout=120, result_ttl=0, failure_ttl=7 * 24 * 3600
    )
