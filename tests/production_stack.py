"""The production shape in subprocesses, for the end-to-end and scale-out tests.

A private redis-server on a unix socket, a PostgreSQL database emptied for the test, the demo helpdesk in a
thread of the test process (the plugin installs into it, reads its labels and writes notes through its REST
API, and gets its webhooks, signed), gunicorn serving ``plugin.web:create_app()`` and ``sla-plugin worker``
processes. Each process's output goes to a log file in the test's folder; :meth:`ProductionStack.logs`
shows their ends when a test fails. :meth:`ProductionStack.stop` terminates everything, also on failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from redis import Redis
from rq import Queue, Worker

from plugin.adapters import redis_keys
from plugin.adapters.services import EmbeddedRedis, pick_free_port
from plugin.adapters.store import Store, outbox
from plugin.demo.helpdesk import DEMO_API_TOKEN, PLUGIN_USER_ID, DemoHelpdesk, HelpdeskServer

from databases import empty_public_schema

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "admin-token-for-tests"
STOP_TIMEOUT_SECONDS = 15


class ProductionStack:
    """gunicorn (``web_processes`` workers) + ``worker_processes`` x ``sla-plugin worker`` + Redis +
    PostgreSQL + the demo helpdesk. Use as a context manager."""

    def __init__(
        self,
        folder: Path,
        database_url: str,
        rules: dict[str, Any],
        web_processes: int = 2,
        worker_processes: int = 2,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.settings = settings or {}
        self.database_url = database_url
        self.web_processes = web_processes
        self.worker_processes = worker_processes
        self.port = pick_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rules_dir = folder / "rules"
        self.rules_dir.mkdir()
        (self.rules_dir / "rules.json").write_text(json.dumps(rules))
        self.redis_server = EmbeddedRedis(folder / "redis")
        self.helpdesk = DemoHelpdesk()
        self.helpdesk_server = HelpdeskServer(self.helpdesk)
        self.processes: dict[str, subprocess.Popen] = {}
        self.environment: dict[str, str] = {}
        self.secret = ""

    # -- life cycle -----------------------------------------------------------------------------------

    def __enter__(self) -> ProductionStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exception_info) -> None:
        self.stop()

    def start(self) -> None:
        """Empty the database, start Redis and the helpdesk, install, start web and workers, wait for them."""
        empty_public_schema(self.database_url)
        self.redis_server.start()
        self.helpdesk_server.start()
        self.environment = {
            **{
                name: value
                for name, value in os.environ.items()
                if not name.startswith(("SLA_", "CHATWOOT_", "DATABASE_URL", "REDIS_URL"))
            },
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_server.url,
            "SLA_RULES_DIR": str(self.rules_dir),
            "CHATWOOT_URL": self.helpdesk_server.url,
            "CHATWOOT_ACCOUNT_ID": "1",
            "CHATWOOT_API_TOKEN": DEMO_API_TOKEN,
            "CHATWOOT_PLUGIN_USER_ID": str(PLUGIN_USER_ID),
            "SLA_ADMIN_TOKEN": ADMIN_TOKEN,
            "SLA_LOG_LEVEL": "DEBUG",
            **self.settings,
        }
        self.secret = self._install()
        self.environment["CHATWOOT_WEBHOOK_SECRET"] = self.secret
        command = [sys.executable, "-m", "plugin.cli"]
        self._spawn("web", [*command, "serve", "--port", str(self.port), "--workers", str(self.web_processes)])
        # All at once, as a process manager starts them: they migrate the empty database together.
        for number in range(1, self.worker_processes + 1):
            self._spawn(f"worker-{number}", [*command, "worker"])
        self.wait_for(lambda: self._healthy(), 60, "the web app to answer /healthz")
        self.wait_for(
            lambda: len(Worker.all(connection=self.redis())) == self.worker_processes,
            60,
            f"{self.worker_processes} RQ workers to register",
        )

    def stop(self) -> None:
        """Terminate every process (gracefully, then by force), the helpdesk and Redis."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.helpdesk_server.stop()
        self.redis_server.stop()

    def _install(self) -> str:
        """``sla-plugin install`` against the helpdesk; returns the webhook secret it saved."""
        secret_file = self.folder / "install.env"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "plugin.cli",
                "install",
                "--url",
                self.helpdesk_server.url,
                "--account",
                "1",
                "--token",
                DEMO_API_TOKEN,
                "--public-url",
                self.url,
                "--secret-file",
                str(secret_file),
            ],
            cwd=PROJECT_ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        match = re.search(r"^CHATWOOT_WEBHOOK_SECRET=(.+)$", secret_file.read_text(), re.MULTILINE)
        assert match, "install saved no webhook secret"
        return match.group(1)

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=self.environment, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()  # the child has its own descriptor

    # -- observing ------------------------------------------------------------------------------------

    def redis(self) -> Redis:
        """A client of the stack's Redis."""
        return self.redis_server.connection()

    def store(self) -> Store:
        """The stack's store (the same database the workers write)."""
        return Store.from_url(self.database_url)

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll *condition* until it returns something true; fail with the processes' logs after *timeout*."""
        deadline = time.monotonic() + timeout
        while True:
            dead = {name: process.returncode for name, process in self.processes.items() if process.poll() is not None}
            assert not dead, f"processes exited while waiting for {what}: {dead}\n{self.logs()}"
            value = condition()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}\n{self.logs()}"
            time.sleep(0.2)

    def settled(self, calm_seconds: float = 1.5) -> Callable[[], bool]:
        """A condition for :meth:`wait_for`: :meth:`quiet` held on every poll for *calm_seconds* (an echo
        of the plugin's last write may be on its way while every queue looks empty)."""
        calm_since: list[float] = []

        def condition() -> bool:
            if not self.quiet():
                calm_since.clear()
                return False
            calm_since[:] = calm_since or [time.monotonic()]
            return time.monotonic() - calm_since[0] >= calm_seconds

        return condition

    def quiet(self) -> bool:
        """Nothing left to do: no webhook on its way, the event stream read and acknowledged, both queues
        empty, no job running, every write-back intent done."""
        if self.helpdesk.webhooks_pending():
            return False
        redis = self.redis()
        if redis.exists(redis_keys.EVENT_STREAM) and (
            redis.xlen(redis_keys.EVENT_STREAM)
            or redis.xpending(redis_keys.EVENT_STREAM, redis_keys.EVENT_GROUP)["pending"]
        ):
            return False
        for name in (redis_keys.EVENTS_QUEUE, redis_keys.WRITEBACK_QUEUE):
            queue = Queue(name, connection=redis)
            if queue.count or queue.started_job_registry.count or queue.scheduled_job_registry.count:
                return False
        with self.store().engine.connect() as connection:
            open_intents = connection.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state.in_(("pending", "sending")))
            ).scalar()
        return open_intents == 0

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{"name{labels}": value}``."""
        response = requests.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        values = {}
        for line in response.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def notes(self, conversation_id: int) -> list[str]:
        """The private notes the plugin posted in a conversation."""
        conversation = self.helpdesk.conversations[conversation_id]
        return [
            message.content
            for message in conversation.messages
            if message.private and message.sender is not None and message.sender.id == PLUGIN_USER_ID
        ]

    def logs(self, lines: int = 30) -> str:
        """The last lines of every process's log."""
        parts = []
        for name in self.processes:
            text = (self.folder / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False
