"""The event worker: stream entries -> connector events -> engine -> store, in batches.

Runs as an RQ job (``drain``) on the ``events`` queue. A batch is read from the Redis stream with a
consumer group, every conversation in it is folded once under a database row lock, and the entries are
acknowledged only after the transaction commits: a worker killed mid-batch leaves its entries pending, and
the next drain claims them (the engine drops the duplicates by event key).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from redis import Redis
from redis.exceptions import ResponseError

from connectors.base import PayloadError
from plugin.adapters import deadlines, metrics, redis_keys
from plugin.adapters import streams as ingest
from plugin.adapters.directory import Directory, Name
from plugin.adapters.store import Store
from plugin.core.engine import add_events, evaluate, needs_history
from plugin.core.engine.effects import changes, summary, writeback_intents
from plugin.core.engine.stored import keeps_text, without_text
from plugin.core.events import CONTACT_UPDATED, Event, parse_time
from plugin.core.notifications import routed, sla_events
from plugin.core.rules.model import RulesError, RuleSet
from plugin.jobs.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# A clock may be a little ahead of ours; an event stamped further in the future is not trusted as "now".
MAX_CLOCK_SKEW = timedelta(minutes=5)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, in UTC (the only place the workers read it)."""
    return datetime.now(UTC)


def consumer_name() -> str:
    """This process's name in the stream's consumer group."""
    return f"{socket.gethostname()}:{os.getpid()}"


def drain(batches: int = 20) -> int:
    """RQ job: process up to ``batches`` batches of the event stream; returns how many entries it took.

    The pending marker is cleared first, so an event added while this job runs queues another drain.
    """
    runtime = current_runtime()
    runtime.redis.delete(redis_keys.DRAIN_PENDING)
    total = 0
    for _ in range(batches):
        taken = process_stream(runtime, utcnow, consumer_name())
        total += taken
        if taken == 0:
            return total
    ingest.ensure_drain(runtime.redis)  # more may be waiting: hand over rather than hold the worker
    return total


def backlog(redis: Redis) -> int:
    """Entries in the event streams not yet acknowledged (read by nobody, or by a worker that may have died)."""
    total = 0
    for stream in ingest.event_streams(redis):
        try:
            groups = redis.xinfo_groups(stream)
        except ResponseError:
            continue  # no stream yet
        group = next(
            (group for group in groups if group["name"] in (redis_keys.EVENT_GROUP, redis_keys.EVENT_GROUP.encode())),
            None,
        )
        if group is None:
            total += int(redis.xlen(stream))
        else:
            total += int(group.get("pending") or 0) + int(group.get("lag") or 0)
    return total


def ensure_group(redis: Redis, stream: str = redis_keys.EVENT_STREAM) -> None:
    """Create the stream's consumer group (and the stream) if they do not exist."""
    try:
        redis.xgroup_create(stream, redis_keys.EVENT_GROUP, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def process_stream(runtime: Runtime, clock: Clock, consumer: str, batch_size: int = BATCH_SIZE) -> int:
    """Read one batch (entries abandoned by dead workers first), process it, acknowledge it.

    Every event stream (one per account of an accounts file) gets an equal share of the batch, and the shares
    an account leaves unused go to those with more waiting. So one account's flood waits in its own stream and
    never holds another account's events or deadline ticks back by more than one batch.
    """
    redis = runtime.redis
    streams = ingest.event_streams(redis)
    share = max(1, batch_size // len(streams))
    entries: list[tuple[str, bytes, dict]] = []
    for stream in streams:
        ensure_group(redis, stream)
        # Entries read by a worker that died are taken over once they have been idle this long.
        claimed = redis.xautoclaim(
            stream,
            redis_keys.EVENT_GROUP,
            consumer,
            runtime.settings.SLA_CLAIM_IDLE_SECONDS * 1000,
            start_id="0-0",
            count=share,
        )
        entries.extend((stream, entry_id, fields) for entry_id, fields in claimed[1] if fields)
    wanting = streams
    while wanting and len(entries) < batch_size:
        share = max(1, (batch_size - len(entries)) // len(wanting))
        replies = redis.xreadgroup(redis_keys.EVENT_GROUP, consumer, dict.fromkeys(wanting, ">"), count=share)
        assert isinstance(replies, list | None)  # RESP2: a list of [stream, entries] pairs, None when empty
        wanting = []
        for stream, fresh in replies or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            entries.extend((name, entry_id, fields) for entry_id, fields in fresh)
            if len(fresh) == share:  # it may hold more: it gets a share of what the others left
                wanting.append(name)
    if not entries:
        return 0
    waiting = process_entries(runtime, entries, clock)
    done: dict[str, list[bytes]] = defaultdict(list)
    for stream, entry_id, _fields in entries:
        if entry_id not in waiting:
            done[stream].append(entry_id)
    for stream, ids in done.items():
        redis.xack(stream, redis_keys.EVENT_GROUP, *ids)
        redis.xdel(stream, *ids)
    return len(entries)


def process_entries(runtime: Runtime, entries: Sequence[tuple[str, bytes, dict]], clock: Clock) -> set[bytes]:
    """Normalise the entries and fold each conversation's new events in one transaction, with the rules of
    its account. Returns the ids of entries left unacknowledged: those of an account whose rule files have
    never loaded (they are taken over again once fixed; the other accounts go on)."""
    by_conversation: dict[tuple[int, int], list[Event]] = defaultdict(list)
    entries_of: dict[tuple[int, int], list[tuple[bytes, dict]]] = defaultdict(list)
    learned: list[Name] = []
    for _stream, entry_id, fields in entries:
        event, shown = _read_entry(runtime, entry_id, fields)
        if isinstance(event, tuple):  # a tick: re-evaluate the conversation, no new event
            if runtime.accounts.get(event[0]) is not None:
                by_conversation.setdefault(event, [])
        elif event is not None and runtime.accounts.get(event.account_id) is not None:
            for copy in _per_conversation(runtime, event):
                key = (copy.account_id, copy.conversation_id)
                by_conversation[key].append(copy)
                entries_of[key].append((entry_id, fields))
            learned += [Name(event.account_id, kind, item, name) for kind, item, name in shown]
    rules_of: dict[int, RuleSet | None] = {}
    waiting: set[bytes] = set()
    for key in list(by_conversation):
        account_id = key[0]
        if account_id not in rules_of:
            rules_of[account_id] = _rules_in_force(runtime, account_id)
        if rules_of[account_id] is None:
            del by_conversation[key]
            waiting.update(entry_id for entry_id, _ in entries_of.pop(key, ()))
    if waiting:
        log.error("rules of an account could not be loaded; its events wait", extra={"entries": len(waiting)})
    if not by_conversation:
        return waiting
    checks = {}
    outbox = set()
    destinations: set[str] = set()
    with runtime.store.batch(by_conversation) as batch:
        now = clock()
        stored = batch.stored_keys({key: [event.key for event in events] for key, events in by_conversation.items()})
        for key, events in by_conversation.items():
            events = [event for event in events if (*key, event.key) not in stored]  # delivered before
            rules = rules_of[key[0]]
            assert rules is not None  # accounts without rules were taken out above
            state, previous = batch.state(key)
            newest = max((event.occurred_at for event in events), default=now)
            at = max(now, min(newest, now + MAX_CLOCK_SKEW))
            if needs_history(state, events, at):
                state = batch.history(key)  # a late event: fold again from the first, as if in order
            if not keeps_text(rules.reads_content, state):
                events = [without_text(event) for event in events]
            state, added = add_events(state, events)
            if not state.known:
                continue  # a tick for a conversation the store no longer knows
            try:
                state, evaluation = evaluate(state, rules.match, rules.content_hash, at, rules.priority_for)
                current = summary(evaluation)
                found = changes(previous, evaluation)
                intents = writeback_intents(previous, current, found, evaluation, rules.custom_attributes)
                deliveries = routed(sla_events(previous, current, found, evaluation), evaluation)
                batch.save(state, evaluation, current, found, intents, deliveries, added)
            except Exception as error:  # noqa: BLE001 - one bad conversation must not hold the batch back
                _set_aside(runtime, key, entries_of.get(key, ()), error)
                continue
            checks[key] = evaluation.next_check_at
            if evaluation.policy is not None:
                learned.append(Name(key[0], "policy", evaluation.policy.id, evaluation.policy.name))
            if intents:
                outbox.add(key)
            destinations.update(destination for _, destination in deliveries)
            received = [moment for _, fields in entries_of.get(key, ()) if (moment := _received_at(fields)) is not None]
            if added and received:
                metrics.observe(runtime.redis, "sla_event_lag_seconds", max(0.0, (now - min(received)).total_seconds()))
            if found:
                log.info(
                    "SLA %s",
                    ", ".join(f"{change.kind} {change.metric}" if change.metric else change.kind for change in found),
                    extra={
                        "account_id": key[0],
                        "conversation_id": key[1],
                        "status": evaluation.status,
                        "policy": current["policy"],
                    },
                )
        for key, refusal in batch.flush().items():
            _set_aside(runtime, key, entries_of.get(key, ()), refusal)
            checks.pop(key, None)
            outbox.discard(key)
    deadlines.schedule(runtime.redis, list(checks.items()))
    _learn_names(runtime, learned)
    metrics.incr(runtime.redis, "sla_events_processed_total", amount=sum(map(len, by_conversation.values())))
    if destinations:
        from plugin.jobs.notify import enqueue_deliveries

        enqueue_deliveries(runtime.redis, destinations)
    from plugin.jobs.writeback import enqueue_writebacks, repair_dropped_labels

    _remember_labels(runtime, by_conversation.values())
    writes = [key for key in sorted(outbox) if _writes_back(runtime, key[0])]
    enqueue_writebacks(runtime.redis, writes)
    repair_dropped_labels(
        runtime,
        (event for events in by_conversation.values() for event in events if _writes_back(runtime, event.account_id)),
    )
    return waiting


def _rules_in_force(runtime: Runtime, account_id: int) -> RuleSet | None:
    """The account's rules, or None when its rule files have never loaded (the error is logged by the
    holder and shown by /healthz)."""
    holder = runtime.accounts.rules_for(account_id)
    try:
        return None if holder is None else holder.current()
    except RulesError:
        return None


def _writes_back(runtime: Runtime, account_id: int) -> bool:
    """Whether the account has a helpdesk to write to."""
    account = runtime.accounts.get(account_id)
    return account is not None and account.chatwoot_url is not None


def _remember_labels(runtime: Runtime, batches: Iterable[list[Event]]) -> None:
    """Remember each conversation's labels as its newest event shows them, so the write-back need not read
    them back from the helpdesk."""
    from plugin.jobs.writeback import remember_labels

    seen = []
    for events in batches:
        shown = [event for event in events if event.conversation is not None]
        if shown:
            newest = max(shown, key=lambda event: event.occurred_at)
            assert newest.conversation is not None  # filtered above
            seen.append((newest.account_id, newest.conversation_id, newest.occurred_at, newest.conversation.labels))
    if seen:
        remember_labels(runtime.redis, seen)


def _per_conversation(runtime: Runtime, event: Event) -> list[Event]:
    """The event itself, or for a contact's change one copy per conversation the store knows of the contact."""
    if event.kind != CONTACT_UPDATED or event.contact is None or event.contact.id is None:
        return [event]
    keys = runtime.store.conversations_of_contact(event.account_id, event.contact.id)
    return [replace(event, conversation_id=conversation_id) for _, conversation_id in keys]


def _received_at(fields: dict) -> datetime | None:
    """When the receiver accepted an entry (reconciled bodies and ticks carry their own times or none)."""
    raw = fields.get(b"received_at")
    try:
        return datetime.fromisoformat(raw.decode()) if raw else None
    except ValueError:
        return None


def _set_aside(runtime: Runtime, key: tuple[int, int], entries, error: Exception) -> None:
    """Keep a conversation's new entries in the dead-letter stream when folding them failed.

    Its stored state is left as it was (evaluating it failed, or the database refused its rows); the rest of
    the batch goes on. Without this, the batch would be claimed and fail again forever, and every event read
    with it would wait.
    """
    log.error(
        "conversation could not be evaluated or stored; its new events are kept aside: %r",
        error,
        extra={"account_id": key[0], "conversation_id": key[1]},
    )
    metrics.incr(runtime.redis, "sla_events_unreadable_total", amount=max(len(entries), 1))
    for _entry_id, fields in entries:
        runtime.redis.xadd(
            redis_keys.DEAD_LETTERS, {**fields, "error": repr(error)[:1000]}, maxlen=100_000, approximate=True
        )


# The names this process has stored (or found stored): a batch whose names are all known here opens no
# transaction for them (on SQLite every transaction takes the write lock). Bounded: cleared when full.
# Per store (one per database the process uses): (account, kind, id) -> name.
_KNOWN_NAMES: weakref.WeakKeyDictionary[Store, dict[tuple[int, str, str], str]] = weakref.WeakKeyDictionary()
_KNOWN_NAMES_LIMIT = 10_000


def _learn_names(runtime: Runtime, learned: list[Name]) -> None:
    """Keep the names the batch showed (inboxes, agents, teams, policies) for reports. After the batch's
    transaction, in a short one of its own: a name is not SLA state, and failing to store one loses none."""
    known = _KNOWN_NAMES.setdefault(runtime.store, {})
    fresh = [name for name in learned if known.get((name.account_id, name.kind, name.key)) != name.name]
    if not fresh:
        return
    try:
        Directory(runtime.store.engine).learn(fresh)
    except Exception as error:  # noqa: BLE001 - names are for people reading reports; the SLA state is saved
        log.warning("names seen in webhooks could not be stored: %r", error)
        return
    if len(known) > _KNOWN_NAMES_LIMIT:
        known.clear()
    known.update({(name.account_id, name.kind, name.key): name.name for name in fresh})


def _read_entry(
    runtime: Runtime, entry_id: bytes, fields: dict
) -> tuple[Event | tuple[int, int] | None, list[tuple[str, str, str]]]:
    """One stream entry -> an event, a tick's conversation key, or None (ignored or unreadable), and the
    names its payload shows."""
    if b"tick" in fields:
        return deadlines.parse_member(fields[b"tick"]), []
    delivery_id = fields.get(b"delivery_id", b"").decode() or None
    try:
        # The account the webhook's URL named (conversation webhooks may name none), else the single one.
        named = fields.get(b"account", b"").decode()
        account = runtime.accounts.get(int(named)) if named else runtime.accounts.default()
        if account is None:
            log.info("event of an account no longer served ignored", extra={"delivery_id": delivery_id})
            return None, []
        connector = runtime.connectors.get(account, fields[b"connector"].decode())
        payload = json.loads(fields[b"body"])
        received_at = parse_time(fields[b"received_at"].decode()) if fields.get(b"received_at") else None
        return connector.normalize(payload, received_at), connector.names(payload)
    except (PayloadError, ValueError, KeyError) as error:
        # Kept, not dropped: an operator can inspect and re-submit what a connector could not read.
        runtime.redis.xadd(
            redis_keys.DEAD_LETTERS, {**fields, "error": str(error)[:1000]}, maxlen=100_000, approximate=True
        )
        log.warning(
            "unreadable webhook payload skipped: %s",
            error,
            extra={"delivery_id": delivery_id, "entry_id": entry_id.decode()},
        )
        metrics.incr(runtime.redis, "sla_events_unreadable_total")
        return None, []
