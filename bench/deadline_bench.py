"""Miss detection lag with many running clocks, against Chatwoot's five-minute cron, in one run.

    python bench/deadline_bench.py [--clocks 100000] [--spread 180] [--window SECONDS] [--workers 2]
        [--database-url postgresql://...]

Stores ``--clocks`` conversations whose first-response clocks fall due evenly over ``--spread`` seconds
(SQLite, or the empty database of ``--database-url``; a private redis-server; one conversation per second of
creation goes through the engine and the store, the others are copies of its rows), rebuilds the deadline
index from SQL as a new sweeper leader does, then runs the real sweeper (in a worker process of its own) and
``--workers`` event worker processes.
For every miss it records the lag from its due time to the moment the drain owed it a write-back (right after
the transaction that recorded the miss committed; no write-back worker runs, the bench stands in for it).
A miss exists from the first second after the due time (docs/contracts.md section 4), so the lag is also
shown from that instant. ``--window`` measures the misses of the first seconds of the spread only, with every
other clock still running. Also prints Redis memory per running clock and each process's peak RSS.

Measured here (2 shared cores; load average by /proc/loadavg during the window), ``--clocks 1000000 --spread
1800 --window 120`` (556 misses a second, the default's rate; 66,667 measured while 933,000 clocks still ran),
SQLite, schema version 18: set up in 115 s, index rebuilt from SQL in 1.7 s; from the first missed instant p50
0.31 s, p99 0.50 s (target 1 s; p99 per 10 s 0.38-0.66 s; load 1.0-1.8), 553 misses a second folded; 120
bytes of Redis per running clock (sorted set 102); peak RSS 85 MB per event worker, 81 MB for the sweeper's
process. The code before (the snapshot's applied SLAs read per dimension by IN lists) right after, at load
0.8-1.8: the same p50 0.31 s, p99 0.50 s (an earlier run at load 0.2-0.8: p99 0.42 s). Before the snapshot read
a batch's misses once rather than once per dimension, at load 3-4: p99 0.91 s; before the sweeper queued a
sweep's ticks in one round trip and the rollup queries were reused, 20,000 clocks gave p99 51 s.
The same on PostgreSQL (``--database-url``; the setup's VACUUM ANALYZE runs while sla_misses is empty and
this server runs with autovacuum off, so the run has no statistics of the misses; sla_applied, loaded, is
analysed): set up in 31 s; from the first missed instant p50 0.32 s, p99 0.53 s (p99 per 10 s 0.39-0.67 s;
load 0.2-0.3), 553 misses a second; peak RSS 89 MB per event worker (earlier, schema 15 to 17: p50
0.37-0.41 s, p99 0.56-0.60 s). Before the rollup snapshot read the batch's misses once and by primary key,
the same run built a backlog mid-run (p99 24.3 s): each of the snapshot's seven dimensions read every miss of
the account through ix_sla_misses_due (dropped in version 18), so a batch cost more with every miss recorded
(docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import math
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
from plugin.adapters.store import applied, conversations, events, log, misses, outbox  # noqa: E402
from plugin.core.engine import ConversationState, add_events, evaluate  # noqa: E402
from plugin.core.engine.effects import changes, summary, writeback_intents  # noqa: E402
from plugin.core.events import CONVERSATION_CREATED, Conversation, Event  # noqa: E402

TARGET = timedelta(minutes=10)
CHATWOOT_CRON_SECONDS = 300
RULES = {
    "policies": {"quick": {"name": "Quick", "first_response": "10m"}},
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "quick"}],
}


def created_second(first_due: datetime, spread: float, clocks: int, number: int) -> datetime:
    """When conversation ``number`` (1-based) was created: its first response falls due ``TARGET`` later, the
    clocks' due times spread evenly over ``spread`` seconds from ``first_due``."""
    due = first_due + timedelta(seconds=spread * (number - 1) / clocks)
    return (due - TARGET).replace(microsecond=0)


def store_through_engine(runtime, numbers: list[int], created: dict[int, datetime]) -> None:
    """Store these conversations the way the workers do: one created event each, evaluated and saved."""
    rules = runtime.accounts.rules_for(1).current()
    now = datetime.now(UTC)
    for chunk_start in range(0, len(numbers), 2000):
        keys = [(1, number) for number in numbers[chunk_start : chunk_start + 2000]]
        with runtime.store.batch(keys) as batch:
            for key in keys:
                event = Event(
                    CONVERSATION_CREATED,
                    f"conversation_created:{key[1]}",
                    1,
                    key[1],
                    created[key[1]],
                    conversation=Conversation(account_id=1, conversation_id=key[1], created_at=created[key[1]]),
                )
                state, added = add_events(ConversationState(*key), [event])
                state, evaluation = evaluate(state, rules.match, rules.content_hash, now)
                current = summary(evaluation)
                found = changes(None, evaluation)
                intents = writeback_intents(None, current, found)
                batch.save(state, evaluation, current, found, intents, added=added)
            batch.flush()


def populate(runtime, clocks: int, first_due: datetime, spread: float) -> int:
    """Store ``clocks`` conversations whose first response falls due between first_due and +spread; returns
    how many went through the engine.

    Conversations created in the same second have the same stored rows but for their id, so one of each
    second goes through the engine and the store (:func:`store_through_engine`) and the others are copies
    of its rows made by the database (INSERT ... SELECT): a million conversations in a minute instead of a
    quarter of an hour. Only this setup is copied: the sweeper and the workers under test are the real ones.
    (A copy's packed summary names the original's id until its first evaluation rewrites it; the engine does
    not read the id from it.)
    """
    first_of_second: dict[datetime, int] = {}  # a creation second -> its conversation stored through the engine
    for number in range(1, clocks + 1):
        first_of_second.setdefault(created_second(first_due, spread, clocks, number), number)
    store_through_engine(runtime, sorted(first_of_second.values()), {n: at for at, n in first_of_second.items()})
    clone = sa.Table(
        "bench_clone",
        sa.MetaData(),
        sa.Column("conversation_id", sa.BigInteger, primary_key=True),
        sa.Column("template", sa.BigInteger, nullable=False),
        prefixes=["TEMPORARY"],
    )
    with runtime.store.engine.begin() as connection:
        clone.create(connection)
        copies = []
        for number in range(1, clocks + 1):
            template = first_of_second[created_second(first_due, spread, clocks, number)]
            if template != number:
                copies.append({"conversation_id": number, "template": template})
            if copies and (len(copies) == 50_000 or number == clocks):
                connection.execute(clone.insert(), copies)
                copies = []
        for table in (conversations, events, applied, log, outbox):
            copied = [column for column in table.c if column.name != "id"]  # the log's id is its own
            values = {column.name: column for column in copied}
            values["conversation_id"] = clone.c.conversation_id
            if table is events:  # the event key names its conversation
                values["key"] = "conversation_created:" + sa.cast(clone.c.conversation_id, sa.String)
            connection.execute(
                table.insert().from_select(
                    [column.name for column in copied],
                    sa.select(*(values[column.name] for column in copied)).join_from(
                        clone, table, sa.and_(table.c.account_id == 1, table.c.conversation_id == clone.c.template)
                    ),
                )
            )
        clone.drop(connection)
        # As if the on-track labels had been written when the conversations came in: what the write-back
        # owes after this is what the misses add.
        connection.execute(outbox.update().values(state="done"))
    runtime.store.rebuild_rollups()  # the copies' applied SLAs counted in the report rollups too
    if runtime.store.backend == "postgresql":
        # What autovacuum keeps on a live database: statistics, and the bulk-loaded tables vacuumed before the
        # run rather than during it.
        with runtime.store.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    return len(first_of_second)


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a running process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def watch_writebacks(redis, owed_key: str, seen: dict[int, float], stop: threading.Event) -> None:
    """Stand in for the write-back: take each conversation owed one off the account's queue with the time it
    was first owed (the drain queues it right after the transaction that recorded its miss commits)."""
    while not stop.is_set():
        popped = redis.zpopmin(owed_key, 10_000)
        for value, moment in popped:
            seen.setdefault(int(value), moment)
        if not popped:
            stop.wait(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=180.0, help="seconds over which the clocks fall due")
    parser.add_argument(
        "--window", type=float, help="measure the misses of the first WINDOW seconds of the spread (default: all)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", help="an empty database (default: a SQLite file in a temporary folder)")
    arguments = parser.parse_args()
    clocks, spread = arguments.clocks, arguments.spread
    window = min(spread, arguments.window or spread)
    measured = min(clocks, math.ceil(window * clocks / spread)) if window < spread else clocks
    with tempfile.TemporaryDirectory() as folder, EmbeddedRedis(folder) as server:
        rules_dir = Path(folder) / "rules"
        rules_dir.mkdir()
        (rules_dir / "rules.json").write_text(json.dumps(RULES))
        environment = dict(
            os.environ,
            REDIS_URL=server.url,
            DATABASE_URL=arguments.database_url or f"sqlite:///{folder}/bench.sqlite3",
            SLA_RULES_DIR=str(rules_dir),
            SLA_LOG_LEVEL="WARNING",
            # A helpdesk that is never called (no write-back worker runs): the drain owes each miss a
            # write-back, and the bench notes when (watch_writebacks).
            CHATWOOT_URL="http://127.0.0.1:9",
            CHATWOOT_ACCOUNT_ID="1",
            CHATWOOT_API_TOKEN="bench",
        )
        os.environ.update(environment)
        from plugin.jobs.drain import utcnow
        from plugin.jobs.runtime import current_runtime
        from plugin.jobs.sweeper import Sweeper

        runtime = current_runtime()
        redis = runtime.redis
        # The first clock falls due once the setup below is done (estimated generously).
        first_due = datetime.now(UTC) + timedelta(seconds=40 + min(clocks, spread) / 300 + clocks / 4_000)
        started = time.perf_counter()
        through_engine = populate(runtime, clocks, first_due, spread)
        stored = time.perf_counter()
        memory_before = int(redis.info("memory")["used_memory"])
        Sweeper(runtime, utcnow).rebuild()  # what a new sweeper leader does first: index every running clock
        indexed = time.perf_counter()
        tracked = deadlines.pending(redis)
        per_deadline = (int(redis.info("memory")["used_memory"]) - memory_before) / max(tracked, 1)
        zset_bytes = int(redis.memory_usage(redis_keys.DEADLINES) or 0)
        print(
            f"stored {clocks} running clocks in {stored - started:.0f} s ({through_engine} through the engine, "
            f"the rest copied); deadline index rebuilt from SQL in {indexed - stored:.1f} s; "
            f"first due in {(first_due - datetime.now(UTC)).total_seconds():.0f} s"
        )
        if first_due < datetime.now(UTC):
            print("the setup took longer than estimated: the first clocks were due before the workers started")
        command = [sys.executable, "-m", "plugin.cli", "worker"]
        workers = [subprocess.Popen([*command, "--no-sweeper", "--queue", "events"]) for _ in range(arguments.workers)]
        # The sweeper runs where production runs it when it can: a worker process of another pool (here one
        # that takes no job), so it never waits for a drain in its own process.
        sweeper = subprocess.Popen([*command, "--queue", "notifications"])
        seen: dict[int, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_writebacks, args=(redis, redis_keys.writeback_owed(1), seen, stop), daemon=True
        )
        watcher.start()
        window_end = first_due + timedelta(seconds=window)
        rss: dict[str, float] = {}
        try:
            give_up = window_end + timedelta(seconds=180)
            while datetime.now(UTC) < give_up and sum(1 for number in seen if number <= measured) < measured:
                time.sleep(1)
        finally:
            rss = {f"event worker {n + 1}": peak_rss_mb(worker.pid) for n, worker in enumerate(workers)}
            rss["sweeper"] = peak_rss_mb(sweeper.pid)
            stop.set()
            watcher.join()
            for process in [*workers, sweeper]:
                process.terminate()
            for process in [*workers, sweeper]:
                process.wait(timeout=30)
        with runtime.store.engine.connect() as connection:
            recorded = connection.execute(sa.select(sa.func.count()).select_from(misses)).scalar()
        lag_of = {
            number: moment - (created_second(first_due, spread, clocks, number) + TARGET).timestamp()
            for number, moment in seen.items()
            if number <= measured
        }
        lags = sorted(lag_of.values())
        if not lags:
            print("no miss was written back: the workers did not keep up or did not start")
            sys.exit(1)

        def percentile(share: float) -> float:
            return lags[min(len(lags) - 1, int(share * len(lags)))]

        p50, p99 = percentile(0.50), percentile(0.99)
        last = max(moment for number, moment in seen.items() if number <= measured)
        print(
            f"{clocks} running clocks falling due over {spread:.0f} s: {clocks / spread:.0f} misses a second; "
            f"measured the {measured} due in the first {window:.0f} s ({arguments.workers} event workers)"
        )
        print(
            f"misses recorded: {recorded}; owed a write-back: {len(lags)} of {measured}, the last "
            f"{last - window_end.timestamp():.1f} s after the window's end "
            f"({len(lags) / (last - first_due.timestamp()):.0f} a second from the first due time)"
        )
        print(f"lag from due time to the miss write-back: p50 {p50:.2f} s, p99 {p99:.2f} s, max {lags[-1]:.2f} s")
        print(
            f"  from the first missed instant (due + 1 s): p50 {p50 - 1:.2f} s, p99 {p99 - 1:.2f} s (target p99 <= 1 s)"
        )
        by_period: dict[int, list[float]] = {}  # 10 s periods of due times -> their lags
        for number, lag in lag_of.items():
            by_period.setdefault(int(spread * (number - 1) / clocks // 10), []).append(lag)
        print(
            "  p99 from the first missed instant per 10 s of due times: "
            + " ".join(f"{sorted(found)[int(0.99 * len(found))] - 1:.2f}" for _, found in sorted(by_period.items()))
        )
        print(
            f"Chatwoot's cron interval / our p99: {CHATWOOT_CRON_SECONDS} s / {p99:.2f} s = "
            f"{CHATWOOT_CRON_SECONDS / p99:.0f}x sooner"
        )
        print(
            f"Redis memory per running clock: {per_deadline:.0f} bytes "
            f"(sorted set alone: {zset_bytes / max(tracked, 1):.0f} bytes)"
        )
        print("peak RSS (MB): " + ", ".join(f"{name} {value:.0f}" for name, value in rss.items()))


if __name__ == "__main__":
    main()
