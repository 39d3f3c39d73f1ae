"""The Chatwoot connector: webhooks in (:class:`ChatwootConnector`), REST API out (:class:`ChatwootClient`)."""

from connectors.chatwoot.client import (
    AuthError,
    ChatwootClient,
    ChatwootError,
    NotFound,
    NotPermitted,
    RateLimited,
    ServerError,
    TokenRefused,
    TransportError,
    Unprocessable,
)
from connectors.chatwoot.webhooks import ChatwootConnector

__all__ = [
    "AuthError",
    "ChatwootClient",
    "ChatwootConnector",
    "ChatwootError",
    "NotFound",
    "NotPermitted",
    "RateLimited",
    "ServerError",
    "TokenRefused",
    "TransportError",
    "Unprocessable",
]
