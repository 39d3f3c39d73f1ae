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

Time buckets (hourly and daily series, the hour-of-day x weekday grid) are computed in SQL, in the report's
time zone (``tz``); instants in the answers stay UTC.
Every figure is a sum over rows, so groups can be merged exactly in Python (policies across versions, a
conversation's several labels) without a second query.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plugin.adapters import rollup_pairs
from plugin.adapters.directory import Directory, Names, name_of
from plugin.adapters.rollup_pairs import ROLLUP_PAIRS
from plugin.adapters.rollups import (
    DURATION_METRICS,
    ID_DIMENSIONS,
    ROLLUP,
    ROLLUP_DURATIONS,
    ROLLUP_MISSES,
    Kept,
    duration_histogram,
    rollup,
    rollup_durations,
    rollup_misses,
    rollup_total_columns,
    timed_cohort,
    total_columns,
)
from plugin.adapters.store import Store, applied, as_utc, misses, policy_versions
from plugin.core.events import format_time
from plugin.core.reports.figures import (
    BUCKETS,
    DEFAULT_PER_PAGE,
    MAX_BUCKETS,
    MAX_ID,
    MAX_PER_PAGE,
    METRIC_PREFIXES,
    PREFIX_METRICS,
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
from plugin.core.reports.targets import CAP, FACTORS, PERCENTILES, STEPS, Bucket, merge, target_fit
from plugin.core.reports.zones import (
    local_day_start,
    local_hour_start,
    local_text,
    next_hour,
    next_local_day,
    offset_seconds,
    offset_spans,
    zone,
)

# The breakdowns whose keys are ids with names, and the drill-down's id columns with their name columns.
NAMED_DIMENSIONS = ("inbox", "team", "agent")
NAME_COLUMNS = {"inbox_id": "inbox_name", "team_id": "team_name", "assignee_id": "assignee_name"}
NAME_KINDS = {"inbox_id": "inbox", "team_id": "team", "assignee_id": "agent"}

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
# The page shows the policies in their own table (the summary's), so not as a breakdown.
PAGE_BREAKDOWNS = tuple(by for by in DIMENSIONS if by != "policy")
_FILTER_COLUMNS = {
    "account": applied.c.account_id,
    "inbox": applied.c.inbox_id,
    "team": applied.c.team_id,
    "agent": applied.c.assignee_id,
    "policy": applied.c.policy_id,
    "channel": applied.c.channel,
    "priority": applied.c.priority,
}


# --- time buckets in the report's zone, rendered per dialect ---------------------------------------------
# One query for both databases: only these expressions differ. A stored UTC time is shifted by the zone's
# offset in force at that instant (a CASE over the offset spans of the range, zones.offset_spans) and then
# formatted. Everything is rendered as literal SQL built from numbers and instants the code made (never
# from request text), so GROUP BY repeats exactly the text of SELECT on PostgreSQL.


@dataclass(frozen=True)
class LocalClock:
    """SQL expressions for the local time of a time column, in one dialect, over known offset spans."""

    dialect: str
    spans: Sequence[tuple[datetime, int]]

    def _instant(self, moment: datetime) -> str:
        moment = moment.astimezone(UTC)
        if self.dialect == "sqlite":
            # The text SQLAlchemy's SQLite dialect stores, so text comparison orders as time does.
            return f"'{moment:%Y-%m-%d %H:%M:%S}.000000'"
        return f"TIMESTAMPTZ '{moment:%Y-%m-%d %H:%M:%S}+00'"

    def shift(self, column: str) -> str:
        """The zone's UTC offset (seconds) at the instant in ``column``."""
        if len(self.spans) == 1:
            return str(self.spans[0][1])
        cases = " ".join(
            f"WHEN {column} < {self._instant(start)} THEN {offset}"
            for (_, offset), (start, _) in zip(self.spans, self.spans[1:], strict=False)
        )
        return f"(CASE {cases} ELSE {self.spans[-1][1]} END)"

    def _format(self, column: str, sqlite_format: str, postgresql_format: str) -> str:
        shift = self.shift(column)
        if self.dialect == "sqlite":
            return f"strftime('{sqlite_format}', {column}, {shift} || ' seconds')"
        return f"to_char(({column} AT TIME ZONE 'UTC') + {shift} * INTERVAL '1 second', '{postgresql_format}')"

    def hour(self, column: sa.Column) -> sa.ColumnElement[str]:
        """The local hour, ``2026-03-29T03``."""
        return sa.literal_column(self._format(_name(column), "%Y-%m-%dT%H", 'YYYY-MM-DD"T"HH24'), sa.String)

    def day(self, column: sa.Column) -> sa.ColumnElement[str]:
        """The local date, ``2026-03-29``."""
        return sa.literal_column(self._format(_name(column), "%Y-%m-%d", "YYYY-MM-DD"), sa.String)

    def weekday_hour(self, column: sa.Column) -> sa.ColumnElement[str]:
        """The local weekday (0 = Sunday, both databases count so) and hour: ``0 09``."""
        return sa.literal_column(self._format(_name(column), "%w %H", "D HH24"), sa.String)

    def weekday_and_hour(self, text: str) -> tuple[int, int]:
        """``weekday_hour``'s text as (weekday, Monday = 0; hour)."""
        day, hour = text.split()
        sunday_first = int(day) - (1 if self.dialect == "postgresql" else 0)  # to_char's D counts from 1
        return (sunday_first + 6) % 7, int(hour)

    def offset(self, column: sa.Column) -> sa.ColumnElement[int]:
        """The offset in force, which tells the two hours of a repeated autumn hour apart."""
        # Cast: a bare number in GROUP BY would be read as a column position.
        return sa.literal_column(f"CAST({self.shift(_name(column))} AS INTEGER)", sa.Integer)


def _name(column: sa.Column) -> str:
    return f"{column.table.name}.{column.name}"


_BUCKET_STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


# --- rollups: which requests they answer --------------------------------------------------------------------
# The rollups (plugin/adapters/rollups.py) hold whole UTC hours (the duration histogram whole UTC days), so they
# serve the whole hours of a range in a zone whose offsets are whole hours (the histogram, grouped by no time,
# the whole days in any zone); the rest of the range at either end is read from sla_applied. Each rollup row
# is keyed by one dimension: a request filtered on one of them (an inbox, say) is read from that dimension's
# rows, so it can be grouped by nothing else; two such filters, a policy filter with one, a filter on a
# dimension the rollup keeps no rows of (the histogram keeps channel, priority and label only) or on several
# labels where the rows are per label (a conversation with two of them would count twice) need the base.

ROLLUP_FILTERS = ("inbox", "team", "agent", "channel", "priority", "label")


def _dimension_column(by: str, source: sa.Table) -> list[sa.ColumnElement]:
    """The key column of a breakdown dimension in ``sla_applied`` or ``sla_rollup``."""
    if source is applied:
        return [applied.c.labels if by == "label" else DIMENSIONS[by]]  # type: ignore[list-item]
    return [source.c.value_id if by in ID_DIMENSIONS else source.c.value]


def _whole_periods(filters: Filters, step: timedelta, zoned: bool) -> tuple[datetime, datetime] | None:
    """The whole UTC periods of length ``step`` (an hour or a day) inside the range; with ``zoned`` (the
    answer is grouped by local time) only when the report's zone never cuts a period in two."""
    if filters.since is None or filters.until is None:
        return None
    since, until = filters.since.astimezone(UTC), filters.until.astimezone(UTC)
    floor = _EPOCH + (until - _EPOCH) // step * step
    ceiling = _EPOCH + -((_EPOCH - since) // step) * step  # the first period start at or after since
    if ceiling >= floor:
        return None
    if zoned and any(offset % step.total_seconds() for _, offset in offset_spans(zone(filters.tz), since, until)):
        return None  # a half-hour zone: its local hours cut UTC hours in two
    return ceiling, floor


def rollup_plan(
    filters: Filters, need: str | None, kept: Kept = ROLLUP, zoned: bool = True
) -> tuple[list[sa.ColumnElement[bool]], list[Filters]] | None:
    """How to answer from a rollup table: the conditions on it for the whole periods of the range, and the
    filters of the range's ends, read from ``sla_applied``; None when the rollup cannot answer. ``need``:
    see :meth:`Reports._grouped` (None for ``sla_rollup_misses``); ``zoned``: see :func:`_whole_periods`."""
    periods = _whole_periods(filters, kept.step, zoned)
    chosen = [name for name in ROLLUP_FILTERS if getattr(filters, name)]
    if periods is None or len(chosen) > 1:
        return None
    dimension = chosen[0] if chosen else (need or "all")
    if need not in (None, dimension) or (filters.policy and dimension != "all") or dimension not in kept.dimensions:
        return None
    if kept.one_label_rows and len(filters.label) > 1:
        return None
    start, end = periods
    table = kept.table
    conditions = [table.c.dimension == dimension, table.c[kept.period] >= start, table.c[kept.period] < end]
    conditions += _scope_conditions(table, filters)
    if chosen:
        conditions.append(_value_condition(filters, dimension, table, one_label=kept.one_label_rows))
    return conditions, _spans(filters, [(filters.since, start), (end, filters.until)])  # type: ignore[list-item]


def pairs_plan(
    connection: Connection, filters: Filters, need: str | None
) -> tuple[list[sa.ColumnElement[bool]], list[Filters]] | None:
    """How to answer a request filtered on one dimension and grouped by another (``need``) from the pair
    rollup (plugin/adapters/rollup_pairs.py): the conditions on it for the range's whole UTC days that are
    paired, and the filters of the rest (the range's ends, the days not paired), read from ``sla_applied``;
    None when it cannot answer. Not grouped by time, so whole UTC days serve any zone."""
    chosen = [name for name in ROLLUP_FILTERS if getattr(filters, name)]
    periods = _whole_periods(filters, ROLLUP_PAIRS.step, zoned=False)
    if need is None or periods is None or len(chosen) != 1 or need == chosen[0]:
        return None
    if filters.policy and need != "all":
        return None
    start, end = periods
    paired, stale = rollup_pairs.paired_days(connection, filters.account, start, end)
    if not paired:
        return None
    table = rollup_pairs.rollup_pairs
    conditions = [
        table.c.dimension == need,
        table.c.filter_dimension == chosen[0],
        table.c.day_at >= start,
        table.c.day_at < end,
        *_scope_conditions(table, filters),
        _value_condition(filters, chosen[0], table, prefix="filter_"),
    ]
    if stale:
        conditions.append(table.c.day_at.not_in(stale))
    spans = [(filters.since, start), *((day, day + ROLLUP_PAIRS.step) for day in stale), (end, filters.until)]
    return conditions, _spans(filters, spans)  # type: ignore[arg-type]


def _scope_conditions(table: sa.Table, filters: Filters) -> list[sa.ColumnElement[bool]]:
    """A rollup table's conditions for the account, mode and policy filters."""
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.account:
        conditions.append(table.c.account_id.in_(filters.account))
    if filters.mode is not None:
        conditions.append(table.c.mode == filters.mode)
    if filters.policy:
        conditions.append(table.c.policy_id.in_(filters.policy))
    return conditions


def _value_condition(
    filters: Filters, dimension: str, table: sa.Table, prefix: str = "", one_label: bool = False
) -> sa.ColumnElement[bool]:
    """A rollup table's condition for the filter on ``dimension``, kept in its column ``<prefix>value_id``
    (ids) or ``<prefix>value``; a label filter matches label lists (``,a,b,``), or single labels when
    ``one_label``."""
    value = table.c[f"{prefix}value"]
    if dimension == "label" and one_label:
        return value == filters.label[0]
    if dimension == "label":
        return sa.or_(*(value.contains(f",{label},", autoescape=True) for label in filters.label))
    column = table.c[f"{prefix}value_id"] if dimension in ID_DIMENSIONS else value
    return column.in_(getattr(filters, dimension))


def _spans(filters: Filters, spans: Sequence[tuple[datetime, datetime]]) -> list[Filters]:
    """The filters of these spans of the range (``since`` and ``until`` replaced), empty ones left out and
    adjacent ones joined."""
    joined: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if start >= end:
            continue
        if joined and joined[-1][1] == start:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return [replace(filters, since=start, until=end) for start, end in joined]


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
    own_labels: frozenset[str] = frozenset()  # the plugin's status labels: left out of the label breakdown
    chatwoot_urls: Mapping[int, str] = field(default_factory=dict)  # per account, when accounts differ
    _store: Store = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self.engine = _sqlite_reader(self.engine.url.render_as_string(hide_password=False))
        self._store = Store(self.engine)
        self._directory = Directory(self.engine)

    def names(self, filters: Filters | None = None) -> Names:
        """The known names of inboxes, teams, agents and policies (of the filtered accounts)."""
        return self._directory.names(filters.account if filters is not None and filters.account else None)

    def _grouped(
        self, filters: Filters, keys: Callable[[sa.Table], Sequence[sa.ColumnElement]], need: str | None = None
    ) -> list[tuple[tuple, Totals]]:
        """The totals of each group of ``keys`` in the filtered cohort. ``keys`` gives the key columns of
        a source table (``sla_applied`` or ``sla_rollup``); ``need`` is the rollup dimension the keys
        require (``all`` for the policy, a breakdown's dimension, None for none). The whole hours of the
        range are read from the rollups when they can answer (:func:`rollup_plan`), the rest from
        ``sla_applied``; every figure is a sum, so the parts are added."""
        found: dict[tuple, Totals] = {}
        with self.engine.connect() as connection:
            parts = [(applied, total_columns(), filter_conditions(filters))]
            source, plan = rollup, rollup_plan(filters, need)
            if plan is None:
                source, plan = rollup_pairs.rollup_pairs, pairs_plan(connection, filters, need)
            if plan is not None:
                conditions, edges = plan
                parts = [(source, rollup_total_columns(source), conditions)]
                parts += [(applied, total_columns(), filter_conditions(edge)) for edge in edges]
            for source, totals, conditions in parts:
                labelled = [key.label(f"k{index}") for index, key in enumerate(keys(source))]
                query = sa.select(*labelled, *totals).where(*conditions)
                if labelled:
                    query = query.group_by(*labelled)
                for row in connection.execute(query):
                    key = tuple(row[: len(labelled)])
                    found[key] = _add(found[key], _totals(row)) if key in found else _totals(row)
        if not keys(applied):
            found.setdefault((), _zero())
        return list(found.items())

    def summary(self, filters: Filters) -> dict[str, Any]:
        """Overall figures and one row per policy (with its target)."""
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
        grouped = self._grouped(
            filters, lambda source: (source.c.policy_id, source.c.mode, source.c.target, source.c.policy_name), "all"
        )
        rows = [(*key, totals) for key, totals in grouped if totals["applied"]]
        targets: dict[tuple, Totals] = {}
        names: dict[tuple[str, str], str] = {}
        for policy_id, mode, target, name, totals in rows:
            names[(policy_id, mode)] = max(name, names.get((policy_id, mode), name))
            key = (policy_id, mode, target)
            targets[key] = _add(targets[key], totals) if key in targets else totals
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for (policy_id, mode, target), totals in targets.items():
            entry = merged.setdefault(
                (policy_id, mode),
                {"name": names[(policy_id, mode)], "targets": set(), "allowed": None, "totals": _zero()},
            )
            entry["totals"] = _add(entry["totals"], totals)
            if target is not None:
                entry["targets"].add(target)
                entry["allowed"] = (entry["allowed"] or 0) + misses_allowed(target, int(totals["applied"]))
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

    def _clock(self, filters: Filters, column: sa.Column, join_misses: bool = False) -> LocalClock | None:
        """The local clock of the report's zone over the range of ``column`` in the cohort (None: no rows).

        The range is the filter's when ``column`` is ``applied_at`` and both bounds are set; otherwise
        (a due time may lie after ``until``) it is read from the data."""
        place = zone(filters.tz)
        if column is applied.c.applied_at and filters.since is not None and filters.until is not None:
            return LocalClock(self.engine.dialect.name, offset_spans(place, filters.since, filters.until))
        source = _with_misses() if join_misses else applied
        query = sa.select(sa.func.min(column), sa.func.max(column)).select_from(source)
        query = query.where(*filter_conditions(filters))
        if join_misses:
            query = query.where(misses.c.corrected_at.is_(None))
        with self.engine.connect() as connection:
            low, high = connection.execute(query).one()
        if low is None:
            return None
        return LocalClock(self.engine.dialect.name, offset_spans(place, as_utc(low), as_utc(high)))

    def series(self, filters: Filters, bucket: str) -> dict[str, Any]:
        """Figures per hour or day of ``applied_at`` in the report's zone; buckets without SLAs are filled
        with zeros between ``since`` and ``until`` (or the first and last bucket found). Each point has
        its ``start`` and ``end`` (UTC) and ``local`` start: a day with a daylight-saving change lasts 23
        or 25 hours, and the repeated autumn hour is two points."""
        if bucket not in BUCKETS:
            raise ReportError(f"bucket must be one of {', '.join(BUCKETS)}; got {bucket!r}")
        place = zone(filters.tz)
        clock = self._clock(filters, applied.c.applied_at)
        found: dict[tuple, Totals] = {}
        if clock is not None:
            local = clock

            def keys(source: sa.Table) -> list[sa.ColumnElement[Any]]:
                column = source.c.applied_at if source is applied else source.c.hour_at
                return [local.hour(column), local.offset(column)] if bucket == "hour" else [local.day(column)]

            found = {key: totals for key, totals in self._grouped(filters, keys) if totals["applied"]}
        empty = figures(_zero())  # most buckets of a long range are empty: their figures are worked out once
        points = []
        for start, end in _buckets(place, bucket, filters, found):
            totals = found.get(_bucket_key(place, bucket, start))
            point = {"start": format_time(start), "end": format_time(end), "local": local_text(place, start)}
            points.append({**point, **(figures(totals) if totals else empty)})
        return {"filters": filters.describe(), "bucket": bucket, "timezone": filters.tz, "points": points}

    def grid(self, filters: Filters) -> dict[str, Any]:
        """Misses (not corrected) of the cohort by the weekday and hour of their due time in the report's
        zone: ``cells[weekday][hour]`` with Monday first, plus totals per hour and per weekday."""
        cells = [[0] * 24 for _ in WEEKDAYS]
        place = zone(filters.tz)
        base: list[tuple[Any, Any, Any, Any]] = [
            (misses.c.due_at, _with_misses(), _grid_conditions(filters), sa.func.count())
        ]
        choices = [base]
        plan = rollup_plan(filters, None, ROLLUP_MISSES)
        if plan is not None:
            conditions, edges = plan
            total = sa.cast(sa.func.sum(rollup_misses.c.misses), sa.BigInteger)
            choices.insert(0, [(rollup_misses.c.due_hour_at, rollup_misses, conditions, total)])
            choices[0] += [(misses.c.due_at, _with_misses(), _grid_conditions(edge), sa.func.count()) for edge in edges]
        with self.engine.connect() as connection:
            for parts in choices:
                ranges = [
                    connection.execute(
                        sa.select(sa.func.min(column), sa.func.max(column)).select_from(source).where(*where)
                    ).one()
                    for column, source, where, _ in parts
                ]
                found = [(as_utc(low), as_utc(high)) for low, high in ranges if low is not None]
                if not found:
                    break
                spans = offset_spans(
                    place, min(low for low, _ in found), max(high for _, high in found) + _BUCKET_STEPS["hour"]
                )
                if parts is not base and any(offset % 3600 for _, offset in spans):
                    continue  # due hours in a half-hour offset: the rollups cannot say their local hour
                clock = LocalClock(self.engine.dialect.name, spans)
                for column, source, where, count in parts:
                    moment = clock.weekday_hour(column).label("moment")
                    query = sa.select(moment, count.label("misses")).select_from(source).where(*where).group_by(moment)
                    for row in connection.execute(query):
                        weekday, hour = clock.weekday_and_hour(row.moment)
                        cells[weekday][hour] += int(row.misses)
                break
        return {
            "filters": filters.describe(),
            "timezone": filters.tz,
            "weekdays": list(WEEKDAYS),
            "cells": cells,
            "by_hour": [sum(day[hour] for day in cells) for hour in range(24)],
            "by_weekday": [sum(day) for day in cells],
            "total": sum(map(sum, cells)),
        }

    def breakdown(self, filters: Filters, by: str) -> dict[str, Any]:
        """Figures per value of one dimension (``inbox``, ``team``, ``agent``, ``policy``, ``channel``,
        ``priority``, ``label``). A conversation counts once under each of its labels (the plugin's own
        status labels left out: they say what the SLA says); ``policy`` rows carry the target figures."""
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
            for (labels,), totals in self._grouped(filters, functools.partial(_dimension_column, "label"), "label"):
                listed = [part for part in (labels or "").split(",") if part and part not in self.own_labels]
                for label in listed or [None]:
                    merged[label] = _add(merged.get(label) or _zero(), totals)
            grouped = list(merged.items())
        else:
            keys = functools.partial(_dimension_column, by)
            grouped = [(key[0], totals) for key, totals in self._grouped(filters, keys, by) if totals["applied"]]
        known = self.names(filters) if by in NAMED_DIMENSIONS else {}
        rows = [
            {"key": key, "name": name_of(known, by, key) if by in NAMED_DIMENSIONS else key, **figures(totals)}
            for key, totals in sorted(grouped, key=lambda item: (item[0] is None, str(item[0])))
        ]
        return {"filters": filters.describe(), "by": by, "rows": rows}

    def targets(self, filters: Filters) -> dict[str, Any]:
        """Targets that fit: per policy, first-response and resolution times of the cohort in working time
        (percentiles) and the hit rate the same conversations would have had at other targets
        (:func:`plugin.core.reports.targets.target_fit`). Only stopped clocks count (answered, resolved).
        Their duration histogram is read from ``sla_rollup_durations`` for the whole UTC days of the range
        (its rows of dimension ``all``, or of the one channel, priority or label filter) and from
        ``sla_applied`` for the rest (or all of it, with a filter the rollup does not keep), with the same
        buckets."""
        parts = [filter_conditions(filters)]
        # Not zoned: the cohort is a range of instants; nothing is grouped by local time. Grouped by the
        # policy, which the rows of every dimension of the histogram carry: no dimension is needed.
        plan = rollup_plan(filters, None, ROLLUP_DURATIONS, zoned=False)
        histogram = rollup_durations
        queries: list[sa.Select | sa.CompoundSelect] = []
        if plan is not None:
            conditions, edges = plan
            parts = [filter_conditions(edge) for edge in edges]
            keys = (histogram.c.mode, histogram.c.policy_id, histogram.c.metric, histogram.c.target_seconds)
            queries.append(
                sa.select(*keys, histogram.c.bucket, sa.cast(sa.func.sum(histogram.c.clocks), sa.BigInteger))
                .where(*conditions)
                .group_by(*keys, histogram.c.bucket)
            )
        queries += [duration_histogram(timed_cohort(where)) for where in parts]
        rows: dict[tuple[str, str], dict[str, list[Bucket]]] = {}
        with self.engine.connect() as connection:
            for query in queries:
                for mode, policy_id, metric, target, bucket, clocks in connection.execute(query):
                    per_metric = rows.setdefault((policy_id, mode), {name: [] for name in DURATION_METRICS})
                    per_metric[metric].append((bucket, target, clocks))
        known = self.names(filters).get("policy", {})
        policies = [
            {
                "policy": policy_id,
                "name": known.get(policy_id, policy_id),
                "mode": mode,
                **{PREFIX_METRICS[prefix]: target_fit(merge(found[prefix])) for prefix in DURATION_METRICS},
            }
            for (policy_id, mode), found in sorted(rows.items())
        ]
        return {
            "filters": filters.describe(),
            "factors": list(FACTORS),
            "percentiles": list(PERCENTILES),
            "percentile_step": 1 / STEPS,
            "percentile_cap": CAP,
            "policies": policies,
        }

    def page_calls(
        self, filters: Filters, page: int = 1, per_page: int = DEFAULT_PER_PAGE, only_missed: bool = True
    ) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
        """Every report the page shows, as named calls (the page makes them; the benchmark times them):
        summary, daily and hourly series, grid, a breakdown per dimension but policy, the drill-down page
        and the targets. The hourly chart of a range longer than an hourly series may be is drawn from
        days."""
        span = (filters.until - filters.since) / _BUCKET_STEPS["hour"] if filters.since and filters.until else 0
        hourly = "hour" if span < MAX_BUCKETS else "day"
        return [
            ("summary", lambda: self.summary(filters)),
            ("daily", lambda: self.series(filters, "day")),
            ("hourly", lambda: self.series(filters, hourly)),
            ("grid", lambda: self.grid(filters)),
            *[(f"breakdown {by}", functools.partial(self.breakdown, filters, by)) for by in PAGE_BREAKDOWNS],
            ("conversations", lambda: self.conversations(filters, page, per_page, only_missed)),
            ("targets", lambda: self.targets(filters)),
        ]

    def conversations(
        self, filters: Filters, page: int = 1, per_page: int = DEFAULT_PER_PAGE, only_missed: bool = False
    ) -> dict[str, Any]:
        """A page of the cohort's conversations, newest SLA first, each with the due time of every miss."""
        if page < 1:
            raise ReportError(f"page must be 1 or more, got {page}")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ReportError(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
        conditions = self._drilldown_conditions(filters, only_missed)
        # The count is a total of every report (from the rollups when they answer); the page reads the base.
        (_, totals), *_ = self._grouped(filters, lambda source: ())
        total = int(totals["conversations_missed" if only_missed else "applied"])
        with self.engine.connect() as connection:
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
        rows = connection.execute(
            sa.select(applied)
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
        known = self._directory.names({row.account_id for row in rows})
        return [
            self._conversation_item(row._mapping, found[(row.account_id, row.conversation_id)], known) for row in rows
        ]

    def _conversation_item(
        self, row: Mapping[Any, Any], miss_list: list[dict[str, Any]], known: Names
    ) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for name, value in row.items():
            if name == "labels":
                value = [part for part in (value or "").split(",") if part]
            elif isinstance(value, datetime):
                value = format_time(value)
            item[name] = value
            if name in NAME_COLUMNS:
                item[NAME_COLUMNS[name]] = name_of(known, NAME_KINDS[name], value)
        base = self.chatwoot_urls.get(row["account_id"], self.chatwoot_url)
        item["link"] = conversation_link(base, row["account_id"], row["conversation_id"])
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
                sa.select(applied, policy_versions.c.snapshot.label("policy_snapshot"))
                .select_from(
                    applied.outerjoin(
                        policy_versions,
                        sa.and_(
                            policy_versions.c.policy_id == applied.c.policy_id,
                            policy_versions.c.policy_version == applied.c.policy_version,
                        ),
                    )
                )
                .where(applied.c.account_id == account_id, applied.c.conversation_id == conversation_id)
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
            self._directory.names([account_id]),
        )
        data["policy_snapshot"] = json.loads(row.policy_snapshot) if row.policy_snapshot is not None else None
        data["log"] = self._store.log_entries((account_id, conversation_id))
        return data


def _grid_conditions(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """The grid's misses: those not corrected, of the filtered cohort."""
    return [*filter_conditions(filters), misses.c.corrected_at.is_(None)]


def _with_misses() -> sa.Join:
    """``sla_applied`` joined to its conversations' misses."""
    return applied.join(
        misses,
        sa.and_(misses.c.account_id == applied.c.account_id, misses.c.conversation_id == applied.c.conversation_id),
    )


def _bucket_key(place: ZoneInfo, bucket: str, start: datetime) -> tuple:
    """The key the SQL of :class:`LocalClock` gives the rows of the bucket starting at ``start``."""
    local = start.astimezone(place)
    if bucket == "hour":
        return (local.strftime("%Y-%m-%dT%H"), offset_seconds(place, start))
    return (local.strftime("%Y-%m-%d"),)


def _buckets(
    place: ZoneInfo, bucket: str, filters: Filters, found: Mapping[tuple, Any]
) -> list[tuple[datetime, datetime]]:
    """Every bucket, ``(start, end)`` in UTC, from the range's first to its last (the data's, when the
    range is open on a side)."""
    existing = sorted(_key_start(place, bucket, key) for key in found)
    first = filters.since or (existing[0] if existing else None)
    last = filters.until - timedelta(seconds=1) if filters.until else (existing[-1] if existing else None)
    if first is None or last is None:
        return []
    if (last - first) / _BUCKET_STEPS[bucket] >= MAX_BUCKETS:
        raise ReportError(
            f"{bucket}ly series are limited to {MAX_BUCKETS:,} points: choose a shorter range"
            + (" or bucket=day" if bucket == "hour" else "")
        )
    floor, following = (local_hour_start, next_hour) if bucket == "hour" else (local_day_start, next_local_day)
    buckets = []
    start = floor(place, first)
    while start <= last:
        end = following(place, start)
        buckets.append((start, end))
        start = end
    return buckets


def _key_start(place: ZoneInfo, bucket: str, key: tuple) -> datetime:
    """The UTC start of the bucket whose SQL key is ``key``."""
    if bucket == "hour":
        local = datetime.fromisoformat(key[0] + ":00")
        return (local - timedelta(seconds=key[1])).replace(tzinfo=UTC)
    return local_day_start(place, datetime.fromisoformat(key[0]).replace(tzinfo=place))
