"""Report rollups: the additive report totals of ``sla_applied`` pre-aggregated per UTC hour, so that the
reports over a long range read thousands of rows instead of millions (docs/reports.md, "Rollups").

- ``sla_rollup``: per UTC hour of ``applied_at``, account, mode and one *dimension*, the totals of
  :data:`plugin.core.reports.figures.TOTAL_NAMES`. Dimension ``all`` rows are keyed by the policy (id,
  name, target); the rows of ``inbox``, ``team``, ``agent`` (``value_id``), ``channel``, ``priority`` and
  ``label`` (``value``; for ``label`` the conversation's whole label list, as ``sla_applied`` keeps it) by
  that dimension's value. Every applied SLA adds to exactly one row of each dimension.
- ``sla_rollup_misses``: per UTC hour of ``applied_at``, UTC hour of the miss's due time, account, mode
  and one dimension (``all`` keyed by the policy id), the misses not corrected (the weekday x hour grid).
- ``sla_rollup_durations``: per UTC day of ``applied_at``, account, mode, policy, metric (``frt``, ``rt``),
  the clock's own target and duration bucket (:func:`plugin.core.reports.targets.bucket_of`) and one of the
  dimensions ``all``, ``channel``, ``priority`` and ``label`` (``value``; null for ``all``), the stopped
  clocks (the targets that fit). Whole days: per hour the buckets would be nearly one row per clock; the
  dimensions of few values only (:data:`DURATION_DIMENSIONS`). Its ``label`` rows are keyed by *one* label:
  a clock counts once under each label of its conversation (label lists are many, labels few).

One SQL definition (:func:`_contribution_queries`) gives the rollup rows of any set of applied SLAs. A
store batch reads the rows of its conversations before and after its writes and adds the difference in
the same transaction (:func:`snapshot`, :func:`apply_change`), so the rollups stay exact; :func:`rebuild`
computes them again from the base tables (``sla-plugin rebuild-rollups``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from plugin.adapters.store import UTCDateTime, applied, as_utc, misses
from plugin.core.engine.clocks import AT_RISK, HIT, MISSED, NOT_STARTED, PAUSED, RUNNING
from plugin.core.reports.figures import METRIC_PREFIXES, TOTAL_NAMES
from plugin.core.reports.targets import CAP, OVER, STEPS

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


def leading_columns(period: str) -> list[sa.Column]:
    """The first columns of a rollup table: its key (a hash of the key columns, some of which are null),
    dimension and period start."""
    return [
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("dimension", sa.String(20), nullable=False),
        sa.Column(period, UTCDateTime, nullable=False),
    ]


TOTAL_TYPES = {name: (sa.Float if name == "target_sum" else sa.BigInteger) for name in TOTAL_NAMES}


def totals_columns(*filter_columns: sa.Column) -> list[sa.Column]:
    """The columns of a table of totals after its leading ones: account and mode, ``filter_columns``, the
    grouped key (the policy's id, name and target in dimension ``all``, else the value) and the totals."""
    return [
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("mode", sa.String(10), nullable=False),
        *filter_columns,
        sa.Column("policy_id", sa.String(200)),
        sa.Column("policy_name", sa.String(200)),
        sa.Column("target", sa.Float),
        sa.Column("value_id", sa.BigInteger),
        sa.Column("value", sa.Text),
        *[sa.Column(name, kind, nullable=False) for name, kind in TOTAL_TYPES.items()],
    ]


rollup = sa.Table(
    "sla_rollup",
    rollup_metadata,
    *leading_columns("hour_at"),
    *totals_columns(),
    sa.Index("ix_sla_rollup_dimension_hour", "dimension", "hour_at"),
)

rollup_misses = sa.Table(
    "sla_rollup_misses",
    rollup_metadata,
    *leading_columns("hour_at"),
    sa.Column("due_hour_at", UTCDateTime, nullable=False),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),
    sa.Column("policy_id", sa.String(200)),
    sa.Column("value_id", sa.BigInteger),
    sa.Column("value", sa.Text),
    sa.Column("misses", sa.BigInteger, nullable=False),
    sa.Index("ix_sla_rollup_misses_dimension_hour", "dimension", "hour_at"),
)

rollup_durations = sa.Table(
    "sla_rollup_durations",
    rollup_metadata,
    *leading_columns("day_at"),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),
    sa.Column("policy_id", sa.String(200), nullable=False),
    sa.Column("metric", sa.String(10), nullable=False),
    sa.Column("target_seconds", sa.BigInteger, nullable=False),
    sa.Column("bucket", sa.Integer, nullable=False),
    sa.Column("value", sa.Text),  # the channel or priority (version 14); null in dimension "all"
    sa.Column("clocks", sa.BigInteger, nullable=False),
    sa.Index("ix_sla_rollup_durations_dimension_day", "dimension", "day_at"),
)
DURATION_METRICS = ("frt", "rt")  # the clocks whose working time is stored (sla_applied.<metric>_working_seconds)
TIMED = tuple(f"{metric}_{name}" for metric in DURATION_METRICS for name in ("working_seconds", "target_seconds"))
# The histogram's dimensions: those of few values. Per inbox, agent or label list it would hold nearly a row per
# clock (at a million applied SLAs, 30 days: 12,000 "all" rows, 221,000 per inbox, 393,000 per agent), so a
# targets report filtered on one of those reads sla_applied (inbox, team and agent through its indexes), same
# buckets. Labels are few where label lists are many, so the label rows are per label (Kept.one_label_rows).
DURATION_DIMENSIONS = ("all", "channel", "priority", "label")
_HOUR, _DAY = timedelta(hours=1), timedelta(days=1)
Span = tuple[datetime, datetime]  # [start, end) of applied_at


@dataclass(frozen=True)
class Kept:
    """One rollup table as the store keeps it: the measures it adds and the period its rows cover."""

    table: sa.Table
    measures: tuple[str, ...]
    period: str  # the column of the period's start (UTC)
    step: timedelta  # the period's length
    dimensions: tuple[str, ...] = tuple(ROLLUP_DIMENSIONS)  # the dimensions it keeps rows of
    # Label rows keyed by one label, each SLA counted under each of its labels (none: under no label row),
    # instead of by the whole label list: a filter on one label reads its rows, on several (an OR) the base.
    one_label_rows: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        """The columns that key a row (in table order: the row's ``key`` is a hash of their values)."""
        return tuple(
            column.name for column in self.table.c if column.name != "key" and column.name not in self.measures
        )

    @property
    def counted(self) -> str:
        """The measure that counts the row's SLAs or clocks: a row where it is 0 holds nothing."""
        return self.measures[0]


ROLLUP = Kept(rollup, TOTAL_NAMES, "hour_at", _HOUR)
ROLLUP_MISSES = Kept(rollup_misses, ("misses",), "hour_at", _HOUR)
ROLLUP_DURATIONS = Kept(rollup_durations, ("clocks",), "day_at", _DAY, DURATION_DIMENSIONS, one_label_rows=True)
KEPT = (ROLLUP, ROLLUP_MISSES, ROLLUP_DURATIONS)


def _sum(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


# The sla_applied columns that total_columns() sums (besides counting rows).
TOTALLED = (
    "any_miss",
    "target",
    *(f"{prefix}_{name}" for prefix in METRIC_PREFIXES.values() for name in ("status", "misses")),
    "nrt_misses_per_message",
)


def total_columns(source: sa.FromClause = applied) -> list[sa.ColumnElement]:
    """The aggregate columns of :data:`TOTAL_NAMES` over ``sla_applied`` rows (or the rows of ``source``, a CTE
    of its :data:`TOTALLED` columns); all of them are sums, so groups merge by addition (the reports and the
    rollups select the same)."""
    columns: list[sa.ColumnElement] = [
        sa.func.count().label("applied"),
        _sum(source.c.any_miss).label("conversations_missed"),
        sa.func.sum(source.c.target).label("target_sum"),
        sa.func.count(source.c.target).label("target_count"),
    ]
    for prefix in METRIC_PREFIXES.values():
        status = source.c[f"{prefix}_status"]
        columns += [
            # A next response that never started was never tracked (nothing waited for an answer).
            sa.func.count(sa.case((status != NOT_STARTED, 1))).label(f"{prefix}_tracked"),
            _sum(status == HIT).label(f"{prefix}_hit"),
            _sum(status == MISSED).label(f"{prefix}_missed"),
            _sum(status.in_((RUNNING, AT_RISK, PAUSED))).label(f"{prefix}_open"),
            sa.func.sum(source.c[f"{prefix}_misses"]).label(f"{prefix}_misses"),
        ]
    columns.append(sa.func.sum(source.c.nrt_misses_per_message).label("nrt_misses_per_message"))
    return columns


def rollup_total_columns(table: sa.Table = rollup) -> list[sa.ColumnElement]:
    """The same totals summed over rollup rows."""
    # Cast: PostgreSQL sums BIGINT as NUMERIC, which the driver reads as Decimal.
    return [sa.cast(sa.func.sum(table.c[name]), TOTAL_TYPES[name]).label(name) for name in TOTAL_NAMES]


def period_start(connection: Connection, column: sa.Column, unit: str) -> sa.ColumnElement[Any]:
    """The UTC hour or day (``unit``) of a stored time, as text (SQLite) or a timestamp without zone
    (PostgreSQL)."""
    name = f"{column.table.name}.{column.name}"
    if connection.dialect.name == "sqlite":
        return sa.literal_column(f"strftime('{'%Y-%m-%d' if unit == 'day' else '%Y-%m-%d %H'}:00:00', {name})")
    return sa.literal_column(f"date_trunc('{unit}', {name} AT TIME ZONE 'UTC')")


def as_utc_start(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC)


def duration_bucket(source: str, metric: str) -> sa.ColumnElement[int]:
    """:func:`plugin.core.reports.targets.bucket_of` in SQL over the ``metric`` columns of the table or CTE
    called ``source``, the same text on both databases (integer division of BIGINTs; literal numbers, so
    that GROUP BY repeats SELECT's text on PostgreSQL)."""
    clock, goal = (f"CAST({source}.{metric}_{name} AS BIGINT)" for name in ("working_seconds", "target_seconds"))
    return sa.literal_column(
        f"CASE WHEN {clock} > {CAP} * {goal} THEN {OVER} ELSE ({STEPS} * {clock} + {goal} - 1) / {goal} END",
        sa.Integer,
    )


def dimension_keys(
    dimension: str, policy_keys: Sequence[sa.ColumnElement[Any]], source: sa.FromClause = applied
) -> tuple[list[sa.ColumnElement[Any]], list[Any]]:
    """A dimension's GROUP BY columns and its key columns as selected from ``source`` (``sla_applied`` or a
    CTE of its columns): ``all`` is keyed by ``policy_keys`` (the others null), the others by their value (the
    policy's columns null)."""
    kept = ROLLUP_DIMENSIONS[dimension]
    if kept is None:
        values = [sa.cast(sa.null(), sa.BigInteger).label("value_id"), sa.cast(sa.null(), sa.Text).label("value")]
        return list(policy_keys), [*policy_keys, *values]
    column = source.c[kept.name]
    nulls = [sa.cast(sa.null(), key.type).label(key.name) for key in policy_keys]
    value = sa.cast(column, sa.BigInteger if dimension in ID_DIMENSIONS else sa.Text)
    other = sa.cast(sa.null(), sa.Text if dimension in ID_DIMENSIONS else sa.BigInteger)
    value_id, text = (value, other) if dimension in ID_DIMENSIONS else (other, value)
    return [column], [*nulls, value_id.label("value_id"), text.label("value")]


# (dialect, accounts, spanned) -> the queries of _contribution_queries. Built once: building them (a few
# hundred expressions) cost more than running them, and each batch of the workers snapshots twice.
_QUERIES: dict[tuple[str, int | None, bool], dict[str, sa.CompoundSelect]] = {}


def _contribution_queries(
    connection: Connection, accounts: int | None, spanned: bool = False
) -> dict[str, sa.CompoundSelect]:
    """The rollup rows (without key) of the applied SLAs of the conversations of ``accounts`` accounts (None:
    of all), applied within a span when ``spanned`` (else whenever), the conversations and the span given
    when run (:func:`_parameters`): one query per table name."""
    built = (connection.dialect.name, accounts, spanned)
    if built not in _QUERIES:
        _QUERIES[built] = _build_contribution_queries(connection, accounts, spanned)
    return _QUERIES[built]


def _build_contribution_queries(
    connection: Connection, accounts: int | None, spanned: bool
) -> dict[str, sa.CompoundSelect]:
    chosen: list[tuple[sa.BindParameter, sa.BindParameter]] | None = None
    if accounts is not None:
        chosen = [
            (sa.bindparam(f"account_{n}"), sa.bindparam(f"conversations_{n}", expanding=True)) for n in range(accounts)
        ]
    span = []
    if spanned:
        span = [applied.c.applied_at >= sa.bindparam("span_start"), applied.c.applied_at < sa.bindparam("span_end")]
    valued = [column for column in ROLLUP_DIMENSIONS.values() if column is not None]
    hour = period_start(connection, applied.c.applied_at, "hour").label("hour_at")
    day = period_start(connection, applied.c.applied_at, "day").label("day_at")
    timed = [applied.c[name] for name in TIMED]
    # Every column the totals and the histogram group or add: each of their two queries reads the cohort once.
    keyed = [applied.c.account_id, applied.c.mode, applied.c.policy_id, applied.c.policy_name, *valued]
    cohort = _batch_cohort(
        connection,
        "applied_cohort",
        sa.select(hour, day, *keyed, *(applied.c[name] for name in TOTALLED), *timed).where(*span),
        (applied,),
        chosen,
    )
    due_hour = period_start(connection, misses.c.due_at, "hour").label("due_hour_at")
    with_misses = applied.join(
        misses,
        sa.and_(misses.c.account_id == applied.c.account_id, misses.c.conversation_id == applied.c.conversation_id),
    )
    missed = _batch_cohort(
        connection,
        "missed_cohort",
        sa.select(hour, due_hour, applied.c.account_id, applied.c.mode, applied.c.policy_id, *valued)
        .select_from(with_misses)
        .where(*span, misses.c.corrected_at.is_(None)),
        (applied, misses),
        chosen,
    )
    totals, counted = [], []
    for dimension in ROLLUP_DIMENSIONS:
        name = sa.literal(dimension, sa.String(20)).label("dimension")
        keys, selected = dimension_keys(dimension, (cohort.c.policy_id, cohort.c.policy_name, cohort.c.target), cohort)
        grouped = [cohort.c.hour_at, cohort.c.account_id, cohort.c.mode]
        totals.append(sa.select(name, *grouped, *selected, *total_columns(cohort)).group_by(*grouped, *keys))
        keys, selected = dimension_keys(dimension, (missed.c.policy_id,), missed)
        grouped = [missed.c.hour_at, missed.c.due_hour_at, missed.c.account_id, missed.c.mode]
        counted.append(sa.select(name, *grouped, *selected, sa.func.count().label("misses")).group_by(*grouped, *keys))
    return {
        rollup.name: sa.union_all(*totals),
        rollup_misses.name: sa.union_all(*counted),
        rollup_durations.name: duration_histogram(cohort, ("day_at", "account_id"), DURATION_DIMENSIONS),
    }


def _batch_cohort(
    connection: Connection,
    name: str,
    query: sa.Select,
    tables: Sequence[sa.Table],
    chosen: Sequence[tuple[sa.BindParameter, sa.BindParameter]] | None,
) -> sa.CTE:
    """The rows of ``query`` (over ``tables``, keyed by account and conversation first) of the chosen
    conversations (None: of all), read once: a materialised CTE, which the rollup's seven dimensions (and the
    histogram's four) group.

    On PostgreSQL each chosen conversation is looked up by itself: the batch's ids are unnested and joined
    laterally to the rows of each table by its primary key (the lookup's ``OFFSET 0`` keeps the planner from
    flattening it into a join it could hash). An IN list looks unselective to the planner without statistics
    (500 ids of 200 assumed distinct values), so it read every row of the account through an index on the
    account (``ix_sla_applied_account_applied``; ``ix_sla_misses_due`` until version 18), a cost growing
    with every SLA recorded, until an ANALYZE; looked up by a whole key prefix, no other plan is cheaper,
    statistics or not.
    SQLite's planner takes the primary keys for the IN lists (given for each table: a join does not carry an
    IN over to the other table)."""
    if chosen is None:
        return query.cte(name).prefix_with("MATERIALIZED")
    if connection.dialect.name != "postgresql":
        return query.where(*(_of(table, chosen) for table in tables)).cte(name).prefix_with("MATERIALIZED")
    parts = []
    for n, (account, ids) in enumerate(chosen):
        # The same ids as one array (the IN lists expand them into a parameter each); distinct (snapshot).
        listed = sa.bindparam(ids.key, type_=postgresql.ARRAY(sa.BigInteger))
        batch = sa.func.unnest(listed).table_valued("conversation_id").render_derived(name=f"batch_{n}")
        by_key = [
            condition
            for table in tables
            for condition in (table.c.account_id == account, table.c.conversation_id == batch.c.conversation_id)
        ]
        lookup = query.where(*by_key).offset(sa.literal_column("0")).lateral(f"{name}_{n}")
        parts.append(sa.select(*lookup.c).select_from(batch.join(lookup, sa.true())))
    return sa.union_all(*parts).cte(name).prefix_with("MATERIALIZED")


def timed_cohort(where: Sequence[sa.ColumnElement[bool]]) -> sa.CTE:
    """What :func:`duration_histogram` counts of the applied SLAs matching ``where``, read once (a
    materialised CTE)."""
    columns = [applied.c.mode, applied.c.policy_id, *(applied.c[name] for name in TIMED)]
    return sa.select(*columns).where(*where).cte("timed_cohort").prefix_with("MATERIALIZED")


def duration_histogram(cohort: sa.CTE, keys: Sequence[str] = (), dimensions: Sequence[str] = ()) -> sa.CompoundSelect:
    """The stopped clocks of ``cohort`` (a CTE of ``sla_applied`` columns: mode, policy, :data:`TIMED`, and
    those of ``keys`` and ``dimensions``; :func:`timed_cohort`), counted per ``keys`` (selected first), mode,
    policy, metric (``frt``, ``rt``), the clock's target and its duration bucket: the rows of
    ``sla_rollup_durations``, and what the targets report reads from ``sla_applied`` where the rollup cannot
    answer, so a figure never depends on which answered. With ``dimensions`` (of
    :data:`DURATION_DIMENSIONS`), every clock is counted once per dimension, by its value (columns
    ``dimension`` and ``value`` selected after ``keys``; for ``label``, the whole label list: see
    :func:`_one_label_rows`). The cohort is grouped once per metric and dimension."""
    grouped = [cohort.c[key] for key in keys]
    parts = []
    # Per dimension: its name and value selected, and the value grouped by (nothing without dimensions).
    splits: list[tuple[list[sa.ColumnElement[Any]], list[sa.ColumnElement[Any]]]] = [([], [])]
    if dimensions:
        splits = []
        for dimension in dimensions:
            column = ROLLUP_DIMENSIONS[dimension]
            value = sa.cast(sa.null() if column is None else cohort.c[column.name], sa.Text)
            splits.append(([sa.literal(dimension, sa.String(20)).label("dimension"), value.label("value")], [value]))
    for by, values in splits:
        for metric in DURATION_METRICS:
            seconds, target = cohort.c[f"{metric}_working_seconds"], cohort.c[f"{metric}_target_seconds"]
            bucket = duration_bucket(cohort.name, metric)
            parts.append(
                sa.select(
                    *grouped,
                    *by,
                    cohort.c.mode,
                    cohort.c.policy_id,
                    sa.literal(metric, sa.String(10)).label("metric"),
                    sa.cast(target, sa.BigInteger).label("target_seconds"),
                    bucket.label("bucket"),
                    sa.func.count().label("clocks"),
                )
                .where(seconds.is_not(None), target > 0)
                .group_by(*grouped, *values, cohort.c.mode, cohort.c.policy_id, target, bucket)
            )
    return sa.union_all(*parts)


Contributions = dict[str, dict[str, dict[str, Any]]]  # table name -> row key -> row


def _key(row: dict[str, Any], names: Sequence[str]) -> str:
    parts = [row[name].isoformat() if isinstance(row[name], datetime) else row[name] for name in names]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _of(table: sa.Table, chosen: Sequence[tuple[sa.BindParameter, sa.BindParameter]]) -> sa.ColumnElement[bool]:
    """The rows of ``table`` of the chosen conversations: per account, its conversation ids by IN (PostgreSQL
    turns a tuple IN into an OR of every pair, tested on every row of the account; this is an index lookup)."""
    return sa.or_(
        *(sa.and_(table.c.account_id == account, table.c.conversation_id.in_(ids)) for account, ids in chosen)
    )


def _parameters(conversations: Mapping[int, Sequence[int]] | None, span: Span | None = None) -> dict[str, Any]:
    """The values of :func:`_contribution_queries`' parameters for these conversations (account -> ids) and
    span."""
    parameters: dict[str, Any] = {} if span is None else {"span_start": span[0], "span_end": span[1]}
    for n, (account_id, ids) in enumerate((conversations or {}).items()):
        parameters[f"account_{n}"] = account_id
        parameters[f"conversations_{n}"] = list(ids)
    return parameters


def _contributions(
    connection: Connection,
    conversations: Mapping[int, Sequence[int]] | None,
    kept: Sequence[Kept] = KEPT,
    span: Span | None = None,
) -> Contributions:
    queries = _contribution_queries(connection, None if conversations is None else len(conversations), span is not None)
    parameters = _parameters(conversations, span)
    return {
        table.table.name: keyed_rows(table, connection.execute(queries[table.table.name], parameters).mappings())
        for table in kept
    }


def keyed_rows(table: Kept, results: Iterable[sa.RowMapping]) -> dict[str, dict[str, Any]]:
    """Rows of ``table`` as its queries select them (periods as stored text or naive UTC, sums perhaps null),
    as the table keeps them: periods as UTC datetimes, sums 0 for null, keyed by the hash of their keys."""
    rows: dict[str, dict[str, Any]] = {}
    for result in results:
        row = dict(result)
        for name in ("hour_at", "due_hour_at", "day_at"):
            if name in row:
                row[name] = as_utc_start(row[name])
        for name in table.measures:
            row[name] = row[name] or 0
        for split in _one_label_rows(row) if table.one_label_rows else [row]:
            split["key"] = _key(split, table.keys)
            held = rows.get(split["key"])
            if held is None:
                rows[split["key"]] = split
            else:  # two label lists sharing a label add to one row
                for name in table.measures:
                    held[name] += split[name]
    return rows


def _one_label_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A row of dimension ``label`` keyed by a label list (``,a,b,``, as ``sla_applied`` keeps it) as one row
    per label of the list (none for no label); a row of another dimension as it is."""
    if row["dimension"] != "label":
        return [row]
    return [{**row, "value": label} for label in (row["value"] or "").split(",") if label]


def snapshot(connection: Connection, keys: Iterable[tuple[int, int]]) -> Contributions:
    """The rollup rows of the applied SLAs of these conversations as they are now stored."""
    by_account: dict[int, list[int]] = {}
    for account_id, conversation_id in sorted(set(keys)):
        by_account.setdefault(account_id, []).append(conversation_id)
    if not by_account:
        return {}
    return _contributions(connection, by_account)


def apply_change(connection: Connection, before: Contributions, after: Contributions) -> set[tuple[int, datetime]]:
    """Add ``after - before`` to the rollups (in the caller's transaction); rows left with nothing go. Returns
    the UTC days (with their account) of the applied SLAs before and after."""
    changed: set[tuple[int, datetime]] = set()
    for kept in KEPT:
        table, measures = kept.table, kept.measures
        old, new = before.get(table.name, {}), after.get(table.name, {})
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
        add_measures(connection, table, measures, changes)
        if changes:
            counted = table.c[kept.counted]
            connection.execute(table.delete().where(table.c.key.in_([row["key"] for row in changes]), counted == 0))
        if kept is ROLLUP:  # every row the batch's SLAs were or are in, changed or not (two may swap values)
            changed |= {(row["account_id"], row["hour_at"].replace(hour=0)) for row in (*old.values(), *new.values())}
    return changed


def add_measures(
    connection: Connection,
    table: sa.Table,
    measures: Sequence[str],
    rows: list[dict[str, Any]],
    keys: Sequence[str] = ("key",),
) -> None:
    """Insert ``rows`` into ``table``, or add their ``measures`` to the row of the same ``keys`` (its primary
    key) where there is one."""
    if not rows:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={name: table.c[name] + statement.excluded[name] for name in measures}
    )
    connection.execute(statement, rows)


def rebuild(connection: Connection, kept: Sequence[Kept] = KEPT, days: int = 7) -> int:
    """Compute rollup tables (by default all) again from ``sla_applied`` and ``sla_misses``; returns the rows
    written. The applied SLAs are read ``days`` whole UTC days at a time (every rollup row lies within one
    day), so the rows held in memory are those of a week, not of the whole store."""
    tables = [table.table for table in kept]
    rollup_metadata.create_all(connection, tables=tables)
    if connection.dialect.name == "postgresql":
        # Writers add their changes after this commits (SQLite's BEGIN IMMEDIATE serialises them already):
        # a change is either in the rows read here or added to the rows written here, never both.
        connection.exec_driver_sql(f"LOCK TABLE {', '.join(table.name for table in tables)} IN EXCLUSIVE MODE")
    for table in tables:
        connection.execute(table.delete())
    first, last = connection.execute(
        sa.select(sa.func.min(applied.c.applied_at), sa.func.max(applied.c.applied_at))
    ).one()
    written = 0
    start = None if first is None else as_utc(first).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while start is not None and start <= as_utc(last):
        span = (start, start + timedelta(days=days))
        for name, rows in _contributions(connection, None, kept, span).items():
            batch = list(rows.values())
            for offset in range(0, len(batch), 5000):
                connection.execute(rollup_metadata.tables[name].insert(), batch[offset : offset + 5000])
            written += len(batch)
        start = span[1]
    return written
