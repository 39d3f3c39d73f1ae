"""SLA event delivery: what notifications cost the event worker, and how fast they go out, in one run.

    python bench/notification_bench.py [--conversations 1000] [--events-per-conversation 6]

A private redis-server, a SQLite file and a local receiver (plugin/demo/receiver.py) in this process.
1. The worker path (realistic Chatwoot payloads through a real RQ SimpleWorker) with rules that route every
   SLA event of the policy to a webhook destination, against the same traffic with rules that notify nobody:
   the ratio is what recording the outbox rows costs the worker.
   Each configuration runs twice, alternating, and the better run counts.
2. Delivery: the notifier sending those events (one signed POST each, claim and record in SQLite), against a
   baseline of bare signed POSTs of the same bodies to the same receiver over one session.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from rq import Queue, SimpleWorker  # noqa: E402

from bench.worker_bench import payloads  # noqa: E402
from plugin.adapters import redis_keys  # noqa: E402
from plugin.adapters import streams as ingest  # noqa: E402
from plugin.adapters.services import EmbeddedRedis  # noqa: E402
from plugin.core.notifications import signature  # noqa: E402
from plugin.demo.receiver import NotificationReceiver  # noqa: E402

SECRET = "bench-secret"


def rules(notify: bool) -> dict:
    policy = {"first_response": "1h", "next_response": "1h", "warn_before": "10m"}
    if notify:
        policy["notify"] = [{"on": ["applied", "at_risk", "missed", "hit", "corrected"], "to": ["ops"]}]
    return {
        "notifications": {"ops": {"type": "webhook", "url_env": "SLA_BENCH_OPS_URL", "secret_env": "SLA_BENCH_SECRET"}},
        "policies": {"standard": policy},
        "rules": [{"name": "all", "when": {"all": []}, "apply": "standard"}],
    }


def worker_rate(folder: str, name: str, notify: bool, bodies: list[bytes], redis_url: str) -> tuple[float, object]:
    """Events per second through the worker path with (or without) notify routes; returns the runtime too."""
    from plugin.jobs.runtime import current_runtime

    rules_dir = Path(folder) / f"rules-{name}"
    rules_dir.mkdir()
    (rules_dir / "rules.json").write_text(json.dumps(rules(notify)))
    os.environ.update(
        REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{folder}/{name}.sqlite3", SLA_RULES_DIR=str(rules_dir)
    )
    current_runtime.cache_clear()
    runtime = current_runtime()
    runtime.redis.flushall()
    now = datetime.now(UTC)
    for body in bodies:
        ingest.submit(runtime.redis, "chatwoot", body, received_at=now)
    started = time.perf_counter()
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis)], connection=runtime.redis).work(
        burst=True, logging_level="ERROR"
    )
    return len(bodies) / (time.perf_counter() - started), runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--events-per-conversation", type=int, default=6)
    arguments = parser.parse_args()
    receiver = NotificationReceiver(secret=SECRET).start()
    os.environ.update(SLA_BENCH_OPS_URL=f"{receiver.url}/webhook", SLA_BENCH_SECRET=SECRET)
    os.environ.pop("CHATWOOT_URL", None)
    try:
        with tempfile.TemporaryDirectory() as folder, EmbeddedRedis(folder) as server:
            bodies = payloads(arguments.conversations, arguments.events_per_conversation)
            # Two rounds, alternating, best of each: the first run in a process also pays for warming up.
            quiet_rate = notify_rate = 0.0
            for round_number in range(2):
                rate, _ = worker_rate(folder, f"quiet-{round_number}", False, bodies, server.url)
                quiet_rate = max(quiet_rate, rate)
                rate, runtime = worker_rate(folder, f"notify-{round_number}", True, bodies, server.url)
                notify_rate = max(notify_rate, rate)
            print(f"events: {len(bodies)} over {arguments.conversations} conversations")
            print(f"worker path, rules that notify nobody:      {quiet_rate:8.0f} events/s")
            print(f"worker path, every SLA event to a webhook:  {notify_rate:8.0f} events/s")
            print(f"ratio notifying / not notifying: {notify_rate / quiet_rate:.2f}")

            from sqlalchemy import func, select

            from plugin.adapters.store import notifications
            from plugin.jobs.notify import Notifier

            with runtime.store.engine.connect() as connection:
                stored = [json.loads(row) for row in connection.execute(select(notifications.c.payload)).scalars()]
                pending = connection.execute(select(func.count()).select_from(notifications)).scalar()
            # Baseline: the same number of signed POSTs of comparable bodies, nothing claimed or recorded.
            session = requests.Session()
            started = time.perf_counter()
            for item in stored:
                body = json.dumps(item["body"], separators=(",", ":")).encode()
                timestamp = str(int(time.time()))
                headers = {"Content-Type": "application/json", "X-SLA-Timestamp": timestamp}
                headers["X-SLA-Signature"] = signature(SECRET, timestamp, body)
                session.post(f"{receiver.url}/webhook", data=body, headers=headers, timeout=10).close()
            bare_rate = len(stored) / (time.perf_counter() - started)
            receiver.received.clear()
            notifier = Notifier(runtime)
            started = time.perf_counter()
            sent = 0
            while (delivered := notifier.deliver("ops")) > 0:
                sent += delivered
            rate = sent / (time.perf_counter() - started)
            assert sent == pending == len(receiver.received), (sent, pending, len(receiver.received))
            assert all(item.signature_ok for item in receiver.received)
            print(f"SLA events to deliver: {pending}")
            print(f"bare signed POSTs (one session):            {bare_rate:8.0f} requests/s")
            print(f"notifier (claim, POST, record; SQLite):     {rate:8.0f} deliveries/s")
            print(f"ratio notifier / bare POSTs: {rate / bare_rate:.2f}")
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
