"""``sla-plugin report``: the same figures as the API, in the terminal, as JSON and as CSV."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from plugin.cli.report import rebuild_rollups, report

from report_timelines import (  # noqa: F401 (fixtures)
    load_scenario,
    report_rules,
    report_runtime,
    stretch_first_responses,
)

WEEK = ["--since", "2026-03-02", "--until", "2026-03-08"]


def run(*arguments: str) -> str:
    result = CliRunner().invoke(report, [*WEEK, *arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("Reading ")  # which database, on standard error
    return result.stdout


def test_report_command_prints_the_api_figures(report_runtime, fixture_payload):
    load_scenario(report_runtime.redis, fixture_payload)

    text = run()
    assert "applied 8, missed 5, hit rate 37.5%" in text
    assert "Standard (standard): answered 2 of 5 on time against a target of 90 %: 3 missed against target" in text
    assert "Trial chat (trial, shadow)" in text

    summary = json.loads(run("--format", "json"))
    assert summary["overall"]["nrt_misses_per_message"] == 6

    live = json.loads(run("--format", "json", "--mode", "live", "--inbox", "1", "--inbox", "2"))
    assert (live["overall"]["applied"], live["overall"]["conversations_missed"]) == (7, 4)

    rows = list(csv.DictReader(io.StringIO(run("--format", "csv", "--report", "breakdown", "--by", "agent"))))
    assert {row["agent"]: row["applied"] for row in rows} == {"7": "3", "8": "3", "": "2"}
    assert {row["agent"]: row["name"] for row in rows} == {"7": "Sam Agent", "8": "Lee Park", "": ""}

    # Names, in and out: an inbox typed by name, inbox and agent names printed.
    by_inbox = run("--report", "breakdown", "--by", "inbox")
    assert "Website Chat" in by_inbox and "Partner API" in by_inbox
    chat = run("--report", "conversations", "--inbox", "Website Chat")
    assert "Website Chat" in chat and "Lee Park" in chat and "Support Email" not in chat

    daily = run("--report", "series", "--label", "billing")
    assert daily.splitlines()[1].split()[:3] == ["2026-03-02T00:00:00Z", "2", "1"]

    grid = run("--report", "grid", "--format", "csv")
    assert grid.splitlines()[1].startswith("mon,")

    missed = json.loads(run("--report", "conversations", "--missed", "--format", "json", "--per-page", "2"))
    assert (missed["total"], len(missed["items"])) == (5, 2)

    targets = run("--report", "targets").splitlines()
    assert targets[0].split() == [
        "policy",
        "mode",
        "metric",
        "count",
        "target",
        "p50",
        "p90",
        "p95",
        "at",
        "0.5x",
        "at",
        "1x",
        "at",
        "2x",
    ]
    assert targets[1].split() == [
        "standard",
        "live",
        "first_response",
        "5",
        "2h",
        "30m",
        "3h",
        "3h",
        "80",
        "%",
        "80",
        "%",
        "100",
        "%",
    ]

    berlin = json.loads(run("--report", "series", "--tz", "Europe/Berlin", "--format", "json"))
    assert (berlin["timezone"], berlin["points"][0]["start"]) == ("Europe/Berlin", "2026-03-01T23:00:00Z")


def test_report_command_explains_a_bad_filter(report_runtime):
    result = CliRunner().invoke(report, ["--since", "someday"])
    assert result.exit_code == 2 and "since must be an ISO-8601 date or time" in result.output
    result = CliRunner().invoke(report, ["--inbox", "Helpdesk"])
    assert result.exit_code == 2 and "no inbox is called 'Helpdesk'" in result.output
    result = CliRunner().invoke(report, ["--tz", "Berlin"])
    assert result.exit_code == 2 and "unknown time zone 'Berlin'" in result.output


def test_report_command_names_the_database_and_says_when_it_is_new_or_empty(tmp_path, runtime_environment):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}"
    runtime_environment(DATABASE_URL=url)
    first = CliRunner().invoke(report, [])
    assert first.exit_code == 0
    assert f"Reading {url} (DATABASE_URL): a new database, created just now" in first.stderr
    assert "applied 0, missed 0" in first.stdout
    again = CliRunner().invoke(report, [])
    assert f"Reading {url} (DATABASE_URL): no SLA has been applied in it yet" in again.stderr


def test_the_plugins_own_labels_are_left_out_of_the_label_breakdown(report_runtime, fixture_payload):
    from plugin.adapters.rollups import rebuild as rebuild_rollups
    from plugin.adapters.store import applied

    load_scenario(report_runtime.redis, fixture_payload)
    with report_runtime.store.engine.begin() as connection:
        connection.execute(applied.update().values(labels=",billing,sla-missed,"))
        rebuild_rollups(connection)  # written around the store: the rollups are rebuilt
    rows = list(csv.DictReader(io.StringIO(run("--format", "csv", "--report", "breakdown", "--by", "label"))))
    assert [row["label"] for row in rows] == ["billing"]


def test_rebuild_rollups_restores_the_totals_the_reports_read(report_runtime, fixture_payload):
    from plugin.adapters.rollups import rollup, rollup_durations

    load_scenario(report_runtime.redis, fixture_payload)
    before = json.loads(run("--format", "json"))
    targets = json.loads(run("--format", "json", "--report", "targets"))
    with report_runtime.store.engine.begin() as connection:
        connection.execute(rollup.delete())  # rollups lost (say, a table restored without them)
        connection.execute(rollup_durations.delete())
    assert json.loads(run("--format", "json"))["overall"]["applied"] == 0  # the week is read from them
    assert json.loads(run("--format", "json", "--report", "targets"))["policies"] == []

    result = CliRunner().invoke(rebuild_rollups, [], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("rebuilt the report rollups: ")
    assert json.loads(run("--format", "json")) == before
    assert json.loads(run("--format", "json", "--report", "targets")) == targets and targets["policies"]


def test_a_percentile_over_ten_times_the_target_reads_so_in_the_terminal(report_runtime, fixture_payload):
    load_scenario(report_runtime.redis, fixture_payload)
    stretch_first_responses(report_runtime.store, "standard", 11 * 7200)  # 11 x the 2 h target
    (line,) = [line for line in run("--report", "targets").splitlines() if line.startswith("standard ")][:1]
    assert line.split()[3:11] == ["5", "2h", "over", "10x", "over", "10x", "over", "10x"]
