"""Report queries on 1,000,000 applied SLAs, SQLite and PostgreSQL, beside a full scan in the same run.

    .venv/bin/python bench/reports_bench.py [--rows 1000000] [--repeat 5] [--postgres URL]

Builds the same synthetic data in both databases: ``--rows`` applied SLAs spread over 90 days (20 inboxes,
8 teams, 50 agents, 5 policies, a shadow one among them, labels, per-metric outcomes), with their misses
in sla_misses. SQLite gets a file in /tmp; PostgreSQL a fresh database (created on the server of
``--postgres``, default ``$SLA_BENCH_POSTGRES_URL`` or 127.0.0.1:5432, and dropped afterwards). The schema is
the store's own (``Store.migrate``, report indexes included); rows are loaded with executemany (SQLite) and
COPY (PostgreSQL), then PostgreSQL is ANALYZEd as its autovacuum would. SQLite runs without ANALYZE, as a
default install does. The rollups are then computed as ``sla-plugin rebuild-rollups`` does (the pairs of every
day included: the data lies in closed days, as the sweeper's job would have left them).

Timed (median of ``--repeat`` runs after one warm-up), each through :class:`plugin.adapters.report_queries.Reports`:
the daily and hourly series for the last 30 days with one filter (an inbox), the summary and the
hour x weekday grid with the same filter, the daily series for 30 days without a filter, and, as the
baseline, the daily series over all 90 days (every row read). Target: under 500 ms for the filtered
daily and hourly reports on both databases.

With ``--page``, times instead the whole set of calls the reports page makes
(:meth:`plugin.adapters.report_queries.Reports.page_calls`: summary, daily and hourly series, grid, six
breakdowns, the drill-down page, targets), each call's median, for the last 30 days without a filter and
with one (an inbox, a team, an agent), beside the same full-scan baseline, the targets for 30 days ending at
noon (whole UTC days come from their rollup, the ends from the base table) and the targets for 30 days
filtered by a channel, a priority, a label. Targets: the unfiltered page under 1 s in total, each filtered
call under 100 ms.

With ``--sizes``, prints the SQLite store's bytes per table and index of the reports (base tables, rollups),
also per applied SLA.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import psycopg  # noqa: E402
from long_conversation_bench import btree_bytes  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from plugin.adapters.report_queries import Reports, filter_conditions  # noqa: E402
from plugin.adapters.store import Store, applied, misses  # noqa: E402
from plugin.core.reports.filters import Filters  # noqa: E402

UTC = UTC
END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 90
CHUNK = 50_000  # rows per SQLite transaction
TARGET_MS = 500
PAGE_TARGET_MS = 1000  # every call of the unfiltered page, together
FILTERED_CALL_TARGET_MS = 100
POLICIES = [
    ("standard", "Standard", 0.9, "live"),
    ("urgent", "Urgent", 0.8, "live"),
    ("vip", "VIP", 0.95, "live"),
    ("email", "Email", 0.85, "live"),
    ("trial", "Trial", 0.5, "shadow"),
]
CHANNELS = ["Channel::Email", "Channel::WebWidget", "Channel::Api", "Channel::Whatsapp", "Channel::Telegram"]
PRIORITIES = [None, "low", "medium", "high", "urgent"]
LABELS = [None, ",billing,", ",vip,", ",billing,vip,", ",bug,", ",refund,billing,"]
APPLIED_COLUMNS = [column.name for column in applied.c]
MISS_COLUMNS = [column.name for column in misses.c]


_DAY_TEXT: dict[int, str] = {}


def stamp(epoch: int) -> str:
    """A UTC time as SQLAlchemy's SQLite dialect stores it; PostgreSQL reads it as UTC in a UTC session.
    (Formatted by hand with the date cached: strftime for ten million stamps takes a minute.)"""
    day, rest = divmod(epoch, 86400)
    text = _DAY_TEXT.get(day)
    if text is None:
        text = _DAY_TEXT[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
    return f"{text} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}.000000"


def synthetic(rows: int) -> tuple[list[tuple], list[tuple]]:
    """(sla_applied rows, sla_misses rows) as tuples in table column order, times as UTC text and booleans
    as 0/1 (what both databases take); the same data on every call (seeded)."""
    rng = random.Random(20261101)
    end = int(END.timestamp())
    start = end - DAYS * 86400
    applied_rows, miss_rows = [], []
    teams, agents = [None, *range(1, 9)], [None, *range(1, 51)]
    for number in range(1, rows + 1):
        moment = rng.randrange(start, end)
        policy_id, name, target, mode = POLICIES[rng.randrange(len(POLICIES))]
        frt_missed, rt_missed = rng.random() < 0.12, rng.random() < 0.08
        nrt_misses = 2 if rng.random() < 0.03 else 1 if rng.random() < 0.1 else 0
        resolved = rng.random() < 0.9
        frt_due, nrt_due, rt_due = moment + 3600, moment + 3 * 3600, moment + 86400
        any_miss = frt_missed or rt_missed or nrt_misses > 0
        row = {
            "account_id": 1,
            "conversation_id": number,
            "policy_id": policy_id,
            "policy_name": name,
            "policy_version": "0" * 64,
            "rule": "bench",
            "mode": mode,
            "target": target,
            "applied_at": stamp(moment),
            "conversation_created_at": stamp(moment),
            "status": "missed" if any_miss else "hit" if resolved else "on_track",
            "resolved": int(resolved),
            "inbox_id": rng.randrange(1, 21),
            "team_id": rng.choice(teams),
            "assignee_id": rng.choice(agents),
            "channel": rng.choice(CHANNELS),
            "priority": rng.choice(PRIORITIES),
            "labels": rng.choice(LABELS),
            "frt_status": "missed" if frt_missed else "hit",
            "frt_due_at": stamp(frt_due),
            "frt_stopped_at": stamp(moment + rng.randrange(60, 7200)),
            "frt_missed_at": stamp(frt_due) if frt_missed else None,
            "frt_misses": int(frt_missed),
            "nrt_status": "missed" if nrt_misses else "hit",
            "nrt_due_at": None,
            "nrt_stopped_at": None,
            "nrt_missed_at": stamp(nrt_due) if nrt_misses else None,
            "nrt_misses": nrt_misses,
            "rt_status": "missed" if rt_missed else "hit" if resolved else "running",
            "rt_due_at": stamp(rt_due),
            "rt_stopped_at": stamp(moment + rng.randrange(3600, 48 * 3600)) if resolved else None,
            "rt_missed_at": stamp(rt_due) if rt_missed else None,
            "rt_misses": int(rt_missed),
            "nrt_misses_per_message": nrt_misses + (rng.randrange(3) if nrt_misses else 0),
            "frt_working_seconds": rng.randrange(60, 7200),
            "frt_target_seconds": 3600,
            "rt_working_seconds": rng.randrange(3600, 48 * 3600) if resolved else None,
            "rt_target_seconds": 86400 if resolved else None,
            "any_miss": int(any_miss),
            "evaluated_at": stamp(moment),
        }
        applied_rows.append(tuple(row[column] for column in APPLIED_COLUMNS))
        for metric, due, count in (
            ("first_response", frt_due, int(frt_missed)),
            ("next_response", nrt_due, nrt_misses),
            ("resolution", rt_due, int(rt_missed)),
        ):
            for index in range(count):
                miss = {
                    "account_id": 1,
                    "conversation_id": number,
                    "miss": f"{metric}#{index}",
                    "metric": metric,
                    "due_at": stamp(due + 3600 * index),
                    "policy_id": policy_id,
                    "policy_version": "0" * 64,
                    "recorded_at": stamp(due),
                    "corrected_at": None,
                }
                miss_rows.append(tuple(miss[column] for column in MISS_COLUMNS))
    return applied_rows, miss_rows


def load_sqlite(store: Store, data: tuple[list[tuple], list[tuple]]) -> None:
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        for table, columns, rows in (("sla_applied", APPLIED_COLUMNS, data[0]), ("sla_misses", MISS_COLUMNS, data[1])):
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            for first in range(0, len(rows), CHUNK):
                cursor.execute("BEGIN")
                cursor.executemany(insert, rows[first : first + CHUNK])
                cursor.execute("COMMIT")
    finally:
        raw.close()


def load_postgres(url: str, data: tuple[list[tuple], list[tuple]]) -> None:
    with psycopg.connect(url) as connection:
        connection.execute("SET TIME ZONE 'UTC'")  # the times are UTC text without an offset
        with connection.cursor() as cursor:
            for table, columns, rows in (
                ("sla_applied", APPLIED_COLUMNS, data[0]),
                ("sla_misses", MISS_COLUMNS, data[1]),
            ):
                with cursor.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN").format(
                        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
                    )
                ) as copy:
                    for row in rows:
                        copy.write_row(row)
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE sla_applied")
        connection.execute("VACUUM ANALYZE sla_misses")


def full_scan() -> Filters:
    """Every row, read from sla_applied: in a half-hour zone the rollups (whole UTC hours) cannot answer."""
    return Filters.from_params(
        {"since": (END - timedelta(days=DAYS)).isoformat(), "until": END.isoformat(), "tz": "Asia/Kolkata"}
    )


def timed(function: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls after one warm-up."""
    function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(store: Store, repeat: int) -> dict[str, float]:
    reports = Reports(store.engine)
    month = {"since": (END - timedelta(days=30)).isoformat(), "until": END.isoformat()}
    inbox = Filters.from_params({**month, "inbox": "7"})
    unfiltered = Filters.from_params(month)
    everything = full_scan()
    with store.engine.connect() as connection:
        in_range = connection.execute(
            applied.select()
            .with_only_columns(applied.c.account_id)
            .where(*filter_conditions(inbox))
            .subquery()
            .select()
        ).all()
    print(f"    rows in the filtered 30 days: {len(in_range):,}")
    return {
        "daily, 30 days, inbox filter": timed(lambda: reports.series(inbox, "day"), repeat),
        "hourly, 30 days, inbox filter": timed(lambda: reports.series(inbox, "hour"), repeat),
        "summary, 30 days, inbox filter": timed(lambda: reports.summary(inbox), repeat),
        "grid, 30 days, inbox filter": timed(lambda: reports.grid(inbox), repeat),
        "daily, 30 days, no filter": timed(lambda: reports.series(unfiltered, "day"), repeat),
        "full scan: daily over all rows": timed(lambda: reports.series(everything, "day"), repeat),
    }


def measure_page(store: Store, repeat: int) -> dict[str, float]:
    """Median milliseconds of each page call, 30 days without a filter and with an inbox, a team, an agent
    filter; the targets with a channel, a priority, a label filter."""
    reports = Reports(store.engine)
    month = {"since": (END - timedelta(days=30)).isoformat(), "until": END.isoformat()}
    everything = full_scan()
    found = {"full scan: daily over all rows": timed(lambda: reports.series(everything, "day"), repeat)}
    for label, filters in (
        ("no filter", Filters.from_params(month)),
        ("inbox", Filters.from_params({**month, "inbox": "7"})),
        ("team", Filters.from_params({**month, "team": "3"})),
        ("agent", Filters.from_params({**month, "agent": "7"})),
    ):
        for name, call in reports.page_calls(filters):
            found[f"{label}: {name}"] = timed(call, repeat)
    # A range ending at noon, as "the last 30 days" from a page opened at noon: the targets read its two half
    # days at the ends from sla_applied (their rollup keeps whole UTC days).
    noon = Filters.from_params(
        {"since": (END - timedelta(days=30, hours=12)).isoformat(), "until": (END - timedelta(hours=12)).isoformat()}
    )
    found["ending at noon: targets"] = timed(lambda: reports.targets(noon), repeat)
    # Filtered on a channel, a priority or a label, the targets read the histogram's rows of that dimension.
    for name, value in (("channel", CHANNELS[0]), ("priority", "high"), ("label", "vip")):
        filtered = Filters.from_params({**month, name: value})
        found[f"{name} filter: targets"] = timed(lambda filtered=filtered: reports.targets(filtered), repeat)
    return found


def page_verdicts(results: dict[str, dict[str, float]]) -> list[str]:
    """The page's totals against its targets, per database, beside the full scan."""
    lines = []
    for database, figures in results.items():
        scan = figures["full scan: daily over all rows"]
        total = sum(value for name, value in figures.items() if name.startswith("no filter: "))
        slowest = max(
            (value, name)
            for name, value in figures.items()
            if not name.startswith(("no filter: ", "full scan", "ending"))
        )
        slowest_ok = slowest[0] < FILTERED_CALL_TARGET_MS
        lines.append(
            f"{database}: the unfiltered page's calls together {total:.0f} ms "
            f"(target < {PAGE_TARGET_MS} ms: {'ok' if total < PAGE_TARGET_MS else 'OVER TARGET'}; "
            f"{total / scan:.1f}x one full scan); slowest filtered call {slowest[1]} {slowest[0]:.0f} ms "
            f"(target < {FILTERED_CALL_TARGET_MS} ms: {'ok' if slowest_ok else 'OVER TARGET'})"
        )
    return lines


def print_sizes(database: Path, rows: int) -> None:
    """The SQLite store's bytes per table and index of the reports (base tables and rollups), per applied SLA."""
    print(f"SQLite: bytes per table and index (per applied SLA), {rows:,} applied SLAs:")
    for name, size in btree_bytes(database):
        if any(part in name for part in ("sla_applied", "sla_misses", "sla_rollup")):
            print(f"  {name:52} {size:>13,} {size / rows:8.0f}")


def rebuild(store: Store) -> None:
    """The rollups of the rows loaded around the store, as ``sla-plugin rebuild-rollups`` computes them."""
    started = time.perf_counter()
    rows = store.rebuild_rollups()
    print(f"{store.backend}: rebuilt the report rollups ({rows:,} rows) in {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--page", action="store_true", help="time every call the reports page makes")
    parser.add_argument("--sizes", action="store_true", help="print the SQLite store's bytes per table and index")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SLA_BENCH_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    arguments = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    data = synthetic(arguments.rows)
    print(
        f"generated {len(data[0]):,} applied SLAs and {len(data[1]):,} misses in {time.perf_counter() - started:.0f} s"
    )

    with tempfile.TemporaryDirectory(prefix="sla-reports-bench-", dir="/tmp") as folder:
        store = Store.from_url(f"sqlite:///{folder}/bench.sqlite3")
        store.migrate()
        started = time.perf_counter()
        load_sqlite(store, data)
        print(f"SQLite: loaded {arguments.rows:,} applied SLAs in {time.perf_counter() - started:.0f} s")
        rebuild(store)
        if arguments.sizes:
            print_sizes(Path(folder) / "bench.sqlite3", arguments.rows)
        results["sqlite"] = (measure_page if arguments.page else measure)(store, arguments.repeat)
        store.engine.dispose()

    name = f"sla_bench_{uuid.uuid4().hex[:10]}"
    server = make_url(arguments.postgres).set(drivername="postgresql")
    admin = psycopg.connect(server.render_as_string(hide_password=False), autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        store = Store.from_url(url)
        store.migrate()
        started = time.perf_counter()
        load_postgres(url, data)
        print(f"PostgreSQL: loaded {arguments.rows:,} applied SLAs in {time.perf_counter() - started:.0f} s")
        rebuild(store)
        results["postgresql"] = (measure_page if arguments.page else measure)(store, arguments.repeat)
        store.engine.dispose()
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()

    print(f"\nmedian of {arguments.repeat} runs, milliseconds ({arguments.rows:,} applied SLAs over {DAYS} days)")
    print(f"{'query':34} {'SQLite':>10} {'PostgreSQL':>12}")
    for query in results["sqlite"]:
        print(f"{query:34} {results['sqlite'][query]:10.1f} {results['postgresql'][query]:12.1f}")
    if arguments.page:
        for line in page_verdicts(results):
            print(line)
        return
    scan = "full scan: daily over all rows"
    for database, figures in results.items():
        for query in ("daily, 30 days, inbox filter", "hourly, 30 days, inbox filter"):
            verdict = "ok" if figures[query] < TARGET_MS else "OVER TARGET"
            print(
                f"{database}: {query}: {figures[query]:.1f} ms (target < {TARGET_MS} ms: {verdict}); "
                f"{figures[scan] / figures[query]:.0f}x faster than the full scan"
            )


if __name__ == "__main__":
    main()
