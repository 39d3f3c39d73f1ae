"""Helpdesk connectors, chosen by name (the ``<connector>`` of ``POST /webhooks/<connector>``).

Adding a helpdesk: write a package beside ``chatwoot/`` whose connector satisfies
:class:`connectors.base.Connector` (webhooks in) and whose REST client satisfies
:class:`connectors.outbound.Helpdesk` (write-back, reconciler) and :class:`connectors.outbound.HelpdeskAdmin`
(install), and add its factory to ``_FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from connectors.base import Connector, HelpdeskAPIError, PayloadError, UnknownConnector, WebhookRejected
from connectors.chatwoot import ChatwootConnector

_FACTORIES: dict[str, Callable[[Mapping[str, str]], Connector]] = {
    ChatwootConnector.name: ChatwootConnector.from_settings,
}
CONNECTOR_NAMES: tuple[str, ...] = tuple(sorted(_FACTORIES))


def get_connector(name: str, settings: Mapping[str, str]) -> Connector:
    """The connector called ``name``, configured from ``settings`` (environment-style names and values).

    Raises :class:`UnknownConnector` (a KeyError) for a name that is not registered, and ValueError for
    settings the connector cannot use.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise UnknownConnector(f"unknown connector {name!r}; known connectors: {', '.join(CONNECTOR_NAMES)}")
    return factory(settings)


__all__ = [
    "CONNECTOR_NAMES",
    "Connector",
    "HelpdeskAPIError",
    "PayloadError",
    "UnknownConnector",
    "WebhookRejected",
    "get_connector",
]
