"""Soak: memory of the web and worker processes over a long steady webhook load (no leak means flat).

    python bench/soak_bench.py [--minutes 10] [--rate 150] [--workers 2] [--sample 10]

Runs the same plant as ``bench/load_bench.py``'s sustained phase (gunicorn with 2 workers, ``--workers``
``sla-plugin worker`` processes, a private Redis, SQLite, write-back to a fake helpdesk on loopback) under a
paced load of realistic webhooks, and samples every ``--sample`` seconds the resident memory (RSS, from
/proc) of the gunicorn master and its workers, of each worker process with its children (RQ's scheduler),
and Redis' used memory. Prints the samples and, per process group, the growth per minute: the least-squares
slope over the samples after the first fifth of the run (warm-up: imports, caches and pools filling).

Redis grows by design while the load runs: each delivery's dedupe key lives 7 days (``plugin.adapters.streams``), and
conversations' deadlines stay indexed; processes should not.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH), str(BENCH.parent / "tests")]

from load_bench import Plant, Sustained, quantile  # noqa: E402

from plugin.adapters.services import EmbeddedRedis  # noqa: E402

from faults import children_of, rss_kib  # noqa: E402


def tree_rss(pid: int) -> int:
    """RSS of a process and its children, in KiB (0 once it is gone)."""
    total = 0
    for member in [pid, *children_of(pid)]:
        with contextlib.suppress(OSError):
            total += rss_kib(member)
    return total


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return float("nan")
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the soak (default 10)")
    parser.add_argument("--rate", type=float, default=150, help="webhooks per second (default 150)")
    parser.add_argument("--workers", type=int, default=2, help="sla-plugin worker processes (default 2)")
    parser.add_argument("--sample", type=float, default=10, help="seconds between memory samples (default 10)")
    arguments = parser.parse_args()
    os.environ.setdefault("SLA_LOG_LEVEL", "WARNING")
    duration = arguments.minutes * 60
    with tempfile.TemporaryDirectory(prefix="sla-soak-") as temporary, EmbeddedRedis(temporary) as redis_server:
        plant = Plant(Path(temporary), redis_server, arguments.workers)
        redis = redis_server.connection()
        samples: list[dict] = []
        load = Sustained(plant.port, arguments.rate, duration)
        runner = threading.Thread(target=load.run, daemon=True)
        print(
            f"soak: {arguments.rate:.0f} webhooks/s for {arguments.minutes:g} min, gunicorn (2 workers) + "
            f"{arguments.workers} sla-plugin worker(s); RSS in MiB",
            flush=True,
        )
        print(f"{'t (s)':>6} {'web':>7} {'workers':>8} {'redis':>7} {'lag':>6} {'sent':>8}", flush=True)
        started = time.monotonic()
        try:
            runner.start()
            while runner.is_alive():
                elapsed = time.monotonic() - started
                sample = {
                    "t": elapsed,
                    "web": tree_rss(plant.web.process.pid),
                    "workers": sum(tree_rss(worker.pid) for worker in plant.workers),
                    "each_worker": [tree_rss(worker.pid) for worker in plant.workers],
                    "redis": int(redis.info("memory")["used_memory"]) // 1024,
                    "lag": plant.lag(),
                }
                samples.append(sample)
                print(
                    f"{elapsed:6.0f} {sample['web'] / 1024:7.1f} {sample['workers'] / 1024:8.1f} "
                    f"{sample['redis'] / 1024:7.1f} {sample['lag']:6d} {sum(load.progress.values()):8d}",
                    flush=True,
                )
                runner.join(timeout=arguments.sample)
        finally:
            plant.stop()
        steady = [sample for sample in samples if sample["t"] >= duration / 5]
        print()
        print(
            f"sent {load.sent} webhooks in {load.elapsed:.0f} s ({load.sent / load.elapsed:.0f}/s); answers "
            f"{load.statuses}; ack p50 {quantile(load.ack, 50) * 1000:.1f} ms, "
            f"p99 {quantile(load.ack, 99) * 1000:.1f} ms"
        )
        for name in ("web", "workers", "redis"):
            first, last = samples[0][name] / 1024, samples[-1][name] / 1024
            growth = slope_per_minute([(sample["t"], sample[name]) for sample in steady]) / 1024
            print(
                f"{name:8}: {first:7.1f} MiB at start, {last:7.1f} MiB at the end; after warm-up "
                f"{growth:+.2f} MiB/min ({growth * 1048576 / max(1.0, load.sent / load.elapsed * 60):+.1f} "
                f"bytes per webhook)"
            )
        for number in range(arguments.workers):
            growth = slope_per_minute([(sample["t"], sample["each_worker"][number]) for sample in steady]) / 1024
            print(f"  worker {number}: {growth:+.2f} MiB/min")
        print(
            f"queue lag: median {statistics.median(s['lag'] for s in samples):.0f}, "
            f"max {max(s['lag'] for s in samples)}"
        )


if __name__ == "__main__":
    main()
