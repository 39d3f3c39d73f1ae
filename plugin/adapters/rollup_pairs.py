"""The report rollup of dimension pairs: per UTC day, account, mode, one *filter* dimension and value and one
grouped dimension and key, the totals of ``sla_applied`` (docs/reports.md, "Pairs"). A report filtered on one
dimension and grouped by another (the summary's policy rows of one team, a breakdown by agent of one channel)
reads them instead of every applied SLA of the filter.

- ``sla_rollup_pairs``: the rows. The filter dimensions are those of :data:`FILTER_DIMENSIONS` (``label`` by
  the whole label list, as ``sla_applied`` keeps it: an OR of labels stays exact); the grouped ones those of
  :data:`plugin.adapters.rollups.ROLLUP_DIMENSIONS` but the filter's own (``all`` keyed by the policy).
- ``sla_rollup_days``: per account and UTC day, ``changes`` (bumped by every store batch that changed the
  day's totals, in its transaction) and ``paired`` (the ``changes`` the day's pair rows include).

Unlike the other rollups, the pairs are not kept in the store's transaction (a batch would add 36 rows per
conversation to its work): :func:`refresh` computes the rows of a closed day again from ``sla_applied`` and
records the ``changes`` they include. A day is *paired* when ``paired = changes``, or when it has no row (no
SLA applied that day); a report reads the pairs of its paired days and ``sla_applied`` for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plugin.adapters.rollups import (
    ROLLUP_DIMENSIONS,
    Kept,
    add_measures,
    as_utc_start,
    dimension_keys,
    keyed_rows,
    leading_columns,
    period_start,
    rollup_metadata,
    total_columns,
    totals_columns,
)
from plugin.adapters.store import UTCDateTime, applied, as_utc
from plugin.core.reports.figures import TOTAL_NAMES

FILTER_DIMENSIONS = tuple(name for name in ROLLUP_DIMENSIONS if name != "all")
_DAY = timedelta(days=1)

rollup_pairs = sa.Table(
    "sla_rollup_pairs",
    rollup_metadata,
    *leading_columns("day_at"),  # key, dimension (the grouped one), day_at
    *totals_columns(
        sa.Column("filter_dimension", sa.String(20), nullable=False),
        sa.Column("filter_value_id", sa.BigInteger),
        sa.Column("filter_value", sa.Text),
    ),
    sa.Index("ix_sla_rollup_pairs_filter_day", "filter_dimension", "dimension", "day_at"),
)

rollup_days = sa.Table(
    "sla_rollup_days",
    rollup_metadata,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("day_at", UTCDateTime, primary_key=True),
    sa.Column("changes", sa.BigInteger, nullable=False),
    sa.Column("paired", sa.BigInteger),
)

ROLLUP_PAIRS = Kept(rollup_pairs, TOTAL_NAMES, "day_at", _DAY)
_NOT_PAIRED = sa.or_(rollup_days.c.paired.is_(None), rollup_days.c.paired != rollup_days.c.changes)

# dialect -> the query of the pair rows of one account's applied SLAs within a span (built once).
_QUERIES: dict[str, sa.CompoundSelect] = {}


def _pairs_query(connection: Connection) -> sa.CompoundSelect:
    dialect = connection.dialect.name
    if dialect not in _QUERIES:
        day = period_start(connection, applied.c.applied_at, "day").label("day_at")
        where = [
            applied.c.account_id == sa.bindparam("account"),
            applied.c.applied_at >= sa.bindparam("span_start"),
            applied.c.applied_at < sa.bindparam("span_end"),
        ]
        policy_keys = (applied.c.policy_id, applied.c.policy_name, applied.c.target)
        arms = []
        for filtered in FILTER_DIMENSIONS:
            filter_keys, filter_values = dimension_keys(filtered, ())
            filter_selected = [value.element.label(f"filter_{value.name}") for value in filter_values]
            for dimension in ROLLUP_DIMENSIONS:
                if dimension == filtered:
                    continue
                keys, selected = dimension_keys(dimension, policy_keys)
                arms.append(
                    sa.select(
                        sa.literal(dimension, sa.String(20)).label("dimension"),
                        day,
                        applied.c.account_id,
                        applied.c.mode,
                        sa.literal(filtered, sa.String(20)).label("filter_dimension"),
                        *filter_selected,
                        *selected,
                        *total_columns(),
                    )
                    .where(*where)
                    .group_by(day, applied.c.account_id, applied.c.mode, *filter_keys, *keys)
                )
        _QUERIES[dialect] = sa.union_all(*arms)
    return _QUERIES[dialect]


def mark_changed(connection: Connection, days: Iterable[tuple[int, datetime]]) -> None:
    """Count a change of these (account, UTC day) totals (in the caller's transaction: the batch that made it)."""
    rows = [{"account_id": account_id, "day_at": day, "changes": 1} for account_id, day in sorted(set(days))]
    add_measures(connection, rollup_days, ("changes",), rows, keys=("account_id", "day_at"))


def stale_days(connection: Connection, before: datetime, limit: int) -> list[tuple[int, datetime, int]]:
    """Up to ``limit`` (account, UTC day, changes) not paired, of days before ``before``, the latest first (the
    days the reports read most)."""
    query = (
        sa.select(rollup_days.c.account_id, rollup_days.c.day_at, rollup_days.c.changes)
        .where(rollup_days.c.day_at < before, _NOT_PAIRED)
        .order_by(rollup_days.c.day_at.desc(), rollup_days.c.account_id)
        .limit(limit)
    )
    return [(account_id, as_utc(day), changes) for account_id, day, changes in connection.execute(query)]


def refresh_day(
    read: Callable[[], Connection], write: Callable[[], Any], account_id: int, day: datetime, changes: int
) -> bool:
    """Compute the pair rows of one account's UTC day from ``sla_applied`` (on a ``read`` connection: on SQLite
    without the write lock) and store them with ``paired = changes`` (in a ``write`` transaction), unless a
    batch changed the day since ``changes`` was read; returns whether they were stored.

    ``changes`` must have been read before the rows are: a batch that commits in between bumps ``changes``,
    and the rows are not stored (they may or may not include it); one that commits after the write bumps it
    again, so the day is no longer paired."""
    parameters = {"account": account_id, "span_start": day, "span_end": day + _DAY}
    with read() as connection:
        rows = keyed_rows(ROLLUP_PAIRS, connection.execute(_pairs_query(connection), parameters).mappings())
    with write() as connection:
        claimed = connection.execute(
            rollup_days.update()
            .where(
                rollup_days.c.account_id == account_id, rollup_days.c.day_at == day, rollup_days.c.changes == changes
            )
            .values(paired=changes)
        )
        if claimed.rowcount != 1:
            return False
        connection.execute(
            rollup_pairs.delete().where(rollup_pairs.c.account_id == account_id, rollup_pairs.c.day_at == day)
        )
        batch = list(rows.values())
        for offset in range(0, len(batch), 5000):
            connection.execute(rollup_pairs.insert(), batch[offset : offset + 5000])
    return True


def refresh(read: Callable[[], Connection], write: Callable[[], Any], before: datetime, limit: int = 1000) -> int:
    """Pair the stale days before ``before`` (at most ``limit``); returns how many were paired."""
    with read() as connection:
        found = stale_days(connection, before, limit)
    return sum(refresh_day(read, write, account_id, day, changes) for account_id, day, changes in found)


def reset(connection: Connection) -> int:
    """Forget every pair row and mark every (account, UTC day) of ``sla_applied`` not paired, so that
    :func:`refresh` computes them all (a store that had no pairs, or whose rows were changed outside the
    store); returns how many days."""
    connection.execute(rollup_pairs.delete())
    connection.execute(rollup_days.delete())
    day = period_start(connection, applied.c.applied_at, "day")
    found = connection.execute(sa.select(applied.c.account_id, day).group_by(applied.c.account_id, day)).all()
    mark_changed(connection, ((account_id, as_utc_start(start)) for account_id, start in found))
    return len(found)


def paired_days(
    connection: Connection, accounts: Sequence[int], start: datetime, end: datetime
) -> tuple[list[datetime], list[datetime]]:
    """The UTC days in ``[start, end)`` that are paired for every account of ``accounts`` (every account when
    empty), and those that are not."""
    query = sa.select(rollup_days.c.day_at).where(
        rollup_days.c.day_at >= start, rollup_days.c.day_at < end, _NOT_PAIRED
    )
    if accounts:
        query = query.where(rollup_days.c.account_id.in_(accounts))
    stale = sorted({as_utc(day) for day in connection.execute(query).scalars()})
    days, day = [], start
    while day < end:
        days.append(day)
        day += _DAY
    return [day for day in days if day not in stale], stale
