"""A store written by an earlier version is converted losing nothing, on SQLite and PostgreSQL: one from
before compact event records (its timelines become event records and a head), one from before packed
states (its JSON text heads and summaries become compressed, its policy snapshots are stored once per
version); the next evaluation equals what that version stored (and replay). The old store is made by the
old code itself, taken from the repository's history."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors import get_connector
from plugin.adapters.rule_files import load_rules
from plugin.adapters.store import MIGRATIONS, Store, applied, conversations, events, misses, policy_versions
from plugin.cli.replay import replay
from plugin.core.engine import add_events, evaluate
from plugin.core.engine.effects import changes, summary, writeback_intents
from plugin.core.events import parse_time

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "chatwoot"
BEFORE_COMPACT_RECORDS = "380f795db9de2afad1d22cc73f2b3a3611f0d712"  # the last commit storing whole timelines
BEFORE_PACKED_STATES = "83444d24f68be62a4471977aebf955c60bd87af6"  # the last commit storing JSON text heads
AT = "2026-01-14T10:30:00Z"
NAMES = [
    "conversation_created",
    "message_created-incoming",
    "message_created-private_note",
    "conversation_updated-labels",
    "message_created-outgoing",  # delivered after a later event: a late delivery
    "conversation_updated-custom_attributes",
]

OLD_WORKER = """
import inspect, json, sys
from connectors import get_connector
from plugin.adapters.rule_files import load_rules
from plugin.adapters.store import Store
from plugin.core.engine import add_events, evaluate
from plugin.core.engine.effects import changes, summary, writeback_intents
from plugin.core.events import parse_time

try:
    from plugin.core.engine import needs_history
except ImportError:  # the version before checkpoints folded the whole stored timeline every time
    needs_history = None

url, rules_dir, at, lines = sys.argv[1], sys.argv[2], parse_time(sys.argv[3]), sys.argv[4:]
store = Store.from_url(url)
store.migrate()
rules = load_rules(rules_dir)
connector = get_connector("chatwoot", {})
keys = []
for line in lines:  # one delivery per transaction, as the worker takes them
    event = connector.normalize(json.loads(line), None)
    key = (event.account_id, event.conversation_id)
    keys.append(key)
    with store.batch([key]) as batch:
        state, previous = batch.state(key)
        if needs_history is not None and needs_history(state, [event], at):
            state = batch.history(key)  # a late delivery, as the worker takes it
        state, added = add_events(state, [event])
        state, evaluation = evaluate(state, rules.match, rules.content_hash, at)
        current = summary(evaluation)
        found = changes(previous, evaluation)
        # Versions with event records are told the events added; the one before them stored the timeline.
        extra = {"added": added} if "added" in inspect.signature(batch.save).parameters else {}
        batch.save(state, evaluation, current, found, writeback_intents(previous, current, found), **extra)
        batch.flush()
print(json.dumps({"%d/%d" % key: store.summary(key) for key in keys}))
"""


def bodies() -> list[str]:
    """The fixture timeline for two conversations (87 as recorded, 88 a copy), one delivery late."""
    lines = []
    for conversation_id in (87, 88):
        for name in NAMES:
            body = json.loads((FIXTURES / f"{name}.json").read_text())
            conversation = body.get("conversation", body)
            conversation["id"] = conversation_id
            if "conversation" not in body:
                body["id"] = conversation_id
            elif "id" in body:
                body["id"] = body["id"] * 10 + conversation_id  # message ids of their own
            lines.append(json.dumps(body))
    return lines


@pytest.fixture(params=[BEFORE_COMPACT_RECORDS, BEFORE_PACKED_STATES], ids=["before-records", "before-packed"])
def old_code(request, tmp_path: Path) -> Path:
    """The packages of an earlier version, extracted from the repository's history."""
    commit = request.param
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the repository's history")
    listed = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", commit], check=False)
    if listed.returncode != 0:
        pytest.skip(f"the repository's history does not reach {commit}")
    folder = tmp_path / "old"
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "plugin", "connectors", "manifest.json", "rules"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def test_a_store_written_by_the_previous_version_is_converted_losing_nothing(database_url, old_code):
    lines = bodies()
    written = subprocess.run(
        [sys.executable, "-c", OLD_WORKER, database_url, str(ROOT / "rules"), AT, *lines],
        cwd=old_code,
        env={"PYTHONPATH": str(old_code), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    )
    before = json.loads(written.stdout)
    assert {summary["policy"] for summary in before.values()} == {"standard"}

    store = Store.from_url(database_url)
    assert store.migrate() == len(MIGRATIONS)
    store.migrate()  # again: nothing left to convert
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(events)).scalar() == len(lines)
        columns = {column["name"] for column in sa.inspect(connection).get_columns(conversations.name)}
        assert {"packed_head", "packed_summary"} <= columns and not {"state", "summary"} & columns
        assert "policy_snapshot" not in {column["name"] for column in sa.inspect(connection).get_columns(applied.name)}
        assert "ix_sla_misses_due" not in {index["name"] for index in sa.inspect(connection).get_indexes(misses.name)}
        snapshots = connection.execute(sa.select(policy_versions)).all()
    # Both conversations' rows held one snapshot of the one policy version: stored once, as it was.
    assert [(row.policy_id, json.loads(row.snapshot)["id"]) for row in snapshots] == [("standard", "standard")]
    rules = load_rules(ROOT / "rules")
    at = parse_time(AT)
    replayed = {
        f"{evaluation.account_id}/{evaluation.conversation_id}": evaluation.to_replay_json()
        for evaluation in replay(lines, get_connector("chatwoot", {}), rules.match, rules.content_hash, at).evaluations
    }
    connector = get_connector("chatwoot", {})
    for name, stored in before.items():
        key = tuple(int(part) for part in name.split("/"))
        with store.batch([key]) as batch:
            state, previous = batch.state(key)
            assert previous == stored
            state, evaluation = evaluate(state, rules.match, rules.content_hash, at)
            assert evaluation.to_replay_json() == {field: stored[field] for field in replayed[name]} == replayed[name]
            current = summary(evaluation)
            found = changes(previous, evaluation)
            assert found == []  # nothing changed: no log entry, no write-back
            batch.save(state, evaluation, current, found, writeback_intents(previous, current, found))
            batch.flush()
        # The converted conversation goes on from its checkpoint: a duplicate and a new resolution.
        resolved = json.loads((FIXTURES / "conversation_status_changed-resolved.json").read_text())
        resolved["id"] = key[1]
        duplicate = json.loads(lines[NAMES.index("message_created-incoming") + (key[1] - 87) * len(NAMES)])
        new_events = [connector.normalize(resolved, None), connector.normalize(duplicate, None)]
        with store.batch([key]) as batch:
            known = batch.stored_keys({key: [event.key for event in new_events]})
            assert known == {(*key, new_events[1].key)}
            state, previous = batch.state(key)
            assert state.checkpoint is not None
            state, added = add_events(state, [new_events[0]])
            state, evaluation = evaluate(state, rules.match, rules.content_hash, new_events[0].occurred_at)
            batch.save(state, evaluation, summary(evaluation), [], [], added=added)
            batch.flush()
        everything = replay(
            [*lines, json.dumps(resolved)], connector, rules.match, rules.content_hash, new_events[0].occurred_at
        ).evaluations
        expected = next(item for item in everything if item.conversation_id == key[1]).to_replay_json()
        after = store.summary(key)
        assert (after["metrics"], after["status"], after["resolved"]) == (expected["metrics"], expected["status"], True)
