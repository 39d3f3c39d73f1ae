"""The reports' pair rollup, computed for the closed UTC days that changed (plugin/adapters/rollup_pairs.py).

The sweeper queues :func:`run` every minute on the write-back queue (with the other periodic passes, away
from the events queue, whose latency the deadlines need). Until a day is computed, the reports read it from
``sla_applied``: a late run costs report speed, never a wrong figure.
"""

from __future__ import annotations

import logging

from plugin.jobs.drain import utcnow
from plugin.jobs.runtime import current_runtime

log = logging.getLogger(__name__)

DAYS_PER_RUN = 30  # a day costs about 2.5 s at 11,000 applied SLAs; the next run takes the rest


def run() -> int:
    """RQ job: compute the pairs of up to :data:`DAYS_PER_RUN` changed days; returns how many."""
    paired = current_runtime().store.refresh_rollup_pairs(utcnow(), DAYS_PER_RUN)
    if paired:
        log.info("report pairs computed for %d days", paired)
    return paired
