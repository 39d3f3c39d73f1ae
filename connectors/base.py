"""What every helpdesk connector provides, and the errors it raises.

A connector knows one helpdesk: it authenticates that helpdesk's webhook requests, tells deliveries apart,
and turns a webhook body into a helpdesk-neutral :class:`plugin.core.events.Event`. The web receiver and the
workers only talk to this interface, so adding a helpdesk means adding a connector and registering it in
:mod:`connectors`, never touching the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

from plugin.core.events import Event


class WebhookRejected(Exception):
    """A webhook request that must not be processed, with the HTTP status to answer.

    ``reason`` is safe to log: it never contains a secret, a token or a signature.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class PayloadError(ValueError):
    """A JSON body that is not a usable event; the message names the missing or invalid fields.

    ``fields`` holds the dotted paths of those fields (``"conversation.id"``), for logs and metrics.
    """

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class UnknownConnector(KeyError):
    """A connector name that is not registered."""

    def __str__(self) -> str:
        # KeyError would print the message in quotes, as if it were a key.
        return str(self.args[0]) if self.args else "unknown connector"


class HelpdeskAPIError(Exception):
    """A failed call to a helpdesk's REST API.

    Every connector's client raises subclasses of this, so write-back code can decide helpdesk-neutrally:
    ``retryable`` says whether trying the same call later may succeed (timeouts, 5xx, rate limits), and
    ``retry_after`` is the helpdesk's requested wait in seconds, when it gave one.
    """

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@runtime_checkable
class Connector(Protocol):
    """One helpdesk's webhook side: verify, deduplicate, and normalise deliveries."""

    name: str

    def verify(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], now: datetime) -> None:
        """Accept the request or raise :class:`WebhookRejected` (401 for a bad or missing credential).

        ``body`` is the raw request body, exactly as received; ``now`` is the receiver's clock.
        """

    def delivery_key(self, headers: Mapping[str, str], body: bytes) -> str:
        """A key that is the same for every retry of one delivery, to drop duplicates before queueing."""

    def account_of(self, payload: Mapping) -> int | None:
        """The helpdesk account a payload belongs to, without validating the rest (None when unknown)."""

    def normalize(self, payload: Mapping, received_at: datetime | None) -> Event | None:
        """The event a webhook body describes, or None for a webhook the plugin does not use.

        ``received_at`` is when the receiver got the body (None when unknown, as in a replayed line); it is
        the event's time only when the payload states none. Raises :class:`PayloadError` when the body is a
        webhook the plugin uses but fields it needs are missing or of the wrong type.
        """

    def names(self, payload: Mapping) -> list[tuple[str, str, str]]:
        """The names the payload shows beside ids, as ``(kind, id as text, name)`` with kind ``inbox``,
        ``team`` or ``agent`` (for reports); empty when it shows none."""
