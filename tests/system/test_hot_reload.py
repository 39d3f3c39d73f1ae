"""Hot reload in a real worker process: edited rule files apply to new matches, a broken file changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from plugin.adapters import streams as ingest
from plugin.adapters.store import Store


def rules(policy_id: str, first_response: str) -> str:
    return json.dumps(
        {
            "policies": {policy_id: {"name": policy_id, "first_response": first_response}},
            "rules": [{"name": "Everything", "when": {"all": []}, "apply": policy_id}],
        }
    )


@pytest.fixture
def worker(tmp_path, redis_server, redis):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.json").write_text(rules("first", "1h"))
    database_url = f"sqlite:///{tmp_path / 'sla.sqlite3'}"
    environment = dict(
        os.environ,
        REDIS_URL=redis_server.url,
        DATABASE_URL=database_url,
        SLA_RULES_DIR=str(rules_dir),
        SLA_LOG_LEVEL="WARNING",
    )
    environment.pop("CHATWOOT_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "plugin.cli", "worker", "--no-sweeper"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    store = Store.from_url(database_url)
    store.migrate()
    yield rules_dir, store
    process.terminate()
    process.wait(timeout=20)


def send_conversation(redis, fixture_payload, conversation_id: int) -> None:
    payload = fixture_payload("conversation_created")
    created = datetime.now(UTC) - timedelta(minutes=5)
    payload.update(id=conversation_id, created_at=int(created.timestamp()), updated_at=created.timestamp())
    ingest.submit(redis, "chatwoot", json.dumps(payload).encode(), received_at=datetime.now(UTC))


def wait_for_policy(store: Store, conversation_id: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = store.summary((1, conversation_id))
        if summary is not None:
            return summary["policy"]
        time.sleep(0.2)
    raise AssertionError(f"conversation {conversation_id} was not processed within 60 s")


def test_a_running_worker_picks_up_edits_and_keeps_the_last_good_rules(worker, redis, fixture_payload):
    rules_dir, store = worker
    send_conversation(redis, fixture_payload, 1)
    assert wait_for_policy(store, 1) == "first"

    (rules_dir / "rules.json").write_text(rules("second", "2h"))
    time.sleep(1.1)  # the holder looks at the files at most once a second
    send_conversation(redis, fixture_payload, 2)
    assert wait_for_policy(store, 2) == "second"

    (rules_dir / "rules.json").write_text('{"policies": {"broken": ')
    time.sleep(1.1)
    send_conversation(redis, fixture_payload, 3)
    assert wait_for_policy(store, 3) == "second"  # the last good rules stay live
    assert store.summary((1, 1))["policy"] == "first"  # history is not rewritten
