"""Names from the helpdesk's API: the account's inboxes, agents and teams, refreshed periodically.

Webhooks show the names of what they touch; the API fills in the rest (an inbox nobody wrote to yet, an
agent renamed since). The sweeper queues :func:`run` every ``SLA_NAMES_REFRESH_SECONDS`` on the write-back
queue (it calls the helpdesk, like the write-back). A list the token may not read (an agent's token and the
agents list, say) is skipped and logged; the others are still stored.
"""

from __future__ import annotations

import logging

from connectors.base import HelpdeskAPIError
from connectors.outbound import Helpdesk
from plugin.adapters.directory import Directory, Name
from plugin.jobs.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)


def run(account_id: int | None = None) -> int:
    """RQ job: refresh one account's names once (by default the single account of the settings); returns how
    many changed."""
    runtime = current_runtime()
    return refresh(runtime, runtime.helpdesk(account_id))


def refresh(runtime: Runtime, client: Helpdesk) -> int:
    """Read the account's inboxes, agents and teams and store their names; returns how many changed."""
    found: list[Name] = []
    for kind, listing in (("inbox", client.list_inboxes), ("agent", client.list_agents), ("team", client.list_teams)):
        try:
            items = listing()
        except HelpdeskAPIError as error:
            log.warning("could not list the helpdesk's %ss for report names: %s", kind, error)
            continue
        for item in items:
            name = (item.get("available_name") if kind == "agent" else None) or item.get("name")
            if isinstance(item.get("id"), int) and isinstance(name, str):
                found.append(Name(client.account_id, kind, str(item["id"]), name))
    changed = Directory(runtime.store.engine).learn(found)
    log.info("report names refreshed: %d seen, %d changed", len(found), changed)
    return changed
