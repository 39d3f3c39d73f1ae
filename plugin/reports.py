"""SLA reports over the SQL store: the figures behind the JSON API, the CSV exports, the CLI and the page.

One query builder (:class:`Reports`) serves every consumer, on SQLite and PostgreSQL alike. The cohort of a
report is the set of applied SLAs (``sla_applied`` rows) whose ``applied_at`` lies in ``[since, until)`` and
that pass the filters; every figure is about that cohort:

- ``applied``: applied SLAs; ``conversations_missed``: those with at least one miss now (a corrected miss is
  not a miss); ``hit_rate`` = (applied - conversations_missed) / applied, Chatwoot's formula, with
  ``hit_rate_text`` in Chatwoot's style (``"100%"`` when nothing was missed, else rounded to 2 decimals).
  Conversations still open without a miss count as on time, as in Chatwoot.
- per metric (prefix ``frt``, ``nrt``, ``rt``): ``tracked`` (the policy sets the metric), ``hit`` (final and
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
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from plugin.engine.clocks import AT_RISK, HIT, MISSED, PAUSED, RUNNING
from plugin.events import format_time, parse_time, utc
from plugin.policy import FIRST_RESPONSE, NEXT_RESPONSE, RESOLUTION
from plugin.store import Store, applied, misses

UTC = timezone.utc
DEFAULT_DAYS = 30
DEFAULT_PER_PAGE = 25  # Chatwoot's page size for applied SLAs
MAX_PER_PAGE = 500
MAX_ID = 2**63 - 1  # ids are stored in BIGINT columns
METRIC_PREFIXES = {FIRST_RESPONSE: "frt", NEXT_RESPONSE: "nrt", RESOLUTION: "rt"}
PREFIX_METRICS = {prefix: metric for metric, prefix in METRIC_PREFIXES.items()}
MODES = ("live", "shadow")
BUCKETS = ("hour", "day")
MAX_BUCKETS = 10_000  # a series longer than this (over a year of hours) is refused, not built
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Breakdown dimensions: URL name -> sla_applied column. "label" is a list column, expanded in Python.
DIMENSIONS: dict[str, sa.Column | None] = {
    "inbox": applied.c.inbox_id, "team": applied.c.team_id, "agent": applied.c.assignee_id,
    "policy": applied.c.policy_id, "channel": applied.c.channel, "priority": applied.c.priority, "label": None,
}
_INTEGER_FILTERS = ("account", "inbox", "team", "agent")
_TEXT_FILTERS = ("policy", "channel", "priority", "label")
_FILTER_COLUMNS = {"account": applied.c.account_id, "inbox": applied.c.inbox_id, "team": applied.c.team_id,
                   "agent": applied.c.assignee_id, "policy": applied.c.policy_id, "channel": applied.c.channel,
                   "priority": applied.c.priority}


class ReportError(ValueError):
    """A report request that cannot be answered (a bad filter value); the message says what was expected."""


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


# --- filters ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    """Which applied SLAs a report covers. Several values of one filter mean any of them."""

    since: datetime | None = None
    until: datetime | None = None  # exclusive
    account: tuple[int, ...] = ()
    inbox: tuple[int, ...] = ()
    team: tuple[int, ...] = ()
    agent: tuple[int, ...] = ()
    policy: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    mode: str | None = None  # "live", "shadow" or None for both

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str] | str], now: datetime | None = None) -> "Filters":
        """Filters from request-style parameters (name -> value or list of values, or comma-separated).

        ``since`` and ``until`` take ISO-8601 times or dates; a date as ``until`` means the end of that
        day. Without either, the last :data:`DEFAULT_DAYS` days up to ``now``. Empty values are ignored.
        Raises :class:`ReportError` on a value that cannot be read.
        """
        def values(name: str) -> list[str]:
            raw = params.get(name, ())
            raw = [raw] if isinstance(raw, str) else list(raw)
            # "1,2" is the same as two values (the page's form sends one text field per filter).
            parts = [part for value in raw if value is not None for part in value.split(",")]
            return [part.strip() for part in parts if part.strip()]

        def integers(name: str) -> tuple[int, ...]:
            try:
                found = tuple(int(value) for value in values(name))
            except ValueError:
                raise ReportError(f"{name} must be a whole number (an id), got {values(name)!r}") from None
            if any(abs(value) > MAX_ID for value in found):  # ids are BIGINT: a larger one matches nothing
                raise ReportError(f"{name} is out of range for an id, got {values(name)!r}")
            return found

        since = _parse_bound(values("since"), "since", end_of_day=False)
        until = _parse_bound(values("until"), "until", end_of_day=True)
        if since is None and until is None:
            until = utc(now or datetime.now(UTC))
            since = until - timedelta(days=DEFAULT_DAYS)
        if since is not None and until is not None and since >= until:
            raise ReportError(f"since ({format_time(since)}) must be before until ({format_time(until)})")
        modes = values("mode")
        if len(modes) > 1 or (modes and modes[0] not in (*MODES, "all")):
            raise ReportError(f"mode must be one of live, shadow, all; got {modes!r}")
        mode = modes[0] if modes and modes[0] != "all" else None
        return cls(since=since, until=until, mode=mode,
                   **{name: integers(name) for name in _INTEGER_FILTERS},
                   **{name: tuple(values(name)) for name in _TEXT_FILTERS if name != "label"},
                   label=tuple(value.lower() for value in values("label")))

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        """The WHERE conditions on ``sla_applied`` (times bound in UTC: SQLite keeps no offset)."""
        found: list[sa.ColumnElement[bool]] = []
        if self.since is not None:
            found.append(applied.c.applied_at >= self.since.astimezone(UTC))
        if self.until is not None:
            found.append(applied.c.applied_at < self.until.astimezone(UTC))
        for name, column in _FILTER_COLUMNS.items():
            chosen = getattr(self, name)
            if chosen:
                found.append(column == chosen[0] if len(chosen) == 1 else column.in_(chosen))
        if self.label:
            # labels is ",a,b,": the commas make "vip" not match "vip-gold".
            found.append(sa.or_(*(applied.c.labels.contains(f",{label},", autoescape=True)
                                  for label in self.label)))
        if self.mode is not None:
            found.append(applied.c.mode == self.mode)
        return found

    def to_params(self) -> dict[str, list[str]]:
        """The filters as request parameters (for links and for echoing them in answers)."""
        params: dict[str, list[str]] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, datetime):
                params[item.name] = [format_time(value)]
            elif isinstance(value, tuple) and value:
                params[item.name] = [str(part) for part in value]
            elif isinstance(value, str):
                params[item.name] = [value]
        return params

    def describe(self) -> dict[str, Any]:
        """The filters as JSON: times in ISO-8601, lists for the multi-valued ones."""
        return {item.name: (format_time(value) if isinstance(value, datetime)
                            else list(value) if isinstance(value, tuple) else value)
                for item in fields(self) for value in [getattr(self, item.name)]}


def _parse_bound(values: list[str], name: str, end_of_day: bool) -> datetime | None:
    if not values:
        return None
    if len(values) > 1:
        raise ReportError(f"{name} takes one value, got {values!r}")
    text = values[0]
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1) if end_of_day else day, time(), UTC)
        return parse_time(text)
    except ValueError:
        raise ReportError(f"{name} must be an ISO-8601 date or time such as 2026-03-02 or "
                          f"2026-03-02T09:00:00Z, got {text!r}") from None


# --- additive totals and the figures derived from them -----------------------------------------------------

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
            sa.func.count(status).label(f"{prefix}_tracked"),
            _sum(status == HIT).label(f"{prefix}_hit"),
            _sum(status == MISSED).label(f"{prefix}_missed"),
            _sum(status.in_((RUNNING, AT_RISK, PAUSED))).label(f"{prefix}_open"),
            sa.func.sum(applied.c[f"{prefix}_misses"]).label(f"{prefix}_misses"),
        ]
    columns.append(sa.func.sum(applied.c.nrt_misses_per_message).label("nrt_misses_per_message"))
    return columns


TOTAL_NAMES = tuple(column.name for column in _total_columns())


Totals = dict[str, float]


def _totals(row: Any) -> Totals:
    mapping = row._mapping
    return {name: mapping[name] or 0 for name in TOTAL_NAMES}


def _zero() -> Totals:
    return dict.fromkeys(TOTAL_NAMES, 0)


def _add(left: Totals, right: Totals) -> Totals:
    return {name: left[name] + right[name] for name in TOTAL_NAMES}


def hit_rate_text(applied_count: int, missed_count: int) -> str:
    """Chatwoot's hit rate string: ``"100%"`` without misses, else the percentage rounded to 2 decimals
    (``"66.67%"``); ``"n/a"`` when nothing was applied (Chatwoot would say 100%)."""
    if applied_count == 0:
        return "n/a"
    if missed_count == 0:
        return "100%"
    value = round((applied_count - missed_count) / applied_count * 100, 2)
    return f"{value:g}%"


def _rate(total: int, missed: int) -> float | None:
    return None if total == 0 else (total - missed) / total


def figures(totals: Mapping[str, int | float]) -> dict[str, Any]:
    """The figures of one group of applied SLAs (see the module's docstring for each key)."""
    count = int(totals["applied"])
    missed = int(totals["conversations_missed"])
    result: dict[str, Any] = {
        "applied": count,
        "conversations_on_time": count - missed,
        "conversations_missed": missed,
        "hit_rate": _rate(count, missed),
        "hit_rate_text": hit_rate_text(count, missed),
        # The applied-weighted mean of the policies' targets: the line a mixed group is judged against.
        "target": (totals["target_sum"] / totals["target_count"]) if totals["target_count"] else None,
        "misses": sum(int(totals[f"{prefix}_misses"]) for prefix in METRIC_PREFIXES.values()),
    }
    for prefix in METRIC_PREFIXES.values():
        tracked = int(totals[f"{prefix}_tracked"])
        metric_missed = int(totals[f"{prefix}_missed"])
        for name in ("tracked", "hit", "missed", "open", "misses"):
            result[f"{prefix}_{name}"] = int(totals[f"{prefix}_{name}"])
        result[f"{prefix}_hit_rate"] = _rate(tracked, metric_missed)
    result["nrt_misses_per_message"] = int(totals["nrt_misses_per_message"])
    return result


def percent(value: float | None) -> str:
    """``0.8`` -> ``"80 %"``; None -> ``"n/a"``."""
    return "n/a" if value is None else f"{round(value * 100, 2):g} %"


def misses_allowed(target: float, applied_count: int) -> int:
    """How many of ``applied_count`` SLAs a target success rate lets miss: ``applied - ceil(target x
    applied)``, computed in decimal so that 80 % of 100 is 80, not 80.00000000000001."""
    required = math.ceil(Decimal(str(target)) * applied_count)
    return applied_count - int(required)


def target_figures(target: float | None, applied_count: int, missed_count: int,
                   allowed: int | None = None) -> dict[str, Any]:
    """A policy's target against the actual: the misses its budget allows, the misses over that budget and
    the sentence for people ("answered 70 of 100 on time against a target of 80 %: 10 missed against
    target"). ``allowed`` overrides the budget when a policy's versions had different targets."""
    if target is None and allowed is None:
        return {"budget": None, "over_budget": None, "target_text": None}
    budget = misses_allowed(target, applied_count) if allowed is None else allowed
    over = max(0, missed_count - budget)
    on_time = applied_count - missed_count
    against = f"a target of {percent(target)}" if target is not None else "its targets"
    outcome = f"{over} missed against target" if over else \
        f"within target ({budget - missed_count} more misses allowed)"
    return {"budget": budget, "over_budget": over,
            "target_text": f"answered {on_time} of {applied_count} on time against {against}: {outcome}"}


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
        query = sa.select(*keys, *_total_columns()).where(*filters.conditions())
        if keys:
            query = query.group_by(*keys)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [(tuple(row[:len(keys)]), _totals(row)) for row in rows]

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
        query = sa.select(*keys, names, *_total_columns()).where(*filters.conditions()).group_by(*keys)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            totals = _totals(row)
            entry = merged.setdefault((row.policy_id, row.mode), {
                "name": row.policy_name, "targets": set(), "allowed": None, "totals": _zero()})
            entry["totals"] = _add(entry["totals"], totals)
            if row.target is not None:
                entry["targets"].add(row.target)
                entry["allowed"] = (entry["allowed"] or 0) + misses_allowed(row.target, totals["applied"])
        result = []
        for (policy_id, mode), entry in sorted(merged.items()):
            data = figures(entry["totals"])
            target = next(iter(entry["targets"])) if len(entry["targets"]) == 1 else None
            result.append({
                "policy": policy_id, "name": entry["name"], "mode": mode,
                **data, "target": target, "targets": sorted(entry["targets"]),
                **target_figures(target, data["applied"], data["conversations_missed"], entry["allowed"]),
                "_totals": entry["totals"]})
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
        query = (sa.select(weekday, hour, sa.func.count().label("misses"))
                 .select_from(applied.join(misses, sa.and_(misses.c.account_id == applied.c.account_id,
                                                           misses.c.conversation_id == applied.c.conversation_id)))
                 .where(*filters.conditions(), misses.c.corrected_at.is_(None))
                 .group_by(weekday, hour))
        cells = [[0] * 24 for _ in WEEKDAYS]
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                cells[(row.weekday + 6) % 7][row.hour] = row.misses  # SQL counts from Sunday = 0
        return {"filters": filters.describe(), "timezone": "UTC", "weekdays": list(WEEKDAYS),
                "cells": cells, "by_hour": [sum(day[hour] for day in cells) for hour in range(24)],
                "by_weekday": [sum(day) for day in cells], "total": sum(map(sum, cells))}

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
            grouped = [(key[0], totals) for key, totals in self._grouped(filters, [DIMENSIONS[by]])]
        rows = [{"key": key, **figures(totals)}
                for key, totals in sorted(grouped, key=lambda item: (item[0] is None, str(item[0])))]
        return {"filters": filters.describe(), "by": by, "rows": rows}

    def conversations(self, filters: Filters, page: int = 1, per_page: int = DEFAULT_PER_PAGE,
                      only_missed: bool = False) -> dict[str, Any]:
        """A page of the cohort's conversations, newest SLA first, each with the due time of every miss."""
        if page < 1:
            raise ReportError(f"page must be 1 or more, got {page}")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ReportError(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
        conditions = self._drilldown_conditions(filters, only_missed)
        with self.engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(applied).where(*conditions)).scalar()
            items = self._drilldown_page(connection, conditions, (page - 1) * per_page, per_page)
        return {"filters": filters.describe(), "only_missed": only_missed, "total": total, "page": page,
                "per_page": per_page, "pages": max(1, math.ceil(total / per_page)), "items": items}

    def iter_conversations(self, filters: Filters, only_missed: bool = False,
                           chunk: int = 1000) -> Iterator[dict[str, Any]]:
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
        return filters.conditions() + ([applied.c.any_miss.is_(True)] if only_missed else [])

    def _drilldown_page(self, connection: Connection, conditions: list, offset: int,
                        limit: int) -> list[dict[str, Any]]:
        columns = [column for column in applied.c if column.name != "policy_snapshot"]
        rows = connection.execute(
            sa.select(*columns).where(*conditions)
            .order_by(applied.c.applied_at.desc(), applied.c.account_id, applied.c.conversation_id)
            .offset(offset).limit(limit)).all()
        if not rows:
            return []
        keys = {(row.account_id, row.conversation_id) for row in rows}
        found: dict[tuple[int, int], list[dict[str, Any]]] = {key: [] for key in keys}
        miss_rows = connection.execute(
            sa.select(misses.c.account_id, misses.c.conversation_id, misses.c.miss, misses.c.metric,
                      misses.c.due_at)
            .where(sa.tuple_(misses.c.account_id, misses.c.conversation_id).in_(sorted(keys)),
                   misses.c.corrected_at.is_(None))
            .order_by(misses.c.due_at, misses.c.miss))
        for miss in miss_rows:
            found[(miss.account_id, miss.conversation_id)].append(
                {"miss": miss.miss, "metric": miss.metric, "due_at": format_time(miss.due_at)})
        return [self._conversation_item(row._mapping, found[(row.account_id, row.conversation_id)])
                for row in rows]

    def _conversation_item(self, row: Mapping[str, Any], miss_list: list[dict[str, Any]]) -> dict[str, Any]:
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
            row = connection.execute(sa.select(applied).where(
                applied.c.account_id == account_id, applied.c.conversation_id == conversation_id)).first()
            if row is None:
                return None
            miss_rows = connection.execute(
                sa.select(misses).where(misses.c.account_id == account_id,
                                        misses.c.conversation_id == conversation_id)
                .order_by(misses.c.due_at, misses.c.miss)).all()
        data = self._conversation_item({k: v for k, v in row._mapping.items() if k != "policy_snapshot"}, [
            {"miss": miss.miss, "metric": miss.metric, "due_at": format_time(miss.due_at),
             "policy": miss.policy_id, "policy_version": miss.policy_version,
             "recorded_at": format_time(miss.recorded_at), "corrected_at": format_time(miss.corrected_at)}
            for miss in miss_rows])
        data["policy_snapshot"] = json.loads(row.policy_snapshot)
        data["log"] = self._store.log_entries((account_id, conversation_id))
        return data


def conversation_link(chatwoot_url: str | None, account_id: int, conversation_id: int) -> str | None:
    """The conversation's page in the helpdesk (None without a configured helpdesk URL)."""
    if not chatwoot_url:
        return None
    return f"{chatwoot_url.rstrip('/')}/app/accounts/{account_id}/conversations/{conversation_id}"


def _bucket_starts(bucket: str, filters: Filters, found: Mapping[str, Any]) -> list[str]:
    """Every bucket start from the range's first to its last bucket, as the SQL renders them."""
    step = _BUCKET_STEPS[bucket]
    existing = sorted(found)
    first = _floor(filters.since, bucket) if filters.since else (parse_time(existing[0]) if existing else None)
    last = filters.until - timedelta(seconds=1) if filters.until else (
        parse_time(existing[-1]) if existing else None)
    if first is None or last is None:
        return existing
    if (last - first) / step >= MAX_BUCKETS:
        raise ReportError(f"{bucket}ly series are limited to {MAX_BUCKETS:,} points: choose a shorter range"
                          + (" or bucket=day" if bucket == "hour" else ""))
    starts = []
    moment = first
    while moment <= last:
        starts.append(format_time(moment))
        moment += step
    return starts


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


# --- tables: the same reports as rows, for CSV and the terminal ------------------------------------------

FIGURE_COLUMNS = ("applied", "conversations_on_time", "conversations_missed", "hit_rate_text", "target",
                  "misses", *(f"{prefix}_{name}" for prefix in METRIC_PREFIXES.values()
                              for name in ("tracked", "hit", "missed", "open", "misses")),
                  "nrt_misses_per_message")
POLICY_COLUMNS = ("policy", "name", "mode", "applied", "conversations_on_time", "conversations_missed",
                  "hit_rate_text", "target", "budget", "over_budget", "target_text")
CONVERSATION_COLUMNS = ("account_id", "conversation_id", "policy_id", "policy_name", "mode", "status",
                        "applied_at", "inbox_id", "team_id", "assignee_id", "channel", "priority", "labels",
                        "frt_status", "nrt_status", "rt_status", "missed_metrics", "misses", "link")


def table(kind: str, report: Mapping[str, Any]) -> tuple[tuple[str, ...], list[list[Any]]]:
    """A report as a header and rows of plain values (lists joined with ``;``), for CSV and the terminal.

    ``kind`` is the report's name: ``summary``, ``series``, ``grid``, ``breakdown`` or ``conversations``.
    """
    if kind == "summary":
        columns = ("scope", *POLICY_COLUMNS[:3], *FIGURE_COLUMNS, *POLICY_COLUMNS[8:])
        overall = {"scope": "all", **report["overall"]}
        rows = [overall] + [{"scope": "policy", **row} for row in report["policies"]]
    elif kind == "series":
        columns = ("start", *FIGURE_COLUMNS)
        rows = report["points"]
    elif kind == "grid":
        columns = ("weekday", *(f"{hour:02d}" for hour in range(24)), "total")
        return columns, [[day, *cells, sum(cells)] for day, cells in zip(report["weekdays"], report["cells"])]
    elif kind == "breakdown":
        columns = (report["by"], *FIGURE_COLUMNS) + (POLICY_COLUMNS[8:] if report["by"] == "policy" else ())
        rows = [{report["by"]: row["key"], **row} for row in report["rows"]]
    elif kind == "conversations":
        columns = CONVERSATION_COLUMNS
        rows = report["items"]
    else:
        raise ReportError(f"no table for a report called {kind!r}")
    return columns, [row_values(row, columns) for row in rows]


def row_values(row: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
    """One report row (a dict) as the plain values of ``columns``."""
    return [_cell(row.get(column), column) for column in columns]


def _cell(value: Any, column: str) -> Any:
    if column == "misses" and isinstance(value, list):
        return "; ".join(f"{miss['metric']} {miss['due_at']}" for miss in value)
    if isinstance(value, (list, tuple)):
        return ";".join(str(part) for part in value)
    if column == "target" and isinstance(value, float):
        return round(value, 4)
    return value


def parse_page(params: Mapping[str, Sequence[str] | str]) -> tuple[int, int, bool]:
    """``page``, ``per_page`` and ``missed`` (only conversations with a miss) from request parameters."""
    def one(name: str, default: str) -> str:
        raw = params.get(name) or [default]
        return (raw if isinstance(raw, str) else raw[0]).strip() or default

    try:
        page, per_page = int(one("page", "1")), int(one("per_page", str(DEFAULT_PER_PAGE)))
    except ValueError:
        raise ReportError("page and per_page must be whole numbers") from None
    return page, per_page, one("missed", "false").lower() in ("1", "true", "yes", "on")
