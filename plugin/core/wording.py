"""How the plugin speaks to people: notes in the helpdesk, Slack messages (pure text helpers)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from plugin.core.events import parse_time

METRIC_NAMES = {"first_response": "first response", "next_response": "next response", "resolution": "resolution"}


def local_time(moment: datetime, zone: ZoneInfo, reference: datetime | None = None) -> str:
    """``09:15`` in *zone*, with the date when it is not *reference*'s local day."""
    local = moment.astimezone(zone)
    if reference is not None and reference.astimezone(zone).date() == local.date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def zone_label(zone: ZoneInfo) -> str:
    """One name for a zone: ``UTC``, ``Europe/Berlin``; never ``UTC (UTC)``."""
    return "UTC" if zone.key in ("UTC", "Etc/UTC") else zone.key


def duration_text(duration: timedelta) -> str:
    """``2d 3h 5m``, ``45m``, or ``under a minute``."""
    minutes = int(duration.total_seconds() // 60)
    if minutes <= 0:
        return "under a minute"
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts)


def mention_markup(person: Mapping[str, Any]) -> str:
    """Chatwoot's mention markup, which makes Chatwoot notify the person (or every member of the team):
    ``[@Sam Agent](mention://user/7/Sam%20Agent)``, ``[@support](mention://team/2/support)``."""
    name = str(person["name"])
    return f"[@{name.replace(']', '')}](mention://{person['type']}/{int(person['id'])}/{quote(name, safe='')})"


def note_marker(account_id: int, conversation_id: int, key: str) -> str:
    """The last line of every plugin note: it lets a retry find a note it posted before a crash."""
    return f"ref sla-plugin/{account_id}/{conversation_id}/{key}"


def legacy_note_marker(account_id: int, conversation_id: int, key: str) -> str:
    """The marker notes carried before :func:`note_marker`; still searched, so no note is posted twice."""
    return f"[sla-plugin {account_id}/{conversation_id} {key}]"


_STOPPED = {"first_response": "answered", "next_response": "answered", "resolution": "resolved"}


def note_text(payload: Mapping[str, Any], now: datetime, marker: str) -> str:
    """A miss, at-risk or correction note in people's words, times in the policy calendar's zone, the
    people the policy mentions first and the marker last, on its own line."""
    zone = ZoneInfo(payload.get("timezone") or "UTC")
    zone_name = zone_label(zone)
    due = parse_time(payload["due_at"])
    metric = METRIC_NAMES.get(payload["metric"], payload["metric"])
    due_text = f"due {local_time(due, zone, now)} {zone_name}"
    version = (payload.get("policy_version") or "")[:8]
    policy = f"Policy: {payload['policy_name']} (version {version})."
    if payload["kind"] == "correction":
        text = (
            f"SLA correction: the {metric} miss noted earlier did not happen ({due_text}). A reply or status "
            f"change that arrived late shows the clock stopped in time."
        )
    elif payload["kind"] == "at_risk":
        left = duration_text(due - now) if due > now else "no time"
        text = f"SLA at risk: {metric} is {due_text}, {left} left."
    elif payload.get("stopped_at"):
        stopped = parse_time(payload["stopped_at"])
        verb = _STOPPED.get(payload["metric"], "stopped")
        text = (
            f"SLA missed: {metric} {verb} at {local_time(stopped, zone, now)} ({due_text}), "
            f"{duration_text(stopped - due)} late."
        )
    else:
        text = f"SLA missed: {metric} missed at {local_time(due, zone, now)} ({due_text})."
    mentions = " ".join(mention_markup(person) for person in payload.get("mentions") or ())
    return "\n\n".join(part for part in (f"{mentions} {text}".strip(), policy, marker))
