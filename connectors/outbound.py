"""What the plugin asks of a helpdesk's REST API: the outbound side of a connector, beside the inbound
:class:`connectors.base.Connector` (webhooks in).

Write-back, the reconciler and the names refresh type against :class:`Helpdesk`; install and uninstall against
:class:`HelpdeskAdmin`. Chatwoot's :class:`connectors.chatwoot.client.ChatwootClient` implements both; a new
helpdesk's client implements the same methods and raises subclasses of the errors below, which are the ones
those callers tell apart (any other failure is a :class:`connectors.base.HelpdeskAPIError`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from connectors.base import HelpdeskAPIError


class NotFound(HelpdeskAPIError):
    """The conversation, label, webhook or app does not exist (or not in this account)."""


class TokenRefused(HelpdeskAPIError):
    """The helpdesk refuses the token for the whole account: every call fails alike until it is fixed."""


class NotPermitted(HelpdeskAPIError):
    """The token's user may not touch this one resource (a conversation of an inbox it is not a member of);
    other resources may still work."""


class Pace(Protocol):
    """What paces a client's calls: a budget shared with every other process calling the same account."""

    def before_request(self) -> None:
        """Wait until a call fits in the budget (and any wait the helpdesk asked for is over)."""

    def rate_limited(self, retry_after: float | None) -> float:
        """The helpdesk answered 429: make every caller wait; returns the seconds to wait (``retry_after``
        when the helpdesk said, a backoff otherwise)."""
        ...


class Helpdesk(Protocol):
    """One account of a helpdesk as the plugin's token sees it: conversations, their messages, labels, notes,
    priority and custom attributes, and the names of inboxes, agents and teams."""

    @property
    def account_id(self) -> int: ...

    def get_conversation(self, conversation_id: int) -> dict[str, Any]: ...

    def list_conversations(self, status: str = "open", page: int = 1) -> list[dict[str, Any]]:
        """One page of the account's conversations in ``status``; an empty list past the last page."""
        ...

    def iter_messages(self, conversation_id: int, max_pages: int = 500) -> Iterator[dict[str, Any]]:
        """A conversation's messages, newest page first, at most ``max_pages`` pages."""
        ...

    def conversation_labels(self, conversation_id: int) -> list[str]: ...

    def set_conversation_labels(self, conversation_id: int, labels: Sequence[str]) -> list[str]:
        """Replace a conversation's labels; returns the labels it has now."""
        ...

    def create_private_note(self, conversation_id: int, content: str) -> int:
        """Post a note only agents see; returns its message id."""
        ...

    def toggle_priority(self, conversation_id: int, priority: str | None) -> None: ...

    def get_custom_attributes(self, conversation_id: int) -> dict[str, Any]: ...

    def set_custom_attributes(self, conversation_id: int, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a conversation's custom attributes (the whole object); returns them as stored."""
        ...

    def list_inboxes(self) -> list[dict[str, Any]]: ...

    def list_agents(self) -> list[dict[str, Any]]: ...

    def list_teams(self) -> list[dict[str, Any]]: ...


class HelpdeskAdmin(Helpdesk, Protocol):
    """What install and uninstall need besides: the token's user, and the account's labels, webhooks,
    dashboard apps and custom attribute definitions."""

    def get_profile(self) -> dict[str, Any]: ...

    def role_in_account(self, profile: Mapping[str, Any]) -> str | None:
        """The profile's role in this account (``administrator``, ``agent``), None when not a member."""
        ...

    def list_account_labels(self) -> list[dict[str, Any]]: ...

    def create_account_label(
        self, title: str, description: str, color: str, show_on_sidebar: bool = True
    ) -> dict[str, Any]: ...

    def delete_account_label(self, label_id: int) -> None: ...

    def list_webhooks(self) -> list[dict[str, Any]]: ...

    def create_webhook(self, url: str, subscriptions: Sequence[str], name: str | None = None) -> dict[str, Any]:
        """Register a webhook; the answer holds the signing secret when the helpdesk generates one."""
        ...

    def delete_webhook(self, webhook_id: int) -> None: ...

    def list_dashboard_apps(self) -> list[dict[str, Any]]: ...

    def create_dashboard_app(self, title: str, url: str) -> dict[str, Any]: ...

    def delete_dashboard_app(self, app_id: int) -> None: ...

    def list_custom_attribute_definitions(self, model: str = "conversation_attribute") -> list[dict[str, Any]]: ...

    def create_custom_attribute_definition(self, definition: Mapping[str, Any]) -> dict[str, Any]: ...
