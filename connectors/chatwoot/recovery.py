"""Chatwoot's REST view of a conversation, turned back into the webhook bodies that would have told it.

The reconciler recovers what lost webhooks hid by reading the REST API; the workers only read webhook
bodies. REST and webhooks render the same records differently (docs/chatwoot-versions.md):

- a REST conversation (``app/views/api/v1/conversations/partials/_conversation.json.jbuilder``) has its
  channel only at ``meta.channel``; a webhook has it at the top level (``channel``,
  ``Conversations::EventDataPresenter#push_data``), where the rules read it;
- a REST message (``app/views/api/v1/models/_message.json.jbuilder``) has an integer ``message_type``, a time
  in Unix seconds, no ``sender_type`` and no ``additional_attributes``; its ``sender`` is the sender's
  ``push_event_data`` (with ``type``: ``contact``, ``user``, ``agent_bot``...), absent when nobody sent it.

Who wrote a recovered message, by Chatwoot's ``Message#human_response?`` as far as REST shows it: an
automation rule's message keeps ``content_attributes.automation_rule_id`` (read as usual); a message without
a sender, from a bot, or of type template is no human reply (read as usual). A campaign's message carries its
``campaign_id`` only in ``additional_attributes``, which REST leaves out, and its sender is the campaign's
user; but a campaign always opens its conversation with that message (``Campaigns::
CampaignConversationBuilder``). So outgoing messages before the conversation's first incoming one are
recovered as campaign messages: they never stop a response clock. (A conversation an agent opened with an
outbound message is read the same way when its webhooks were lost: its clocks then stop at the first reply
after the customer wrote.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# Message#message_type's numbers (app/models/message.rb: enum message_type).
INCOMING_TYPE, OUTGOING_TYPE = 0, 1
# What additional_attributes.campaign_id holds in a recovered message inferred to be a campaign's.
INFERRED_CAMPAIGN = "inferred from the REST API"


def conversation_body(conversation: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    """The webhook rendering of a REST conversation: ``channel`` from ``meta.channel``, ``account``."""
    meta = conversation.get("meta")
    channel = conversation.get("channel") or (meta.get("channel") if isinstance(meta, Mapping) else None)
    return {**conversation, "channel": channel, "account": {"id": account_id}}


def status_body(conversation: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    """A ``conversation_status_changed`` body stating the conversation's current status."""
    body = conversation_body(conversation, account_id)
    return {
        **body,
        "event": "conversation_status_changed",
        "changed_attributes": [{"status": {"previous_value": None, "current_value": body.get("status")}}],
    }


def message_bodies(
    conversation: Mapping[str, Any], messages: Iterable[Mapping[str, Any]], account_id: int
) -> list[dict[str, Any]]:
    """``message_created`` bodies for REST messages (any order), each with the conversation's snapshot."""
    snapshot = conversation_body(conversation, account_id)
    ordered = sorted(messages, key=_order)
    first_incoming = next((_order(message) for message in ordered if _type(message) == INCOMING_TYPE), None)
    bodies = []
    for message in ordered:
        body: dict[str, Any] = {
            **message,
            "event": "message_created",
            "created_at": _iso(message.get("created_at")),
            "account": {"id": account_id},
            "conversation": snapshot,
        }
        opens_the_conversation = first_incoming is None or _order(message) < first_incoming
        if _type(message) == OUTGOING_TYPE and opens_the_conversation and not message.get("private"):
            body["additional_attributes"] = {"campaign_id": INFERRED_CAMPAIGN}
        bodies.append(body)
    return bodies


def _type(message: Mapping[str, Any]) -> Any:
    return message.get("message_type")


def _order(message: Mapping[str, Any]) -> tuple[float, int]:
    """Creation order: time, then id (ids grow with creation)."""
    created = message.get("created_at")
    identifier = message.get("id")
    return (
        float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else 0.0,
        identifier if isinstance(identifier, int) and not isinstance(identifier, bool) else 0,
    )


def _iso(value: Any) -> Any:
    """REST's Unix seconds as the webhook's ISO-8601 text; anything else is passed on for the schema to judge."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError):
            return value
    return value
