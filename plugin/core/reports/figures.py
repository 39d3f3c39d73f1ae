"""Report figures: the constants, parameters and arithmetic behind every report, and the same reports as
table rows (CSV, the terminal). Pure: the SQL that produces the totals is in plugin/adapters/report_queries.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC
from decimal import Decimal
from typing import Any

from plugin.core.policy import FIRST_RESPONSE, NEXT_RESPONSE, RESOLUTION
from plugin.core.reports.csv_export import neutralise

UTC = UTC
DEFAULT_DAYS = 30
DEFAULT_PER_PAGE = 25  # Chatwoot's page size for applied SLAs
MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000  # far past any real drill-down; a larger page would overflow the SQL OFFSET
MAX_ID = 2**63 - 1  # ids are stored in BIGINT columns
METRIC_PREFIXES = {FIRST_RESPONSE: "frt", NEXT_RESPONSE: "nrt", RESOLUTION: "rt"}
PREFIX_METRICS = {prefix: metric for metric, prefix in METRIC_PREFIXES.items()}
MODES = ("live", "shadow")
BUCKETS = ("hour", "day")
MAX_BUCKETS = 10_000  # a series longer than this (over a year of hours) is refused, not built
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ReportError(ValueError):
    """A report request that cannot be answered (a bad filter value); the message says what was expected."""


# --- additive totals and the figures derived from them -----------------------------------------------------

TOTAL_NAMES = (
    "applied",
    "conversations_missed",
    "target_sum",
    "target_count",
    *(
        f"{prefix}_{name}"
        for prefix in METRIC_PREFIXES.values()
        for name in ("tracked", "hit", "missed", "open", "misses")
    ),
    "nrt_misses_per_message",
)
"""The additive totals every report selects (SQL sums), so groups merge by addition."""

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


def target_figures(
    target: float | None, applied_count: int, missed_count: int, allowed: int | None = None
) -> dict[str, Any]:
    """A policy's target against the actual: the misses its budget allows, the misses over that budget and
    the sentence for people ("answered 70 of 100 on time against a target of 80 %: 10 missed against
    target"). ``allowed`` overrides the budget when a policy's versions had different targets."""
    if allowed is not None:
        budget = allowed
    elif target is not None:
        budget = misses_allowed(target, applied_count)
    else:
        return {"budget": None, "over_budget": None, "target_text": None}
    over = max(0, missed_count - budget)
    on_time = applied_count - missed_count
    against = f"a target of {percent(target)}" if target is not None else "its targets"
    outcome = (
        f"{over} missed against target" if over else f"within target ({budget - missed_count} more misses allowed)"
    )
    return {
        "budget": budget,
        "over_budget": over,
        "target_text": f"answered {on_time} of {applied_count} on time against {against}: {outcome}",
    }


def conversation_link(chatwoot_url: str | None, account_id: int, conversation_id: int) -> str | None:
    """The conversation's page in the helpdesk (None without a configured helpdesk URL)."""
    if not chatwoot_url:
        return None
    return f"{chatwoot_url.rstrip('/')}/app/accounts/{account_id}/conversations/{conversation_id}"


# --- tables: the same reports as rows, for CSV and the terminal ------------------------------------------

FIGURE_COLUMNS = (
    "applied",
    "conversations_on_time",
    "conversations_missed",
    "hit_rate_text",
    "target",
    "misses",
    *(
        f"{prefix}_{name}"
        for prefix in METRIC_PREFIXES.values()
        for name in ("tracked", "hit", "missed", "open", "misses")
    ),
    "nrt_misses_per_message",
)
POLICY_COLUMNS = (
    "policy",
    "name",
    "mode",
    "applied",
    "conversations_on_time",
    "conversations_missed",
    "hit_rate_text",
    "target",
    "budget",
    "over_budget",
    "target_text",
)
CONVERSATION_COLUMNS = (
    "account_id",
    "conversation_id",
    "policy_id",
    "policy_name",
    "mode",
    "status",
    "applied_at",
    "inbox_id",
    "inbox_name",
    "team_id",
    "team_name",
    "assignee_id",
    "assignee_name",
    "channel",
    "priority",
    "labels",
    "frt_status",
    "nrt_status",
    "rt_status",
    "missed_metrics",
    "misses",
    "link",
)


def table(kind: str, report: Mapping[str, Any]) -> tuple[tuple[str, ...], list[list[Any]]]:
    """A report as a header and rows of plain values (lists joined with ``;``), for CSV and the terminal.

    ``kind`` is the report's name: ``summary``, ``series``, ``grid``, ``breakdown``, ``conversations`` or
    ``targets``.
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
        grid = zip(report["weekdays"], report["cells"], strict=True)
        return columns, [[day, *cells, sum(cells)] for day, cells in grid]
    elif kind == "breakdown":
        columns = (report["by"], "name", *FIGURE_COLUMNS) + (POLICY_COLUMNS[8:] if report["by"] == "policy" else ())
        rows = [{report["by"]: row["key"], **row} for row in report["rows"]]
    elif kind == "conversations":
        columns = CONVERSATION_COLUMNS
        rows = report["items"]
    elif kind == "targets":
        factors = [f"hit_rate_at_{factor:g}x" for factor in report["factors"]]
        percentiles = [f"p{share}" for share in report["percentiles"]]
        columns = ("policy", "name", "mode", "metric", "count", "target_seconds", *percentiles, *factors)
        rows = [
            {
                **policy,
                "metric": metric,
                **fit,
                **{name: rate["hit_rate"] for name, rate in zip(factors, fit["hit_rates"], strict=True)},
            }
            for policy in report["policies"]
            for metric in (FIRST_RESPONSE, RESOLUTION)
            for fit in [policy[metric]]
        ]
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
        # Each part on its own: a spreadsheet that splits cells at ";" would read "=..." after it as a formula.
        return ";".join(str(neutralise(part)) for part in value)
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
    if page > MAX_PAGE:
        raise ReportError(f"page must be at most {MAX_PAGE:,}, got {page}")
    return page, per_page, one("missed", "false").lower() in ("1", "true", "yes", "on")
