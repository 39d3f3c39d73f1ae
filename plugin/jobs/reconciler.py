"""The reconciler: what webhooks lost, recovered by polling the helpdesk's API.

Chatwoot's webhooks are at-most-once with a 5 s timeout and no retry, so a dropped delivery could hide a
reply, a resolution or a breach. Periodically, for the open conversations the helpdesk lists and the ones
the store still believes open, the reconciler turns the API's view back into webhook-shaped bodies and hands
them to the workers through the same stream as live webhooks. Nothing here judges anything: the engine
drops what it already knows (event keys) and folds the rest at its own time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from connectors.chatwoot.client import ChatwootClient, NotFound
from plugin.adapters import streams as ingest
from plugin.adapters.store import applied
from plugin.jobs.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)

MAX_PAGES = 200  # 25 conversations a page: 5,000 open conversations per run


def run() -> int:
    """RQ job: reconcile the configured account once; returns how many bodies were handed over."""
    from plugin.jobs.writeback import client_for

    runtime = current_runtime()
    return reconcile(runtime, client_for(runtime))


def reconcile(runtime: Runtime, client: ChatwootClient) -> int:
    """Hand the API's view of every open (or believed-open) conversation to the workers."""
    account = {"id": client.account_id}
    received_at = datetime.now(UTC)
    submitted = 0
    seen: set[int] = set()
    for conversation in _open_conversations(client):
        seen.add(conversation["id"])
        submitted += _submit_conversation(runtime, client, account, conversation, received_at)
    for conversation_id in _believed_open(runtime, client.account_id) - seen:
        try:
            conversation = client.get_conversation(conversation_id)
        except NotFound:
            continue  # deleted in the helpdesk: nothing more will happen to it
        submitted += _submit_conversation(runtime, client, account, conversation, received_at)
    log.info("reconciled %d conversations, %d bodies handed over", len(seen), submitted)
    return submitted


def _open_conversations(client: ChatwootClient) -> Iterator[dict[str, Any]]:
    for page in range(1, MAX_PAGES + 1):
        conversations = client.list_conversations("open", page)
        if not conversations:
            return
        yield from conversations


def _believed_open(runtime: Runtime, account_id: int) -> set[int]:
    with runtime.store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(applied.c.conversation_id).where(
                applied.c.account_id == account_id, applied.c.resolved.is_(False)
            )
        )
        return {row.conversation_id for row in rows}


def _submit_conversation(
    runtime: Runtime,
    client: ChatwootClient,
    account: Mapping[str, Any],
    conversation: dict[str, Any],
    received_at: datetime,
) -> int:
    """The conversation's current status and messages, as the webhooks that would have said them."""
    conversation = {**conversation, "account": account}
    bodies = [
        {
            **conversation,
            "event": "conversation_status_changed",
            "changed_attributes": [{"status": {"previous_value": None, "current_value": conversation.get("status")}}],
        }
    ]
    for message in client.list_messages(conversation["id"]):
        bodies.append({**message, "event": "message_created", "account": account, "conversation": conversation})
    for body in bodies:
        ingest.submit(runtime.redis, "chatwoot", json.dumps(body).encode(), received_at=received_at, delivery_id=None)
    return len(bodies)
