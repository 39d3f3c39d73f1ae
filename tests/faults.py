"""Helpers for the fault-injection, security and load suites: things that break on purpose, and the checks
that tell whether anything was lost.

- :class:`TcpProxy`: a TCP proxy on loopback (in front of PostgreSQL) that can cut every connection and
  refuse new ones, then let them through again.
- :class:`RestartableRedis`: a private redis-server on a unix socket that can be restarted on the same socket
  (its data is gone afterwards, as after a crash of a Redis without persistence) or flushed.
- :func:`fake_helpdesk`: the fake Chatwoot of ``plugin.demo.helpdesk`` (faults injected with its ``fail_next``),
  taking the conversations of these suites' own webhook bodies. Served through `responses` (its ``register``)
  for in-process workers or over real HTTP on loopback (:func:`fake_helpdesk_server`) for worker subprocesses.
- :class:`Traffic`: realistic Chatwoot webhook bodies (the shared fixtures with new ids, re-timed relative to
  now so that every due and at-risk instant stays far from the test's own duration).
- :func:`verify`: the store's summaries against ``plugin.cli.replay`` on the same bodies, every label, one note
  per miss; returns a :class:`Verdict` whose ``lost`` must be zero.
- subprocess helpers for ``sla-plugin worker`` and gunicorn, and :func:`wait_until` (tests poll with
  deadlines, they never assert timings).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from plugin.adapters import redis_keys
from plugin.adapters.services import EmbeddedRedis, pick_free_port
from plugin.demo.helpdesk import DemoHelpdesk, HelpdeskServer
from plugin.jobs.drain import backlog

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chatwoot"
BASE_URL = "http://chatwoot.test"
API_TOKEN = "api-token-faults-0a1b2c3d4e"
LABEL_TITLES = {"on_track": "sla-on-track", "at_risk": "sla-at-risk", "missed": "sla-missed"}
RULES = {
    "policies": {
        "quick": {
            "name": "Quick",
            "first_response": "1h",
            "next_response": "1h",
            "resolution": "8h",
            "warn_before": "10m",
            "target": 0.9,
        }
    },
    "rules": [{"name": "Everything", "when": {"all": []}, "apply": "quick"}],
    "labels": {key: {"title": title, "color": "#2E7D32"} for key, title in LABEL_TITLES.items()},
}
AGENT_LABELS = ("billing",)


def write_rules(directory: Path) -> Path:
    """The suites' rule set (one live policy for everything) in *directory*; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.json").write_text(json.dumps(RULES))
    return directory


def wait_until(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.1) -> Any:
    """Poll *predicate* until it returns something true; fail with *message* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s: {message}")
        time.sleep(interval)


# -- a TCP proxy that can cut connections -----------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to *target*. :meth:`cut` closes every open connection and makes new ones
    fail at once (accepted and closed: the server seems to have gone away); :meth:`restore` lets them through."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._up = True
        self._closed = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Close every forwarded connection and refuse new ones until :meth:`restore`."""
        with self._lock:
            self._up = False
            for sock in list(self._open):
                _close(sock)
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self.cut()
        self._closed = True
        self._thread.join(timeout=5)
        _close(self._listener)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                up = self._up
            if not up:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, left: socket.socket, right: socket.socket) -> None:
        peers = {left: right, right: left}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 0.5)
                with self._lock:
                    if left not in self._open:
                        return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._open.discard(left)
                self._open.discard(right)
            _close(left)
            _close(right)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


# -- a Redis that can be restarted ------------------------------------------------------------------------


class RestartableRedis(EmbeddedRedis):
    """A private redis-server (memory only) on a unix socket; :meth:`restart` stops it and starts a new one
    on the same socket, so every client's next command reconnects to an empty server."""

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def flush(self) -> None:
        with self.connection() as client:
            client.flushall()

    @contextlib.contextmanager
    def stalled(self):
        """Freeze the server (SIGSTOP) for the block: clients connect and send, nothing answers; on leaving,
        it resumes (SIGCONT) and runs what was sent meanwhile, as after a long fork or a swapped-out host."""
        assert self.process is not None, "only a server this object started can be stalled"
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


# -- the fake Chatwoot, for traffic it did not play ---------------------------------------------------------


def fake_helpdesk(token: str = API_TOKEN) -> DemoHelpdesk:
    """The fake Chatwoot (``plugin.demo.helpdesk``, the one the demo and every suite use) for bodies these
    suites make themselves: a conversation it never played exists when the plugin first calls for it, with
    the agent's label :data:`AGENT_LABELS`. Faults: ``fail_next``; a revoked token: ``replace_token``."""
    return DemoHelpdesk(api_token=token, adopt_unknown_with_labels=AGENT_LABELS)


@contextlib.contextmanager
def fake_helpdesk_server(token: str = API_TOKEN) -> Iterator[HelpdeskServer]:
    """:func:`fake_helpdesk` served over real HTTP on loopback (for worker subprocesses); ``.helpdesk`` is it."""
    server = HelpdeskServer(fake_helpdesk(token)).start(send_webhooks=False)
    try:
        yield server
    finally:
        server.stop()


def labels_of(helpdesk: DemoHelpdesk, conversation_id: int) -> list[str] | None:
    """The conversation's labels in the helpdesk, None when the plugin never called for it."""
    conversation = helpdesk.conversations.get(conversation_id)
    return None if conversation is None else list(conversation.labels)


def markers(helpdesk: DemoHelpdesk, conversation_id: int) -> Counter:
    """How many private notes carry each plugin marker key (``note:first_response#0``...)."""
    found: Counter = Counter()
    conversation = helpdesk.conversations.get(conversation_id)
    for message in conversation.messages if conversation else ():
        if message.private:
            for key in re.findall(r"ref sla-plugin/\d+/\d+/(\S+)", message.content):
                found[key] += 1
    return found


# -- realistic traffic ------------------------------------------------------------------------------------

_MESSAGE_IDS = itertools.count(700_000)


def _load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Traffic:
    """Webhook bodies of many conversations, realistic and re-timed relative to ``now``.

    Kinds (cycled): ``missed`` (created 3 h ago, nobody answered: a first-response miss), ``hit`` (answered
    in 10 min, resolved after 30), ``on_track`` (created 5 min ago, not answered yet), ``late`` (answered
    after 2 h: a miss), ``chatty`` (several customer and agent messages, answered in time). Noise events
    (typing, custom attribute updates, an unknown event) are mixed in. Every due and at-risk instant is at
    least 40 minutes away from ``now``, so a test's stored state cannot drift from the replay at ``now``.
    """

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    account_id: int = 1
    first_conversation: int = 1000

    KINDS = ("missed", "hit", "on_track", "late", "chatty")

    def __post_init__(self) -> None:
        self._templates = {
            name: _load(name)
            for name in (
                "conversation_created",
                "message_created-incoming",
                "message_created-outgoing",
                "conversation_status_changed-resolved",
                "conversation_updated-custom_attributes",
                "conversation_typing_on",
            )
        }

    def conversation(self, number: int, kind: str | None = None) -> list[bytes]:
        """The bodies of conversation ``first_conversation + number``, in the order they happened."""
        kind = kind or self.KINDS[number % len(self.KINDS)]
        cid = self.first_conversation + number
        created = (
            self.now
            - (timedelta(minutes=5) if kind == "on_track" else timedelta(hours=3))
            - timedelta(seconds=number % 600)
        )
        bodies = [self._created(cid, created), self._message(cid, created, created + timedelta(seconds=1), "incoming")]
        if kind == "hit":
            bodies.append(self._message(cid, created, created + timedelta(minutes=10), "outgoing"))
            bodies.append(self._typing(cid, created))
            bodies.append(self._resolved(cid, created, created + timedelta(minutes=30)))
        elif kind == "late":
            bodies.append(self._updated(cid, created, created + timedelta(minutes=20)))
            bodies.append(self._message(cid, created, created + timedelta(hours=2), "outgoing"))
        elif kind == "chatty":
            for step in range(3):
                base = created + timedelta(minutes=20 * step)
                if step:
                    bodies.append(self._message(cid, created, base, "incoming"))
                bodies.append(self._message(cid, created, base + timedelta(minutes=5), "outgoing"))
            bodies.append(self._resolved(cid, created, created + timedelta(minutes=70)))
        elif kind == "on_track":
            bodies.append(self._typing(cid, created))
        bodies.append(
            json.dumps(
                {"event": "contact_updated", "account": {"id": self.account_id}, "id": cid, "name": "Jane"}
            ).encode()
        )
        return bodies

    def conversations(self, count: int, start: int = 0) -> list[list[bytes]]:
        return [self.conversation(number) for number in range(start, start + count)]

    def _account(self, payload: dict) -> dict:
        payload["account"] = dict(payload.get("account") or {}, id=self.account_id)
        return payload

    def _conversation_payload(self, template: dict, cid: int, created: datetime, updated: datetime) -> dict:
        payload = json.loads(json.dumps(template))
        # Like Chatwoot's, every webhook shows the conversation's labels as they are: the agent's.
        payload.update(
            id=cid,
            created_at=int(created.timestamp()),
            updated_at=updated.timestamp() + 0.25,
            labels=list(AGENT_LABELS),
            messages=[],
        )
        return self._account(payload)

    def _created(self, cid: int, created: datetime) -> bytes:
        return json.dumps(
            self._conversation_payload(self._templates["conversation_created"], cid, created, created)
        ).encode()

    def _updated(self, cid: int, created: datetime, at: datetime) -> bytes:
        payload = self._conversation_payload(
            self._templates["conversation_updated-custom_attributes"], cid, created, at
        )
        payload["custom_attributes"] = {"order": f"#{cid}", "note": "Grüße 👋 <script>alert(1)</script>"}
        return json.dumps(payload).encode()

    def _resolved(self, cid: int, created: datetime, at: datetime) -> bytes:
        return json.dumps(
            self._conversation_payload(self._templates["conversation_status_changed-resolved"], cid, created, at)
        ).encode()

    def _typing(self, cid: int, created: datetime) -> bytes:
        payload = json.loads(json.dumps(self._templates["conversation_typing_on"]))
        payload["conversation"] = self._conversation_payload(payload["conversation"], cid, created, created)
        return json.dumps(payload).encode()

    def _message(self, cid: int, created: datetime, at: datetime, direction: str) -> bytes:
        message_id = next(_MESSAGE_IDS)
        template = self._templates[f"message_created-{direction}"]
        payload = json.loads(json.dumps(template))
        payload.update(id=message_id, created_at=iso(at))
        payload["conversation"] = self._conversation_payload(payload["conversation"], cid, created, at)
        return json.dumps(self._account(payload)).encode()


def conversation_id_of(body: bytes) -> int | None:
    payload = json.loads(body)
    if "conversation" in payload and isinstance(payload["conversation"], dict):
        return payload["conversation"].get("id")
    return payload.get("id") if str(payload.get("event", "")).startswith("conversation") else None


# -- the check: nothing lost, nothing doubled -------------------------------------------------------------


@dataclass
class Verdict:
    """What a fault test tried and what it lost."""

    conversations: int = 0
    events: int = 0
    problems: list[str] = field(default_factory=list)
    notes: int = 0

    @property
    def lost(self) -> int:
        return len(self.problems)

    def line(self, name: str) -> str:
        return (
            f"[{name}] tried {self.events} events over {self.conversations} conversations; "
            f"notes written {self.notes}; lost or wrong: {self.lost}"
        )


def expected_evaluations(bodies: Iterable[bytes], rules_dir: Path | str, at: datetime | None = None) -> dict:
    """``plugin.cli.replay`` on *bodies*: each conversation's evaluation, at ``at`` (default now)."""
    from connectors import get_connector
    from plugin.adapters.rule_files import load_rules
    from plugin.cli.replay import replay

    rule_set = load_rules(rules_dir)
    at = at or datetime.now(UTC)
    result = replay(
        [body.decode() for body in bodies], get_connector("chatwoot", {}), rule_set.match, rule_set.content_hash, at
    )
    return {(evaluation.account_id, evaluation.conversation_id): evaluation for evaluation in result.evaluations}


def verify(
    store,
    bodies: list[bytes],
    rules_dir: Path | str,
    helpdesk: DemoHelpdesk | None = None,
    name: str = "faults",
    at: datetime | None = None,
) -> Verdict:
    """Compare the store (and the helpdesk, when given) with a clean replay of *bodies*; print the count."""
    from plugin.core.engine.effects import summary as summary_of

    expected = expected_evaluations(bodies, rules_dir, at)
    verdict = Verdict(conversations=len(expected), events=len(bodies))
    for key, evaluation in expected.items():
        wanted = evaluation.to_replay_json()
        stored = store.summary(key)
        if stored is None:
            verdict.problems.append(f"{key}: never processed")
            continue
        got = {name: stored.get(name) for name in wanted}
        if got != wanted:
            verdict.problems.append(f"{key}: stored {json.dumps(got)} != replay {json.dumps(wanted)}")
        if helpdesk is None:
            continue
        label = summary_of(evaluation)["label"]
        # A kept SLA ("hit") wears the on-track label: these rules define no labels.hit.
        title = LABEL_TITLES["on_track" if label == "hit" else label] if label else None
        wanted_labels = list(AGENT_LABELS) + ([title] if title else [])
        labels = labels_of(helpdesk, key[1])
        if labels != wanted_labels:
            verdict.problems.append(f"{key}: labels {labels} != {wanted_labels}")
        found = markers(helpdesk, key[1])
        verdict.notes += sum(found.values())
        misses = {f"{miss.metric}#{miss.index}" for miss in evaluation.misses}
        for marker, count in found.items():
            if count != 1:
                verdict.problems.append(f"{key}: note {marker} written {count} times")
        for miss in misses:
            if found[f"note:{miss}"] != 1:
                verdict.problems.append(f"{key}: miss {miss} has {found[f'note:{miss}']} notes")
        for marker in found:
            kind, _, miss = marker.partition(":")
            if kind == "note" and miss not in misses and found[f"correction:{miss}"] != 1:
                verdict.problems.append(f"{key}: a note for {miss}, which replay says is no miss, has no correction")
    print(verdict.line(name))
    return verdict


def duplicated_log_entries(store, keys: Iterable[tuple[int, int]]) -> list[str]:
    """Conversations whose SLA log holds an 'applied' twice or the same miss twice."""
    found = []
    for key in keys:
        entries = store.log_entries(key)
        applied = sum(1 for entry in entries if entry["kind"] == "applied")
        missed = Counter((entry["detail"] or {}).get("miss") for entry in entries if entry["kind"] == "missed")
        if applied > 1 or any(count > 1 for count in missed.values()):
            found.append(f"{key}: applied {applied}, missed {dict(missed)}")
    return found


def all_processed(store: Any, bodies, helpdesk: DemoHelpdesk | None = None) -> bool:
    """Every conversation of *bodies* is stored, and (with a helpdesk) has its status label."""
    keys = {conversation_id_of(body) for body in bodies} - {None}
    try:
        if any(store.summary((1, key)) is None for key in keys):
            return False
    except sa.exc.OperationalError:
        return False
    return helpdesk is None or all(len(labels_of(helpdesk, key) or ()) == 2 for key in keys)


def settled(redis) -> bool:
    """No event waits in the stream and no job in either queue."""
    return backlog(redis) == 0 and all(
        Queue(name, connection=redis).count == 0 for name in (redis_keys.EVENTS_QUEUE, redis_keys.WRITEBACK_QUEUE)
    )


# -- processes --------------------------------------------------------------------------------------------


def child_environment(**values: str) -> dict[str, str]:
    """The environment of a plugin subprocess: ours, the project on the path, *values* on top."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SLA_", "CHATWOOT_")) and name not in ("DATABASE_URL", "REDIS_URL")
    }
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    # The reconciler polls the helpdesk's conversation list; these suites' conversations are not in the fake's.
    environment.update(
        {"SLA_LOG_LEVEL": "INFO", "SLA_RECONCILE_SECONDS": "0", "SLA_NAMES_REFRESH_SECONDS": "0", **values}
    )
    return environment


def start_worker(environment: dict[str, str], log_path: Path, *extra: str) -> subprocess.Popen:
    """``sla-plugin worker`` (RQ worker + sweeper) as a subprocess in its own process group."""
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "plugin.cli", "worker", *extra],
        env=environment,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_gunicorn(
    environment: dict[str, str], log_path: Path, port: int | None = None, workers: int = 2
) -> tuple[subprocess.Popen, int]:
    """The web app under gunicorn on a loopback port; returns once it accepts connections."""
    port = port or pick_free_port()
    log = open(log_path, "ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
            "--no-control-socket",
            "plugin.web:create_app()",
        ],
        env=environment,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_until(listening, 30, "gunicorn listens")
    return process, port


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Signal a subprocess we started (its whole process group), wait, and kill it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    # Children of the group (gunicorn's workers, RQ's scheduler) must not outlive the test.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (from /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    """Direct children of a process (gunicorn's workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(value) for value in handle.read().split()]
    except OSError:
        return []


def enqueue_scheduled_now(redis) -> int:
    """Do what RQ's scheduler does when a retry's time has come, without waiting for it: enqueue every
    scheduled job now. Returns how many."""
    moved = 0
    for name in (redis_keys.EVENTS_QUEUE, redis_keys.WRITEBACK_QUEUE):
        queue = Queue(name, connection=redis)
        registry = ScheduledJobRegistry(queue=queue)
        for job_id in registry.get_job_ids():
            job = Job.fetch(job_id, connection=redis)
            registry.remove(job)
            queue.enqueue_job(job)
            moved += 1
    return moved
