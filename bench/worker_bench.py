"""Events per second through the worker path on SQLite, beside RQ's no-op job rate, in one run.

    python bench/worker_bench.py [--conversations 2000] [--events-per-conversation 10]

A private redis-server and a SQLite file in a temporary folder; realistic Chatwoot payloads (the shared
fixtures with new ids and times) go through ``plugin.adapters.streams.submit`` exactly as the web receiver hands them
over; a real RQ SimpleWorker drains them. The baseline is the same worker running no-op RQ jobs, one per
event, which is what a one-job-per-webhook design would cost at best (docs/architecture.md, "Where state lives").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rq import Queue, SimpleWorker  # noqa: E402

from plugin.adapters import redis_keys  # noqa: E402
from plugin.adapters import streams as ingest  # noqa: E402
from plugin.adapters.services import EmbeddedRedis  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "chatwoot"


def payloads(conversations: int, per_conversation: int) -> list[bytes]:
    """A day of traffic: each conversation is created, then customer and agent messages alternate."""
    created = json.loads((FIXTURES / "conversation_created.json").read_text())
    incoming = json.loads((FIXTURES / "message_created-incoming.json").read_text())
    outgoing = json.loads((FIXTURES / "message_created-outgoing.json").read_text())
    start = datetime.now(UTC) - timedelta(hours=6)
    bodies = []
    message_id = 100_000
    for number in range(conversations):
        conversation_id = 10_000 + number
        at = start + timedelta(seconds=number * 5)
        body = dict(created, id=conversation_id, created_at=int(at.timestamp()), updated_at=at.timestamp())
        bodies.append(json.dumps(body).encode())
        for step in range(per_conversation - 1):
            message_id += 1
            template = incoming if step % 2 == 0 else outgoing
            moment = at + timedelta(minutes=7 * (step + 1))
            conversation = dict(template["conversation"], id=conversation_id, created_at=int(at.timestamp()))
            bodies.append(
                json.dumps(
                    dict(
                        template,
                        id=message_id,
                        conversation=conversation,
                        created_at=moment.isoformat().replace("+00:00", "Z"),
                    )
                ).encode()
            )
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--events-per-conversation", type=int, default=10)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, EmbeddedRedis(folder) as server:
        os.environ.update(
            REDIS_URL=server.url, DATABASE_URL=f"sqlite:///{folder}/bench.sqlite3", SLA_RULES_DIR=str(ROOT / "rules")
        )
        os.environ.pop("CHATWOOT_URL", None)
        from plugin.jobs.runtime import current_runtime

        redis = current_runtime().redis
        bodies = payloads(arguments.conversations, arguments.events_per_conversation)
        events_queue = Queue(redis_keys.EVENTS_QUEUE, connection=redis)

        # Baseline: one no-op RQ job per event.
        for _ in bodies:
            events_queue.enqueue("os.getpid", result_ttl=0)  # a stdlib no-op a worker can import
        started = time.perf_counter()
        SimpleWorker([events_queue], connection=redis).work(burst=True, logging_level="ERROR")
        noop_rate = len(bodies) / (time.perf_counter() - started)

        now = datetime.now(UTC)
        for body in bodies:
            ingest.submit(redis, "chatwoot", body, received_at=now)
        started = time.perf_counter()
        SimpleWorker([events_queue], connection=redis).work(burst=True, logging_level="ERROR")
        elapsed = time.perf_counter() - started
        stored = current_runtime().store.summary((1, 10_000))
        assert stored is not None and stored["policy"], "the worker stored no evaluation"
        rate = len(bodies) / elapsed
        print(f"events: {len(bodies)} over {arguments.conversations} conversations")
        print(f"no-op RQ jobs (SimpleWorker, one per event): {noop_rate:8.0f} jobs/s")
        print(f"worker path on SQLite (batched drain):       {rate:8.0f} events/s")
        print(f"ratio worker path / no-op job rate: {rate / noop_rate:.2f}  (target: >= 1,000 events/s)")


if __name__ == "__main__":
    main()
