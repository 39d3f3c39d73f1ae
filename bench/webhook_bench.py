"""Webhook receiver throughput against its baseline (docs/architecture.md, "Checks, tests and benchmarks"),
measured in one run on one machine.

    .venv/bin/python bench/webhook_bench.py [--duration 10] [--connections 32] [--rounds 2]

Starts a private redis-server, then runs, under the same gunicorn settings (2 sync workers, loopback):
- the plugin's app, ``plugin.web:create_app()``, signature checking on, every request a new signed delivery
  of a real Chatwoot payload (so each one takes the full path: verify, parse, dedupe, XADD, metrics);
- the same app serving an accounts file (docs/accounts.md): the deliveries go to one account's URL,
  ``/webhooks/chatwoot/1``, verified with that account's secret and queued in that account's stream;
- the baseline, a bare Flask app doing one RQ enqueue of the raw body per request.
Each is driven by ``wrk`` when installed (``apt-get install wrk``), else by a multi-threaded Python client
with keep-alive, bounded in count and time. Rounds alternate between the apps to spread the noise.
Prints requests/s, p50 and p99 latency of each, and the ratio of each plugin app to the baseline (target >= 0.8).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from plugin.adapters import redis_keys  # noqa: E402
from plugin.adapters.services import EmbeddedRedis, pick_free_port  # noqa: E402  (needs the path above)
from plugin.demo.helpdesk import chatwoot_headers  # noqa: E402
from plugin.demo.helpdesk import signature as chatwoot_signature  # noqa: E402

PAYLOAD = PROJECT_ROOT / "tests" / "fixtures" / "chatwoot" / "message_created-incoming.json"
SECRET = "bench-webhook-secret"
GUNICORN_OPTIONS = [
    *("--workers", "2", "--worker-class", "sync", "--backlog", "2048", "--log-level", "warning"),
    "--no-control-socket",  # no control socket file under the user's home
]
TARGET_RATIO = 0.8


def create_baseline_app():
    """The baseline: a bare Flask app that enqueues the raw body as one RQ job per request."""
    from flask import Flask, request
    from redis import Redis
    from rq import Queue

    app = Flask(__name__)
    queue = Queue("baseline", connection=Redis.from_url(os.environ["REDIS_URL"]))

    @app.post("/webhooks/chatwoot")
    def receive():
        queue.enqueue("webhook_bench.noop", request.get_data())
        return {"status": "queued"}, 202

    return app


def noop(body: bytes) -> None:
    """The baseline's job (never run: the benchmark measures the receiver only)."""


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


class Server:
    """One app under gunicorn on a spare loopback port."""

    def __init__(self, app_spec: str, environment: dict[str, str], python_path: str) -> None:
        self.port = pick_free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            *GUNICORN_OPTIONS,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--pythonpath",
            python_path,
            app_spec,
        ]
        self.process = subprocess.Popen(command, env={**os.environ, **environment}, cwd=PROJECT_ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise SystemExit(f"gunicorn {app_spec} exited with {self.process.returncode}") from None
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"gunicorn {app_spec} did not listen within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def signature(body: bytes, timestamp: int) -> str:
    """The ``X-Chatwoot-Signature`` Chatwoot sends for *body* at *timestamp*, with the bench's secret."""
    return chatwoot_signature(SECRET, timestamp, body)


def signed_headers(body: bytes, timestamp: int) -> dict[str, str]:
    """Headers of one signed delivery (the delivery id is added per request)."""
    return chatwoot_headers(body, SECRET, sent_at=timestamp)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = io.open(os.getenv("BENCH_BODY_FILE"), "rb"):read("*a")
%(headers)s
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
  -- a new delivery id per request: every request is a new delivery, never a cheap duplicate
  counter = counter + 1
  wrk.headers["X-Chatwoot-Delivery"] = string.format("bench-%%d-%%d", number, counter)
  return wrk.format()
end
"""


def run_wrk(
    port: int, path: str, body_file: Path, headers: dict[str, str], duration: int, connections: int, workdir: Path
) -> Result:
    script = workdir / "post.lua"
    header_lines = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items())
    script.write_text(WRK_SCRIPT % {"headers": header_lines})
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
            f"http://127.0.0.1:{port}{path}",
        ],
        env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests, seconds, unit = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output).group(1, 2, 3)
    errors = sum(int(count) for count in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors += sum(int(count) for count in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return Result(
        int(requests),
        float(seconds) / (1000 if unit == "ms" else 1),
        _wrk_latency_ms(output, "50%"),
        _wrk_latency_ms(output, "99%"),
        errors,
    )


def _wrk_latency_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s*{percentile}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).group(1, 2)
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_python_client(
    port: int,
    path: str,
    request_for: Callable[[int, int], tuple[bytes, dict[str, str]]],
    duration: int,
    connections: int,
    max_requests: int = 200_000,
) -> Result:
    """Threads posting over keep-alive connections until *duration* seconds or *max_requests* requests.

    ``request_for(connection number, request number)`` gives each request's body and headers.
    """
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        mine, failed, sent = [], 0, 0
        while time.monotonic() < stop_at and len(latencies) + len(mine) < max_requests:
            body, headers = request_for(number, sent)
            sent += 1
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != 202:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(number,)) for number in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return Result(len(latencies), elapsed, quantiles[49] * 1000, quantiles[98] * 1000, errors[0])


def main() -> None:
    """Run the benchmark and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per round and app (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per app (default 2)")
    parser.add_argument("--python-client", action="store_true", help="use the Python client even if wrk exists")
    arguments = parser.parse_args()

    body = PAYLOAD.read_bytes()
    use_wrk = shutil.which("wrk") is not None and not arguments.python_client
    with tempfile.TemporaryDirectory(prefix="sla-bench-") as temporary, EmbeddedRedis(temporary) as redis_server:
        workdir = Path(temporary)
        body_file = workdir / "body.json"
        body_file.write_bytes(body)
        (workdir / "rules").mkdir()
        common = {"REDIS_URL": redis_server.url, "SLA_LOG_LEVEL": "WARNING"}
        plugin_environment = {
            **common,
            "CHATWOOT_WEBHOOK_SECRET": SECRET,
            "CHATWOOT_ACCOUNT_ID": "1",
            "DATABASE_URL": f"sqlite:///{workdir / 'sla.sqlite3'}",
            "SLA_RULES_DIR": str(PROJECT_ROOT / "rules"),
        }
        accounts_file = workdir / "accounts.json"
        accounts_file.write_text(
            json.dumps({"accounts": {"1": {"webhook_secret": SECRET}, "2": {"webhook_secret": "x"}}})
        )
        accounts_environment = {
            key: value
            for key, value in plugin_environment.items()
            if key not in ("CHATWOOT_WEBHOOK_SECRET", "CHATWOOT_ACCOUNT_ID")
        }
        # (name, server, path posted to)
        apps = {
            "baseline (bare Flask + RQ enqueue)": (
                Server("webhook_bench:create_baseline_app()", common, str(Path(__file__).parent)),
                "/webhooks/chatwoot",
            ),
            "plugin (plugin.web:create_app)": (
                Server("plugin.web:create_app()", plugin_environment, str(PROJECT_ROOT)),
                "/webhooks/chatwoot",
            ),
            "plugin, accounts file (/webhooks/chatwoot/1)": (
                Server(
                    "plugin.web:create_app()",
                    {**accounts_environment, "SLA_ACCOUNTS_FILE": str(accounts_file)},
                    str(PROJECT_ROOT),
                ),
                "/webhooks/chatwoot/1",
            ),
        }
        client = "wrk" if use_wrk else "Python threads"
        print(
            f"load: {client}, {arguments.connections} connections, {arguments.rounds} x "
            f"{arguments.duration} s per app, gunicorn {' '.join(GUNICORN_OPTIONS)}",
            flush=True,
        )
        results: dict[str, list[Result]] = {name: [] for name in apps}
        connection = redis_server.connection()
        try:
            for _ in range(arguments.rounds):
                for name, (server, path) in apps.items():
                    connection.flushall()
                    # Signed once per round: the timestamp must stay within the receiver's 5-minute window.
                    headers = signed_headers(body, int(time.time()))
                    if use_wrk:
                        result = run_wrk(
                            server.port, path, body_file, headers, arguments.duration, arguments.connections, workdir
                        )
                    else:
                        result = run_python_client(
                            server.port,
                            path,
                            lambda number, sent, headers=headers: (
                                body,
                                {**headers, "X-Chatwoot-Delivery": f"bench-{number}-{sent}"},
                            ),
                            arguments.duration,
                            arguments.connections,
                        )
                    results[name].append(result)
                    # flushall ran before the round, so only this app's hand-over holds anything
                    queued = connection.xlen(redis_keys.EVENT_STREAM) + connection.llen("rq:queue:baseline")
                    queued += connection.xlen(redis_keys.account_stream(1))
                    print(
                        f"  {name}: {result.per_second:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                        f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}  queued {queued}",
                        flush=True,
                    )
        finally:
            for server, _path in apps.values():
                server.stop()

    print()
    for name, runs in results.items():
        print(
            f"{name}: {statistics.median(run.per_second for run in runs):.0f} req/s (median of {len(runs)}), "
            f"p50 {statistics.median(run.p50_ms for run in runs):.2f} ms, "
            f"p99 {statistics.median(run.p99_ms for run in runs):.2f} ms"
        )
    # Each round's runs were back to back, so their ratio shares the machine's load of the moment.
    baseline_runs, *plugin_apps = results.items()
    for name, plugin_runs in plugin_apps:
        ratios = [
            plugin.per_second / baseline.per_second
            for baseline, plugin in zip(baseline_runs[1], plugin_runs, strict=True)
        ]
        ratio = statistics.median(ratios)
        print(
            f"ratio {name} / baseline: {ratio:.2f} (median of rounds {', '.join(f'{each:.2f}' for each in ratios)}; "
            f"target >= {TARGET_RATIO}) {'OK' if ratio >= TARGET_RATIO else 'BELOW TARGET'}"
        )


if __name__ == "__main__":
    main()
