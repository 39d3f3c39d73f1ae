"""The RQ worker loop of ``sla-plugin worker``, made to outlive a Redis restart.

RQ's worker quits on an error it did not expect: a job that lost Redis half-way fails, recording the
failure fails too, and the worker leaves its loop (its teardown may raise as well). A worker process that
exits then stays gone until someone restarts it. So the loop starts a fresh RQ worker after a pause instead,
for as long as Redis takes to come back, and ends only when asked to (SIGTERM or SIGINT: RQ's warm shutdown)
or, in burst mode, when the queues are empty. The job that was cut short is not lost: a drain's entries stay
pending in the event stream and a write-back's intent stays pending in the outbox, and the sweeper queues
both again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 2.0


class _StoppableWorker(SimpleWorker):
    """A SimpleWorker that remembers being asked to stop (RQ only says so while a job runs)."""

    stop_requested = False

    def request_stop(self, signum, frame):
        self.stop_requested = True
        super().request_stop(signum, frame)


def work(
    queue_names: Sequence[str],
    connection: Redis,
    *,
    burst: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run RQ workers on *queue_names* (in priority order) until asked to stop; see the module docstring.

    SimpleWorker runs jobs in this process: a fork per job would cap a worker near 55 jobs/s. RQ's scheduler
    moves retries (RQ ``Retry`` with intervals) back onto their queue when they are due.
    """
    queues = [Queue(name, connection=connection) for name in queue_names]
    while True:
        rq_worker = _StoppableWorker(queues, connection=connection)
        try:
            rq_worker.work(burst=burst, logging_level="WARNING", with_scheduler=True)
        except RedisError as error:
            log.error("the RQ worker lost Redis: %r", error)
        if burst or rq_worker.stop_requested:
            return
        log.error("the RQ worker stopped on an error; a new one starts in %.0f s", RESTART_DELAY_SECONDS)
        sleep(RESTART_DELAY_SECONDS)
