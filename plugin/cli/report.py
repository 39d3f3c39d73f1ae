"""``sla-plugin report``: the reports in the terminal, with the same figures as ``GET /api/reports/...``.

The command is attached to the ``sla-plugin`` group by :mod:`plugin.cli`; it reads ``DATABASE_URL`` (and
``CHATWOOT_URL`` for conversation links) from the environment like every other command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from plugin.adapters.report_queries import DIMENSIONS
from plugin.adapters.store import Store
from plugin.core.reports.csv_export import csv_lines
from plugin.core.reports.figures import BUCKETS, MODES, ReportError, parse_page, percent, row_values, table
from plugin.core.reports.filters import Filters, resolve_names
from plugin.core.reports.targets import CAP, duration_text

# The columns a terminal has room for; --format csv and json carry every figure.
TERMINAL_FIGURES = (
    "applied",
    "conversations_missed",
    "hit_rate_text",
    "target",
    "frt_misses",
    "nrt_misses",
    "nrt_misses_per_message",
    "rt_misses",
)
TERMINAL_COLUMNS = {
    "summary": ("scope", "policy", "mode", *TERMINAL_FIGURES, "budget", "over_budget"),
    "series": ("start", *TERMINAL_FIGURES),
    "targets": ("policy", "mode", "metric", "count", "target", "p50", "p90", "p95", "at 0.5x", "at 1x", "at 2x"),
    "conversations": (
        "account_id",
        "conversation_id",
        "policy_id",
        "status",
        "applied_at",
        "inbox_name",
        "assignee_name",
        "missed_metrics",
        "misses",
    ),
}


@click.command("report")
@click.option(
    "--tz",
    help="IANA time zone of dates, buckets and the grid, e.g. Europe/Berlin. Default: SLA_REPORT_TIMEZONE, else UTC.",
)
@click.option("--since", help="Start of the range (ISO-8601 date or time, in --tz). Default: 30 days ago.")
@click.option("--until", help="End of the range, excluded; a date means the end of that day. Default: now.")
@click.option("--inbox", multiple=True, help="Inbox id or name (repeat for several).")
@click.option("--team", multiple=True, help="Team id or name.")
@click.option("--agent", multiple=True, help="Assignee (agent) id or name.")
@click.option("--policy", multiple=True, help="Policy id or name.")
@click.option("--channel", multiple=True, help="Channel type, e.g. Channel::Email.")
@click.option("--priority", multiple=True, help="Priority: low, medium, high, urgent.")
@click.option("--label", multiple=True, help="Conversation label.")
@click.option(
    "--mode",
    type=click.Choice([*MODES, "all"]),
    default="all",
    show_default=True,
    help="Live policies, shadow policies, or both.",
)
@click.option(
    "--report",
    "kind",
    type=click.Choice(["summary", "series", "grid", "breakdown", "conversations", "targets"]),
    default="summary",
    show_default=True,
    help="Which report.",
)
@click.option(
    "--bucket", type=click.Choice(BUCKETS), default="day", show_default=True, help="Series: hourly or daily (in --tz)."
)
@click.option(
    "--by",
    type=click.Choice(list(DIMENSIONS)),
    default="policy",
    show_default=True,
    help="Breakdown: the dimension to group by.",
)
@click.option("--missed", is_flag=True, help="Conversations: only those with a miss.")
@click.option("--page", default=1, show_default=True, type=int, help="Conversations: page number.")
@click.option("--per-page", default=25, show_default=True, type=int, help="Conversations: page size.")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Aligned text, the API's JSON, or spreadsheet-safe CSV.",
)
def report(
    kind: str, bucket: str, by: str, missed: bool, page: int, per_page: int, output: str, **filters: Any
) -> None:
    """Print SLA reports: hit rate against targets, misses per metric, series, grid, breakdowns."""
    from plugin.adapters.rule_files import check_directory
    from plugin.adapters.settings import Settings
    from plugin.jobs.runtime import Runtime

    params = {name: list(value) if isinstance(value, tuple) else value for name, value in filters.items() if value}
    runtime = Runtime(Settings.from_env())
    settings, store = runtime.settings, runtime.store
    # On standard error, so JSON and CSV output stay clean: which database, and whether it holds anything.
    click.echo(f"Reading {_database_state(store, settings.DATABASE_URL)}", err=True)
    rules, _ = check_directory(settings.SLA_RULES_DIR)  # quietly: the report needs only the plugin's labels
    reports = runtime.reports(rules.owned_label_titles if rules else frozenset())
    try:
        chosen = Filters.from_params(resolve_names(params, reports.names()), default_tz=settings.SLA_REPORT_TIMEZONE)
        if kind == "summary":
            data = reports.summary(chosen)
        elif kind == "series":
            data = reports.series(chosen, bucket)
        elif kind == "grid":
            data = reports.grid(chosen)
        elif kind == "breakdown":
            data = reports.breakdown(chosen, by)
        elif kind == "targets":
            data = reports.targets(chosen)
        else:
            page, per_page, _ = parse_page({"page": str(page), "per_page": str(per_page)})
            data = reports.conversations(chosen, page, per_page, missed)
    except ReportError as error:
        raise click.UsageError(str(error)) from None
    finally:
        store.engine.dispose()
    if output == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    columns, rows = table(kind, data)
    if output == "csv":
        for line in csv_lines(columns, rows):
            sys.stdout.write(line)
        return
    if kind == "summary":
        click.echo(_summary_text(data))
    shown = TERMINAL_COLUMNS.get(kind) or (columns if kind == "grid" else (by, "name", *TERMINAL_FIGURES))
    records = [dict(zip(columns, row, strict=False)) for row in rows]
    if kind == "targets":
        records = [_target_cells(record) for record in records]
    click.echo(_aligned(shown, [row_values(record, shown) for record in records]))


def _target_cells(record: dict[str, Any]) -> dict[str, Any]:
    """A targets row as people read it: durations in hours and minutes, hit rates in per cent."""
    return {
        **record,
        "target": duration_text(record["target_seconds"]),
        # Without a value despite clocks: over the cap (the JSON names them in over_cap).
        **{
            share: f"over {CAP}x" if record[share] is None and record["count"] else duration_text(record[share])
            for share in ("p50", "p90", "p95")
        },
        **{f"at {factor}": percent(record[f"hit_rate_at_{factor}"]) for factor in ("0.5x", "1x", "2x")},
    }


def _database_state(store: Store, url: str) -> str:
    """The database named (password masked) and what it holds; migrates it, so an empty or new one
    reports zeros instead of failing on missing tables."""
    from plugin.adapters.settings import mask_url_password

    new = not store.has_schema()
    store.migrate()
    empty = not store.has_applied_slas()
    named = f"{mask_url_password(url)} (DATABASE_URL)"
    if new:
        return (
            f"{named}: a new database, created just now, so every figure is zero. Is DATABASE_URL the plugin's "
            "database? (`sla-plugin dev` prints the command that reads the demo's.)"
        )
    if empty:
        return f"{named}: no SLA has been applied in it yet, so every figure is zero."
    return named


def _summary_text(data: dict[str, Any]) -> str:
    overall = data["overall"]
    filters = data["filters"]
    lines = [
        f"SLA report {filters['since']} to {filters['until']} (UTC instants; buckets in {filters['tz']})",
        f"  applied {overall['applied']}, missed {overall['conversations_missed']}, "
        f"hit rate {overall['hit_rate_text']}",
        f"  misses: first response {overall['frt_misses']}, next response {overall['nrt_misses']} cycles / "
        f"{overall['nrt_misses_per_message']} customer messages, resolution {overall['rt_misses']}",
    ]
    lines += [
        f"  {row['name']} ({row['policy']}{', shadow' if row['mode'] == 'shadow' else ''}): {row['target_text']}"
        for row in data["policies"]
        if row["target_text"]
    ]
    return "\n".join(lines) + "\n"


def _aligned(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, every column as wide as its widest cell."""
    text_rows = [[str(column) for column in columns]] + [
        ["" if cell is None else str(cell) for cell in row] for row in rows
    ]
    widths = [max(len(row[index]) for row in text_rows) for index in range(len(columns))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in text_rows)
    return "\n".join(line.rstrip() for line in lines)


@click.command("rebuild-rollups")
def rebuild_rollups() -> None:
    """Rebuild the reports' rollups (per-hour totals) from the applied SLAs, e.g. after rows were changed
    in the database by hand or restored from a backup. Workers may keep running."""
    from plugin.adapters.settings import Settings
    from plugin.jobs.runtime import Runtime

    runtime = Runtime(Settings.from_env())
    click.echo(f"Reading {_database_state(runtime.store, runtime.settings.DATABASE_URL)}", err=True)
    runtime.store.migrate()
    click.echo(f"rebuilt the report rollups: {runtime.store.rebuild_rollups():,} rows")
