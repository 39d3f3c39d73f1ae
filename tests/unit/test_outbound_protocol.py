"""Chatwoot's REST client is the outbound side of its connector: it has every operation of the outbound
protocols (connectors.outbound) with the same parameters, and its errors are the neutral ones the jobs catch."""

from __future__ import annotations

import inspect

import pytest

from connectors import outbound
from connectors.chatwoot import client as chatwoot

OPERATIONS = sorted(
    name
    for protocol in (outbound.Helpdesk, outbound.HelpdeskAdmin)
    for name, member in vars(protocol).items()
    if not name.startswith("_") and (callable(member) or isinstance(member, property))
)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_chatwoot_client_has_every_outbound_operation(operation):
    wanted = inspect.getattr_static(outbound.HelpdeskAdmin, operation)
    if isinstance(wanted, property):
        assert operation in inspect.signature(chatwoot.ChatwootClient.__init__).parameters
        return
    assert list(inspect.signature(getattr(chatwoot.ChatwootClient, operation)).parameters) == list(
        inspect.signature(wanted).parameters
    )


@pytest.mark.parametrize(
    "error, neutral",
    [
        (chatwoot.NotFound("gone", status=404), outbound.NotFound),
        (chatwoot.TokenRefused("Invalid Access Token", status=401), outbound.TokenRefused),
        (chatwoot.NotPermitted("You are not authorized to do this action", status=401), outbound.NotPermitted),
    ],
)
def test_chatwoot_errors_are_the_neutral_ones(error, neutral):
    assert isinstance(error, neutral)
    assert isinstance(error, chatwoot.ChatwootError)  # Chatwoot-specific handling still sees its own type
