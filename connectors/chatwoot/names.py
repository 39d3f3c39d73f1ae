"""The names a Chatwoot webhook body shows beside ids: its inbox, the conversation's assignee and team.

Chatwoot renders them in ``Message#webhook_data`` (``inbox: {id, name}``, ``sender`` with ``type: "user"``
for an agent) and in the conversation's ``push_event_data`` (``meta.assignee``, ``meta.team``), so
reports can show "Website Chat" instead of "Inbox 3" without asking the API (docs/reports.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NameEntry = tuple[str, str, str]  # (kind: inbox, team or agent; id as text; name)


def names_in(payload: Any) -> list[NameEntry]:
    """Every (kind, id, name) the body shows; bodies of any event, malformed parts skipped."""
    if not isinstance(payload, Mapping):
        return []
    found: list[NameEntry] = []
    _add(found, "inbox", payload.get("inbox"))
    sender = payload.get("sender")
    if isinstance(sender, Mapping) and sender.get("type") == "user":
        _add(found, "agent", sender)
    nested = payload.get("conversation")
    conversation: Mapping[str, Any] = nested if isinstance(nested, Mapping) else payload
    meta = conversation.get("meta")
    if isinstance(meta, Mapping):
        _add(found, "agent", meta.get("assignee"))
        _add(found, "team", meta.get("team"))
    return found


def _add(found: list[NameEntry], kind: str, item: Any) -> None:
    if not isinstance(item, Mapping):
        return
    identifier = item.get("id")
    # An agent's display name is the one Chatwoot shows (available_name), else the full name.
    name = (item.get("available_name") if kind == "agent" else None) or item.get("name")
    if isinstance(identifier, int) and not isinstance(identifier, bool) and isinstance(name, str) and name.strip():
        found.append((kind, str(identifier), name.strip()))
