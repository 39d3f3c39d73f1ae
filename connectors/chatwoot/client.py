"""A small client for the Chatwoot REST API calls the plugin makes (docs/writeback.md).

Every path is built from the configured base URL and account id; nothing from a webhook payload ever
becomes part of a URL except a conversation id, which is checked to be a positive whole number. The access
token travels only in the ``api_access_token`` header and is never logged or shown in ``repr``.

Failures map onto typed errors. Timeouts, connection errors, 5xx and 429 are retried here with backoff
(429 after its ``Retry-After``, at most 60 s) up to ``max_attempts``; after the last attempt the typed
error is raised so the job queue's own retry can take over. Calls that create something (a private note,
a label, a webhook, a dashboard app) are retried only when the request certainly did not reach Chatwoot
(a connect timeout, a 429), because retrying one that may have been applied would create it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from connectors import outbound
from connectors.base import HelpdeskAPIError

logger = logging.getLogger(__name__)

RETRY_AFTER_CAP_SECONDS = 60.0
ERROR_TEXT_LIMIT = 200
# Chatwoot's text for a refusal of one resource (Pundit::NotAuthorizedError, request_exception_handler.rb);
# every other 401 concerns the token or the account as a whole.
NOT_PERMITTED_TEXT = "You are not authorized to do this action"
MESSAGES_PAGE_SIZE = 20  # GET .../messages: the latest 20, older ones with before=<id> (message_finder.rb)


class ChatwootError(HelpdeskAPIError):
    """A Chatwoot API call failed; ``status`` is the HTTP status (None when no response came back)."""


class AuthError(ChatwootError):
    """401/403: the token is wrong, revoked, or lacks permission (an agent-bot token cannot set labels)."""


class TokenRefused(AuthError, outbound.TokenRefused):
    """401 for the whole account: ``{"error": "Invalid Access Token"}`` (a wrong or revoked token), or the
    token's user is not in the account, the account is suspended, a bot token is not allowed here
    (``AccessTokenAuthHelper``, ``EnsureCurrentAccountHelper``). Every call of the account will fail alike."""


class NotPermitted(AuthError, outbound.NotPermitted):
    """401 ``{"error": "You are not authorized to do this action"}`` for one resource: Pundit refused it, e.g.
    an agent's token asking for a conversation of an inbox the agent is not a member of
    (``RequestExceptionHandler``, ``ConversationPolicy#show?``). Other conversations may still work."""


class NotFound(ChatwootError, outbound.NotFound):
    """404: the conversation, label, webhook or app does not exist (or not in this account)."""


class Unprocessable(ChatwootError):
    """422: Chatwoot refused the data (``message`` holds its reason, e.g. a label title already taken)."""

    def __init__(self, message: str, *, status: int | None = 422, reason: str = "") -> None:
        super().__init__(message, status=status)
        self.reason = reason


class RateLimited(ChatwootError):
    """429: too many requests; ``retry_after`` is the wait in seconds Chatwoot asked for, if any."""

    retryable = True


class ServerError(ChatwootError):
    """5xx: Chatwoot (or a proxy in front of it) failed."""

    retryable = True


class TransportError(ChatwootError):
    """No usable response: a timeout or a connection error.

    ``connect_failed`` is true when the connection was never made, so Chatwoot cannot have applied it.
    """

    retryable = True

    def __init__(self, message: str, *, connect_failed: bool = False) -> None:
        super().__init__(message)
        self.connect_failed = connect_failed


class ChatwootClient:
    """The Chatwoot REST API of one account, as a user (not agent-bot) access token sees it.

    ``sleep`` is injectable so tests can record the backoff delays instead of waiting them out.
    """

    def __init__(
        self,
        base_url: str,
        account_id: int,
        api_token: str,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.05, 10),
        max_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        backoff_seconds: float = 1.0,
        backoff_cap_seconds: float = 8.0,
        pace: outbound.Pace | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"CHATWOOT_URL must be an http(s) URL such as https://chatwoot.example.com, got {base_url!r}"
            )
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.account_id = _positive_id(account_id, "account_id")
        self._account_url = f"{self.base_url}/api/v1/accounts/{self.account_id}"
        self._headers = {"api_access_token": api_token, "Accept": "application/json"}
        self._session = session or requests.Session()
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._backoff_seconds = backoff_seconds
        self._backoff_cap_seconds = backoff_cap_seconds
        self._pace = pace

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], **options: Any) -> ChatwootClient:
        """Build from ``CHATWOOT_URL``, ``CHATWOOT_ACCOUNT_ID`` and ``CHATWOOT_API_TOKEN``.

        ``options`` are passed on (``session``, ``timeout``, ``max_attempts``...). Raises ValueError naming
        the setting that is missing or unusable (never showing the token).
        """
        missing = [
            name
            for name in ("CHATWOOT_URL", "CHATWOOT_ACCOUNT_ID", "CHATWOOT_API_TOKEN")
            if not (settings.get(name) or "").strip()
        ]
        if missing:
            raise ValueError(f"missing setting(s): {', '.join(missing)}")
        account_text = settings["CHATWOOT_ACCOUNT_ID"].strip()
        if not account_text.isdigit():
            raise ValueError(f"CHATWOOT_ACCOUNT_ID must be a whole number, got {account_text!r}")
        return cls(
            settings["CHATWOOT_URL"].strip(), int(account_text), settings["CHATWOOT_API_TOKEN"].strip(), **options
        )

    def paced(self, pace: outbound.Pace) -> ChatwootClient:
        """This client with every call paced by ``pace`` (a budget shared with other processes); returns it."""
        self._pace = pace
        return self

    def __repr__(self) -> str:
        return f"ChatwootClient(base_url={self.base_url!r}, account_id={self.account_id})"

    # -- who the token is ------------------------------------------------------------------------------

    def get_profile(self) -> dict[str, Any]:
        """The token's user (``GET /api/v1/profile``, not account-scoped; app/views/api/v1/profiles/
        show.json.jbuilder): ``{id, name, email, role, accounts: [{id, role, ...}]}``. It also echoes the
        user's ``access_token``: never log it."""
        return self._expect(self._request("GET", "/api/v1/profile", account_scoped=False), dict)

    def role_in_account(self, profile: Mapping[str, Any]) -> str | None:
        """The user's role in this client's account (``administrator`` or ``agent``) from a profile."""
        for account in profile.get("accounts") or ():
            if isinstance(account, Mapping) and account.get("id") == self.account_id:
                return account.get("role")
        return profile.get("role") if profile.get("account_id") == self.account_id else None

    def list_inboxes(self) -> list[dict[str, Any]]:
        """The inboxes the token's user sees: all for an administrator, its own for an agent (InboxPolicy)."""
        return self._expect(self._expect(self._request("GET", "/inboxes"), dict).get("payload"), list)

    # -- conversations --------------------------------------------------------------------------------

    def get_conversation(self, conversation_id: int) -> dict[str, Any]:
        """One conversation by its display id (the ``id`` of webhook payloads)."""
        return self._expect(self._request("GET", _conversation_path(conversation_id)), dict)

    def list_conversations(self, status: str = "open", page: int = 1) -> list[dict[str, Any]]:
        """One page (25) of the account's conversations in a status, for the reconciler."""
        body = self._request("GET", "/conversations", params={"status": status, "page": page})
        data = self._expect(body, dict).get("data")
        return self._expect(data.get("payload") if isinstance(data, dict) else None, list)

    def list_messages(self, conversation_id: int, before: int | None = None) -> list[dict[str, Any]]:
        """One page of a conversation's messages, oldest first: the latest 20, or the 20 before the message
        id ``before`` (``app/finders/message_finder.rb``). REST format: ``message_type`` is a number, there
        is no ``sender_type`` nor ``additional_attributes`` (``app/views/api/v1/models/_message.json.jbuilder``).
        """
        params = None if before is None else {"before": _positive_id(before, "before")}
        body = self._request("GET", f"{_conversation_path(conversation_id)}/messages", params=params)
        return self._expect(self._expect(body, dict).get("payload"), list)

    def iter_messages(self, conversation_id: int, max_pages: int = 500) -> Iterator[dict[str, Any]]:
        """Every message of a conversation, newest page first (each page oldest first), following ``before=``.

        Stops at a page shorter than Chatwoot's 20, at an empty one, or after ``max_pages``.
        """
        before: int | None = None
        for _ in range(max_pages):
            page = self.list_messages(conversation_id, before)
            yield from page
            ids = [
                value
                for value in (message.get("id") for message in page)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0
            ]
            if len(page) < MESSAGES_PAGE_SIZE or not ids or (before is not None and min(ids) >= before):
                return
            before = min(ids)

    def conversation_labels(self, conversation_id: int) -> list[str]:
        """The conversation's label titles."""
        body = self._request("GET", f"{_conversation_path(conversation_id)}/labels")
        return self._expect(self._expect(body, dict).get("payload"), list)

    def set_conversation_labels(self, conversation_id: int, labels: Sequence[str]) -> list[str]:
        """Replace the conversation's whole label list (Chatwoot has no add/remove); returns the new list."""
        body = self._request("POST", f"{_conversation_path(conversation_id)}/labels", json={"labels": list(labels)})
        return self._expect(self._expect(body, dict).get("payload"), list)

    def create_private_note(self, conversation_id: int, content: str) -> int:
        """Add a private note (never sent to the customer); returns the new message's id."""
        body = self._request(
            "POST",
            f"{_conversation_path(conversation_id)}/messages",
            json={"content": content, "message_type": "outgoing", "private": True},
            creates=True,
        )
        message_id = self._expect(body, dict).get("id")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise ChatwootError("POST messages: the response has no message id")
        return message_id

    def toggle_priority(self, conversation_id: int, priority: str | None) -> None:
        """Set the conversation's priority (``low``, ``medium``, ``high``, ``urgent``; None clears it)."""
        self._request("POST", f"{_conversation_path(conversation_id)}/toggle_priority", json={"priority": priority})

    def get_custom_attributes(self, conversation_id: int) -> dict[str, Any]:
        """The conversation's custom attributes (there is no endpoint for them alone)."""
        return self.get_conversation(conversation_id).get("custom_attributes") or {}

    def set_custom_attributes(self, conversation_id: int, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the conversation's whole custom-attributes object; returns what Chatwoot stored."""
        body = self._request(
            "POST",
            f"{_conversation_path(conversation_id)}/custom_attributes",
            json={"custom_attributes": dict(attributes)},
        )
        return self._expect(body, dict).get("custom_attributes") or {}

    # -- the account's agents and teams (names for reports; inboxes above) -----------------------------

    def list_agents(self) -> list[dict[str, Any]]:
        """The account's agents (``{id, name, available_name, email, role, ...}``; a JSON array)."""
        return self._expect(self._request("GET", "/agents"), list)

    def list_teams(self) -> list[dict[str, Any]]:
        """The account's teams (``{id, name, description, ...}``; a JSON array)."""
        return self._expect(self._request("GET", "/teams"), list)

    # -- custom attribute definitions -----------------------------------------------------------------

    def list_custom_attribute_definitions(self, model: str = "conversation_attribute") -> list[dict[str, Any]]:
        """The account's custom attribute definitions of a model (``conversation_attribute``, ``contact_attribute``)."""
        return self._expect(
            self._request("GET", "/custom_attribute_definitions", params={"attribute_model": model}), list
        )

    def create_custom_attribute_definition(self, definition: Mapping[str, Any]) -> dict[str, Any]:
        """Define a custom attribute (administrator token): ``attribute_key``, ``attribute_display_name``,
        ``attribute_display_type`` (``text``, ``date``, ``list``, ...), ``attribute_model``, ``attribute_description``,
        ``attribute_values`` (a list's choices). Raises :class:`Unprocessable` when the key is taken."""
        body = {"custom_attribute_definition": dict(definition)}
        return self._expect(self._request("POST", "/custom_attribute_definitions", json=body, creates=True), dict)

    # -- account labels -------------------------------------------------------------------------------

    def list_account_labels(self) -> list[dict[str, Any]]:
        """The account's labels: ``{id, title, description, color, show_on_sidebar}``."""
        return self._expect(self._expect(self._request("GET", "/labels"), dict).get("payload"), list)

    def create_account_label(
        self, title: str, description: str, color: str, show_on_sidebar: bool = True
    ) -> dict[str, Any]:
        """Create an account label (administrator token); Chatwoot lower-cases the title.

        Raises :class:`Unprocessable` when the title is taken or not allowed.
        """
        label = {"title": title, "description": description, "color": color, "show_on_sidebar": show_on_sidebar}
        return self._expect(self._request("POST", "/labels", json={"label": label}, creates=True), dict)

    def delete_account_label(self, label_id: int) -> None:
        """Delete an account label (it disappears from every conversation)."""
        self._request("DELETE", f"/labels/{_positive_id(label_id, 'label_id')}")

    # -- webhooks -------------------------------------------------------------------------------------

    def list_webhooks(self) -> list[dict[str, Any]]:
        """The account's webhooks (``{id, url, name, subscriptions, secret...}``)."""
        payload = self._expect(self._request("GET", "/webhooks"), dict).get("payload")
        if isinstance(payload, dict):
            payload = payload.get("webhooks")
        return self._expect(payload, list)

    def create_webhook(self, url: str, subscriptions: Sequence[str], name: str | None = None) -> dict[str, Any]:
        """Register a webhook; the returned dict includes the ``secret`` Chatwoot generated, when it has one."""
        webhook: dict[str, Any] = {"url": url, "subscriptions": list(subscriptions)}
        if name is not None:
            webhook["name"] = name
        payload = self._expect(self._request("POST", "/webhooks", json={"webhook": webhook}, creates=True), dict).get(
            "payload"
        )
        if isinstance(payload, dict) and isinstance(payload.get("webhook"), dict):
            return payload["webhook"]
        return self._expect(payload, dict)

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete a webhook."""
        self._request("DELETE", f"/webhooks/{_positive_id(webhook_id, 'webhook_id')}")

    # -- dashboard apps -------------------------------------------------------------------------------

    def list_dashboard_apps(self) -> list[dict[str, Any]]:
        """The account's dashboard apps (``{id, title, content: [{type, url}]}``)."""
        return self._expect(self._request("GET", "/dashboard_apps"), list)

    def create_dashboard_app(self, title: str, url: str) -> dict[str, Any]:
        """Add a dashboard app: a tab beside every conversation that frames ``url``."""
        app = {"title": title, "content": [{"type": "frame", "url": url}]}
        return self._expect(self._request("POST", "/dashboard_apps", json={"dashboard_app": app}, creates=True), dict)

    def delete_dashboard_app(self, app_id: int) -> None:
        """Delete a dashboard app."""
        self._request("DELETE", f"/dashboard_apps/{_positive_id(app_id, 'app_id')}")

    # -- transport ------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        creates: bool = False,
        account_scoped: bool = True,
    ) -> Any:
        """Send one call with retries; the decoded JSON body (None when empty). ``path`` is under the
        account's URL, or under the base URL when not ``account_scoped``."""
        url = (self._account_url if account_scoped else self.base_url) + path
        attempt = 1
        while True:
            try:
                if self._pace is not None:
                    self._pace.before_request()
                return self._attempt(method, url, path, params, json)
            except ChatwootError as error:
                if attempt >= self._max_attempts or not _may_retry(error, creates):
                    raise
                delay = self._delay(attempt, error)
                logger.warning(
                    "chatwoot %s %s failed (%s), attempt %d of %d, retrying in %.1f s",
                    method,
                    path,
                    error,
                    attempt,
                    self._max_attempts,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def _attempt(self, method: str, url: str, path: str, params: Mapping[str, Any] | None, json: Any) -> Any:
        try:
            # Redirects are refused: requests would forward the api_access_token header to any host.
            response = self._session.request(
                method,
                url,
                params=params,
                json=json,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise TransportError(
                _failure(method, path, exc), connect_failed=isinstance(exc, requests.ConnectTimeout)
            ) from exc
        except requests.ConnectionError as exc:
            raise TransportError(_failure(method, path, exc)) from exc
        except requests.RequestException as exc:
            raise ChatwootError(_failure(method, path, exc)) from exc
        if response.status_code >= 300:
            raise _error_for(method, path, response)
        return self._decode(method, path, response)

    def _delay(self, attempt: int, error: ChatwootError) -> float:
        if isinstance(error, RateLimited) and self._pace is not None:
            # Every caller of the account waits (the pace's own wait comes before the next call).
            self._pace.rate_limited(error.retry_after)
            return 0.0
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(error.retry_after, RETRY_AFTER_CAP_SECONDS)
        return min(self._backoff_cap_seconds, self._backoff_seconds * 2 ** (attempt - 1))

    @staticmethod
    def _decode(method: str, path: str, response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ChatwootError(
                f"{method} {path}: the response is not JSON (is CHATWOOT_URL right?)", status=response.status_code
            ) from None

    @staticmethod
    def _expect(value: Any, kind: type) -> Any:
        if not isinstance(value, kind):
            raise ChatwootError(f"unexpected response shape: expected a JSON {kind.__name__}")
        return value


def _may_retry(error: ChatwootError, creates: bool) -> bool:
    """Whether trying again is useful and, for a call that creates something, cannot create it twice."""
    if not error.retryable:
        return False
    if not creates:
        return True
    # A 429 is refused by the rate limiter before the request reaches the application.
    return isinstance(error, RateLimited) or (isinstance(error, TransportError) and error.connect_failed)


def _failure(method: str, path: str, exc: Exception) -> str:
    """What went wrong without a response (requests' messages name the host, never the headers)."""
    return f"{method} {path}: {type(exc).__name__}: {str(exc)[:ERROR_TEXT_LIMIT]}"


def _error_for(method: str, path: str, response: requests.Response) -> ChatwootError:
    """The typed error for a response with an error status."""
    status = response.status_code
    reason = _error_text(response)
    message = f"{method} {path}: HTTP {status}" + (f": {reason}" if reason else "")
    if status in (401, 403):
        if reason == NOT_PERMITTED_TEXT:
            return NotPermitted(message, status=status)
        return TokenRefused(message, status=status)
    if status == 404:
        return NotFound(message, status=status)
    if status == 422:
        return Unprocessable(message, status=status, reason=reason)
    if status == 429:
        return RateLimited(message, status=status, retry_after=_retry_after(response))
    if status >= 500:
        return ServerError(message, status=status)
    if 300 <= status < 400:
        return ChatwootError(
            f"{method} {path}: redirected (HTTP {status}); set CHATWOOT_URL to the final address, https included",
            status=status,
        )
    return ChatwootError(message, status=status)


def _error_text(response: requests.Response) -> str:
    """Chatwoot's error message (``{"error": ...}`` or ``{"message": ...}``), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error"):
            if isinstance(body.get(key), str):
                return body[key][:ERROR_TEXT_LIMIT]
    return response.text.strip()[:ERROR_TEXT_LIMIT]


def _retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds; None when absent or an HTTP date (then the normal backoff applies)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _positive_id(value: Any, name: str) -> int:
    """An id that is safe to put in a URL path."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return value


def _conversation_path(conversation_id: int) -> str:
    return f"/conversations/{_positive_id(conversation_id, 'conversation_id')}"
