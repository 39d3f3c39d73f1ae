"""Sustained webhook load on loopback: throughput and ack latency against the bare-Flask baseline, and
end-to-end latency from webhook to label written, measured in one run on one machine.

    python bench/load_bench.py [--saturation 10] [--rounds 2] [--connections 32]
                               [--duration 60] [--rate 300] [--workers 2]

Two phases, on a private redis-server and a SQLite file in a temporary folder:

1. Saturation (receiver only, as ``bench/webhook_bench.py``, whose baseline app, gunicorn settings and
   server wrapper are imported from it): ``wrk`` (or Python threads) sends realistic mixed traffic, 200
   different Chatwoot bodies (conversations created, customer and agent messages, resolutions, typing and
   contact events) each correctly signed and under a new delivery id, to the plugin's receiver and to the
   baseline (a bare Flask app doing one RQ enqueue per request). Prints requests/s and p50/p99 ack latency
   of each and the ratios plugin / baseline.
2. Sustained end to end: the plugin's web app plus ``--workers`` ``sla-plugin worker`` processes writing
   back to a fake helpdesk on loopback (``tests/faults.py``'s, which records when each label arrives),
   paced at ``--rate`` webhooks/s for ``--duration`` seconds. Prints ack p50/p99, webhook-to-label p50/p99
   (from sending a conversation's first webhook to its first label arriving at the helpdesk), the queue lag
   (entries waiting in the stream, sampled every second) and how long the workers took to catch up.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH), str(ROOT / "tests")]

from plugin.adapters.services import EmbeddedRedis  # noqa: E402
from plugin.demo.helpdesk import HelpdeskServer  # noqa: E402
from plugin.jobs.drain import backlog  # noqa: E402

import webhook_bench  # noqa: E402  (the baseline app, gunicorn settings and server wrapper)
from faults import (  # noqa: E402
    API_TOKEN,
    Traffic,
    child_environment,
    fake_helpdesk,
    start_worker,
    stop_process,
    write_rules,
)

SECRET = webhook_bench.SECRET
PATH = "/webhooks/chatwoot"


def quantile(values: list[float], q: int) -> float:
    """The q-th percentile (1-99) of *values*, in the same unit."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


def mixed_bodies(count: int) -> list[bytes]:
    """*count* realistic bodies from many conversations, interleaved as a helpdesk would send them."""
    conversations = Traffic(first_conversation=900_000).conversations(max(1, count // 5))
    bodies = []
    step = 0
    while len(bodies) < count and any(step < len(bodies_) for bodies_ in conversations):
        bodies += [items[step] for items in conversations if step < len(items)]
        step += 1
    return bodies[:count]


# -- phase 1: saturation ----------------------------------------------------------------------------------

WRK_SCRIPT = """
local bodies = {%(bodies)s}
local signatures = {%(signatures)s}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("number", threads)
end
function init(arguments)
  number = wrk.thread:get("number")
  counter = 0
end
function request()
  counter = counter + 1
  local index = (counter + number * 7) %% #bodies + 1
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["X-Chatwoot-Timestamp"] = "%(timestamp)d"
  headers["X-Chatwoot-Signature"] = signatures[index]
  headers["X-Chatwoot-Delivery"] = string.format("load-%%d-%%d", number, counter)
  return wrk.format("POST", "%(path)s", headers, bodies[index])
end
"""


def run_wrk_mixed(port: int, bodies: list[bytes], duration: int, connections: int, workdir: Path):
    timestamp = int(time.time())
    script = workdir / "mixed.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "bodies": ",\n".join(f"[==[{body.decode()}]==]" for body in bodies),
            "signatures": ",".join(f'"{webhook_bench.signature(body, timestamp)}"' for body in bodies),
            "timestamp": timestamp,
            "path": PATH,
        }
    )
    output = subprocess.run(
        [
            "wrk",
            "--threads",
            "2",
            "--connections",
            str(connections),
            "--duration",
            f"{duration}s",
            "--timeout",
            "5s",
            "--latency",
            "--script",
            str(script),
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import re

    requests_done, seconds, unit = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output).group(1, 2, 3)
    errors = sum(int(count) for count in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors += sum(int(count) for count in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return webhook_bench.Result(
        int(requests_done),
        float(seconds) / (1000 if unit == "ms" else 1),
        webhook_bench._wrk_latency_ms(output, "50%"),
        webhook_bench._wrk_latency_ms(output, "99%"),
        errors,
    )


def run_threads_mixed(port: int, bodies: list[bytes], duration: int, connections: int):
    """The webhook bench's client, each connection cycling through the mixed bodies, signed."""
    timestamp = int(time.time())

    def request_for(number: int, sent: int) -> tuple[bytes, dict[str, str]]:
        body = bodies[(sent * connections + number) % len(bodies)]
        return body, {
            "Content-Type": "application/json",
            "X-Chatwoot-Timestamp": str(timestamp),
            "X-Chatwoot-Signature": webhook_bench.signature(body, timestamp),
            "X-Chatwoot-Delivery": f"t-{number}-{sent}",
        }

    return webhook_bench.run_python_client(port, request_for, duration, connections)


def saturation(redis_server: EmbeddedRedis, workdir: Path, arguments) -> None:
    bodies = mixed_bodies(200)
    use_wrk = shutil.which("wrk") is not None and not arguments.python_client
    common = {"REDIS_URL": redis_server.url, "SLA_LOG_LEVEL": "WARNING"}
    plugin_environment = {
        **common,
        "CHATWOOT_WEBHOOK_SECRET": SECRET,
        "CHATWOOT_ACCOUNT_ID": "1",
        "DATABASE_URL": f"sqlite:///{workdir / 'saturation.sqlite3'}",
        "SLA_RULES_DIR": str(ROOT / "rules"),
    }
    apps = {
        "baseline": webhook_bench.Server("webhook_bench:create_baseline_app()", common, str(BENCH)),
        "plugin": webhook_bench.Server("plugin.web:create_app()", plugin_environment, str(ROOT)),
    }
    results: dict[str, list] = {name: [] for name in apps}
    connection = redis_server.connection()
    print(
        f"phase 1, saturation: {'wrk' if use_wrk else 'Python threads'}, {arguments.connections} connections, "
        f"{arguments.rounds} x {arguments.saturation} s per app, mixed traffic of {len(bodies)} signed bodies, "
        f"gunicorn {' '.join(webhook_bench.GUNICORN_OPTIONS)}",
        flush=True,
    )
    try:
        for _ in range(arguments.rounds):
            for name, server in apps.items():
                connection.flushall()
                run = run_wrk_mixed if use_wrk else run_threads_mixed
                extra = (workdir,) if use_wrk else ()
                result = run(server.port, bodies, arguments.saturation, arguments.connections, *extra)
                results[name].append(result)
                print(
                    f"  {name:8}: {result.per_second:7.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                    flush=True,
                )
    finally:
        for server in apps.values():
            server.stop()
        connection.close()
    baseline, plugin = results["baseline"], results["plugin"]
    ratio = statistics.median(p.per_second / b.per_second for b, p in zip(baseline, plugin, strict=False))
    p50 = statistics.median(p.p50_ms / b.p50_ms for b, p in zip(baseline, plugin, strict=False))
    p99 = statistics.median(p.p99_ms / b.p99_ms for b, p in zip(baseline, plugin, strict=False))
    print(
        f"  throughput plugin / baseline: {ratio:.2f}; ack latency plugin / baseline: p50 {p50:.2f}, p99 {p99:.2f} "
        f"(medians over rounds; latency ratios below 1 mean the plugin answers faster)",
        flush=True,
    )


# -- phase 2: sustained, end to end ----------------------------------------------------------------------------


@dataclass
class Sustained:
    """A paced webhook sender: ``rate`` bodies a second over ``threads`` keep-alive connections."""

    port: int
    rate: float
    duration: float
    threads: int = 8
    first_conversation: int = 1
    ack: list[float] = field(default_factory=list)
    first_sent: dict[int, float] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    progress: dict[int, int] = field(default_factory=dict)  # requests sent so far, per thread (live)

    def run(self, on_second=None) -> None:
        traffic = Traffic(first_conversation=self.first_conversation)
        lock = threading.Lock()
        stop_at = time.monotonic() + self.duration
        started = time.monotonic()
        per_thread = self.rate / self.threads

        def sender(number: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conversation = number
            ack, first, statuses, count = [], {}, {}, 0
            next_at = time.monotonic()
            while time.monotonic() < stop_at:
                bodies = traffic.conversation(conversation)
                cid = traffic.first_conversation + conversation
                for step, body in enumerate(bodies):
                    next_at += 1 / per_thread
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if time.monotonic() >= stop_at:
                        break
                    timestamp = int(time.time())
                    sent_at = time.time()
                    begun = time.perf_counter()
                    try:
                        connection.request(
                            "POST",
                            PATH,
                            body=body,
                            headers={
                                "Content-Type": "application/json",
                                "X-Chatwoot-Timestamp": str(timestamp),
                                "X-Chatwoot-Signature": webhook_bench.signature(body, timestamp),
                                "X-Chatwoot-Delivery": f"s-{cid}-{step}",
                            },
                        )
                        response = connection.getresponse()
                        response.read()
                        status = response.status
                    except (OSError, http.client.HTTPException):
                        connection.close()
                        status = 0
                    ack.append(time.perf_counter() - begun)
                    statuses[status] = statuses.get(status, 0) + 1
                    count += 1
                    self.progress[number] = count
                    if step == 0 and status == 202:
                        first[cid] = sent_at
                conversation += self.threads
            with lock:
                self.ack.extend(ack)
                self.first_sent.update(first)
                for status, number_ in statuses.items():
                    self.statuses[status] = self.statuses.get(status, 0) + number_
                self.sent += count

        threads = [threading.Thread(target=sender, args=(number,), daemon=True) for number in range(self.threads)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            time.sleep(1)
            if on_second:
                on_second(time.monotonic() - started)
        self.elapsed = time.monotonic() - started


class Plant:
    """The plugin as production runs it, on loopback: gunicorn (2 workers), N ``sla-plugin worker``
    processes, a private Redis, SQLite, and the fake helpdesk the workers write back to."""

    def __init__(self, workdir: Path, redis_server: EmbeddedRedis, workers: int) -> None:
        self.workdir = workdir
        self.redis = redis_server.connection()
        self.helpdesk = HelpdeskServer(fake_helpdesk()).start(send_webhooks=False)
        rules_dir = write_rules(workdir / "rules")
        self.environment = child_environment(
            REDIS_URL=redis_server.url,
            DATABASE_URL=f"sqlite:///{workdir / 'sla.sqlite3'}",
            SLA_RULES_DIR=str(rules_dir),
            CHATWOOT_URL=self.helpdesk.url,
            CHATWOOT_ACCOUNT_ID="1",
            CHATWOOT_API_TOKEN=API_TOKEN,
            CHATWOOT_WEBHOOK_SECRET=SECRET,
            SLA_LOG_LEVEL="WARNING",
        )
        self.workers = [start_worker(self.environment, workdir / f"worker-{number}.log") for number in range(workers)]
        self.web = webhook_bench.Server("plugin.web:create_app()", self.environment, str(ROOT))

    @property
    def port(self) -> int:
        return self.web.port

    def lag(self) -> int:
        return backlog(self.redis)

    def stop(self) -> None:
        self.web.stop()
        for worker in self.workers:
            stop_process(worker)
        self.helpdesk.stop()


def sustained(redis_server: EmbeddedRedis, workdir: Path, arguments) -> None:
    redis_server.connection().flushall()
    plant = Plant(workdir, redis_server, arguments.workers)
    lags: list[int] = []
    try:
        print(
            f"phase 2, sustained end to end: {arguments.rate:.0f} webhooks/s for {arguments.duration} s, gunicorn "
            f"(2 workers) + {arguments.workers} sla-plugin worker(s), SQLite, write-back to a fake helpdesk",
            flush=True,
        )
        load = Sustained(plant.port, arguments.rate, arguments.duration)
        load.run(on_second=lambda _elapsed: lags.append(plant.lag()))
        finished = time.monotonic()
        history = plant.helpdesk.helpdesk.label_history
        while time.monotonic() - finished < 300 and (
            plant.lag() > 0 or any(not history.get(cid) for cid in list(load.first_sent))
        ):
            time.sleep(0.2)
        catch_up = time.monotonic() - finished
    finally:
        plant.stop()
    history = plant.helpdesk.helpdesk.label_history
    e2e = [history[cid][0][0] - sent for cid, sent in load.first_sent.items() if history.get(cid)]
    missing = sum(1 for cid in load.first_sent if not history.get(cid))
    print(
        f"  sent {load.sent} webhooks in {load.elapsed:.1f} s ({load.sent / load.elapsed:.0f}/s); "
        f"answers {load.statuses}"
    )
    print(f"  ack latency: p50 {quantile(load.ack, 50) * 1000:.1f} ms, p99 {quantile(load.ack, 99) * 1000:.1f} ms")
    print(
        f"  webhook -> label written: p50 {quantile(e2e, 50) * 1000:.0f} ms, p99 {quantile(e2e, 99) * 1000:.0f} ms "
        f"over {len(e2e)} conversations ({missing} without a label yet)"
    )
    print(
        f"  queue lag (entries waiting, sampled each second): median {statistics.median(lags or [0]):.0f}, "
        f"max {max(lags or [0])}; every label written {catch_up:.1f} s after the load stopped"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saturation", type=int, default=10, help="seconds per saturation round and app")
    parser.add_argument("--rounds", type=int, default=2, help="alternating saturation rounds per app")
    parser.add_argument("--connections", type=int, default=32, help="connections in the saturation phase")
    parser.add_argument("--duration", type=int, default=60, help="seconds of sustained load")
    parser.add_argument("--rate", type=float, default=300, help="webhooks per second in the sustained phase")
    parser.add_argument("--workers", type=int, default=2, help="sla-plugin worker processes")
    parser.add_argument("--python-client", action="store_true", help="threads instead of wrk for saturation")
    parser.add_argument("--skip-saturation", action="store_true")
    arguments = parser.parse_args()
    os.environ.setdefault("SLA_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="sla-load-") as temporary, EmbeddedRedis(temporary) as redis_server:
        workdir = Path(temporary)
        if not arguments.skip_saturation:
            saturation(redis_server, workdir, arguments)
        sustained(redis_server, workdir, arguments)


if __name__ == "__main__":
    main()
