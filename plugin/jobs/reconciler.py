"""The reconciler: what webhooks lost, recovered by polling the helpdesk's API.

Chatwoot's webhooks are at-most-once with a 5 s timeout and no retry, so a dropped delivery could hide a
reply, a resolution or a breach. Periodically, for the open conversations the helpdesk lists and the ones
the store still believes open, the reconciler turns the API's view back into webhook-shaped bodies
(:mod:`connectors.chatwoot.recovery`: REST and webhooks render a conversation differently) and hands them to
the workers through the same stream as live webhooks. Nothing here judges anything: the engine drops what it
already knows (event keys) and folds the rest at its own time.

A conversation the token's user may not see (401 "You are not authorized to do this action": an agent's
token and another inbox) is skipped, logged and counted; the pass goes on. A refused token stops the pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.chatwoot import recovery
from connectors.outbound import Helpdesk, NotFound, NotPermitted
from plugin.adapters import metrics, redis_keys
from plugin.adapters import streams as ingest
from plugin.jobs.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)

MAX_PAGES = 200  # 25 conversations a page: 5,000 open conversations per run
MAX_MESSAGE_PAGES = 50  # 20 messages a page: a conversation's latest 1,000 messages
FAILURES_METRIC = "sla_reconcile_failures_total"


def run(account_id: int | None = None) -> int:
    """RQ job: reconcile one account once (by default the single account of the settings); returns how many
    bodies were handed over."""
    runtime = current_runtime()
    return reconcile(runtime, runtime.helpdesk(account_id))


def reconcile(runtime: Runtime, client: Helpdesk) -> int:
    """Hand the API's view of every open (or believed-open) conversation to the workers."""
    received_at = datetime.now(UTC)
    submitted = 0
    seen: set[int] = set()
    for conversation in _open_conversations(client):
        seen.add(conversation["id"])
        submitted += _recover(runtime, client, conversation["id"], conversation, received_at)
    for conversation_id in sorted(runtime.store.unresolved_conversations(client.account_id) - seen):
        submitted += _recover(runtime, client, conversation_id, None, received_at)
    log.info("reconciled %d conversations, %d bodies handed over", len(seen), submitted)
    return submitted


def _open_conversations(client: Helpdesk) -> Iterator[dict[str, Any]]:
    for page in range(1, MAX_PAGES + 1):
        conversations = client.list_conversations("open", page)
        if not conversations:
            return
        yield from conversations


def _recover(
    runtime: Runtime,
    client: Helpdesk,
    conversation_id: int,
    conversation: Mapping[str, Any] | None,
    received_at: datetime,
) -> int:
    """Submit one conversation's current status and messages; 0 when the helpdesk will not show it."""
    try:
        if conversation is None:
            conversation = client.get_conversation(conversation_id)
        messages = list(client.iter_messages(conversation_id, max_pages=MAX_MESSAGE_PAGES))
    except NotFound:
        return 0  # deleted in the helpdesk: nothing more will happen to it
    except NotPermitted as error:
        metrics.incr(runtime.redis, FAILURES_METRIC, {"reason": "not_permitted"})
        log.error(
            "helpdesk refused this conversation to the API token's user (%s); not reconciled, the others go on",
            error,
            extra={"account_id": client.account_id, "conversation_id": conversation_id},
        )
        return 0
    bodies = [
        recovery.status_body(conversation, client.account_id),
        *recovery.message_bodies(conversation, messages, client.account_id),
    ]
    account = runtime.accounts.get(client.account_id)
    stream = account.stream if account is not None else redis_keys.EVENT_STREAM
    for body in bodies:
        ingest.submit(
            runtime.redis,
            "chatwoot",
            json.dumps(body).encode(),
            received_at=received_at,
            stream=stream,
            account_id=client.account_id,
        )
    return len(bodies)
