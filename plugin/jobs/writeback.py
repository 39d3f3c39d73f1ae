"""Write-back: the outbox's intents -> the helpdesk's labels and private notes (docs/writeback.md).

Jobs run on the RQ queue ``writeback`` in rounds, one account per round: the conversations owed a write-back
wait in their account's Redis queue (longest-waiting first), at most one round per account waits in the RQ
queue, and a round works for at most ``ROUND_SECONDS`` before it hands over to the back of the queue. So one
account's backlog or slow helpdesk holds a worker for one round at a time, and every other account's round
gets its turn (docs/accounts.md). Within an account, a round's writers work side by side (up to the account's
write-back concurrency, a Redis semaphore), each taking the next owed conversation as soon as it is done with
one, and every call takes its place in the account's budget of calls per minute
(plugin/adapters/request_budget.py), which keeps under the helpdesk's rate limit and makes every writer wait
after a 429. Everything is idempotent:
- labels are merged (only the plugin's own titles are touched) into the list the latest webhook (or our
  own write) showed, and written: one call; only when no webhook told them are they read first. A retry
  recomputes. A list that changed since that webhook (an agent's label in flight) is restored from the
  echo of our write (:func:`repair_dropped_labels`);
- a note's outbox row is marked ``sending`` before the call; a retry of a row found ``sending`` first looks
  for the note's marker among the conversation's messages, so a crash between the call and the commit never
  yields a second note.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis

from connectors.outbound import Helpdesk, NotFound, NotPermitted, TokenRefused
from plugin.adapters import locks, metrics, redis_keys
from plugin.adapters.accounts import DEFAULT_WRITEBACK_CONCURRENCY
from plugin.adapters.settings import SettingsError
from plugin.core.engine.effects import ATTRIBUTES_KEY, LABELS_KEY, PRIORITY_KEY, SLA_ATTRIBUTES
from plugin.core.events import Event
from plugin.core.wording import legacy_note_marker, note_marker, note_text
from plugin.jobs.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)

SEMAPHORE_TTL_SECONDS = 60
RETRY_INTERVALS = (2, 5, 15, 60, 120, 300)
# A round serves one account for at most this long, then hands over (docs/accounts.md, fairness).
ROUND_SECONDS = 5.0
HOST_RETRY_SECONDS = 5  # after a helpdesk failure, the account's next round waits this long
ROUND_MARKER_TTL_SECONDS = 60
STALE_AFTER = timedelta(minutes=2)
# After a refused token, one attempt per this period until an operator fixes it.
AUTH_BACKOFF_SECONDS = 300
# How long the labels we wrote are remembered: the echo webhook arrives within seconds.
WRITTEN_LABELS_TTL_SECONDS = 900
# How long a conversation's labels as a webhook showed them are trusted instead of a read.
KNOWN_LABELS_TTL_SECONDS = 3600


def enqueue_writebacks(redis: Redis, keys: Iterable[tuple[int, int]]) -> None:
    """Note each conversation as owed a write-back in its account's queue (a burst of changes to one
    conversation makes one entry, which keeps its place) and make sure a round of each account is queued."""
    owed: dict[int, list[int]] = defaultdict(list)
    for account_id, conversation_id in keys:
        owed[account_id].append(conversation_id)
    if not owed:
        return
    now = time.time()
    pipeline = redis.pipeline(transaction=False)
    for account_id, conversations in owed.items():
        pipeline.zadd(
            redis_keys.writeback_owed(account_id),
            {str(conversation_id): now for conversation_id in conversations},
            nx=True,
        )
    pipeline.execute()
    for account_id in owed:
        ensure_round(redis, account_id)


def ensure_round(redis: Redis, account_id: int, delay_seconds: int = 0) -> None:
    """Queue a round of the account's write-back unless one is already waiting (its marker expires, so a
    worker killed before the round started does not block the next one)."""
    from rq import Queue

    marker = redis_keys.writeback_round_pending(account_id)
    if not redis.set(marker, 1, nx=True, ex=ROUND_MARKER_TTL_SECONDS + delay_seconds):
        return
    queue = Queue(redis_keys.WRITEBACK_QUEUE, connection=redis)
    options: dict[str, Any] = {"job_timeout": 600, "result_ttl": 0, "failure_ttl": 7 * 24 * 3600}
    if delay_seconds:
        queue.enqueue_in(timedelta(seconds=delay_seconds), "plugin.jobs.writeback.deliver_round", account_id, **options)
    else:
        queue.enqueue("plugin.jobs.writeback.deliver_round", account_id, **options)


def deliver_round(account_id: int) -> int:
    """RQ job: one round of an account's owed write-backs; returns how many intents were done."""
    runtime = current_runtime()
    # Cleared first, so a conversation owed while this round runs queues the next round.
    runtime.redis.delete(redis_keys.writeback_round_pending(account_id))
    try:
        client = runtime.helpdesk(account_id)
    except ValueError as error:  # not served any more, or its helpdesk settings are missing
        # Its intents stay pending in the store: they are written once the account is configured again.
        runtime.redis.delete(redis_keys.writeback_owed(account_id))
        log.error("write-back of this account skipped: %s", error, extra={"account_id": account_id})
        return 0
    return Writer(runtime, client).deliver_owed(account_id)


def restore_labels(account_id: int, conversation_id: int, labels: list[str]) -> None:
    """RQ job: put back agent labels that our label write dropped."""
    runtime = current_runtime()
    Writer(runtime, runtime.helpdesk(account_id)).restore_labels(conversation_id, labels)


def repair_dropped_labels(runtime: Runtime, events: Iterable[Event]) -> int:
    """Queue a repair for each echo webhook showing that our label write dropped an agent's label.

    The labels endpoint replaces the whole list, so an agent label added between our read and our write is
    lost. The echo of our write says so: its list is exactly what we wrote, and the list before it held a
    label that is neither ours nor in what we wrote. Returns how many repairs were queued.
    """
    from rq import Queue, Retry

    queued = 0
    for event in events:
        if event.previous_labels is None or event.conversation is None:
            continue
        rules = runtime.accounts.rules_for(event.account_id)
        if rules is None:
            continue
        owned = rules.current().owned_label_titles
        written = runtime.redis.get(redis_keys.labels_written(event.account_id, event.conversation_id))
        if written is None or list(event.conversation.labels) != json.loads(written):
            continue
        dropped = sorted(set(event.previous_labels) - set(event.conversation.labels) - owned)
        if dropped:
            Queue(redis_keys.WRITEBACK_QUEUE, connection=runtime.redis).enqueue(
                "plugin.jobs.writeback.restore_labels",
                event.account_id,
                event.conversation_id,
                dropped,
                retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
                job_timeout=120,
            )
            queued += 1
    return queued


# Set a conversation's known labels only when the news is at least as recent as what is known.
_REMEMBER_LABELS = """
local known = redis.call('GET', KEYS[1])
if known then
  local at = tonumber(string.match(known, '^(%d+)'))
  if at and at > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[3])
return 1
"""


def remember_labels(redis: Redis, seen: Iterable[tuple[int, int, datetime, Sequence[str]]]) -> None:
    """Remember conversations' labels as of a time ``(account, conversation, at, labels)``: what a webhook
    showed, or what we wrote. Older news never replaces newer (a late webhook shows old labels)."""
    pipeline = redis.pipeline(transaction=False)
    for account_id, conversation_id, at, labels in seen:
        key = redis_keys.labels_known(account_id, conversation_id)
        pipeline.eval(_REMEMBER_LABELS, 1, key, int(at.timestamp()), json.dumps(list(labels)), KNOWN_LABELS_TTL_SECONDS)
    pipeline.execute()


def known_labels(redis: Redis, account_id: int, conversation_id: int) -> list[str] | None:
    """The conversation's labels as last remembered, or None when no recent webhook told them."""
    known = redis.get(redis_keys.labels_known(account_id, conversation_id))
    if known is None:
        return None
    _at, _, labels = (known.decode() if isinstance(known, bytes) else known).partition(" ")
    return list(json.loads(labels))


def requeue_stale_outbox(runtime: Runtime, now: datetime) -> int:
    """Queue jobs for intents left pending (a job lost with Redis, a host that came back), for every account
    with a helpdesk whose token was not refused recently."""
    keys = [
        (account_id, conversation_id)
        for account_id, conversation_id in runtime.store.stale_intent_conversations(now - STALE_AFTER)
        if (account := runtime.accounts.get(account_id)) is not None
        and account.chatwoot_url is not None
        and not runtime.redis.exists(redis_keys.writeback_auth_failed(account_id))
    ]
    enqueue_writebacks(runtime.redis, keys)
    return len(keys)


def _ends_line(content: str, marker: str) -> bool:
    """Whether *marker* occurs in *content* followed by whitespace or the end (``...#1`` is not ``...#10``)."""
    return re.search(re.escape(marker) + r"(?!\S)", content) is not None


class Writer:
    """Applies one conversation's outbox rows through a helpdesk client."""

    def __init__(self, runtime: Runtime, client: Helpdesk, clock=lambda: datetime.now(UTC)):
        self.runtime = runtime
        self.client = client
        self.clock = clock
        # Label and attribute intents written in this round, marked done together at its end; None: at once.
        self._written: list[tuple[tuple[int, int], str, str]] | None = None

    def deliver_owed(self, account_id: int, monotonic: Callable[[], float] = time.monotonic) -> int:
        """Write the conversations owed in the account's queue, longest-waiting first, for at most
        ``ROUND_SECONDS``, then hand over to a new round at the back of the queue; returns how many intents
        were done.

        As many writers as the account's write-back concurrency work at once, each taking the next owed
        conversation as soon as it is done with one (the request budget paces their calls). A writer that
        finds every slot of the account taken (another round holds them) puts its conversation back in its
        place and stops. A conversation another job is writing waits for a later round; a helpdesk failure
        (after the client's own retries) ends the round, and the next one starts after
        ``HOST_RETRY_SECONDS``.
        """
        redis = self.runtime.redis
        owed = redis_keys.writeback_owed(account_id)
        started = monotonic()
        stop = threading.Event()
        later: dict[bytes, float] = {}  # conversation -> when it was first owed
        failures: list[Exception] = []
        crowded: list[bool] = []

        def write_owed() -> int:
            done = 0
            while not stop.is_set() and monotonic() - started < ROUND_SECONDS:
                popped: list[tuple[bytes, float]] = redis.zpopmin(owed, 1)  # type: ignore[assignment]
                if not popped:
                    break
                member, owed_since = popped[0]
                try:
                    done += self.deliver(account_id, int(member))
                except locks.SlotsBusy:
                    redis.zadd(owed, {member: owed_since}, lt=True)  # back in its place
                    crowded.append(True)
                    break
                except locks.Busy:
                    later[member] = owed_since
                except Exception as error:  # noqa: BLE001 - the intents stay pending; a later round retries
                    later[member] = owed_since
                    failures.append(error)
                    stop.set()
            return done

        writers = self._concurrency(account_id)
        self._written = []
        try:
            with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="sla-writeback") as pool:
                done = sum(pool.map(lambda _: write_owed(), range(writers)))
        finally:
            if later:  # back into the queue, in their places, whatever ends the round
                redis.zadd(owed, later, lt=True)
            written, self._written = self._written, None
            # One short transaction for the round's labels (they are idempotent: if it is lost, a later
            # round finds them written and makes no call).
            self.runtime.store.finish_intents_if_unchanged(written, self.clock())
        if failures:
            log.warning(
                "write-back round of this account stopped by a helpdesk failure: %r",
                failures[0],
                extra={"account_id": account_id},
            )
            ensure_round(redis, account_id, delay_seconds=HOST_RETRY_SECONDS)
        elif later or (crowded and not done):
            ensure_round(redis, account_id, delay_seconds=1)  # busy elsewhere: try again shortly
        elif redis.zcard(owed):
            ensure_round(redis, account_id)
        return done

    def _concurrency(self, account_id: int) -> int:
        account = self.runtime.accounts.get(account_id)
        return account.writeback_concurrency if account is not None else DEFAULT_WRITEBACK_CONCURRENCY

    def deliver(self, account_id: int, conversation_id: int) -> int:
        """Write every pending intent of the conversation; raises on a host failure (the round retries)."""
        if self.runtime.redis.exists(redis_keys.writeback_auth_failed(account_id)):
            return 0  # the token was refused recently: the intents wait, nobody hammers the host
        with self._exclusive(account_id, conversation_id):
            try:
                return self._deliver(account_id, conversation_id)
            except NotPermitted as error:
                # The token's user cannot see this conversation's inbox: this conversation fails alone.
                return self._refused(account_id, conversation_id, error)
            except TokenRefused:
                # A revoked token will not heal by retrying: alert, and keep the intents for when it is fixed.
                self.runtime.redis.set(redis_keys.writeback_auth_failed(account_id), 1, ex=AUTH_BACKOFF_SECONDS)
                metrics.incr(self.runtime.redis, "sla_writeback_failures_total", {"reason": "auth"})
                log.error(
                    "helpdesk refused the API token; write-back paused until it is fixed",
                    extra={"account_id": account_id, "conversation_id": conversation_id},
                )
                return 0
            except Exception:
                metrics.incr(self.runtime.redis, "sla_writeback_failures_total", {"reason": "host"})
                raise

    def _refused(self, account_id: int, conversation_id: int, error: NotPermitted) -> int:
        """Mark the conversation's pending intents failed: retrying cannot help until an administrator gives
        the token's user access to its inbox (a newer intent is recorded as pending again)."""
        failed = self.runtime.store.fail_intents((account_id, conversation_id), self.clock())
        metrics.incr(self.runtime.redis, "sla_writeback_failures_total", {"reason": "not_permitted"})
        log.error(
            "helpdesk refused this conversation to the API token's user (%s); its write-back is dropped, the "
            "others go on. Give that user access to the conversation's inbox, or use an administrator's token",
            error,
            extra={"account_id": account_id, "conversation_id": conversation_id, "intents": failed},
        )
        return 0

    def _exclusive(self, account_id: int, conversation_id: int) -> AbstractContextManager[None]:
        """Hold the conversation's write lock and one of the account's slots, or raise locks.Busy (RQ retries).

        One writer per conversation: two label read-merge-writes interleaving would let a stale list land
        last. The slots bound the calls in flight against the host's rate limit.
        """
        token = f"{account_id}:{conversation_id}:{self.clock().timestamp()}:{threading.get_ident()}"
        return locks.writeback_exclusive(
            self.runtime.redis, account_id, conversation_id, token, self._concurrency(account_id), SEMAPHORE_TTL_SECONDS
        )

    def _deliver(self, account_id: int, conversation_id: int) -> int:
        """Deliver what is pending. An intent recorded while we write owes the conversation again (the event
        worker queues it after its commit), so it is delivered when the conversation's turn comes."""
        return self._deliver_rows(
            account_id, conversation_id, self.runtime.store.pending_intents((account_id, conversation_id))
        )

    def _deliver_rows(self, account_id: int, conversation_id: int, rows) -> int:
        done = 0
        for row in rows:
            payload = json.loads(row.payload)
            if row.key == LABELS_KEY:
                self._write_labels(conversation_id, payload.get("label"))
                self._finish_labels(row)
            elif row.key == ATTRIBUTES_KEY:
                self._write_attributes(conversation_id, payload.get("attributes"))
                self._finish_labels(row)
            elif row.key == PRIORITY_KEY:
                self._write_priority(row, payload)
            elif payload["kind"] == "correction":
                done_miss = self.runtime.store.intent_state((account_id, conversation_id), f"note:{payload['miss']}")
                if done_miss == "done":
                    self._write_note(row, payload)
                else:
                    # The miss note was never posted: neither note is owed.
                    self._finish(row, "cancelled")
                    self._cancel(account_id, conversation_id, f"note:{payload['miss']}")
            else:
                self._write_note(row, payload)
            done += 1
        return done

    def _set_state(self, account_id: int, conversation_id: int, key: str, state: str, **values) -> None:
        self.runtime.store.set_intent_state((account_id, conversation_id), key, state, self.clock(), **values)

    def _finish(self, row, state: str, **values) -> None:
        self._set_state(row.account_id, row.conversation_id, row.key, state, **values)

    def _finish_labels(self, row) -> None:
        """Mark a label (or attributes) intent done only if it is still the one we wrote (a newer one stays
        pending): at once, or in a round at the round's end."""
        written = ((row.account_id, row.conversation_id), row.key, row.payload)
        if self._written is not None:
            self._written.append(written)
        else:
            self.runtime.store.finish_intents_if_unchanged([written], self.clock())

    def _cancel(self, account_id: int, conversation_id: int, key: str) -> None:
        self._set_state(account_id, conversation_id, key, "cancelled")

    def _write_labels(self, conversation_id: int, label_key: str | None) -> None:
        holder = self.runtime.accounts.rules_for(self.client.account_id)
        if holder is None:
            raise SettingsError(f"account {self.client.account_id} is no longer served; its labels wait")
        rules = holder.current()
        owned = rules.owned_label_titles
        # A kept SLA ("hit") shows the on-track label unless the rule files define labels.hit.
        spec = (rules.labels.get(label_key) or rules.labels["on_track"]) if label_key else None
        wanted = spec.title if spec else None
        current = known_labels(self.runtime.redis, self.client.account_id, conversation_id)
        if current is None:
            try:
                current = self.client.conversation_labels(conversation_id)
            except NotFound:
                log.warning("conversation gone; labels not written", extra={"conversation_id": conversation_id})
                return
        merged = [title for title in current if title not in owned] + ([wanted] if wanted else [])
        if merged != current:
            self._set_labels(conversation_id, merged)

    def _set_labels(self, conversation_id: int, labels: list[str]) -> None:
        """Replace the labels, remembering what we wrote so the echo webhook can tell our write from an agent's."""
        self.client.set_conversation_labels(conversation_id, labels)
        self.runtime.redis.set(
            redis_keys.labels_written(self.client.account_id, conversation_id),
            json.dumps(labels),
            ex=WRITTEN_LABELS_TTL_SECONDS,
        )
        remember_labels(self.runtime.redis, [(self.client.account_id, conversation_id, self.clock(), labels)])

    def restore_labels(self, conversation_id: int, labels: list[str]) -> None:
        """Add back agent labels our own read-merge-write dropped (an agent added them in between)."""
        with self._exclusive(self.client.account_id, conversation_id):
            current = self.client.conversation_labels(conversation_id)
            missing = [title for title in labels if title not in current]
            if missing:
                self._set_labels(conversation_id, current + missing)
            log.info(
                "restored agent labels lost to a concurrent edit",
                extra={"conversation_id": conversation_id, "labels": missing},
            )

    def _write_attributes(self, conversation_id: int, wanted: Mapping[str, str] | None) -> None:
        """Read, merge, write the conversation's custom attributes: only the plugin's keys change (the endpoint
        replaces the whole object, like labels)."""
        try:
            current = self.client.get_custom_attributes(conversation_id)
        except NotFound:
            log.warning("conversation gone; attributes not written", extra={"conversation_id": conversation_id})
            return
        merged = {key: value for key, value in current.items() if key not in SLA_ATTRIBUTES} | dict(wanted or {})
        if merged != current:
            self.client.set_custom_attributes(conversation_id, merged)

    def _write_priority(self, row, payload: Mapping[str, Any]) -> None:
        """Set the priority a prioritize rule chose, unless the conversation has one by now (never change
        a priority that is set)."""
        current = self.client.get_conversation(row.conversation_id).get("priority")
        if current:
            log.info(
                "priority not set: the conversation has one already",
                extra={"conversation_id": row.conversation_id, "priority": current},
            )
        else:
            self.client.toggle_priority(row.conversation_id, payload["priority"])
            log.info(
                "priority set by a prioritize rule",
                extra={
                    "conversation_id": row.conversation_id,
                    "priority": payload["priority"],
                    "rule": payload["rule"],
                },
            )
        self._finish(row, "done")

    def _write_note(self, row, payload: Mapping[str, Any]) -> None:
        marker = note_marker(row.account_id, row.conversation_id, row.key)
        if row.state == "sending":
            # A previous attempt may have posted the note and died before recording it (with the marker of
            # this version, or of a version before the marker moved to the note's last line).
            legacy = legacy_note_marker(row.account_id, row.conversation_id, row.key)
            found = self._find_note(row.conversation_id, (marker, legacy))
            if found is not None:
                self._finish(row, "done", remote_id=str(found))
                return
        self._finish(row, "sending", attempts=row.attempts + 1)
        message_id = self.client.create_private_note(row.conversation_id, note_text(payload, self.clock(), marker))
        self._finish(row, "done", remote_id=str(message_id))

    def _find_note(self, conversation_id: int, markers: tuple[str, ...]) -> int | None:
        for message in self.client.iter_messages(conversation_id):
            content = message.get("content") or ""
            if message.get("private") and any(_ends_line(content, marker) for marker in markers):
                return message.get("id")
        return None
