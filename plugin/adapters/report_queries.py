"""SLA reports over the SQL store: the figures behind the JSON API, the CSV exports, the CLI and the page.

One query builder (:class:`Reports`) serves every consumer, on SQLite and PostgreSQL alike. The cohort of a
report is the set of applied SLAs (``sla_applied`` rows) whose ``applied_at`` lies in ``[since, until)`` and
that pass the filters; every figure is about that cohort:

- ``applied``: applied SLAs; ``conversations_missed``: those with at least one miss now (a corrected miss is
  not a miss); ``hit_rate`` = (applied - conversations_missed) / applied, Chatwoot's formula, with
  ``hit_rate_text`` in Chatwoot's style (``"100%"`` when nothing was missed, else rounded to 2 decimals).
  Conversations still open without a miss count as on time, as in Chatwoot.
- per metric (prefix ``frt``, ``nrt``, ``rt``): ``tracked`` (the policy sets the metric and, for ``nrt``, a
  waiting cycle has started: ``not_started`` is not tracked), ``hit`` (final and
  in time), ``missed`` (conversations with a miss of the metric), ``open`` (still running, at risk or
  paused), ``misses`` (miss instances; for ``nrt`` one per waiting cycle) and, for ``nrt`` only,
  ``misses_per_message`` (Chatwoot's count: each missed cycle, plus each customer message after its due time).
- per policy: its target success rate against the actual, the misses its budget allows and the misses over
  that budget (:func:`target_figures`).

Time buckets (hourly and daily series, the hour-of-day x weekday grid) are computed in SQL, in UTC.
Every figure is a sum over rows, so groups can be merged exactly in Python (policies across versions, a
conversation's several labels) without a second query.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from plugin.adapters.store import Store, applied, misses
from plugin.core.engine.clocks import AT_RISK, HIT, MISSED, NOT_STARTED, PAUSED, RUNNING
from plugin.core.events import format_time, parse_time
from plugin.core.reports.figures import (
    BUCKETS,
    DEFAULT_PER_PAGE,
    MAX_BUCKETS,
    MAX_ID,
    MAX_PER_PAGE,
    METRIC_PREFIXES,
    UTC,
    WEEKDAYS,
    ReportError,
    Totals,
    _add,
    _totals,
    _zero,
    conversation_link,
    figures,
    misses_allowed,
    target_figures,
)
from plugin.core.reports.filters import Filters

# Breakdown dimensions: URL name -> sla_applied column. "label" is a list column, expanded in Python.
DIMENSIONS: dict[str, sa.Column | None] = {
    "inbox": applied.c.inbox_id,
    "team": applied.c.team_id,
    "agent": applied.c.assignee_id,
    "policy": applied.c.policy_id,
    "channel": applied.c.channel,
    "priority": applied.c.priority,
    "label": None,
}
_FILTER_COLUMNS = {
    "account": applied.c.account_id,
    "inbox": applied.c.inbox_id,
    "team": applied.c.team_id,
    "agent": applied.c.assignee_id,
    "policy": applied.c.policy_id,
    "channel": applied.c.channel,
    "priority": applied.c.priority,
}


# --- time buckets, rendered per dialect -------------------------------------------------------------------
# One query for both databases: only these expressions differ, so they are compiled per dialect. Each
# renders its format as a literal, not a bound parameter, so GROUP BY repeats the same text as SELECT.


class _Bucket(FunctionElement):
    """The UTC bucket of a time column, as ISO-8601 text (``2026-03-02T09:00:00Z``)."""

    type = sa.String()
    inherit_cache = True
    sqlite_format = ""
    postgresql_format = ""


class HourBucket(_Bucket):
    """The UTC hour of a time column."""

    inherit_cache = True
    sqlite_format = "%Y-%m-%dT%H:00:00Z"
    postgresql_format = 'YYYY-MM-DD"T"HH24:00:00"Z"'


class DayBucket(_Bucket):
    """The UTC day of a time column."""

    inherit_cache = True
    sqlite_format = "%Y-%m-%dT00:00:00Z"
    postgresql_format = 'YYYY-MM-DD"T00:00:00Z"'


@compiles(_Bucket, "sqlite")
def _bucket_sqlite(element: _Bucket, compiler, **kw) -> str:
    # SQLite keeps times as UTC text (the store writes UTC), which strftime reads as is.
    return f"strftime('{element.sqlite_format}', {compiler.process(element.clauses, **kw)})"


@compiles(_Bucket, "postgresql")
def _bucket_postgresql(element: _Bucket, compiler, **kw) -> str:
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', '{element.postgresql_format}')"


class _Part(FunctionElement):
    """An integer part of a time column in UTC."""

    type = sa.Integer()
    inherit_cache = True
    sqlite_format = ""
    postgresql_field = ""


class WeekdayOf(_Part):
    """Day of the week in UTC, 0 = Sunday (both databases count the same way)."""

    inherit_cache = True
    sqlite_format = "%w"
    postgresql_field = "DOW"


class HourOf(_Part):
    """Hour of the day in UTC, 0-23."""

    inherit_cache = True
    sqlite_format = "%H"
    postgresql_field = "HOUR"


@compiles(_Part, "sqlite")
def _part_sqlite(element: _Part, compiler, **kw) -> str:
    return f"CAST(strftime('{element.sqlite_format}', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(_Part, "postgresql")
def _part_postgresql(element: _Part, compiler, **kw) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT({element.postgresql_field} FROM ({column}) AT TIME ZONE 'UTC') AS INTEGER)"


_BUCKET_TYPES = {"hour": HourBucket, "day": DayBucket}
_BUCKET_STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def filter_conditions(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions on ``sla_applied`` (times bound in UTC: SQLite keeps no offset)."""
    found: list[sa.ColumnElement[bool]] = []
    if filters.since is not None:
        found.append(applied.c.applied_at >= filters.since.astimezone(UTC))
    if filters.until is not None:
        found.append(applied.c.applied_at < filters.until.astimezone(UTC))
    for name, column in _FILTER_COLUMNS.items():
        chosen = getattr(filters, name)
        if chosen:
            found.append(column == chosen[0] if len(chosen) == 1 else column.in_(chosen))
    if filters.label:
        # labels is ",a,b,": the commas make "vip" not match "vip-gold".
        found.append(sa.or_(*(applied.c.labels.contains(f",{label},", autoescape=True) for label in filters.label)))
    if filters.mode is not None:
        found.append(applied.c.mode == filters.mode)
    return found


def _sum(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def _total_columns() -> list[sa.ColumnElement]:
    """The aggregate columns every report selects; all of them are sums, so groups merge by addition."""
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


# --- the reports -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _sqlite_reader(url: str) -> Engine:
    """A plain engine on a SQLite file: the store's engine starts every transaction with BEGIN IMMEDIATE
    (the write lock, which writers need), and a report holding it would stall the workers; in WAL mode a
    plain reader reads beside them."""
    return sa.create_engine(url, connect_args={"timeout": 30})


@dataclass
class Reports:
    """The report queries over one store's database (SQLite or PostgreSQL)."""

    engine: Engine
    chatwoot_url: str | None = None  # for links to conversations
    _store: Store = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self.engine = _sqlite_reader(self.engine.url.render_as_string(hide_password=False))
        self._store = Store(self.engine)

    def _grouped(self, filters: Filters, keys: Sequence[sa.ColumnElement]) -> list[tuple[tuple, Totals]]:
        """One aggregate query: the totals of each group of ``keys`` in the filtered cohort."""
        query = sa.select(*keys, *_total_columns()).where(*filter_conditions(filters))
        if keys:
            query = query.group_by(*keys)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [(tuple(row[: len(keys)]), _totals(row)) for row in rows]

    def summary(self, filters: Filters) -> dict[str, Any]:
        """Overall figures and one row per policy (with its target), from one query."""
        policies = self._policy_rows(filters)
        total = _zero()
        for row in policies:
            total = _add(total, row.pop("_totals"))
        overall = figures(total)
        targeted = [row for row in policies if row["budget"] is not None]
        overall["budget"] = sum(row["budget"] for row in targeted) if targeted else None
        overall["over_budget"] = sum(row["over_budget"] for row in targeted) if targeted else None
        return {"filters": filters.describe(), "overall": overall, "policies": policies}

    def _policy_rows(self, filters: Filters) -> list[dict[str, Any]]:
        """Per policy and mode: figures plus target figures. Versions with different targets are grouped
        apart in SQL, so each keeps its own budget, and merged here."""
        keys = (applied.c.policy_id, applied.c.mode, applied.c.target)
        names = sa.func.max(applied.c.policy_name).label("policy_name")
        query = sa.select(*keys, names, *_total_columns()).where(*filter_conditions(filters)).group_by(*keys)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            totals = _totals(row)
            entry = merged.setdefault(
                (row.policy_id, row.mode),
                {"name": row.policy_name, "targets": set(), "allowed": None, "totals": _zero()},
            )
            entry["totals"] = _add(entry["totals"], totals)
            if row.target is not None:
                entry["targets"].add(row.target)
                entry["allowed"] = (entry["allowed"] or 0) + misses_allowed(row.target, int(totals["applied"]))
        result = []
        for (policy_id, mode), entry in sorted(merged.items()):
            data = figures(entry["totals"])
            target = next(iter(entry["targets"])) if len(entry["targets"]) == 1 else None
            result.append(
                {
                    "policy": policy_id,
                    "name": entry["name"],
                    "mode": mode,
                    **data,
                    "target": target,
                    "targets": sorted(entry["targets"]),
                    **target_figures(target, data["applied"], data["conversations_missed"], entry["allowed"]),
                    "_totals": entry["totals"],
                }
            )
        return result

    def series(self, filters: Filters, bucket: str) -> dict[str, Any]:
        """Figures per UTC hour or day of ``applied_at``; buckets without SLAs are filled with zeros
        between ``since`` and ``until`` (or the first and last bucket found)."""
        if bucket not in BUCKETS:
            raise ReportError(f"bucket must be one of {', '.join(BUCKETS)}; got {bucket!r}")
        key = _BUCKET_TYPES[bucket](applied.c.applied_at).label("bucket")
        found = {row_key[0]: totals for row_key, totals in self._grouped(filters, [key])}
        points = []
        for start in _bucket_starts(bucket, filters, found):
            points.append({"start": start, **figures(found.get(start) or _zero())})
        return {"filters": filters.describe(), "bucket": bucket, "points": points}

    def grid(self, filters: Filters) -> dict[str, Any]:
        """Misses (not corrected) of the cohort by the UTC weekday and hour of their due time:
        ``cells[weekday][hour]`` with Monday first, plus totals per hour and per weekday."""
        weekday = WeekdayOf(misses.c.due_at).label("weekday")
        hour = HourOf(misses.c.due_at).label("hour")
        query = (
            sa.select(weekday, hour, sa.func.count().label("misses"))
            .select_from(
                applied.join(
                    misses,
                    sa.and_(
                        misses.c.account_id == applied.c.account_id,
                        misses.c.conversation_id == applied.c.conversation_id,
                    ),
                )
            )
            .where(*filter_conditions(filters), misses.c.corrected_at.is_(None))
            .group_by(weekday, hour)
        )
        cells = [[0] * 24 for _ in WEEKDAYS]
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                cells[(row.weekday + 6) % 7][row.hour] = row.misses  # SQL counts from Sunday = 0
        return {
            "filters": filters.describe(),
            "timezone": "UTC",
            "weekdays": list(WEEKDAYS),
            "cells": cells,
            "by_hour": [sum(day[hour] for day in cells) for hour in range(24)],
            "by_weekday": [sum(day) for day in cells],
            "total": sum(map(sum, cells)),
        }

    def breakdown(self, filters: Filters, by: str) -> dict[str, Any]:
        """Figures per value of one dimension (``inbox``, ``team``, ``agent``, ``policy``, ``channel``,
        ``priority``, ``label``). A conversation counts once under each of its labels; ``policy`` rows
        carry the target figures."""
        if by not in DIMENSIONS:
            raise ReportError(f"by must be one of {', '.join(DIMENSIONS)}; got {by!r}")
        if by == "policy":
            rows = self._policy_rows(filters)
            for row in rows:
                row.pop("_totals")
                row["key"] = row["policy"]
            return {"filters": filters.describe(), "by": by, "rows": rows}
        if by == "label":
            merged: dict[str | None, Totals] = {}
            # Grouped by the label set in SQL (few distinct sets), then added to each label of the set.
            for (labels,), totals in self._grouped(filters, [applied.c.labels]):
                for label in [part for part in (labels or "").split(",") if part] or [None]:
                    merged[label] = _add(merged.get(label) or _zero(), totals)
            grouped = list(merged.items())
        else:
            column = DIMENSIONS[by]
            assert column is not None  # only "label" has no column of its own
            grouped = [(key[0], totals) for key, totals in self._grouped(filters, [column])]
        rows = [
            {"key": key, **figures(totals)}
            for key, totals in sorted(grouped, key=lambda item: (item[0] is None, str(item[0])))
        ]
        return {"filters": filters.describe(), "by": by, "rows": rows}

    def conversations(
        self, filters: Filters, page: int = 1, per_page: int = DEFAULT_PER_PAGE, only_missed: bool = False
    ) -> dict[str, Any]:
        """A page of the cohort's conversations, newest SLA first, each with the due time of every miss."""
        if page < 1:
            raise ReportError(f"page must be 1 or more, got {page}")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ReportError(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
        conditions = self._drilldown_conditions(filters, only_missed)
        with self.engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(applied).where(*conditions)).scalar_one()
            items = self._drilldown_page(connection, conditions, (page - 1) * per_page, per_page)
        return {
            "filters": filters.describe(),
            "only_missed": only_missed,
            "total": total,
            "page": page,
            "per_page": per_page,
            "pages": max(1, math.ceil(total / per_page)),
            "items": items,
        }

    def iter_conversations(
        self, filters: Filters, only_missed: bool = False, chunk: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Every conversation of the cohort, in the drill-down's order, read in chunks (CSV export)."""
        conditions = self._drilldown_conditions(filters, only_missed)
        offset = 0
        while True:
            with self.engine.connect() as connection:
                items = self._drilldown_page(connection, conditions, offset, chunk)
            yield from items
            if len(items) < chunk:
                return
            offset += chunk

    @staticmethod
    def _drilldown_conditions(filters: Filters, only_missed: bool) -> list[sa.ColumnElement[bool]]:
        return filter_conditions(filters) + ([applied.c.any_miss.is_(True)] if only_missed else [])

    def _drilldown_page(
        self, connection: Connection, conditions: list, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        columns = [column for column in applied.c if column.name != "policy_snapshot"]
        rows = connection.execute(
            sa.select(*columns)
            .where(*conditions)
            .order_by(applied.c.applied_at.desc(), applied.c.account_id, applied.c.conversation_id)
            .offset(offset)
            .limit(limit)
        ).all()
        if not rows:
            return []
        keys = {(row.account_id, row.conversation_id) for row in rows}
        found: dict[tuple[int, int], list[dict[str, Any]]] = {key: [] for key in keys}
        miss_rows = connection.execute(
            sa.select(misses.c.account_id, misses.c.conversation_id, misses.c.miss, misses.c.metric, misses.c.due_at)
            .where(
                sa.tuple_(misses.c.account_id, misses.c.conversation_id).in_(sorted(keys)),
                misses.c.corrected_at.is_(None),
            )
            .order_by(misses.c.due_at, misses.c.miss)
        )
        for miss in miss_rows:
            found[(miss.account_id, miss.conversation_id)].append(
                {"miss": miss.miss, "metric": miss.metric, "due_at": format_time(miss.due_at)}
            )
        return [self._conversation_item(row._mapping, found[(row.account_id, row.conversation_id)]) for row in rows]

    def _conversation_item(self, row: Mapping[Any, Any], miss_list: list[dict[str, Any]]) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for name, value in row.items():
            if name == "labels":
                value = [part for part in (value or "").split(",") if part]
            elif isinstance(value, datetime):
                value = format_time(value)
            item[name] = value
        item["link"] = conversation_link(self.chatwoot_url, row["account_id"], row["conversation_id"])
        item["misses"] = miss_list
        item["missed_metrics"] = [prefix for prefix in METRIC_PREFIXES.values() if row[f"{prefix}_misses"]]
        return item

    def conversation(self, account_id: int, conversation_id: int) -> dict[str, Any] | None:
        """One conversation's applied SLA with every miss (corrected ones marked) and its SLA event log;
        None when no SLA was ever applied to it."""
        if not (0 <= account_id <= MAX_ID and 0 <= conversation_id <= MAX_ID):
            return None  # beyond the BIGINT columns: no such conversation (and no overflow in the driver)
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(applied).where(
                    applied.c.account_id == account_id, applied.c.conversation_id == conversation_id
                )
            ).first()
            if row is None:
                return None
            miss_rows = connection.execute(
                sa.select(misses)
                .where(misses.c.account_id == account_id, misses.c.conversation_id == conversation_id)
                .order_by(misses.c.due_at, misses.c.miss)
            ).all()
        data = self._conversation_item(
            {k: v for k, v in row._mapping.items() if k != "policy_snapshot"},
            [
                {
                    "miss": miss.miss,
                    "metric": miss.metric,
                    "due_at": format_time(miss.due_at),
                    "policy": miss.policy_id,
                    "policy_version": miss.policy_version,
                    "recorded_at": format_time(miss.recorded_at),
                    "corrected_at": format_time(miss.corrected_at),
                }
                for miss in miss_rows
            ],
        )
        data["policy_snapshot"] = json.loads(row.policy_snapshot)
        data["log"] = self._store.log_entries((account_id, conversation_id))
        return data


def _bucket_starts(bucket: str, filters: Filters, found: Mapping[str, Any]) -> list[str]:
    """Every bucket start from the range's first to its last bucket, as the SQL renders them."""
    step = _BUCKET_STEPS[bucket]
    existing = sorted(found)
    first = _floor(filters.since, bucket) if filters.since else (parse_time(existing[0]) if existing else None)
    last = filters.until - timedelta(seconds=1) if filters.until else (parse_time(existing[-1]) if existing else None)
    if first is None or last is None:
        return existing
    if (last - first) / step >= MAX_BUCKETS:
        raise ReportError(
            f"{bucket}ly series are limited to {MAX_BUCKETS:,} points: choose a shorter range"
            + (" or bucket=day" if bucket == "hour" else "")
        )
    starts = []
    moment = first
    while moment <= last:
        starts.append(format_time(moment))
        moment += step
    return starts


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment
