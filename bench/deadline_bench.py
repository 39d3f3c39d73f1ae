"""Miss detection lag with many running clocks, against Chatwoot's five-minute cron, in one run.

    python bench/deadline_bench.py [--clocks 100000] [--spread 180] [--workers 2]

Creates ``--clocks`` conversations whose first-response clocks fall due over ``--spread`` seconds (SQLite,
a private redis-server), then runs the real sweeper and ``sla-plugin worker`` processes and records, for
every miss, the lag from its due time to the moment its miss note's write-back intent was recorded (the
write-back job is enqueued right after that transaction commits). A miss exists from the first second after
the due time (docs/contracts.md section 4), so the lag is also shown from that instant. Also prints Redis memory per
tracked deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from plugin.adapters import deadlines, redis_keys  # noqa: E402
from plugin.adapters.services import EmbeddedRedis  # noqa: E402
from plugin.adapters.store import as_utc, misses, outbox  # noqa: E402
from plugin.core.engine import ConversationState, add_events, evaluate  # noqa: E402
from plugin.core.engine.effects import changes, summary, writeback_intents  # noqa: E402
from plugin.core.events import CONVERSATION_CREATED, Conversation, Event  # noqa: E402

TARGET = timedelta(minutes=10)
CHATWOOT_CRON_SECONDS = 300
RULES = {
    "policies": {"quick": {"name": "Quick", "first_response": "10m"}},
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "quick"}],
}


def populate(runtime, clocks: int, first_due: datetime, spread: float) -> None:
    """Store ``clocks`` conversations whose first response falls due between first_due and +spread."""
    rules = runtime.accounts.rules_for(1).current()
    now = datetime.now(UTC)
    for chunk_start in range(0, clocks, 2000):
        keys = [(1, number) for number in range(chunk_start + 1, min(chunk_start + 2000, clocks) + 1)]
        with runtime.store.batch(keys) as batch:
            checks = []
            for key in keys:
                due = first_due + timedelta(seconds=spread * (key[1] - 1) / clocks)
                created = (due - TARGET).replace(microsecond=0)
                event = Event(
                    CONVERSATION_CREATED,
                    f"conversation_created:{key[1]}",
                    1,
                    key[1],
                    created,
                    conversation=Conversation(account_id=1, conversation_id=key[1], created_at=created),
                )
                state, added = add_events(ConversationState(*key), [event])
                state, evaluation = evaluate(state, rules.match, rules.content_hash, now)
                current = summary(evaluation)
                found = changes(None, evaluation)
                intents = writeback_intents(None, current, found)
                batch.save(state, evaluation, current, found, intents, added=added)
                checks.append((key, evaluation.next_check_at))
            batch.flush()
        deadlines.schedule(runtime.redis, checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=180.0, help="seconds over which the clocks fall due")
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, EmbeddedRedis(folder) as server:
        rules_dir = Path(folder) / "rules"
        rules_dir.mkdir()
        (rules_dir / "rules.json").write_text(json.dumps(RULES))
        environment = dict(
            os.environ,
            REDIS_URL=server.url,
            DATABASE_URL=f"sqlite:///{folder}/bench.sqlite3",
            SLA_RULES_DIR=str(rules_dir),
            SLA_LOG_LEVEL="WARNING",
        )
        environment.pop("CHATWOOT_URL", None)
        os.environ.update(environment)
        from plugin.jobs.drain import utcnow
        from plugin.jobs.runtime import current_runtime
        from plugin.jobs.sweeper import Sweeper

        runtime = current_runtime()
        redis = runtime.redis
        # Setup takes roughly a millisecond per clock here; the first clock falls due after it.
        first_due = datetime.now(UTC) + timedelta(seconds=30 + arguments.clocks / 800)
        memory_before = int(redis.info("memory")["used_memory"])
        started = time.perf_counter()
        populate(runtime, arguments.clocks, first_due, arguments.spread)
        print(
            f"stored {arguments.clocks} running clocks in {time.perf_counter() - started:.0f} s; "
            f"first due in {(first_due - datetime.now(UTC)).total_seconds():.0f} s"
        )
        tracked = deadlines.pending(redis)
        per_deadline = (int(redis.info("memory")["used_memory"]) - memory_before) / max(tracked, 1)
        zset_bytes = int(redis.memory_usage(redis_keys.DEADLINES) or 0)

        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "plugin.cli", "worker", "--no-sweeper", "--queue", "events"], env=environment
            )
            for _ in range(arguments.workers)
        ]
        stop = threading.Event()
        threading.Thread(target=Sweeper(runtime, utcnow).run, args=(stop,), daemon=True).start()
        try:
            deadline = first_due + timedelta(seconds=arguments.spread + 180)
            while datetime.now(UTC) < deadline:
                with runtime.store.engine.connect() as connection:
                    recorded = connection.execute(
                        sa.select(sa.func.count()).select_from(outbox).where(outbox.c.key.like("note:%"))
                    ).scalar()
                if recorded >= arguments.clocks:
                    break
                time.sleep(2)
        finally:
            stop.set()
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
        with runtime.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(misses.c.due_at, outbox.c.created_at).select_from(
                    misses.join(
                        outbox,
                        sa.and_(
                            misses.c.account_id == outbox.c.account_id,
                            misses.c.conversation_id == outbox.c.conversation_id,
                            outbox.c.key == "note:" + misses.c.miss,
                        ),
                    )
                )
            ).all()
        lags = sorted((as_utc(created) - as_utc(due)).total_seconds() for due, created in rows)
        if not lags:
            print("no miss was recorded: the workers did not keep up or did not start")
            sys.exit(1)

        def percentile(share: float) -> float:
            return lags[min(len(lags) - 1, int(share * len(lags)))]

        p50, p99 = percentile(0.50), percentile(0.99)
        print(f"misses recorded: {len(lags)} of {arguments.clocks} ({arguments.workers} worker processes)")
        print(f"lag from due time to the miss write-back: p50 {p50:.2f} s, p99 {p99:.2f} s, max {lags[-1]:.2f} s")
        print(
            f"  from the first missed instant (due + 1 s): p50 {p50 - 1:.2f} s, p99 {p99 - 1:.2f} s (target p99 < 2 s)"
        )
        print(
            f"Chatwoot's cron interval / our p99: {CHATWOOT_CRON_SECONDS} s / {p99:.2f} s = "
            f"{CHATWOOT_CRON_SECONDS / p99:.0f}x sooner"
        )
        print(
            f"Redis memory per tracked deadline: {per_deadline:.0f} bytes "
            f"(sorted set alone: {zset_bytes / max(tracked, 1):.0f} bytes)"
        )


if __name__ == "__main__":
    main()
