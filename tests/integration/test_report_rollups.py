"""The report rollups answer exactly what the base tables answer, on SQLite and PostgreSQL: on random data
written through the store's write path, and again after rows change (a miss corrected, a status changed,
a conversation moved to another inbox, a clock stopped later), with the maintained rollups equal to rebuilt
ones. The targets that fit (the duration histogram) included, unfiltered and filtered by a channel, a
priority or a label (the histogram's rows of those dimensions; per label, not per label list)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from plugin.adapters import report_queries, rollup_pairs
from plugin.adapters.report_queries import PAGE_BREAKDOWNS, Reports
from plugin.adapters.rollups import ROLLUP_DURATIONS, rebuild, rollup, rollup_durations, rollup_misses, snapshot
from plugin.adapters.store import (
    MIGRATIONS,
    Store,
    _ConversationRows,
    _drop_misses_due_index,
    _durations_by_dimension,
    _durations_by_label,
    _rollup_durations,
    _rollup_pairs,
    applied,
    as_utc,
    misses,
    schema_version,
)
from plugin.core.reports.filters import Filters

from report_timelines import synthetic_rows

START = datetime(2026, 3, 27, tzinfo=UTC)  # Europe's clocks go forward on the 29th
PAIR_TABLES = (rollup_pairs.rollup_pairs, rollup_pairs.rollup_days)
POLICIES = [("standard", "Standard", 0.9, "live"), ("trial", "Trial", None, "shadow"), ("vip", "VIP", 0.8, "live")]
STATUSES = ["hit", "missed", "running", "at_risk", "paused", "not_started", None]
LABELS = [None, ",billing,", ",vip,", ",billing,vip,", ",sla-missed,"]
FILTERS = [
    {},
    {"inbox": "1"},
    {"agent": "7,8"},
    {"label": "billing"},
    {"priority": "high"},
    {"channel": "Channel::Email"},
    {"policy": "standard"},
    {"mode": "live"},
    {"inbox": "2", "team": "1"},  # two dimensions: the base tables answer
]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
TARGET_SECONDS = [None, 0, 1800, 3600]


def timed(draw: Any) -> dict[str, Any]:
    """Working seconds and targets of the first response and the resolution (some over 10 x the target)."""
    return {
        f"{prefix}_{name}": draw(st.one_of(st.none(), st.integers(0, 40_000)))
        if name == "working_seconds"
        else draw(st.sampled_from(TARGET_SECONDS))
        for prefix in ("frt", "rt")
        for name in ("working_seconds", "target_seconds")
    }


@pytest.fixture
def store(database_url) -> Store:
    store = Store.from_url(database_url)
    store.migrate()
    return store


def conversation(number: int, draw: Any) -> dict[str, Any]:
    """One random applied SLA (row of sla_applied) and its misses."""
    policy_id, name, target, mode = draw(st.sampled_from(POLICIES))
    moment = START + timedelta(minutes=draw(st.integers(0, 4 * 24 * 60)))
    statuses = {prefix: draw(st.sampled_from(STATUSES)) for prefix in ("frt", "nrt", "rt")}
    counts = {prefix: draw(st.integers(0, 2)) for prefix in statuses}
    return {
        "account_id": draw(st.sampled_from([1, 2])),
        "conversation_id": number,
        "policy_id": policy_id,
        "policy_name": name,
        "policy_version": "v1",
        "mode": mode,
        "target": target,
        "applied_at": moment,
        "conversation_created_at": moment,
        "status": "missed" if any(counts.values()) else "on_track",
        "resolved": draw(st.booleans()),
        "inbox_id": draw(st.sampled_from([None, 1, 2])),
        "team_id": draw(st.sampled_from([None, 1])),
        "assignee_id": draw(st.sampled_from([None, 7, 8])),
        "channel": draw(st.sampled_from([None, "Channel::Email", "Channel::Api"])),
        "priority": draw(st.sampled_from([None, "high"])),
        "labels": draw(st.sampled_from(LABELS)),
        **{f"{prefix}_status": status for prefix, status in statuses.items()},
        **{f"{prefix}_misses": count for prefix, count in counts.items()},
        "nrt_misses_per_message": counts["nrt"] + draw(st.integers(0, 1)),
        "any_miss": any(counts.values()),
        "evaluated_at": moment,
        **timed(draw),
    }


def miss_rows(row: dict[str, Any], draw: Any) -> list[dict[str, Any]]:
    return [
        {
            "account_id": row["account_id"],
            "conversation_id": row["conversation_id"],
            "miss": f"{prefix}#{index}",
            "metric": prefix,
            "due_at": row["applied_at"] + timedelta(minutes=draw(st.integers(30, 3000))),
            "policy_id": row["policy_id"],
            "policy_version": "v1",
            "recorded_at": row["applied_at"],
            "corrected_at": None,
        }
        for prefix in ("frt", "nrt", "rt")
        for index in range(row[f"{prefix}_misses"])
    ]


def write(store: Store, written: dict[tuple[int, int], _ConversationRows]) -> None:
    """Rows written as a worker's batch writes them (one transaction, rollups kept in it)."""
    with store.batch(list(written)) as batch:
        batch._rows = written
        assert batch.flush() == {}


def answers(reports: Reports, filters: Filters) -> list[Any]:
    found: list[Any] = [
        reports.summary(filters),
        reports.series(filters, "day"),
        reports.series(filters, "hour"),
        reports.grid(filters),
        reports.conversations(filters, only_missed=True)["total"],
        reports.conversations(filters)["total"],
        *(reports.breakdown(filters, by) for by in (*PAGE_BREAKDOWNS, "policy")),
        reports.targets(filters),
    ]
    return rounded(found)


def rounded(value: Any) -> Any:
    """Floats to 9 places: sums of targets added in another order differ in the last bits."""
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


LATER = START + timedelta(days=30)  # every day of the data closed: its pairs can be computed


def days_of(written: Any) -> set[tuple[int, datetime]]:
    """The (account, UTC day) of the applied SLAs of these rows."""
    return {
        (row["account_id"], row["applied_at"].replace(hour=0, minute=0)) for rows in written for row in rows.applied
    }


def pair_rows(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        return sorted(tuple(rounded(list(row))) for row in connection.execute(sa.select(rollup_pairs.rollup_pairs)))


def rollup_rows(store: Store) -> dict[str, Any]:
    with store.engine.connect() as connection:
        return {
            table.name: sorted(tuple(rounded(list(row))) for row in connection.execute(sa.select(table)))
            for table in (rollup, rollup_misses, rollup_durations)
        }


def assert_rollups_answer_as_the_base(store: Store, monkeypatch: pytest.MonkeyPatch, ranges: list[Filters]) -> None:
    reports = Reports(store.engine)
    from_rollups = [answers(reports, filters) for filters in ranges]
    with monkeypatch.context() as patch:
        patch.setattr(report_queries, "rollup_plan", lambda *arguments, **named: None)
        patch.setattr(report_queries, "pairs_plan", lambda *arguments, **named: None)
        from_base = [answers(reports, filters) for filters in ranges]
    assert from_rollups == from_base
    maintained = rollup_rows(store)
    with store.engine.begin() as connection:
        rebuild(connection, days=1)  # read a day at a time: the rows of four days in four parts
    assert rollup_rows(store) == maintained


# Without shrinking: each example writes to a database, and a failing one is printed as drawn.
WRITING = {
    "deadline": None,
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}


@settings(max_examples=10, **WRITING)
@given(data=st.data())
def test_rollups_answer_as_the_base_tables_before_and_after_changes(store, monkeypatch, data):
    with store.engine.begin() as connection:
        for table in (applied, misses, rollup, rollup_misses, rollup_durations, *PAIR_TABLES):
            connection.execute(table.delete())
    draw = data.draw
    rows = {}
    for number in range(1, draw(st.integers(1, 40)) + 1):
        row = conversation(number, draw)
        rows[(row["account_id"], number)] = _ConversationRows(
            (row["account_id"], number), applied=[row], misses=miss_rows(row, draw)
        )
    write(store, rows)
    assert store.refresh_rollup_pairs(LATER) == len(days_of(rows.values()))
    since = START + timedelta(minutes=draw(st.integers(0, 600)))
    ranges = [
        Filters.from_params(
            {
                "since": since.isoformat(),
                "until": (since + timedelta(minutes=draw(st.integers(120, 4 * 24 * 60)))).isoformat(),
                "tz": draw(st.sampled_from(ZONES)) if index else "UTC",
                **chosen,
            }
        )
        for index, chosen in enumerate(FILTERS)
    ]
    # Whole UTC days inside, in a half-hour zone: the duration histogram answers for them, also by channel,
    # by priority and by one label (two labels: the base).
    ranges += [
        Filters.from_params(
            {
                "since": since.isoformat(),
                "until": (since + timedelta(days=3)).isoformat(),
                "tz": "Asia/Kolkata",
                **chosen,
            }
        )
        for chosen in (
            {},
            {"channel": "Channel::Email"},
            {"priority": "high"},
            {"label": "billing"},
            {"label": "vip,billing"},
            {"team": "1"},
        )
    ]
    assert [filters for filters in ranges if report_queries.rollup_plan(filters, None) is not None]
    histogram = [
        (filters.channel, filters.priority, filters.label)
        for filters in ranges
        if report_queries.rollup_plan(filters, None, ROLLUP_DURATIONS, zoned=False)
    ]
    # Unfiltered and by one dimension; never by two labels (the rows are per label).
    assert {((), (), ()), (("Channel::Email",), (), ()), ((), ("high",), ()), ((), (), ("billing",))} <= set(histogram)
    assert not [labels for _, _, labels in histogram if len(labels) > 1]
    assert_rollups_answer_as_the_base(store, monkeypatch, ranges)
    with store.engine.connect() as connection:  # filtered on one dimension, grouped by another: the pairs
        assert all(report_queries.pairs_plan(connection, filters, "agent") for filters in ranges[-5:])

    # Changes: a miss corrected, a status changed, a conversation moved to another inbox and label.
    changed = {}
    for key in draw(st.lists(st.sampled_from(sorted(rows)), unique=True, max_size=10)):
        (row,) = rows[key].applied
        new = {**row, "frt_status": draw(st.sampled_from(STATUSES)), "inbox_id": draw(st.sampled_from([1, 2]))}
        new["labels"] = draw(st.sampled_from(LABELS))
        new.update(timed(draw))
        corrections = []
        if rows[key].misses and draw(st.booleans()):
            first = rows[key].misses[0]
            corrections = [{"a": key[0], "c": key[1], "m": first["miss"], "t": row["applied_at"] + timedelta(hours=5)}]
            prefix = first["metric"]
            new[f"{prefix}_misses"] -= 1
            new["any_miss"] = any(new[f"{name}_misses"] for name in ("frt", "nrt", "rt"))
        changed[key] = _ConversationRows(key, applied=[new], corrections=corrections)
    if changed:
        write(store, changed)
        with store.engine.connect() as connection:  # the days changed are read from sla_applied until paired
            stale = rollup_pairs.stale_days(connection, LATER, 100)
        assert {(account_id, day) for account_id, day, _ in stale} == days_of(changed.values())
    assert_rollups_answer_as_the_base(store, monkeypatch, ranges)
    paired = pair_rows(store)
    assert store.refresh_rollup_pairs(LATER) == len(days_of(changed.values()))
    assert_rollups_answer_as_the_base(store, monkeypatch, ranges)
    with store.engine.begin() as connection:  # computed again from nothing: the same rows
        rollup_pairs.reset(connection)
    store.refresh_rollup_pairs(LATER)
    if not changed:
        assert pair_rows(store) == paired


def stopped_clocks(store: Store, data: Any) -> dict[tuple[int, int], _ConversationRows]:
    """An empty store given 5 to 30 random applied SLAs, each with a stopped first-response clock."""
    with store.engine.begin() as connection:
        for table in (applied, misses, rollup, rollup_misses, rollup_durations, *PAIR_TABLES):
            connection.execute(table.delete())
    rows = {}
    for number in range(1, data.draw(st.integers(5, 30)) + 1):
        row = {**conversation(number, data.draw), "frt_working_seconds": number * 300, "frt_target_seconds": 3600}
        rows[(row["account_id"], number)] = _ConversationRows((row["account_id"], number), applied=[row])
    write(store, rows)
    return rows


@settings(max_examples=3, **WRITING)
@given(data=st.data())
def test_the_migration_to_the_histogram_fills_it_from_the_stored_clocks(store, data):
    rows = stopped_clocks(store, data)
    week = Filters.from_params({"since": START.isoformat(), "until": (START + timedelta(days=5)).isoformat()})
    reports = Reports(store.engine)
    expected = reports.targets(week)
    version = MIGRATIONS.index(_rollup_durations) + 1
    with store.engine.begin() as connection:  # the store as the version before left it: no histogram
        rollup_durations.drop(connection)
        connection.execute(schema_version.delete().where(schema_version.c.version >= version))
    assert store.migrate() == len(MIGRATIONS) >= version
    with store.engine.connect() as connection:
        clocks = connection.execute(
            sa.select(sa.func.sum(rollup_durations.c.clocks)).where(rollup_durations.c.dimension == "all")
        ).scalar()
    assert clocks == len(rows) + sum(
        1
        for key in rows
        if rows[key].applied[0]["rt_working_seconds"] is not None and rows[key].applied[0]["rt_target_seconds"]
    )
    assert reports.targets(week) == expected and expected["policies"]


@settings(max_examples=3, **WRITING)
@given(data=st.data())
def test_the_migration_to_the_histogram_by_channel_and_priority_fills_their_rows(store, monkeypatch, data):
    stopped_clocks(store, data)
    week = {"since": START.isoformat(), "until": (START + timedelta(days=5)).isoformat()}
    ranges = [
        Filters.from_params({**week, **chosen}) for chosen in ({"channel": "Channel::Email"}, {"priority": "high"})
    ]
    reports = Reports(store.engine)
    with monkeypatch.context() as patch:
        patch.setattr(report_queries, "rollup_plan", lambda *arguments, **named: None)
        expected = [reports.targets(filters) for filters in ranges]
    version = MIGRATIONS.index(_durations_by_dimension) + 1
    with store.engine.begin() as connection:  # the store as the version before left it: dimension "all" only
        connection.execute(rollup_durations.delete().where(rollup_durations.c.dimension != "all"))
        connection.exec_driver_sql(f"ALTER TABLE {rollup_durations.name} DROP COLUMN value")
        connection.execute(schema_version.delete().where(schema_version.c.version >= version))
    assert store.migrate() == len(MIGRATIONS) >= version
    with store.engine.connect() as connection:
        clocks = dict(
            connection.execute(
                sa.select(rollup_durations.c.dimension, sa.func.sum(rollup_durations.c.clocks)).group_by(
                    rollup_durations.c.dimension
                )
            ).all()
        )
    # Every stopped clock is counted once in each of these dimensions (a conversation without a channel under
    # null); per label, once under each of its labels.
    assert len({clocks[dimension] for dimension in ("all", "channel", "priority")}) == 1
    assert all(report_queries.rollup_plan(filters, None, ROLLUP_DURATIONS, zoned=False) for filters in ranges)
    assert [reports.targets(filters) for filters in ranges] == expected


@settings(max_examples=3, **WRITING)
@given(data=st.data())
def test_the_migration_to_the_histogram_by_label_counts_each_clock_under_each_of_its_labels(store, monkeypatch, data):
    rows = stopped_clocks(store, data)
    week = {"since": START.isoformat(), "until": (START + timedelta(days=5)).isoformat()}
    labels = ("billing", "vip", "sla-missed")
    ranges = [Filters.from_params({**week, "label": label}) for label in labels]
    reports = Reports(store.engine)
    with monkeypatch.context() as patch:
        patch.setattr(report_queries, "rollup_plan", lambda *arguments, **named: None)
        expected = [reports.targets(filters) for filters in ranges]
    version = MIGRATIONS.index(_durations_by_label) + 1
    with store.engine.begin() as connection:  # the store as the version before left it: no label rows
        connection.execute(rollup_durations.delete().where(rollup_durations.c.dimension == "label"))
        connection.execute(schema_version.delete().where(schema_version.c.version >= version))
    assert store.migrate() == len(MIGRATIONS) >= version
    with store.engine.connect() as connection:
        clocks = dict(
            connection.execute(
                sa.select(rollup_durations.c.value, sa.func.sum(rollup_durations.c.clocks))
                .where(rollup_durations.c.dimension == "label")
                .group_by(rollup_durations.c.value)
            ).all()
        )
    stopped = {
        key: 1 + bool(row.applied[0]["rt_working_seconds"] is not None and row.applied[0]["rt_target_seconds"])
        for key, row in rows.items()
    }
    assert clocks == {
        label: sum(count for key, count in stopped.items() if f",{label}," in (rows[key].applied[0]["labels"] or ""))
        for label in labels
        if any(f",{label}," in (row.applied[0]["labels"] or "") for row in rows.values())
    }
    assert all(report_queries.rollup_plan(filters, None, ROLLUP_DURATIONS, zoned=False) for filters in ranges)
    assert [reports.targets(filters) for filters in ranges] == expected


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A PostgreSQL JSON plan node and every node under it (CTEs and subqueries included)."""
    return [node, *(found for child in node.get("Plans", []) for found in plan_nodes(child))]


def test_a_batch_snapshot_looks_up_its_slas_and_misses_once_by_key_without_statistics(store):
    """The rollup snapshot of a worker's batch reads the applied SLAs and the misses of the batch's
    conversations once per query (not once per dimension) by the primary key, also when the tables were never
    analysed (PostgreSQL's autovacuum off) and the account has many of them. An IN list of the batch's ids
    looked unselective to PostgreSQL without statistics, so each of the seven dimensions read every miss of
    the account through ix_sla_misses_due, and every applied SLA through ix_sla_applied_account_applied, a
    cost growing with every SLA recorded (issue 13)."""
    recorded, batch = 5_000, 500  # a drain batch holds up to 500 conversations
    postgres = store.engine.dialect.name == "postgresql"
    with store.engine.begin() as connection:
        if postgres:
            for table in (applied, misses):
                connection.exec_driver_sql(f"ALTER TABLE {table.name} SET (autovacuum_enabled = false)")
        rows = synthetic_rows(recorded, recorded)
        connection.execute(applied.insert(), rows)
        connection.execute(
            misses.insert(),
            [
                {
                    "account_id": 1,
                    "conversation_id": row["conversation_id"],
                    "miss": "frt#1",
                    "metric": "frt",
                    "due_at": row["frt_due_at"],
                    "policy_id": row["policy_id"],
                    "policy_version": row["policy_version"],
                    "recorded_at": row["frt_due_at"],
                }
                for row in rows
            ],
        )
    executed: list[tuple[str, Any]] = []
    sa.event.listen(
        store.engine,
        "before_cursor_execute",
        lambda _c, _cursor, sql, parameters, *_: executed.append((sql, parameters)),
    )
    with store.engine.connect() as connection:
        snapshot(connection, [(1, n) for n in range(recorded - batch + 1, recorded + 1)])
    queries = [query for query in executed if applied.name in query[0]]
    assert len(queries) == 3  # the totals, the misses, the duration histogram
    with store.engine.connect() as connection:
        for statement, parameters in queries:
            read = [applied] if misses.name not in statement else [applied, misses]
            if not postgres:
                plan = [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
                assert sorted(step for step in plan if any(table.name in step for table in read)) == [
                    f"SEARCH {table.name} USING INDEX sqlite_autoindex_{table.name}_1"
                    " (account_id=? AND conversation_id=?)"
                    for table in read
                ]
                continue
            explained = connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar()
            reads = [
                node
                for node in plan_nodes(explained[0]["Plan"])
                if node.get("Relation Name") in (applied.name, misses.name)
            ]
            # Per node: the index and the rows it read (per loop found and filtered out, times the loops).
            assert sorted(
                (
                    node.get("Index Name"),
                    (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"],
                )
                for node in reads
            ) == [(f"{table.name}_pkey", batch) for table in read]
            assert all("conversation_id" in node["Index Cond"] for node in reads)


@settings(max_examples=2, **WRITING)
@given(data=st.data())
def test_the_pairs_of_a_day_changed_after_its_changes_were_read_are_not_stored(store, data):
    rows = stopped_clocks(store, data)
    ((account_id, day, changes), *_) = sorted(days(store))
    with store.engine.begin() as connection:  # a batch commits between the read of changes and the write
        rollup_pairs.mark_changed(connection, [(account_id, day)])

    assert not rollup_pairs.refresh_day(store._unlocked_reader, store.engine.begin, account_id, day, changes)
    assert pair_rows(store) == []
    assert store.refresh_rollup_pairs(LATER) == len(days_of(rows.values()))  # read again: stored
    assert all(paired == changes for _, _, changes, paired in days(store, paired=True))


@settings(max_examples=2, **WRITING)
@given(data=st.data())
def test_the_migration_to_the_pairs_marks_every_day_for_the_refresh(store, monkeypatch, data):
    rows = stopped_clocks(store, data)
    version = MIGRATIONS.index(_rollup_pairs) + 1
    with store.engine.begin() as connection:  # the store as the version before left it: no pair tables
        for table in PAIR_TABLES:
            table.drop(connection)
        connection.execute(schema_version.delete().where(schema_version.c.version >= version))
    assert store.migrate() == len(MIGRATIONS) >= version
    assert {(account_id, day) for account_id, day, _ in days(store)} == days_of(rows.values())
    week = {"since": START.isoformat(), "until": (START + timedelta(days=5)).isoformat()}
    ranges = [Filters.from_params({**week, **chosen}) for chosen in ({"team": "1"}, {"channel": "Channel::Api"})]
    with store.engine.connect() as connection:  # until the refresh, every day with SLAs is read from sla_applied
        _, stale = rollup_pairs.paired_days(connection, [], START, START + timedelta(days=5))
    assert set(stale) == {day for _, day in days_of(rows.values())}
    store.refresh_rollup_pairs(LATER)
    assert_rollups_answer_as_the_base(store, monkeypatch, ranges)
    with store.engine.connect() as connection:
        assert all(report_queries.pairs_plan(connection, filters, "agent") for filters in ranges)


@settings(max_examples=2, **WRITING)
@given(data=st.data())
def test_the_migration_drops_the_index_of_misses_by_due_time_and_reports_answer_the_same(store, data):
    rows = {}
    for number in range(1, data.draw(st.integers(5, 30)) + 1):
        row = conversation(number, data.draw)
        rows[(row["account_id"], number)] = _ConversationRows(
            (row["account_id"], number), applied=[row], misses=miss_rows(row, data.draw)
        )
    write(store, rows)
    week = {"since": START.isoformat(), "until": (START + timedelta(days=5)).isoformat()}
    ranges = [Filters.from_params({**week, **chosen}) for chosen in ({}, {"inbox": "1"}, {"label": "billing"})]
    reports = Reports(store.engine)
    expected = [answers(reports, filters) for filters in ranges]
    version = MIGRATIONS.index(_drop_misses_due_index) + 1
    with store.engine.begin() as connection:  # the store as the version before left it: misses by due time
        connection.exec_driver_sql(f"CREATE INDEX {MISSES_DUE} ON {misses.name} (account_id, due_at)")
        connection.execute(schema_version.delete().where(schema_version.c.version >= version))
    assert MISSES_DUE in indexes(store, misses)
    assert store.migrate() == len(MIGRATIONS) >= version
    assert MISSES_DUE not in indexes(store, misses)
    assert [answers(reports, filters) for filters in ranges] == expected


MISSES_DUE = "ix_sla_misses_due"


def indexes(store: Store, table: sa.Table) -> set[str]:
    with store.engine.connect() as connection:
        return {index["name"] for index in sa.inspect(connection).get_indexes(table.name)}


def days(store: Store, paired: bool = False) -> list[tuple]:
    """The rows of sla_rollup_days: (account, day, changes), with paired when asked."""
    table = rollup_pairs.rollup_days
    columns = [table.c.account_id, table.c.day_at, table.c.changes, *([table.c.paired] if paired else [])]
    with store.engine.connect() as connection:
        return [(row[0], as_utc(row[1]), *row[2:]) for row in connection.execute(sa.select(*columns))]
