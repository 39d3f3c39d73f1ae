"""Report rollups: the additive report totals of ``sla_applied`` pre-aggregated per UTC hour, so that the
reports over a long range read thousands of rows instead of millions (docs/reports.md, "Rollups").

- ``sla_rollup``: per UTC hour of ``applied_at``, account, mode and one *dimension*, the totals of
  :data:`plugin.core.reports.figures.TOTAL_NAMES`. Dimension ``all`` rows are keyed by the policy (id,
  name, target); the rows of ``inbox``, ``team``, ``agent`` (``value_id``), ``channel``, ``priority`` and
  ``label`` (``value``; for ``label`` the conversation's whole label list, as ``sla_applied`` keeps it) by
  that dimension's value. Every applied SLA adds to exactly one row of each dimension.
- ``sla_rollup_misses``: per UTC hour of ``applied_at``, UTC hour of the miss's due time, account, mode
  and one dimension (``all`` keyed by the policy id), the misses not corrected (the weekday x hour grid).

One SQL definition (:func:`_contribution_queries`) gives the rollup rows of any set of applied SLAs. A
store batch reads the rows of its conversations before and after its writes and adds the difference in
the same transaction (:func:`snapshot`, :func:`apply_change`), so the rollups stay exact; :func:`rebuild`
computes them again from the base tables (``sla-plugin report rebuild-rollups``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from plugin.adapters.store import UTCDateTime, applied, misses
from plugin.core.engine.clocks import AT_RISK, HIT, MISSED, NOT_STARTED, PAUSED, RUNNING
from plugin.core.reports.figures import METRIC_PREFIXES, TOTAL_NAMES

rollup_metadata = sa.MetaData()

# Dimension -> the sla_applied column whose value keys its rows (None: "all", keyed by the policy).
ROLLUP_DIMENSIONS: dict[str, sa.Column | None] = {
    "all": None,
    "inbox": applied.c.inbox_id,
    "team": applied.c.team_id,
    "agent": applied.c.assignee_id,
    "channel": applied.c.channel,
    "priority": applied.c.priority,
    "label": applied.c.labels,
}
ID_DIMENSIONS = ("inbox", "team", "agent")  # kept in value_id; the others in value

_TOTAL_TYPES = {name: (sa.Float if name == "target_sum" else sa.BigInteger) for name in TOTAL_NAMES}

rollup = sa.Table(
    "sla_rollup",
    rollup_metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # a hash of the key columns (some are null)
    sa.Column("dimension", sa.String(20), nullable=False),
    sa.Column("hour_at", UTCDateTime, nullable=False),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),
    sa.Column("policy_id", sa.String(200)),
    sa.Column("policy_name", sa.String(200)),
    sa.Column("target", sa.Float),
    sa.Column("value_id", sa.BigInteger),
    sa.Column("value", sa.Text),
    *[sa.Column(name, kind, nullable=False) for name, kind in _TOTAL_TYPES.items()],
    sa.Index("ix_sla_rollup_dimension_hour", "dimension", "hour_at"),
)

rollup_misses = sa.Table(
    "sla_rollup_misses",
    rollup_metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("dimension", sa.String(20), nullable=False),
    sa.Column("hour_at", UTCDateTime, nullable=False),
    sa.Column("due_hour_at", UTCDateTime, nullable=False),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),
    sa.Column("policy_id", sa.String(200)),
    sa.Column("value_id", sa.BigInteger),
    sa.Column("value", sa.Text),
    sa.Column("misses", sa.BigInteger, nullable=False),
    sa.Index("ix_sla_rollup_misses_dimension_hour", "dimension", "hour_at"),
)

_ROLLUP_KEYS = ("dimension", "hour_at", "account_id", "mode", "policy_id", "policy_name", "target", "value_id", "value")
_MISSES_KEYS = ("dimension", "hour_at", "due_hour_at", "account_id", "mode", "policy_id", "value_id", "value")


def _sum(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def total_columns() -> list[sa.ColumnElement]:
    """The aggregate columns of :data:`TOTAL_NAMES` over ``sla_applied`` rows; all of them are sums, so
    groups merge by addition (the reports and the rollups select the same)."""
    columns: list[sa.ColumnElement] = [
        sa.func.count().label("applied"),
        _sum(applied.c.any_miss).label("conversations_missed"),
        sa.func.sum(applied.c.target).label("target_sum"),
        sa.func.count(applied.c.target).label("target_count"),
    ]
    for prefix in METRIC_PREFIXES.values():
        status = applied.c[f"{prefix}_status"]
        columns += [
            # A next response that never started was never tracked (nothing waited for an answer).
            sa.func.count(sa.case((status != NOT_STARTED, 1))).label(f"{prefix}_tracked"),
            _sum(status == HIT).label(f"{prefix}_hit"),
            _sum(status == MISSED).label(f"{prefix}_missed"),
            _sum(status.in_((RUNNING, AT_RISK, PAUSED))).label(f"{prefix}_open"),
            sa.func.sum(applied.c[f"{prefix}_misses"]).label(f"{prefix}_misses"),
        ]
    columns.append(sa.func.sum(applied.c.nrt_misses_per_message).label("nrt_misses_per_message"))
    return columns


def rollup_total_columns(table: sa.Table = rollup) -> list[sa.ColumnElement]:
    """The same totals summed over rollup rows."""
    # Cast: PostgreSQL sums BIGINT as NUMERIC, which the driver reads as Decimal.
    return [sa.cast(sa.func.sum(table.c[name]), _TOTAL_TYPES[name]).label(name) for name in TOTAL_NAMES]


def _hour(connection: Connection, column: sa.Column) -> sa.ColumnElement[Any]:
    """The UTC hour of a stored time, as text (SQLite) or a timestamp without zone (PostgreSQL)."""
    name = f"{column.table.name}.{column.name}"
    if connection.dialect.name == "sqlite":
        return sa.literal_column(f"strftime('%Y-%m-%d %H:00:00', {name})")
    return sa.literal_column(f"date_trunc('hour', {name} AT TIME ZONE 'UTC')")


def _as_hour(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC)


def _dimension_keys(dimension: str, policy_keys: Sequence[sa.Column]) -> tuple[list[sa.Column], list[Any]]:
    """A dimension's GROUP BY columns and its key columns as selected: ``all`` is keyed by ``policy_keys``
    (the others null), the others by their value (the policy's columns null)."""
    column = ROLLUP_DIMENSIONS[dimension]
    if column is None:
        values = [sa.cast(sa.null(), sa.BigInteger).label("value_id"), sa.cast(sa.null(), sa.Text).label("value")]
        return list(policy_keys), [*policy_keys, *values]
    nulls = [sa.cast(sa.null(), key.type).label(key.name) for key in policy_keys]
    value = sa.cast(column, sa.BigInteger if dimension in ID_DIMENSIONS else sa.Text)
    other = sa.cast(sa.null(), sa.Text if dimension in ID_DIMENSIONS else sa.BigInteger)
    value_id, text = (value, other) if dimension in ID_DIMENSIONS else (other, value)
    return [column], [*nulls, value_id.label("value_id"), text.label("value")]


def _contribution_queries(
    connection: Connection, conversations: Mapping[int, Sequence[int]] | None
) -> tuple[sa.CompoundSelect, sa.CompoundSelect]:
    """The rollup rows (without key) of the applied SLAs of these conversations (account -> conversation ids;
    None: of all): one query per table."""
    where = [] if conversations is None else [_of(applied, conversations)]
    # The misses' side gets the conversations too: a join does not carry an IN over to the other table, and
    # without it PostgreSQL reads every miss of the account for each snapshot.
    misses_where = [] if conversations is None else [_of(misses, conversations)]
    hour = _hour(connection, applied.c.applied_at).label("hour_at")
    due_hour = _hour(connection, misses.c.due_at).label("due_hour_at")
    with_misses = applied.join(
        misses,
        sa.and_(misses.c.account_id == applied.c.account_id, misses.c.conversation_id == applied.c.conversation_id),
    )
    totals, counted = [], []
    for dimension in ROLLUP_DIMENSIONS:
        name = sa.literal(dimension, sa.String(20)).label("dimension")
        keys, selected = _dimension_keys(dimension, (applied.c.policy_id, applied.c.policy_name, applied.c.target))
        totals.append(
            sa.select(name, hour, applied.c.account_id, applied.c.mode, *selected, *total_columns())
            .where(*where)
            .group_by(hour, applied.c.account_id, applied.c.mode, *keys)
        )
        keys, selected = _dimension_keys(dimension, (applied.c.policy_id,))
        counted.append(
            sa.select(
                name, hour, due_hour, applied.c.account_id, applied.c.mode, *selected, sa.func.count().label("misses")
            )
            .select_from(with_misses)
            .where(*where, *misses_where, misses.c.corrected_at.is_(None))
            .group_by(hour, due_hour, applied.c.account_id, applied.c.mode, *keys)
        )
    return sa.union_all(*totals), sa.union_all(*counted)


Contributions = tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]


def _key(row: dict[str, Any], names: Sequence[str]) -> str:
    parts = [row[name].isoformat() if isinstance(row[name], datetime) else row[name] for name in names]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _of(table: sa.Table, conversations: Mapping[int, Sequence[int]]) -> sa.ColumnElement[bool]:
    """The rows of ``table`` of these conversations: per account, its conversation ids by IN (PostgreSQL turns
    a tuple IN into an OR of every pair, tested on every row of the account; this is an index lookup)."""
    return sa.or_(
        *(
            sa.and_(table.c.account_id == account_id, table.c.conversation_id.in_(ids))
            for account_id, ids in conversations.items()
        )
    )


def _contributions(connection: Connection, conversations: Mapping[int, Sequence[int]] | None) -> Contributions:
    rollup_query, misses_query = _contribution_queries(connection, conversations)
    found: list[dict[str, dict[str, Any]]] = []
    for query, names in ((rollup_query, _ROLLUP_KEYS), (misses_query, _MISSES_KEYS)):
        rows: dict[str, dict[str, Any]] = {}
        for result in connection.execute(query).mappings():
            row = dict(result)
            row["hour_at"] = _as_hour(row["hour_at"])
            if "due_hour_at" in row:
                row["due_hour_at"] = _as_hour(row["due_hour_at"])
            for name in TOTAL_NAMES if names is _ROLLUP_KEYS else ("misses",):
                row[name] = row[name] or 0
            row["key"] = _key(row, names)
            rows[row["key"]] = row
        found.append(rows)
    return found[0], found[1]


def snapshot(connection: Connection, keys: Iterable[tuple[int, int]]) -> Contributions:
    """The rollup rows of the applied SLAs of these conversations as they are now stored."""
    by_account: dict[int, list[int]] = {}
    for account_id, conversation_id in sorted(set(keys)):
        by_account.setdefault(account_id, []).append(conversation_id)
    if not by_account:
        return {}, {}
    return _contributions(connection, by_account)


def apply_change(connection: Connection, before: Contributions, after: Contributions) -> None:
    """Add ``after - before`` to the rollups (in the caller's transaction); rows left with nothing go."""
    for table, measures, old, new in (
        (rollup, TOTAL_NAMES, before[0], after[0]),
        (rollup_misses, ("misses",), before[1], after[1]),
    ):
        changes = []
        for key in sorted(old.keys() | new.keys()):  # one order for every writer: no deadlocks between them
            base = new.get(key) or old[key]
            change = {
                name: (new[key][name] if key in new else 0) - (old[key][name] if key in old else 0) for name in measures
            }
            if any(change.values()):
                changes.append(
                    {**{column.name: base[column.name] for column in table.c if column.name not in measures}, **change}
                )
        _add(connection, table, measures, changes)
        if changes:
            counted = table.c["applied" if table is rollup else "misses"]
            connection.execute(table.delete().where(table.c.key.in_([row["key"] for row in changes]), counted == 0))


def _add(connection: Connection, table: sa.Table, measures: Sequence[str], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["key"], set_={name: table.c[name] + statement.excluded[name] for name in measures}
    )
    connection.execute(statement, rows)


def rebuild(connection: Connection) -> int:
    """Compute both rollup tables again from ``sla_applied`` and ``sla_misses``; returns the rows written."""
    rollup_metadata.create_all(connection)
    if connection.dialect.name == "postgresql":
        # Writers add their changes after this commits (SQLite's BEGIN IMMEDIATE serialises them already):
        # a change is either in the rows read here or added to the rows written here, never both.
        connection.exec_driver_sql("LOCK TABLE sla_rollup, sla_rollup_misses IN EXCLUSIVE MODE")
    connection.execute(rollup.delete())
    connection.execute(rollup_misses.delete())
    written = 0
    for table, rows in zip((rollup, rollup_misses), _contributions(connection, None), strict=True):
        batch = list(rows.values())
        for first in range(0, len(batch), 5000):
            connection.execute(table.insert(), batch[first : first + 5000])
        written += len(batch)
    return written
