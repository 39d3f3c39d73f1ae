"""Prometheus metrics kept in Redis, so the web processes, the workers and the sweeper report through one
``/metrics`` endpoint whichever process serves it.

Counters and histograms live in Redis hashes under ``sla:metrics:<name>`` (one field per label set, updated
with HINCRBY / HINCRBYFLOAT, so increments from every process add up); the webhook receiver buffers its
counts for up to a second (:class:`CounterBuffer`) to save a round trip per request. Gauges are read live
when rendered (queue lengths, the deadline index). The text format is written by hand: it is a few lines,
and a client library's in-process registry would not see the other processes' counts.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from plugin.adapters import redis_keys
from plugin.adapters.streams import event_streams

log = logging.getLogger(__name__)


COUNTER, HISTOGRAM = "counter", "histogram"

# Metrics that processes record; a name not listed here is still rendered, as an untyped counter.
RECORDED: dict[str, tuple[str, str]] = {
    "sla_webhooks_received_total": (COUNTER, "Webhook requests received, by connector and outcome."),
    "sla_events_processed_total": (COUNTER, "Events the workers applied to a conversation."),
    "sla_writeback_failures_total": (COUNTER, "Calls to the helpdesk API that failed."),
    "sla_reconcile_failures_total": (COUNTER, "Conversations the reconciler could not read from the helpdesk."),
    "sla_event_lag_seconds": (HISTOGRAM, "Seconds from a webhook's receipt to its event being applied."),
    "sla_events_unreadable_total": (COUNTER, "Events set aside in the dead-letter stream (sla:events:dead)."),
    "sla_notifications_sent_total": (COUNTER, "SLA events delivered, by destination."),
    "sla_notifications_failed_total": (COUNTER, "SLA event delivery attempts that failed, by destination and reason."),
    "sla_notifications_dropped_total": (COUNTER, "SLA events given up after 24 h of failed attempts, by destination."),
    "sla_notifications_skipped_total": (COUNTER, "SLA events not sent: destination undefined or its URL unset."),
}

# Upper bounds of the histogram buckets, in seconds (an event applied within 1 s is the normal case).
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_COUNT_FIELD, _SUM_FIELD = "count", "sum"


def incr(redis: Redis, name: str, labels: Mapping[str, str] | None = None, amount: int = 1) -> None:
    """Add *amount* to counter *name* with *labels*. A Redis failure is logged, never raised: metrics must
    not fail the work they count."""
    try:
        redis.hincrby(redis_keys.metric(name), _label_text(labels), amount)
    except RedisError as error:
        log.warning("metric not recorded", extra={"metric": name, "error": type(error).__name__})


class CounterBuffer:
    """Counter increments kept in memory and written to Redis in one pipeline at most every *interval*
    seconds, by a background thread, before :func:`render` and at exit.

    For hot paths: the webhook receiver would otherwise pay one more Redis round trip per request. Counts
    reach Redis at most *interval* seconds late, and a process killed with SIGKILL loses that much.
    """

    def __init__(self, redis: Redis, interval: float = 1.0) -> None:
        self.redis = redis
        self.interval = interval
        self._pending: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher_process: int | None = None

    def incr(self, name: str, labels: Mapping[str, str] | None = None, amount: int = 1) -> None:
        """Add *amount* to counter *name* with *labels* (written to Redis by the next flush)."""
        with self._lock:
            self._pending[(name, _label_text(labels))] += amount
            # The thread is started on first use in each process: a server that forks its workers after
            # building the app (or any fork) leaves the child without the parent's thread.
            if self._flusher_process != os.getpid() and not self._closed.is_set():
                self._flusher_process = os.getpid()
                threading.Thread(target=self._flush_until_closed, name="metrics-flush", daemon=True).start()
                atexit.register(self.close)

    def flush(self) -> None:
        """Write the pending increments to Redis; on a Redis failure they are kept for the next flush."""
        pending = self._take_pending()
        try:
            self._write(pending)
        except RedisError as error:
            with self._lock:
                self._pending.update(pending)
            log.warning("metrics not flushed", extra={"error": type(error).__name__})

    def close(self) -> None:
        """Stop the background thread and write what is pending (at exit; tests close their apps' buffers).

        Nothing can retry a failure then, and nobody acts on a warning: those counts are lost quietly.
        """
        self._closed.set()
        with contextlib.suppress(RedisError):
            self._write(self._take_pending())

    def _take_pending(self) -> Counter[tuple[str, str]]:
        with self._lock:
            pending, self._pending = self._pending, Counter()
        return pending

    def _write(self, pending: Counter[tuple[str, str]]) -> None:
        if pending:
            pipeline = self.redis.pipeline(transaction=False)
            for (name, labels), amount in pending.items():
                pipeline.hincrby(redis_keys.metric(name), labels, amount)
            pipeline.execute()

    def _flush_until_closed(self) -> None:
        while not self._closed.wait(self.interval):
            self.flush()


def observe(redis: Redis, name: str, value: float) -> None:
    """Record one observation *value* (seconds) in histogram *name*; Redis failures are logged, not raised."""
    bucket = next((f"{bound}" for bound in BUCKETS if value <= bound), None)
    try:
        pipeline = redis.pipeline(transaction=False)
        if bucket is not None:  # beyond the last bound only the +Inf bucket, which is the count, grows
            pipeline.hincrby(redis_keys.metric(name), bucket, 1)
        pipeline.hincrby(redis_keys.metric(name), _COUNT_FIELD, 1)
        pipeline.hincrbyfloat(redis_keys.metric(name), _SUM_FIELD, value)
        pipeline.execute()
    except RedisError as error:
        log.warning("metric not recorded", extra={"metric": name, "error": type(error).__name__})


def render(redis: Redis) -> str:
    """Every metric in Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []
    prefix = redis_keys.METRICS_PREFIX
    names = sorted(key.decode()[len(prefix) :] for key in redis.scan_iter(match=prefix + "*", count=500))
    for name in sorted(set(names) | set(RECORDED)):
        kind, help_text = RECORDED.get(name, (COUNTER, "Counted by the plugin."))
        values = {_text(field): _text(value) for field, value in redis.hgetall(redis_keys.metric(name)).items()}
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += _histogram_lines(name, values) if kind == HISTOGRAM else _counter_lines(name, values)

    lines += [
        "# HELP sla_deadlines_pending Deadlines waiting in the sweeper's index.",
        "# TYPE sla_deadlines_pending gauge",
        f"sla_deadlines_pending {redis.zcard(redis_keys.DEADLINES)}",
    ]
    lines += ["# HELP sla_queue_depth Jobs waiting in each RQ queue.", "# TYPE sla_queue_depth gauge"]
    lines += [
        f"sla_queue_depth{_label_text({'queue': name})} {Queue(name, connection=redis).count}"
        for name in redis_keys.QUEUES
    ]
    stream_length, pending = event_stream_state(redis)
    lines += [
        "# HELP sla_event_stream_length Webhook bodies in the event stream (read or not).",
        "# TYPE sla_event_stream_length gauge",
        f"sla_event_stream_length {stream_length}",
        "# HELP sla_event_stream_pending Events read by a worker and not yet acknowledged.",
        "# TYPE sla_event_stream_pending gauge",
        f"sla_event_stream_pending {pending}",
    ]
    return "\n".join(lines) + "\n"


def event_stream_state(redis: Redis) -> tuple[int, int]:
    """The event streams' length and the number of entries read but not acknowledged by the workers."""
    stream_length = pending = 0
    for stream in event_streams(redis):
        stream_length += redis.xlen(stream)
        # No worker has created the consumer group yet: nothing was read.
        with contextlib.suppress(RedisError):
            pending += redis.xpending(stream, redis_keys.EVENT_GROUP)["pending"]
    return stream_length, pending


def _counter_lines(name: str, values: Mapping[str, str]) -> Iterable[str]:
    if not values:
        return [f"{name} 0"]
    return [f"{name}{labels} {count}" for labels, count in sorted(values.items())]


def _histogram_lines(name: str, values: Mapping[str, str]) -> Iterable[str]:
    cumulative = 0
    lines = []
    for bound in BUCKETS:
        cumulative += int(values.get(f"{bound}", 0))
        lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {values.get(_COUNT_FIELD, "0")}')
    lines.append(f"{name}_sum {float(values.get(_SUM_FIELD, 0))}")
    lines.append(f"{name}_count {values.get(_COUNT_FIELD, '0')}")
    return lines


def _text(value: bytes | str) -> str:
    """A Redis reply as text (the plugin's connections return bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def _label_text(labels: Mapping[str, str] | None) -> str:
    """Labels as Prometheus writes them, ``{a="1",b="2"}`` (sorted, escaped), or "" without labels."""
    if not labels:
        return ""
    escaped = (f'{key}="{_escape(str(value))}"' for key, value in sorted(labels.items()))
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
