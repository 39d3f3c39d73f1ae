"""Every name the plugin gives a thing in Redis: keys, the event stream and its consumer group, RQ queues and
RQ job ids. One module, so that what lives in Redis can be read in one place (docs/architecture.md, "Where
state lives"); the modules that read and write these keys say what each holds.
"""

from __future__ import annotations

# --- the hand-over from the receiver to the workers (plugin.adapters.streams, plugin.jobs.drain) ----------

EVENT_STREAM = "sla:events"
"""Stream of accepted webhook bodies and sweeper ticks, read by drain jobs."""
EVENT_GROUP = "sla-workers"
"""The workers' consumer group on :data:`EVENT_STREAM`."""
ACCOUNT_STREAM_PREFIX = "sla:events:account:"
ACCOUNT_STREAMS = "sla:events:streams"
"""Set of the account streams that ever held an event, so health, metrics and drains find them all."""


def account_stream(account_id: int) -> str:
    """The event stream of one account of an accounts file: each account's events wait apart, so one
    account's flood never holds another's back (a single-account deployment uses :data:`EVENT_STREAM`)."""
    return f"{ACCOUNT_STREAM_PREFIX}{account_id}"


DEAD_LETTERS = "sla:events:dead"
"""Stream of entries set aside because they could not be read or folded."""
DRAIN_PENDING = "sla:drain:pending"
"""Marker: a drain job is queued (expires, so a killed worker's marker does not block the next drain)."""
DELIVERY_PREFIX = "sla:delivery:"


def delivery(connector: str, delivery_key: str, account_id: int | None = None) -> str:
    """The dedupe key of one webhook delivery (of the account its URL names, when it names one)."""
    scope = connector if account_id is None else f"{connector}:{account_id}"
    return f"{DELIVERY_PREFIX}{scope}:{delivery_key}"


# --- RQ queues and job ids ----------------------------------------------------------------------------------

EVENTS_QUEUE = "events"
WRITEBACK_QUEUE = "writeback"
NOTIFICATIONS_QUEUE = "notifications"
QUEUES = (EVENTS_QUEUE, WRITEBACK_QUEUE, NOTIFICATIONS_QUEUE)
"""Every queue a worker serves, in the order it serves them."""
RECONCILER_JOB = "sla-reconciler"
REPORT_PAIRS_JOB = "sla-report-pairs"  # plugin/jobs/report_pairs.py: one at a time


def per_account_job(job: str, account_id: int | None) -> str:
    """The RQ job id of one account's periodic pass (the reconciler's, the names'): ``job`` itself for a
    single account without an id."""
    return job if account_id is None else f"{job}-{account_id}"


def writeback_owed(account_id: int) -> str:
    """One account's conversations owed a write-back, a sorted set scored by when each was first owed: the
    account's write-back rounds take the longest-waiting first."""
    return f"sla:writeback:owed-queue:{account_id}"


def writeback_round_pending(account_id: int) -> str:
    """Marker: a write-back round of the account is queued (expires, like :data:`DRAIN_PENDING`)."""
    return f"sla:writeback:round-pending:{account_id}"


def notify_job(destination: str) -> str:
    """The RQ job id of one notification destination's delivery (one queued job per destination)."""
    return f"notify-{destination}"


# --- the deadline index and metrics -------------------------------------------------------------------------

DEADLINES = "sla:deadlines"
"""Sorted set: ``account:conversation`` scored by the Unix time of its next check."""
METRICS_PREFIX = "sla:metrics:"


def metric(name: str) -> str:
    """The hash that holds one metric's values by label set (or histogram field)."""
    return f"{METRICS_PREFIX}{name}"


# --- locks (plugin.adapters.locks) --------------------------------------------------------------------------

SWEEPER_LEADER = "sla:sweeper:leader"
"""The sweeper leader's lease: the token of the process that leads."""


def writeback_conversation(account_id: int, conversation_id: int) -> str:
    """The lock of one conversation's write-back (one writer per conversation)."""
    return f"sla:writeback:conversation:{account_id}:{conversation_id}"


def writeback_slots(account_id: int) -> str:
    """The prefix of one account's write-back slots (``<prefix>:1`` .. ``<prefix>:N``)."""
    return f"sla:writeback:slots:{account_id}"


# --- write-back state ---------------------------------------------------------------------------------------


def writeback_auth_failed(account_id: int) -> str:
    """Marker: the helpdesk refused the account's token; write-back waits until it expires."""
    return f"sla:writeback:auth-failed:{account_id}"


def notify_hold(destination: str) -> str:
    """The ISO time before which nothing is sent to a notification destination (it asked us to back off)."""
    return f"sla:notify:hold:{destination}"


def labels_known(account_id: int, conversation_id: int) -> str:
    """A conversation's labels as the latest webhook (or the plugin's own write) showed them, with its time:
    the write-back merges into these instead of reading the labels back from the helpdesk."""
    return f"sla:labels-known:{account_id}:{conversation_id}"


def request_log(account_id: int) -> str:
    """The helpdesk API calls one account's write-back made in the last minute (a sorted set by call time)."""
    return f"sla:helpdesk:calls:{account_id}"


def rate_limited_until(account_id: int) -> str:
    """Set while the helpdesk asked this account's write-back to wait (a 429): every worker waits."""
    return f"sla:helpdesk:paused:{account_id}"


def rate_limited_streak(account_id: int) -> str:
    """How many 429s without Retry-After came in a row, for the backoff."""
    return f"sla:helpdesk:429-streak:{account_id}"


def labels_written(account_id: int, conversation_id: int) -> str:
    """The labels the plugin last wrote on a conversation, to tell its own echo webhook from an agent's edit."""
    return f"sla:labels-written:{account_id}:{conversation_id}"
