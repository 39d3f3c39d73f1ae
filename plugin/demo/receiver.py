"""A local receiver of SLA notifications: a Slack-style incoming webhook and a generic signed webhook.

``sla-plugin dev`` starts one so the demo shows notifications arriving (it prints each one); the tests use
it as a real HTTP destination whose answers they script (down, slow, redirecting). Paths: ``/slack``
takes Slack incoming-webhook messages, ``/webhook`` the plugin's signed JSON (checked when a secret is
given). Every request is kept in :attr:`NotificationReceiver.received`.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from plugin.core.notifications import signature


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and how it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    signature_ok: bool | None  # None: no secret to check against

    @property
    def json(self) -> Any:
        return json.loads(self.body)


# Decides the answer to one request: (status, extra headers); the default accepts everything.
Responder = Callable[[str, dict[str, str], bytes], tuple[int, dict[str, str]]]


def _accept(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
    return 200, {}


def signature_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether ``X-SLA-Signature`` is the HMAC-SHA256 of ``"<X-SLA-Timestamp>.<body>"`` under *secret*."""
    expected = signature(secret, headers.get("x-sla-timestamp", ""), body)
    return hmac.compare_digest(expected, headers.get("x-sla-signature", ""))


class NotificationReceiver:
    """A threaded HTTP server on a spare loopback port; :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        secret: str | None = None,
        respond: Responder = _accept,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.secret = secret
        self.respond = respond
        self.announce = announce
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> NotificationReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, extra = receiver.respond(self.path, headers, body)
                checked = None  # no secret to check against, or a Slack message (never signed)
                if receiver.secret and "x-sla-event" in headers:
                    checked = signature_valid(receiver.secret, headers, body)
                with receiver.lock:
                    receiver.received.append(Received(self.path, headers, body, status, checked))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                if receiver.announce is not None and 200 <= status < 300:
                    receiver.announce(describe(self.path, headers, body, checked))

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="sla-receiver").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies of the requests to *path* that were answered 2xx."""
        with self.lock:
            return [item.json for item in self.received if item.path == path and 200 <= item.status < 300]


def describe(path: str, headers: dict[str, str], body: bytes, signature_ok: bool | None) -> str:
    """One line for the terminal: the Slack message's text, or the webhook's event and what it names."""
    data = json.loads(body)
    if "text" in data:
        return "Slack    " + re.sub(r"<[^|>]+\|([^>]+)>", r"\1", data["text"])  # a link shows its label
    checked = {True: "signature ok", False: "BAD SIGNATURE", None: "unsigned"}[signature_ok]
    metric = f" {data['metric']}" if data.get("metric") else ""
    return (
        f"webhook  {headers.get('x-sla-event')}{metric} conversation {data['conversation_id']} "
        f"(policy {data['policy']['id']}, status {data['status']}, delivery {data['id'][:8]}, {checked})"
    )
