"""The SQL store (SQLAlchemy Core; SQLite by default, PostgreSQL in production).

Tables:
- ``sla_conversations``: each conversation's engine state head (its fold checkpoint, pinned policies and
  arrival counter, plugin/core/engine/stored.py) and the summary of its last evaluation, both as
  zlib-compressed JSON (:func:`pack`); the source of truth the Redis deadline index and dedupe keys are
  rebuilt from.
- ``sla_events``: one compact record per event of each conversation (what the engine reads of it, and the
  decision the rules made on it), read back only when a late event makes the fold start again.
- ``sla_applied``: one row per conversation under an SLA, denormalised for reports (policy, version, status,
  per-metric outcome, inbox, team, agent, channel, priority, labels).
- ``sla_policy_versions``: the snapshot of each policy version ever applied, once (an applied SLA names its
  policy id and version; the version is the hash of the snapshot).
- ``sla_misses``: one row per miss (metric and clock instance), corrected rather than deleted.
- ``sla_log``: the append-only SLA event log (applied, paused, resumed, at_risk, hit, missed, ...).
- ``sla_names``: the names of inboxes, teams, agents and policies, for reports (plugin/adapters/directory.py).
- ``sla_outbox``: write-back intents recorded in the same transaction as the state that caused them.
- ``sla_notifications``: one row per SLA event and destination, recorded in the same transaction as the
  state that caused it; its state, attempts and next attempt drive delivery (plugin/jobs/notify.py).
- ``sla_contact_conversations``: which conversations each contact has, so a contact blocked later reaches
  every one of them.

Concurrency: a batch locks its conversations' rows (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN
IMMEDIATE`` on SQLite), so two workers never fold the same conversation at once and no Redis lock can
expire under a slow worker.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from plugin.core.engine import ConversationState, Evaluation, state_from_json
from plugin.core.engine.effects import REPLACED_KEYS, Change
from plugin.core.engine.stored import (
    HEAD_FORMAT,
    EventRecord,
    Head,
    expand_records,
    head_from_json,
    head_to_json,
    plan_writes,
)
from plugin.core.events import Event, format_time, parse_time
from plugin.core.notifications import SlaEvent
from plugin.core.policy import FIRST_RESPONSE, NEXT_RESPONSE, RESOLUTION, Policy

ConversationKey = tuple[int, int]
DatabaseError = SQLAlchemyError
"""What the store raises when the database cannot answer (unreachable, refused, a table missing)."""

metadata = sa.MetaData()
UTCDateTime = sa.DateTime(timezone=True)

conversations = sa.Table(
    "sla_conversations",
    metadata,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("conversation_id", sa.BigInteger, primary_key=True, autoincrement=False),
    # Compressed (pack): the JSON of one conversation is read and written whole, never queried inside, and
    # a third of its size packed (repeated keys, policy ids, customer texts), which fits several to a page.
    sa.Column("packed_head", sa.LargeBinary, nullable=False),
    sa.Column("packed_summary", sa.LargeBinary),
    sa.Column("next_check_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_sla_conversations_next_check", "next_check_at"),
)

EVENT_KEY_LENGTH = 200
events = sa.Table(
    "sla_events",
    metadata,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("conversation_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(EVENT_KEY_LENGTH), primary_key=True),  # the event's idempotency key
    sa.Column("arrival", sa.Integer, nullable=False),
    sa.Column("occurred_at", sa.BigInteger, nullable=False),  # seconds since the epoch
    sa.Column("body", sa.Text, nullable=False),
    sqlite_with_rowid=False,  # the key is the row's place: no second tree to store
)

_METRIC_PREFIX = {FIRST_RESPONSE: "frt", NEXT_RESPONSE: "nrt", RESOLUTION: "rt"}

applied = sa.Table(
    "sla_applied",
    metadata,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("conversation_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("policy_id", sa.String(200), nullable=False),
    sa.Column("policy_name", sa.String(200), nullable=False),
    sa.Column("policy_version", sa.String(64), nullable=False),  # its snapshot: sla_policy_versions
    sa.Column("rule", sa.String(500)),
    sa.Column("mode", sa.String(10), nullable=False),
    sa.Column("target", sa.Float),
    sa.Column("applied_at", UTCDateTime, nullable=False),
    sa.Column("conversation_created_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("resolved", sa.Boolean, nullable=False),
    sa.Column("inbox_id", sa.BigInteger),
    sa.Column("team_id", sa.BigInteger),
    sa.Column("assignee_id", sa.BigInteger),
    sa.Column("channel", sa.String(100)),
    sa.Column("priority", sa.String(20)),
    sa.Column("labels", sa.Text),  # the conversation's labels, comma-separated with a leading and trailing comma
    *[
        column
        for prefix in _METRIC_PREFIX.values()
        for column in (
            sa.Column(f"{prefix}_status", sa.String(20)),
            sa.Column(f"{prefix}_due_at", UTCDateTime),
            sa.Column(f"{prefix}_stopped_at", UTCDateTime),
            sa.Column(f"{prefix}_missed_at", UTCDateTime),
            sa.Column(f"{prefix}_misses", sa.Integer, nullable=False, default=0),
        )
    ],
    sa.Column("nrt_misses_per_message", sa.Integer, nullable=False, default=0),
    # Added in version 6: working seconds to the stop, and the target they were judged against.
    *[
        sa.Column(f"{prefix}_{name}", sa.Integer)
        for prefix in ("frt", "rt")
        for name in ("working_seconds", "target_seconds")
    ],
    sa.Column("any_miss", sa.Boolean, nullable=False),
    sa.Column("evaluated_at", UTCDateTime, nullable=False),
    sa.Index("ix_sla_applied_account_applied", "account_id", "applied_at"),
    sa.Index("ix_sla_applied_policy_applied", "policy_id", "applied_at"),
)

policy_versions = sa.Table(
    "sla_policy_versions",
    metadata,
    sa.Column("policy_id", sa.String(200), primary_key=True),
    sa.Column("policy_version", sa.String(64), primary_key=True),
    sa.Column("snapshot", sa.Text, nullable=False),  # JSON: plugin.core.policy.policy_snapshot
)

misses = sa.Table(
    "sla_misses",
    metadata,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("conversation_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("miss", sa.String(60), primary_key=True),  # metric#instance
    sa.Column("metric", sa.String(30), nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("policy_id", sa.String(200), nullable=False),
    sa.Column("policy_version", sa.String(64), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("corrected_at", UTCDateTime),
)

log = sa.Table(
    "sla_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("conversation_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("metric", sa.String(30)),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Index("ix_sla_log_conversation", "account_id", "conversation_id", "id"),
)

outbox = sa.Table(
    "sla_outbox",
    metadata,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("conversation_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(100), primary_key=True),  # "labels", "note:first_response#0", ...
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # pending, done, failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("remote_id", sa.String(100)),
    sa.Column("error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_sla_outbox_state", "state", "updated_at"),
)

contact_conversations = sa.Table(
    "sla_contact_conversations",
    metadata,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("conversation_id", sa.BigInteger, primary_key=True, autoincrement=False),
)

LAST_ERROR_LENGTH = 200

notifications = sa.Table(
    "sla_notifications",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("destination", sa.String(200), primary_key=True),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("conversation_id", sa.BigInteger, nullable=False),
    sa.Column("event", sa.String(30), nullable=False),  # sla.missed, ...
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # pending, sending, done, dropped, skipped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),  # for a row being sent: when its lease ends
    sa.Column("last_error", sa.String(LAST_ERROR_LENGTH)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_sla_notifications_due", "state", "next_attempt_at"),
)

names = sa.Table(
    "sla_names",
    metadata,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(20), primary_key=True),  # inbox, team, agent, policy
    sa.Column("key", sa.String(200), primary_key=True),  # the id as text (a policy's id is text)
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

schema_version = sa.Table(
    "sla_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)


# Schema migrations: each step takes a connection and brings the schema from version N-1 to N. Version 1
# creates the tables above; later steps alter them (ALTER TABLE ...). Steps run in order, once, inside a
# transaction, recorded in sla_schema_version. This is all Alembic would give a schema of this size, without
# a second configuration and a template tree to keep in step with the Core tables.
def _report_indexes(connection: Connection) -> None:
    """Version 2: indexes for the reports (plugin/adapters/report_queries.py), whose cohort is a range of ``applied_at``
    with at most a few equality filters. Plain DDL that both databases accept, kept out of the Core tables
    so that version 1 stays what it was."""
    for name, columns in (
        ("ix_sla_applied_applied", "applied_at"),
        ("ix_sla_applied_team_applied", "team_id, applied_at"),
        ("ix_sla_applied_assignee_applied", "assignee_id, applied_at"),
    ):
        connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON sla_applied ({columns})")


def _next_response_not_started(connection: Connection) -> None:
    """Version 3: a next response that never had a waiting cycle was stored as ``hit``; it is
    ``not_started``. Such a row is the only ``hit`` without a stop (a cycle that was met has stopped)."""
    connection.execute(
        applied.update()
        .where(applied.c.nrt_status == "hit", applied.c.nrt_stopped_at.is_(None))
        .values(nrt_status="not_started")
    )


def _working_times(connection: Connection) -> None:
    """Version 6: first-response and resolution times in working time, with their targets, for the
    "targets that fit" report. A database created at version 1 by this code has them already; rows
    stored before stay null (they are reported once evaluated again)."""
    present = {column["name"] for column in sa.inspect(connection).get_columns(applied.name)}
    for prefix in ("frt", "rt"):
        for name in ("working_seconds", "target_seconds"):
            if f"{prefix}_{name}" not in present:
                connection.exec_driver_sql(f"ALTER TABLE {applied.name} ADD COLUMN {prefix}_{name} INTEGER")


def _compact_events(connection: Connection) -> None:
    """Version 8: each conversation's stored timeline (every event's whole normalised JSON, rewritten on
    every event) becomes one compact record per event in ``sla_events`` and a small head without a
    checkpoint; the next evaluation folds the records again from the first and stores its checkpoint.
    Decisions and pins are kept as they were; customer texts are kept (the rules that test them are not
    known here) within the per-conversation budget."""
    events.create(connection, checkfirst=True)
    if not _has_text_states(connection):
        return  # created by a version that packs them (version 11): nothing stored before version 8
    rows = connection.execute(
        sa.select(_text_states.c.account_id, _text_states.c.conversation_id, _text_states.c.state)
    ).all()
    for row in rows:
        data = json.loads(row.state)
        if data.get("format") == HEAD_FORMAT:
            continue
        head, records = convert_legacy_state(data)
        _insert_records(connection, row.account_id, row.conversation_id, records)
        connection.execute(
            _text_states.update()
            .where(_text_states.c.account_id == row.account_id, _text_states.c.conversation_id == row.conversation_id)
            .values(state=_json(head_to_json(head)))
        )


def _create_rollups(connection: Connection) -> None:
    """Version 9: the report rollups (plugin/adapters/rollups.py), created and filled from the base tables."""
    from plugin.adapters import rollups

    rollups.rebuild(connection, (rollups.ROLLUP, rollups.ROLLUP_MISSES))


def _rollup_misses_by_dimension(connection: Connection) -> None:
    """Version 10: the grid's rollup gets a row per dimension value (a filtered grid is read from it)."""
    from plugin.adapters import rollups

    rollups.rollup_misses.drop(connection, checkfirst=True)
    rollups.rebuild(connection, (rollups.ROLLUP_MISSES,))


def _rollup_durations(connection: Connection) -> None:
    """Version 12: the duration histogram of the targets that fit (plugin/adapters/rollups.py), created and
    filled from ``sla_applied``; and the inbox index (up to version 11 ``inbox_id, applied_at``, declared with
    the table) made covering for the targets, which an inbox filter reads from ``sla_applied``: read from the
    index alone, twice as fast at a million rows. Its first columns serve what the old one served."""
    from plugin.adapters import rollups

    rollups.rebuild(connection, (rollups.ROLLUP_DURATIONS,))
    _covering_timed_index(connection, "inbox")


def _covering_timed_index(connection: Connection, dimension: str) -> None:
    """Replace the index ``ix_sla_applied_<dimension>_applied`` (``<dimension>_id, applied_at``) by one that
    also holds what the targets read (``ix_sla_applied_<dimension>_timed``)."""
    from plugin.adapters.rollups import TIMED  # built on this module's tables

    connection.exec_driver_sql(f"DROP INDEX IF EXISTS ix_sla_applied_{dimension}_applied")
    connection.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS ix_sla_applied_{dimension}_timed ON sla_applied"
        f" ({dimension}_id, applied_at, policy_id, mode, {', '.join(TIMED)})"
    )


# ``sla_conversations`` as versions 1 to 10 made it: head and summary as JSON text.
_text_states = sa.table(
    conversations.name,
    sa.column("account_id"),
    sa.column("conversation_id"),
    sa.column("state", sa.Text),
    sa.column("summary", sa.Text),
)


def _has_text_states(connection: Connection) -> bool:
    return "state" in {column["name"] for column in sa.inspect(connection).get_columns(conversations.name)}


def _pack_states(connection: Connection, page: int = 1000) -> None:
    """Version 11: each conversation's head and summary, JSON text until now, become compressed JSON
    (:func:`pack`) in new columns; the text columns are dropped. A store created by this version has them."""
    if not _has_text_states(connection):
        return
    blob = "BYTEA" if connection.dialect.name == "postgresql" else "BLOB"
    for name in ("packed_head", "packed_summary"):
        connection.exec_driver_sql(f"ALTER TABLE {conversations.name} ADD COLUMN {name} {blob}")
    last: tuple[int, int] = (-(2**63), -(2**63))
    while True:  # in pages, keyed on the primary key: a large store is never read into memory at once
        rows = connection.execute(
            sa.select(_text_states)
            .where(sa.tuple_(_text_states.c.account_id, _text_states.c.conversation_id) > last)
            .order_by(_text_states.c.account_id, _text_states.c.conversation_id)
            .limit(page)
        ).all()
        if not rows:
            break
        connection.execute(
            conversations.update()
            .where(
                conversations.c.account_id == sa.bindparam("b_account"),
                conversations.c.conversation_id == sa.bindparam("b_conversation"),
            )
            .values(packed_head=sa.bindparam("head"), packed_summary=sa.bindparam("summary")),
            [
                {
                    "b_account": row.account_id,
                    "b_conversation": row.conversation_id,
                    "head": pack(json.loads(row.state)),
                    "summary": pack(json.loads(row.summary)) if row.summary else None,
                }
                for row in rows
            ],
        )
        last = (rows[-1].account_id, rows[-1].conversation_id)
    for name in ("state", "summary"):
        connection.exec_driver_sql(f"ALTER TABLE {conversations.name} DROP COLUMN {name}")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ALTER TABLE {conversations.name} ALTER COLUMN packed_head SET NOT NULL")


def _durations_by_dimension(connection: Connection) -> None:
    """Version 14: the duration histogram gets rows per channel and per priority (column ``value``): a targets
    report filtered on one of them is read from it, not from every stopped clock of the range. Every row's
    key changes with the new column, so the table is filled again."""
    from plugin.adapters import rollups

    if "value" not in {column["name"] for column in sa.inspect(connection).get_columns(rollups.rollup_durations.name)}:
        connection.exec_driver_sql(f"ALTER TABLE {rollups.rollup_durations.name} ADD COLUMN value TEXT")
    rollups.rebuild(connection, (rollups.ROLLUP_DURATIONS,))


def _durations_by_label(connection: Connection) -> None:
    """Version 15: the duration histogram gets rows per label (one label each, a clock counted under each
    label of its conversation): a targets report filtered on one label is read from it, not from every
    stopped clock of the range."""
    from plugin.adapters import rollups

    rollups.rebuild(connection, (rollups.ROLLUP_DURATIONS,))


def _rollup_pairs(connection: Connection) -> None:
    """Version 16: the pair rollup (plugin/adapters/rollup_pairs.py) and its days, every day with applied SLAs
    marked not paired: the sweeper's refresh computes them, and reports read ``sla_applied`` until then."""
    from plugin.adapters import rollup_pairs

    rollup_pairs.rollup_metadata.create_all(connection, tables=[rollup_pairs.rollup_pairs, rollup_pairs.rollup_days])
    rollup_pairs.reset(connection)


def _drop_misses_due_index(connection: Connection) -> None:
    """Version 18: the index of misses by account and due time (up to version 17 declared with the table)
    goes. No query reads misses by due time (the grid groups the misses of applied SLAs by it; the others look
    misses up by conversation, through the primary key), every miss written updated it, and without statistics
    the planner took it to read every miss of an account where a batch's were looked up by key (issue 13)."""
    connection.exec_driver_sql("DROP INDEX IF EXISTS ix_sla_misses_due")


def _shared_policy_snapshots(connection: Connection) -> None:
    """Version 13: an applied SLA's policy snapshot, until now copied into each of its ``sla_applied`` rows,
    is stored once per policy version in ``sla_policy_versions`` (the version is the snapshot's hash: the
    rows of one version hold the same snapshot)."""
    policy_versions.create(connection, checkfirst=True)
    if "policy_snapshot" not in {column["name"] for column in sa.inspect(connection).get_columns(applied.name)}:
        return  # created by this version
    connection.exec_driver_sql(
        f"INSERT INTO {policy_versions.name} (policy_id, policy_version, snapshot)"
        f" SELECT policy_id, policy_version, MIN(policy_snapshot) FROM {applied.name}"
        " GROUP BY policy_id, policy_version"
    )
    connection.exec_driver_sql(f"ALTER TABLE {applied.name} DROP COLUMN policy_snapshot")


def convert_legacy_state(data: Mapping[str, Any]) -> tuple[Head, list[EventRecord]]:
    """A state as stored before version 8 -> its head (no checkpoint) and its event records."""
    state = state_from_json(data)
    pins = dict(state.pins)
    for decision in state.decisions.values():
        if decision.snapshot is not None:
            pins.setdefault(decision.snapshot["id"], dict(decision.snapshot))
    empty = Head(ConversationState(state.account_id, state.conversation_id, pins=pins), [], [], None)
    arrivals = sorted(state.timeline, key=lambda entry: entry.arrival)
    # Arrival numbers are renumbered from 0 in their order: the fold order (time, then arrival) is the same.
    plan = plan_writes(empty, {}, [entry.event for entry in arrivals], replace(state, pins=pins))
    return plan.head, plan.new


MIGRATIONS: tuple = (
    lambda connection: metadata.create_all(connection, tables=[conversations, applied, misses, log, outbox]),
    _report_indexes,
    _next_response_not_started,
    lambda connection: metadata.create_all(connection, tables=[notifications]),  # version 4
    lambda connection: metadata.create_all(connection, tables=[names]),  # version 5: plugin/adapters/directory.py
    _working_times,
    # version 7: which conversations a contact has, so blocking a contact reaches each of them
    lambda connection: metadata.create_all(connection, tables=[contact_conversations]),
    _compact_events,  # version 8
    _create_rollups,  # version 9
    _rollup_misses_by_dimension,  # version 10
    _pack_states,  # version 11
    _rollup_durations,  # version 12
    _shared_policy_snapshots,  # version 13
    _durations_by_dimension,  # version 14
    _durations_by_label,  # version 15
    _rollup_pairs,  # version 16
    # version 17: a team filter's targets (as an inbox's since version 12) read from the team index alone: a
    # team may hold a large share of the traffic (37,000 of 333,000 SLAs in 30 days: 160 ms from the table)
    lambda connection: _covering_timed_index(connection, "team"),
    _drop_misses_due_index,  # version 18
)


MIGRATION_LOCK_KEY = 0x534C41  # "SLA": the PostgreSQL advisory lock that serialises migrations


# An execution option: the connection only reads, and on SQLite begins no transaction (see make_engine).
UNLOCKED_READ = "sla_unlocked_read"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions so
    several worker processes can write one file safely."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not url.startswith("sqlite"):
        # A database that does not answer must fail fast, not hang a web or worker process at start.
        connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
        return sa.create_engine(url, pool_pre_ping=True, future=True, connect_args=connect_args)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "isolation_level": None}, future=True)

    @sa_event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        if connection.get_execution_options().get(UNLOCKED_READ):
            return  # each statement reads the last commit (WAL) without the write lock
        # A writer must take the write lock up front: upgrading a read lock later can deadlock two workers.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as aware UTC (SQLite returns naive datetimes; every stored time is UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _head(row) -> Head:
    """A ``sla_conversations`` row's state head."""
    return head_from_json(row.account_id, row.conversation_id, unpack(row.packed_head))


def _records(
    connection: Connection, key: ConversationKey, event_keys: Iterable[str] | None = None
) -> list[EventRecord]:
    """A conversation's event records in arrival order: every one, or those of ``event_keys``."""
    query = sa.select(events.c.key, events.c.arrival, events.c.occurred_at, events.c.body).where(
        events.c.account_id == key[0], events.c.conversation_id == key[1]
    )
    if event_keys is not None:
        wanted = [_event_key(event_key) for event_key in event_keys]
        if not wanted:
            return []
        query = query.where(events.c.key.in_(wanted))
    rows = connection.execute(query).all()
    return sorted(
        (EventRecord(row.arrival, row.key, row.occurred_at, json.loads(row.body)) for row in rows),
        key=lambda record: record.arrival,
    )


def _with_records(head: Head, records: Sequence[EventRecord], history: bool) -> ConversationState:
    """The head's state with ``records`` as its timeline (and, for ``history``, no checkpoint)."""
    state = head.state
    entries, decisions, _ = expand_records(state.account_id, state.conversation_id, records, head.choices, state.pins)
    return replace(
        state, timeline=tuple(entries), decisions=decisions, checkpoint=None if history else state.checkpoint
    )


def _insert_records(connection: Connection, account_id: int, conversation_id: int, records: Sequence[EventRecord]):
    if records:
        connection.execute(
            events.insert(),
            [
                {
                    "account_id": account_id,
                    "conversation_id": conversation_id,
                    "key": _event_key(record.key),
                    "arrival": record.arrival,
                    "occurred_at": record.occurred_at,
                    "body": _json(record.body),
                }
                for record in records
            ],
        )


def pack(value: Any) -> bytes:
    """A JSON value as stored in a packed column: compact JSON (:func:`_json`), zlib-compressed."""
    return zlib.compress(_json(value).encode("utf-8"), 9)


def unpack(packed: bytes | None) -> Any:
    """A packed column's value back (None for NULL)."""
    return None if packed is None else json.loads(zlib.decompress(packed))


def _event_key(key: str) -> str:
    """An event key as its column stores it."""
    return storable_text(key, EVENT_KEY_LENGTH)


def _json(value: Any) -> str:
    """Compact JSON; UTF-8 as it is (smaller than escapes), escaped only when it holds lone surrogates."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value, separators=(",", ":"))
    return text


class Store:
    """Reads and writes SLA state; the workers and reports are thin shells around it."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> Store:
        """A store on a database URL (``sqlite:///...`` or ``postgresql://...``)."""
        return cls(make_engine(url))

    def migrate(self) -> int:
        """Apply pending schema migrations; returns the schema version."""
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Web and worker processes start together; one migrates, the others wait and find it done.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            schema_version.create(connection, checkfirst=True)
            # Every step not recorded runs, in order (not only those above the highest recorded: helpers that
            # merged steps in parallel may have left a gap in a store that ran a branch's code).
            applied_versions = set(connection.execute(sa.select(schema_version.c.version)).scalars())
            for version, step in enumerate(MIGRATIONS, start=1):
                if version not in applied_versions:
                    step(connection)
                    connection.execute(schema_version.insert().values(version=version, applied_at=_utcnow()))
        return len(MIGRATIONS)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        # Outside any transaction: the store begins SQLite transactions with BEGIN IMMEDIATE, which would wait
        # for (and time out on) the write lock a worker's batch holds.
        with self._unlocked_reader() as connection:
            connection.exec_driver_sql("SELECT 1").all()

    def _unlocked_reader(self) -> sa.Connection:
        """A connection that only reads, outside any transaction (on SQLite: without the write lock)."""
        return self.engine.connect().execution_options(**{UNLOCKED_READ: True})

    def has_schema(self) -> bool:
        """Whether the plugin's tables exist (False for a database it never migrated)."""
        return sa.inspect(self.engine).has_table(applied.name)

    def rebuild_rollups(self, now: datetime | None = None) -> int:
        """Compute the report rollups again from the applied SLAs and misses, the pairs of the days before
        ``now``'s UTC day included; returns the rows written (but the pairs')."""
        from plugin.adapters import rollup_pairs, rollups  # built on this module's tables

        with self.engine.begin() as connection:
            written = rollups.rebuild(connection)
            rollup_pairs.reset(connection)
        while self.refresh_rollup_pairs(now or _utcnow()):
            pass
        return written

    def refresh_rollup_pairs(self, now: datetime, limit: int = 1000) -> int:
        """Compute the pair rollup of up to ``limit`` days before ``now``'s UTC day that changed since it was
        last computed (plugin/adapters/rollup_pairs.py); returns how many days."""
        from plugin.adapters import rollup_pairs

        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return rollup_pairs.refresh(self._unlocked_reader, self.engine.begin, today, limit)

    def has_applied_slas(self) -> bool:
        """Whether any SLA was ever applied in this database."""
        with self.engine.connect() as connection:
            return connection.execute(sa.select(applied.c.account_id).limit(1)).first() is not None

    @contextmanager
    def batch(self, keys: Iterable[ConversationKey]) -> Iterator[Batch]:
        """A transaction holding the row locks of ``keys``, with their states loaded."""
        keys = sorted(set(keys))  # one lock order for every worker: no deadlocks
        with self.engine.begin() as connection:
            yield Batch(connection, keys)

    def summary(self, key: ConversationKey) -> dict | None:
        """A conversation's last evaluation summary."""
        with self.engine.connect() as connection:
            packed = connection.execute(
                sa.select(conversations.c.packed_summary).where(
                    conversations.c.account_id == key[0], conversations.c.conversation_id == key[1]
                )
            ).scalar()
        return unpack(packed)

    def history(self, key: ConversationKey) -> ConversationState:
        """A conversation's whole stored timeline, with its decisions and pins, no checkpoint (unlocked)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(
                    conversations.c.account_id, conversations.c.conversation_id, conversations.c.packed_head
                ).where(conversations.c.account_id == key[0], conversations.c.conversation_id == key[1])
            ).first()
            if row is None:
                return ConversationState(*key)
            return _with_records(_head(row), _records(connection, key), history=True)

    def due_conversations(self, until: datetime, limit: int = 10_000) -> list[tuple[ConversationKey, datetime]]:
        """Conversations whose next check falls before ``until`` (used to rebuild the deadline index)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(conversations.c.account_id, conversations.c.conversation_id, conversations.c.next_check_at)
                .where(conversations.c.next_check_at.is_not(None), conversations.c.next_check_at <= until)
                .order_by(conversations.c.next_check_at)
                .limit(limit)
            ).all()
        return [((row.account_id, row.conversation_id), as_utc(row.next_check_at)) for row in rows]

    def all_checks(self, page: int = 10_000) -> Iterator[list[tuple[ConversationKey, datetime]]]:
        """Every conversation with a pending check (the deadline index's source of truth), in pages of at
        most ``page``, each read in a transaction of its own (in key order, from where the last one ended)."""
        after = (-1, -1)
        while True:
            key = (conversations.c.account_id, conversations.c.conversation_id)
            with self.engine.connect() as connection:
                rows = connection.execute(
                    sa.select(*key, conversations.c.next_check_at)
                    .where(sa.tuple_(*key) > after, conversations.c.next_check_at.is_not(None))
                    .order_by(*key)
                    .limit(page)
                ).all()
            checks = [((row.account_id, row.conversation_id), as_utc(row.next_check_at)) for row in rows]
            if checks:
                yield checks
            if len(rows) < page:
                return
            after = checks[-1][0]

    def log_entries(self, key: ConversationKey) -> list[dict[str, Any]]:
        """A conversation's SLA log, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(log).where(log.c.account_id == key[0], log.c.conversation_id == key[1]).order_by(log.c.id)
            ).all()
        return [
            {
                "kind": row.kind,
                "metric": row.metric,
                "at": format_time(as_utc(row.at)),
                "detail": json.loads(row.detail) if row.detail else None,
            }
            for row in rows
        ]

    # --- write-back outbox (plugin.jobs.writeback) ------------------------------------------------------

    def stale_intent_conversations(self, older_than: datetime, limit: int = 1000) -> list[ConversationKey]:
        """Conversations with a write-back intent still to write that nobody has touched since *older_than*."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(outbox.c.account_id, outbox.c.conversation_id)
                .distinct()
                .where(outbox.c.state.in_(_INTENTS_TO_WRITE), outbox.c.updated_at < older_than)
                .limit(limit)
            ).all()
        return [(row.account_id, row.conversation_id) for row in rows]

    def pending_intents(self, key: ConversationKey) -> list[Any]:
        """A conversation's intents still to write (pending, or sending when a job died mid-call), oldest first.
        Read without SQLite's write lock: the write-back reads this for every conversation, and waiting for the
        event worker's batches there starved it."""
        with self._unlocked_reader() as connection:
            return list(
                connection.execute(
                    sa.select(outbox)
                    .where(*_intents_of(key), outbox.c.state.in_(_INTENTS_TO_WRITE))
                    .order_by(outbox.c.created_at, outbox.c.key)
                ).all()
            )

    def intent_state(self, key: ConversationKey, intent: str) -> str | None:
        """The state of one intent (``note:<miss>``, ``labels``...), None when it was never recorded."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(outbox.c.state).where(*_intents_of(key), outbox.c.key == intent)
            ).scalar()

    def set_intent_state(self, key: ConversationKey, intent: str, state: str, now: datetime, **values: Any) -> None:
        """Move one intent to *state*, with other columns (``remote_id``, ``attempts``) in *values*."""
        with self.engine.begin() as connection:
            connection.execute(
                outbox.update()
                .where(*_intents_of(key), outbox.c.key == intent)
                .values(state=state, updated_at=now, **values)
            )

    def finish_intents_if_unchanged(self, written: Iterable[tuple[ConversationKey, str, str]], now: datetime) -> None:
        """Mark intents ``(conversation, intent, payload)`` done, each only if it still asks for that payload (one
        recorded since stays pending), in one short transaction (on SQLite it takes the one write lock once)."""
        rows = [
            {"written_account": key[0], "written_conversation": key[1], "written_key": intent, "written": payload}
            for key, intent, payload in written
        ]
        if not rows:
            return
        statement = (
            outbox.update()
            .where(
                outbox.c.account_id == sa.bindparam("written_account"),
                outbox.c.conversation_id == sa.bindparam("written_conversation"),
                outbox.c.key == sa.bindparam("written_key"),
                outbox.c.payload == sa.bindparam("written"),
            )
            .values(state="done", updated_at=now)
        )
        with self.engine.begin() as connection:
            connection.execute(statement, rows)

    def fail_intents(self, key: ConversationKey, now: datetime) -> int:
        """Mark every intent of a conversation still to write as failed; returns how many."""
        with self.engine.begin() as connection:
            return connection.execute(
                outbox.update()
                .where(*_intents_of(key), outbox.c.state.in_(_INTENTS_TO_WRITE))
                .values(state="failed", updated_at=now)
            ).rowcount

    def prune_delivered(self, before: datetime, limit: int = 5_000) -> int:
        """Delete delivered notifications and written write-back intents last changed before *before*, at
        most *limit* of each (one short transaction: SQLite has one write lock); returns how many."""
        deleted = 0
        with self.engine.begin() as connection:
            for table, key in (
                (notifications, (notifications.c.event_id, notifications.c.destination)),
                (outbox, (outbox.c.account_id, outbox.c.conversation_id, outbox.c.key)),
            ):
                chosen = sa.select(*key).where(table.c.state == "done", table.c.updated_at < before).limit(limit)
                deleted += connection.execute(table.delete().where(sa.tuple_(*key).in_(chosen))).rowcount
        return deleted

    # --- the reconciler's view (plugin.jobs.reconciler) -------------------------------------------------

    def unresolved_conversations(self, account_id: int) -> set[int]:
        """The account's conversations under an SLA that the plugin last saw unresolved."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(applied.c.conversation_id).where(
                    applied.c.account_id == account_id, applied.c.resolved.is_(False)
                )
            )
            return {row.conversation_id for row in rows}

    # --- notification outbox -------------------------------------------------------------------------

    def notification_backlog(self) -> dict[str, dict[str, int]]:
        """Per destination, how many deliveries wait (pending, sending) or were given up (dropped, skipped).

        Read outside any transaction, as the health check reads: the store begins SQLite transactions with BEGIN
        IMMEDIATE, which would wait for the write lock a worker's batch holds.
        """
        query = (
            sa.select(notifications.c.destination, notifications.c.state, sa.func.count())
            .where(notifications.c.state != "done")
            .group_by(notifications.c.destination, notifications.c.state)
        )
        with self._unlocked_reader() as connection:
            rows = connection.execute(query).all()
        backlog: dict[str, dict[str, int]] = {}
        for destination, state, count in rows:
            backlog.setdefault(destination, {})[state] = int(count)
        return backlog

    def conversations_of_contact(self, account_id: int, contact_id: int) -> list[ConversationKey]:
        """The conversations the store has seen of one contact."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(contact_conversations.c.conversation_id).where(
                    contact_conversations.c.account_id == account_id, contact_conversations.c.contact_id == contact_id
                )
            ).scalars()
            return [(account_id, conversation_id) for conversation_id in rows]

    def due_notification_destinations(self, now: datetime) -> list[str]:
        """Destinations with a delivery due: pending, or being sent by a worker whose lease has run out."""
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    sa.select(notifications.c.destination)
                    .distinct()
                    .where(notifications.c.state.in_(("pending", "sending")), notifications.c.next_attempt_at <= now)
                ).scalars()
            )

    def claim_notification(self, destination: str, now: datetime, lease_until: datetime) -> Any | None:
        """Take the oldest due delivery of *destination* for sending until *lease_until*; None when none is due.

        The claim is one conditional UPDATE, so two workers never send the same row at once; a row whose
        sender died is due again when its lease ends (and is then sent again, with the same event id).
        """
        due = (
            notifications.c.destination == destination,
            notifications.c.state.in_(("pending", "sending")),
            notifications.c.next_attempt_at <= now,
        )
        with self.engine.begin() as connection:
            candidates = connection.execute(
                sa.select(notifications.c.event_id)
                .where(*due)
                .order_by(notifications.c.created_at, notifications.c.occurred_at, notifications.c.event_id)
                .limit(10)
            ).scalars()
            for candidate in list(candidates):
                claimed = connection.execute(
                    notifications.update()
                    .where(notifications.c.event_id == candidate, *due)
                    .values(
                        state="sending",
                        attempts=notifications.c.attempts + 1,
                        next_attempt_at=lease_until,
                        updated_at=now,
                    )
                )
                if claimed.rowcount == 1:
                    return connection.execute(
                        sa.select(notifications).where(
                            notifications.c.event_id == candidate, notifications.c.destination == destination
                        )
                    ).first()
        return None

    def finish_notification(
        self,
        event_id: str,
        destination: str,
        now: datetime,
        state: str,
        next_attempt_at: datetime | None = None,
        last_error: str | None = None,
    ) -> None:
        """Record how a delivery attempt ended: done, dropped, skipped, or pending again at *next_attempt_at*."""
        # An error's text comes from anywhere (a host's answer): cut to the column, as every stored text is.
        reason = None if last_error is None else storable_text(last_error, LAST_ERROR_LENGTH)
        values: dict[str, Any] = {"state": state, "updated_at": now, "last_error": reason}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self.engine.begin() as connection:
            connection.execute(
                notifications.update()
                .where(notifications.c.event_id == event_id, notifications.c.destination == destination)
                .values(**values)
            )

    def notifications_of(self, key: ConversationKey) -> list[dict[str, Any]]:
        """A conversation's deliveries, oldest first (for inspection and tests)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(notifications)
                .where(notifications.c.account_id == key[0], notifications.c.conversation_id == key[1])
                .order_by(notifications.c.created_at, notifications.c.occurred_at, notifications.c.destination)
            ).all()
        return [
            {
                "event_id": row.event_id,
                "destination": row.destination,
                "event": row.event,
                "state": row.state,
                "attempts": row.attempts,
                "next_attempt_at": as_utc(row.next_attempt_at),
                "last_error": row.last_error,
                "payload": json.loads(row.payload),
                "created_at": as_utc(row.created_at),
            }
            for row in rows
        ]


class Batch:
    """One transaction over a set of locked conversations: load states, then save evaluations.

    Rows are kept per conversation and written together by :meth:`flush`. When the database refuses one
    conversation's rows (a value it cannot store), the others are written anyway and that conversation is
    reported back, so one bad row never blocks the rest of its batch.
    """

    def __init__(self, connection: Connection, keys: Sequence[ConversationKey]):
        self.connection = connection
        self.keys = keys
        self._heads: dict[ConversationKey, Head] = {}
        self._summaries: dict[ConversationKey, dict | None] = {}
        self._records: dict[ConversationKey, dict[str, EventRecord]] = {}  # the records read, by event key
        self._rows: dict[ConversationKey, _ConversationRows] = {}
        self._new_keys: set[ConversationKey] = set()
        self._load()
        # Read once the locks are held: a batch that waited for another's locks must not stamp its rows
        # (outbox rows are delivered in created_at order) earlier than the batch it waited for.
        self.now = _utcnow()

    def _load(self) -> None:
        if not self.keys:
            return
        accounts = {account for account, _ in self.keys}
        wanted = set(self.keys)
        query = sa.select(
            conversations.c.account_id,
            conversations.c.conversation_id,
            conversations.c.packed_head,
            conversations.c.packed_summary,
        ).where(
            conversations.c.account_id.in_(accounts),
            conversations.c.conversation_id.in_({conversation for _, conversation in self.keys}),
        )
        if self.connection.dialect.name == "postgresql":
            # Row locks cover only conversations that have a row: two workers whose batches hold events of
            # one new conversation would both insert it. A transaction-scoped advisory lock per key, taken
            # in one global order (no deadlocks), serialises those too.
            self.connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(lock_id) FROM unnest(CAST(:ids AS BIGINT[])) AS lock_id"),
                {"ids": sorted({_lock_id(key) for key in self.keys})},
            )
            query = query.order_by(conversations.c.account_id, conversations.c.conversation_id).with_for_update()
        for row in self.connection.execute(query):
            key = (row.account_id, row.conversation_id)
            if key in wanted:
                self._heads[key] = _head(row)
                self._summaries[key] = unpack(row.packed_summary)
        for key in wanted - self._heads.keys():
            self._heads[key] = Head(ConversationState(*key), [], [], None)
            self._summaries[key] = None
            self._new_keys.add(key)

    def state(self, key: ConversationKey) -> tuple[ConversationState, dict | None]:
        """The locked conversation's state (its checkpoint and the events after it) and previous summary.

        A conversation stored without a checkpoint (converted from an older store) comes with its whole
        timeline.
        """
        head = self._heads[key]
        if head.state.checkpoint is None and head.state.known:
            return self.history(key), self._summaries[key]
        records = _records(self.connection, key, head.pending) if head.pending else []
        self._records[key] = {record.key: record for record in records}
        return _with_records(head, records, history=False), self._summaries[key]

    def history(self, key: ConversationKey) -> ConversationState:
        """The locked conversation's whole timeline with its decisions, to fold again from the first event."""
        records = _records(self.connection, key)
        self._records[key] = {record.key: record for record in records}
        return _with_records(self._heads[key], records, history=True)

    def stored_keys(self, keys: Mapping[ConversationKey, Iterable[str]]) -> set[tuple[int, int, str]]:
        """Which of these event keys are stored already: ``(account, conversation, event key)``."""
        found: set[tuple[int, int, str]] = set()
        for key, event_keys in keys.items():
            as_stored = {_event_key(event_key): event_key for event_key in event_keys}
            wanted = sorted(as_stored)
            if not wanted or not self._heads[key].state.known:
                continue
            for start in range(0, len(wanted), 500):
                found.update(
                    (key[0], key[1], as_stored[event_key])
                    for event_key in self.connection.execute(
                        sa.select(events.c.key).where(
                            events.c.account_id == key[0],
                            events.c.conversation_id == key[1],
                            events.c.key.in_(wanted[start : start + 500]),
                        )
                    ).scalars()
                )
        return found

    def save(
        self,
        state: ConversationState,
        evaluation: Evaluation,
        summary: Mapping[str, Any],
        changes: Sequence[Change],
        writebacks: Sequence[tuple[str, Mapping[str, Any]]],
        deliveries: Sequence[tuple[SlaEvent, str]] = (),
        added: Sequence[Event] = (),
    ) -> None:
        """Queue the rows for one conversation; they are written together when the batch closes.

        ``state`` is the evaluated state, ``added`` the new events :func:`add_events` took (their records
        are inserted), ``deliveries`` the SLA events to send, each with a destination id.
        """
        key = (state.account_id, state.conversation_id)
        now = self.now
        rows = self._rows[key] = _ConversationRows(key)
        plan = plan_writes(self._heads[key], self._records.get(key, {}), added, state)
        rows.new_records = plan.new
        rows.changed_records = plan.changed
        rows.conversation = {
            "account_id": key[0],
            "conversation_id": key[1],
            "packed_head": pack(head_to_json(plan.head)),
            "packed_summary": pack(summary),
            "next_check_at": evaluation.next_check_at,
            "updated_at": now,
        }
        policy = evaluation.policy
        if policy is not None:
            rows.applied.append(_storable(applied, _applied_row(evaluation, policy, now)))
            snapshot = {
                "policy_id": policy.id,
                "policy_version": policy.version,
                "snapshot": json.dumps(dict(policy.snapshot)),
            }
            rows.policy_versions.append(_storable(policy_versions, snapshot))
        for change in changes:
            rows.log.append(
                _storable(
                    log,
                    {
                        "account_id": key[0],
                        "conversation_id": key[1],
                        "kind": change.kind,
                        "metric": change.metric,
                        "at": change.at,
                        "recorded_at": now,
                        "detail": json.dumps(change.detail) if change.detail else None,
                    },
                )
            )
            if change.kind == "miss_corrected":
                rows.corrections.append({"a": key[0], "c": key[1], "m": change.miss, "t": now})
        for miss in evaluation.misses:
            rows.misses.append(
                _storable(
                    misses,
                    {
                        "account_id": key[0],
                        "conversation_id": key[1],
                        "miss": f"{miss.metric}#{miss.index}",
                        "metric": miss.metric,
                        "due_at": miss.due_at,
                        "policy_id": miss.policy_id,
                        "policy_version": miss.policy_version,
                        "recorded_at": now,
                        "corrected_at": None,
                    },
                )
            )
        for outbox_key, payload in writebacks:
            rows.outbox.append(
                {
                    "account_id": key[0],
                    "conversation_id": key[1],
                    "key": outbox_key,
                    "payload": json.dumps(payload),
                    "state": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )

        contact_id = summary.get("contact_id")
        previous = self._summaries.get(key) or {}
        if contact_id is not None and previous.get("contact_id") != contact_id:
            rows.contacts.append({"account_id": key[0], "contact_id": contact_id, "conversation_id": key[1]})
        for sla_event, destination in deliveries:
            rows.notifications.append(
                {
                    "event_id": sla_event.id,
                    "destination": destination,
                    "account_id": key[0],
                    "conversation_id": key[1],
                    "event": sla_event.name,
                    "occurred_at": parse_time(sla_event.body["occurred_at"]),
                    "payload": json.dumps(sla_event.to_json()),
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )

    def flush(self) -> dict[ConversationKey, Exception]:
        """Write every queued row (one statement per table); returns the conversations whose rows the
        database refused, each with its error. Their stored state is left as it was; the rest is written.

        A refused value (one longer than its column, a character the database cannot store) fails the
        statement it is in; the batch is then written again one conversation at a time, each inside a
        savepoint, to find and leave out the conversations that fail. A lost connection or a lock timeout
        is not a bad row: it is raised, and the whole batch is retried later.
        """
        pending, self._rows = self._rows, {}
        refused: dict[ConversationKey, Exception] = {}
        try:
            with self.connection.begin_nested():
                self._write(list(pending.values()))
        except Exception as error:
            if not _refused_value(error):
                raise
            for key, rows in pending.items():
                try:
                    with self.connection.begin_nested():
                        self._write([rows])
                except Exception as row_error:
                    if not _refused_value(row_error):
                        raise
                    refused[key] = row_error
        self._new_keys.difference_update(pending)
        return refused

    def _write(self, batch: Sequence[_ConversationRows]) -> None:
        connection = self.connection
        states = [rows.conversation for rows in batch if rows.conversation]
        inserts = [row for row in states if (row["account_id"], row["conversation_id"]) in self._new_keys]
        updates = [row for row in states if (row["account_id"], row["conversation_id"]) not in self._new_keys]
        if inserts:
            connection.execute(conversations.insert(), inserts)
        if updates:
            connection.execute(
                conversations.update()
                .where(
                    conversations.c.account_id == sa.bindparam("b_account"),
                    conversations.c.conversation_id == sa.bindparam("b_conversation"),
                )
                .values(
                    packed_head=sa.bindparam("packed_head"),
                    packed_summary=sa.bindparam("packed_summary"),
                    next_check_at=sa.bindparam("next_check_at"),
                    updated_at=sa.bindparam("updated_at"),
                ),
                [{**row, "b_account": row["account_id"], "b_conversation": row["conversation_id"]} for row in updates],
            )
        for rows in batch:
            account_id, conversation_id = rows.key
            _insert_records(connection, account_id, conversation_id, rows.new_records)
            if rows.changed_records:
                connection.execute(
                    events.update()
                    .where(
                        events.c.account_id == account_id,
                        events.c.conversation_id == conversation_id,
                        events.c.key == sa.bindparam("b_key"),
                    )
                    .values(body=sa.bindparam("body")),
                    [{"b_key": _event_key(record.key), "body": _json(record.body)} for record in rows.changed_records],
                )
        rollups_before = _rollup_snapshot(connection, batch)
        upsert(connection, applied, [row for rows in batch for row in rows.applied], ("account_id", "conversation_id"))
        # A version's snapshot is written once: the hash names it, a row seen again adds nothing.
        versions = {(row["policy_id"], row["policy_version"]): row for rows in batch for row in rows.policy_versions}
        upsert(connection, policy_versions, list(versions.values()), ("policy_id", "policy_version"), update=())
        # A miss seen again (same metric and instance) keeps its first record; a disproved one is corrected.
        upsert(
            connection,
            misses,
            [row for rows in batch for row in rows.misses],
            ("account_id", "conversation_id", "miss"),
            update=("due_at", "policy_id", "policy_version", "corrected_at"),
        )
        corrections = [row for rows in batch for row in rows.corrections]
        if corrections:
            connection.execute(
                misses.update()
                .where(
                    misses.c.account_id == sa.bindparam("a"),
                    misses.c.conversation_id == sa.bindparam("c"),
                    misses.c.miss == sa.bindparam("m"),
                )
                .values(corrected_at=sa.bindparam("t")),
                corrections,
            )
        _update_rollups(connection, batch, rollups_before)
        log_rows = [row for rows in batch for row in rows.log]
        if log_rows:
            connection.execute(log.insert(), log_rows)
        # The label intent is replaced by the newer one and reset to pending; a note key is recorded once
        # and never reset, so a miss that comes back after a correction gets no second note.
        outbox_rows = [row for rows in batch for row in rows.outbox]
        outbox_keys = ("account_id", "conversation_id", "key")
        upsert(
            connection,
            outbox,
            [row for row in outbox_rows if row["key"] in REPLACED_KEYS],
            outbox_keys,
            update=("payload", "state", "attempts", "updated_at"),
        )
        upsert(
            connection, outbox, [row for row in outbox_rows if row["key"] not in REPLACED_KEYS], outbox_keys, update=()
        )
        # One delivery per event and destination: an event found again (a retry, a duplicate) adds nothing.
        upsert(
            connection,
            notifications,
            [row for rows in batch for row in rows.notifications],
            ("event_id", "destination"),
            update=(),
        )
        upsert(
            connection,
            contact_conversations,
            [row for rows in batch for row in rows.contacts],
            ("account_id", "contact_id", "conversation_id"),
            update=(),
        )


def _rollup_snapshot(connection: Connection, batch: Sequence[_ConversationRows]) -> Any:
    """The report rollups' rows of the batch's conversations before its writes (None: it writes no
    applied SLA or miss, so the rollups stay as they are)."""
    from plugin.adapters import rollups  # built on this module's tables

    touched = [rows.key for rows in batch if rows.applied or rows.misses or rows.corrections]
    return (touched, rollups.snapshot(connection, touched)) if touched else None


def _update_rollups(connection: Connection, batch: Sequence[_ConversationRows], before: Any) -> None:
    """Add the change of the batch's applied SLAs and misses to the report rollups (same transaction)."""
    from plugin.adapters import rollup_pairs, rollups

    if before is not None:
        touched, rows = before
        changed = rollups.apply_change(connection, rows, rollups.snapshot(connection, touched))
        rollup_pairs.mark_changed(connection, changed)  # its days' pair rows no longer hold


@dataclass
class _ConversationRows:
    """The rows one conversation's evaluation writes, kept apart so they can be written on their own."""

    key: ConversationKey
    conversation: dict[str, Any] = field(default_factory=dict)
    new_records: list[EventRecord] = field(default_factory=list)
    changed_records: list[EventRecord] = field(default_factory=list)
    applied: list[dict] = field(default_factory=list)
    policy_versions: list[dict] = field(default_factory=list)
    misses: list[dict] = field(default_factory=list)
    corrections: list[dict] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    outbox: list[dict] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)
    contacts: list[dict] = field(default_factory=list)


_INTENTS_TO_WRITE = ("pending", "sending")


def _intents_of(key: ConversationKey) -> tuple[sa.ColumnElement[bool], ...]:
    return outbox.c.account_id == key[0], outbox.c.conversation_id == key[1]


def _refused_value(error: Exception) -> bool:
    """Whether *error* is the database refusing a value (the row's fault), not the database being away."""
    if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return False
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return False
    return isinstance(error, (sa.exc.StatementError, ValueError))


def storable_text(value: str, length: int | None = None) -> str:
    """*value* as every supported database stores it: without NUL characters (PostgreSQL refuses them),
    lone surrogates replaced (not UTF-8), cut to *length* characters (PostgreSQL refuses longer values in
    a ``VARCHAR(length)``; SQLite would keep them, so both databases hold the same)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value if length is None else value[:length]


def _storable(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """*row* with every text value made :func:`storable_text` for its column of *table*."""
    for name, value in row.items():
        if isinstance(value, str):
            row[name] = storable_text(value, getattr(table.c[name].type, "length", None))
    return row


def _lock_id(key: ConversationKey) -> int:
    """A conversation's advisory-lock id: account and conversation id in one signed 64-bit number (ids
    beyond 32 bits may share a lock, which only serialises two conversations that need not be)."""
    value = ((key[0] & 0xFFFFFFFF) << 32) | (key[1] & 0xFFFFFFFF)
    return value - (1 << 64) if value >= 1 << 63 else value


def _applied_row(evaluation: Evaluation, policy: Policy, now: datetime) -> dict[str, Any]:
    conversation = evaluation.conversation
    row: dict[str, Any] = {
        "account_id": evaluation.account_id,
        "conversation_id": evaluation.conversation_id,
        "policy_id": policy.id,
        "policy_name": policy.name,
        "policy_version": policy.version,
        "rule": evaluation.rule,
        "mode": policy.mode,
        "target": policy.target,
        "applied_at": evaluation.applied_at,
        "conversation_created_at": evaluation.created_at,
        "status": evaluation.status,
        "resolved": evaluation.resolved,
        "evaluated_at": now,
        "any_miss": bool(evaluation.misses),
        "inbox_id": conversation.inbox_id if conversation else None,
        "team_id": conversation.team_id if conversation else None,
        "assignee_id": conversation.assignee_id if conversation else None,
        "channel": conversation.channel if conversation else None,
        "priority": conversation.priority if conversation else None,
        "labels": ("," + ",".join(conversation.labels) + ",") if conversation and conversation.labels else None,
        "nrt_misses_per_message": 0,
    }
    for metric, prefix in _METRIC_PREFIX.items():
        result = evaluation.metrics.get(metric)
        row[f"{prefix}_status"] = result.status if result else None
        row[f"{prefix}_due_at"] = result.due_at if result else None
        row[f"{prefix}_stopped_at"] = result.stopped_at if result else None
        row[f"{prefix}_missed_at"] = result.missed_at if result else None
        row[f"{prefix}_misses"] = result.misses if result else 0
        if metric == NEXT_RESPONSE and result is not None:
            row["nrt_misses_per_message"] = result.misses_per_message or 0
        elif prefix in ("frt", "rt"):
            row[f"{prefix}_working_seconds"] = result.working_seconds if result else None
            row[f"{prefix}_target_seconds"] = result.target_seconds if result else None
    return row


def upsert(
    connection: Connection, table: sa.Table, rows: list[dict], keys: Sequence[str], update: Sequence[str] | None = None
) -> None:
    """Insert ``rows``; on a key conflict update the ``update`` columns (default: every non-key column;
    none: keep the existing row)."""
    if not rows:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    columns = update if update is not None else [name for name in rows[0] if name not in keys]
    if columns:
        statement = statement.on_conflict_do_update(
            index_elements=list(keys), set_={name: statement.excluded[name] for name in columns}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    connection.execute(statement, rows)
