"""The deadline sweeper: every second, the conversations whose due or at-risk instant has come get a tick.

Any number of worker processes run a sweeper thread; a Redis lock elects one leader, and a leader that dies
is replaced when its lock expires. A new leader rebuilds the deadline index from SQL first, and every
minute it re-reads the checks that SQL says are overdue, so neither a Redis flush nor a lost ZADD can hide a
deadline (docs/architecture.md, "How an event flows" and "Where state lives").
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from plugin.adapters import deadlines, locks, redis_keys
from plugin.adapters import streams as ingest
from plugin.adapters.accounts import Account
from plugin.jobs.drain import backlog
from plugin.jobs.runtime import Runtime

log = logging.getLogger(__name__)

LEADER_TTL_SECONDS = 5
INDEX_REFRESH_EVERY = timedelta(seconds=60)
# A check still due in SQL this long after its time was lost from the index (a healthy pipeline re-evaluates a
# conversation within seconds). One due more recently is most likely ticked and waiting in the stream: adding
# it again would tick it twice, a burst of duplicate work every minute when thousands fall due a second.
LOST_AFTER = timedelta(seconds=30)
REBUILD_PAGE = 10_000  # running clocks read from SQL and indexed per step of a rebuild
MINIMUM_WAIT_SECONDS = 0.02
OUTBOX_REQUEUE_EVERY = timedelta(seconds=30)
# Notification retries are due at their own times (backoff); a few seconds late is fine.
NOTIFICATIONS_REQUEUE_EVERY = timedelta(seconds=5)
# A drain left stalled by a killed worker can only be taken over after the claim idle time anyway; checking
# on every wake (up to 50 a second with dense deadlines) would only queue empty drains beside a running one.
STALLED_DRAIN_CHECK_EVERY = timedelta(seconds=2)
# Delivered notifications and written intents past their retention, deleted a page a minute (up to 7.2
# million a day per table): a year's backlog after an upgrade goes without one long write lock.
PRUNE_EVERY = timedelta(minutes=1)
PRUNE_PAGE = 5_000
REPORT_PAIRS_EVERY = timedelta(minutes=1)  # plugin/jobs/report_pairs.py


class Sweeper:
    """One process's sweeper; :meth:`step` does one second's work and is what tests drive."""

    def __init__(self, runtime: Runtime, clock: Callable[[], datetime]):
        self.runtime = runtime
        self.clock = clock
        self.lease = locks.Lease(runtime.redis, redis_keys.SWEEPER_LEADER, LEADER_TTL_SECONDS)
        self._last_run: dict[str, datetime] = {}  # periodic duty -> when it last ran

    def _hold_leadership(self) -> bool:
        if self.lease.renew():
            return True
        if self.lease.take():
            log.info("sweeper elected leader")
            self._last_run.clear()  # a new leader trusts nothing in Redis: rebuild from SQL first
        return self.lease.held

    def rebuild(self) -> int:
        """Re-create the deadline index from SQL; returns how many checks it holds.

        Page by page: a million running clocks are never all in this process's memory at once, and no read
        holds the database (SQLite's one write lock) for longer than a page.
        """
        total = 0
        for page in self.runtime.store.all_checks(REBUILD_PAGE):
            deadlines.schedule(self.runtime.redis, page)
            total += len(page)
        return total

    def step(self) -> int:
        """One sweep if this process leads: ticks for every due conversation; returns how many."""
        if not self._hold_leadership():
            return 0
        now = self.clock()
        if "index" not in self._last_run:
            self.rebuild()
            self._last_run["index"] = now
        elif self._every("index", INDEX_REFRESH_EVERY, now):
            deadlines.schedule(self.runtime.redis, self.runtime.store.due_conversations(now - LOST_AFTER))
        if self._every("stalled drain", STALLED_DRAIN_CHECK_EVERY, now):
            self._restart_stalled_drain()
        due = deadlines.pop_due(self.runtime.redis, now)
        ticks: dict[str, list[tuple[int, int]]] = defaultdict(list)  # event stream -> its conversations due
        for key in due:
            account = self.runtime.accounts.get(key[0])
            if account is not None:  # an account removed from the accounts file gets no more ticks
                ticks[account.stream].append(key)
        for stream, keys in ticks.items():
            ingest.submit_ticks(self.runtime.redis, keys, stream=stream)
        if self._every("notifications", NOTIFICATIONS_REQUEUE_EVERY, now):
            from plugin.jobs.notify import requeue_due

            requeue_due(self.runtime, now)
        retention = self.runtime.settings.SLA_DELIVERED_RETENTION_DAYS
        if retention > 0 and self._every("prune", PRUNE_EVERY, now):
            self.runtime.store.prune_delivered(now - timedelta(days=retention), PRUNE_PAGE)
        helpdesks = [account for account in self.runtime.accounts.all() if account.chatwoot_url]
        if helpdesks and self._every("outbox", OUTBOX_REQUEUE_EVERY, now):
            from plugin.jobs.writeback import requeue_stale_outbox

            requeue_stale_outbox(self.runtime, now)
        # On the write-back queue, away from the events queue whose latency the deadlines need.
        queue = Queue(redis_keys.WRITEBACK_QUEUE, connection=self.runtime.redis)
        if self._every("report pairs", REPORT_PAIRS_EVERY, now):
            _enqueue_periodic(queue, "plugin.jobs.report_pairs.run", redis_keys.REPORT_PAIRS_JOB, timeout=600)
        # These call the helpdesk's API, like the write-back. One job per account, so one slow helpdesk does not
        # hold another's pass back.
        names_every = self.runtime.settings.SLA_NAMES_REFRESH_SECONDS
        if helpdesks and names_every > 0 and self._every("names", timedelta(seconds=names_every), now):
            _enqueue_per_account(queue, helpdesks, "plugin.jobs.names.run", "sla-names", timeout=120)
        reconcile_every = self.runtime.settings.SLA_RECONCILE_SECONDS
        if helpdesks and reconcile_every > 0 and self._every("reconciler", timedelta(seconds=reconcile_every), now):
            _enqueue_per_account(queue, helpdesks, "plugin.jobs.reconciler.run", redis_keys.RECONCILER_JOB, timeout=600)
        return len(due)

    def _every(self, duty: str, period: timedelta, now: datetime) -> bool:
        """Whether a periodic duty is due (never run, or ``period`` since it last ran); marks it run."""
        last = self._last_run.get(duty)
        if last is not None and now - last < period:
            return False
        self._last_run[duty] = now
        return True

    def _restart_stalled_drain(self) -> None:
        """Queue a drain when entries wait and no drain job is queued.

        A worker killed mid-drain leaves its pending marker behind (for up to its TTL) and its entries
        unacknowledged; without this, they would wait for the next webhook.
        """
        redis = self.runtime.redis
        if Queue(redis_keys.EVENTS_QUEUE, connection=redis).count == 0 and backlog(redis) > 0:
            redis.delete(redis_keys.DRAIN_PENDING)
            ingest.ensure_drain(redis)

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Sweep until ``stop`` is set: at least every ``interval`` seconds, and at the earliest deadline
        when it comes sooner (a miss is noticed the instant it happens, not at the next period)."""
        while not stop.is_set():
            wait = interval
            try:
                self.step()
                if self.lease.held:
                    wait = self._until_next_deadline(interval)
            except Exception:  # noqa: BLE001 - a sweeper must outlive a Redis or database outage
                log.exception("sweep failed; retrying")
                self.lease.held = False
            stop.wait(wait)

    def _until_next_deadline(self, interval: float) -> float:
        earliest = deadlines.earliest(self.runtime.redis)
        if earliest is None:
            return interval
        return min(interval, max(MINIMUM_WAIT_SECONDS, earliest - self.clock().timestamp()))


def _enqueue_per_account(queue: Queue, accounts: list[Account], function: str, job: str, timeout: int) -> None:
    """One job of ``function`` per account, each under that account's job id (:func:`redis_keys.per_account_job`)."""
    for account in accounts:
        _enqueue_periodic(queue, function, redis_keys.per_account_job(job, account.id), timeout, account.id)


def _enqueue_periodic(queue: Queue, function: str, job_id: str, timeout: int, *arguments: object) -> None:
    """Queue a periodic pass under its job id unless the previous one still waits or runs (a pool that is
    stopped would otherwise collect one per period); a failed one is kept a day for inspection."""
    try:
        status = Job.fetch(job_id, connection=queue.connection).get_status()
    except NoSuchJobError:
        status = None
    if status in (JobStatus.QUEUED, JobStatus.STARTED):
        return
    queue.enqueue(function, *arguments, job_id=job_id, job_timeout=timeout, result_ttl=0, failure_ttl=24 * 3600)
