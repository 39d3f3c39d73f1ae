"""SLA events and the messages that carry them to notification destinations (pure: no I/O, no clock).

An SLA event (``sla.applied``, ``sla.at_risk``, ``sla.missed``, ``sla.hit``, ``sla.corrected``) is derived
from what changed between two evaluations of one conversation. Its id is a UUID derived from the
conversation and the event's identity (``missed:first_response#0``, ``at_risk:resolution:<due>``), so a
retried or duplicated evaluation yields the same id, and the store keeps one delivery per id and destination.
The wire formats (docs/notifications.md): a signed JSON body for ``webhook`` destinations, an incoming-webhook
message (``text`` plus blocks) for ``slack`` destinations.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from plugin.core.engine.clocks import AT_RISK, HIT
from plugin.core.engine.effects import Change
from plugin.core.engine.evaluate import Evaluation
from plugin.core.events import format_time, parse_time
from plugin.core.wording import METRIC_NAMES, duration_text, local_time, zone_label

EVENT_PREFIX = "sla."
# Fixed namespace of the plugin's event ids (uuid5 of the conversation and the event's identity).
_EVENT_NAMESPACE = uuid.UUID("6f1d3b0e-5a4c-4f57-9a55-3c1a8f2f1e01")


@dataclass(frozen=True)
class SlaEvent:
    """One SLA event of one conversation, as stored in the notification outbox.

    ``body`` is the webhook body without ``conversation_url`` (added at delivery, from the helpdesk's URL
    then configured); ``stopped_at`` (when the missed clock stopped, if it has) and ``timezone`` (the
    policy calendar's) only serve the human-readable Slack message.
    """

    id: str
    name: str  # "sla.missed"
    body: Mapping[str, Any]
    stopped_at: str | None = None
    timezone: str = "UTC"

    @property
    def short_name(self) -> str:
        """The name rule files use in ``notify`` (``missed``)."""
        return self.name.removeprefix(EVENT_PREFIX)

    def to_json(self) -> dict[str, Any]:
        """What the outbox stores."""
        return {"body": dict(self.body), "stopped_at": self.stopped_at, "timezone": self.timezone}


def event_id(account_id: int, conversation_id: int, identity: str) -> str:
    """The stable id of one SLA event (the same on every evaluation that finds it)."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{account_id}/{conversation_id}/{identity}"))


def sla_events(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], found: Sequence[Change], evaluation: Evaluation
) -> list[SlaEvent]:
    """The SLA events that take a conversation from the ``previous`` summary to ``current``.

    Shadow policies and conversations without a policy yield none. A miss, a correction and an at-risk
    episode (a metric's due time) each have one identity, so the same fact is never a second event.
    """
    policy = evaluation.policy
    if policy is None or not policy.live:
        return []
    previous = previous or {}
    timezone = policy.calendar.timezone
    policy_info = {"id": policy.id, "name": policy.name, "version": policy.version}
    events: list[SlaEvent] = []

    def add(
        name: str,
        identity: str,
        at: datetime,
        metric: str | None,
        due: str | None,
        policy: Mapping[str, Any] = policy_info,
        zone: str = timezone,
        stopped_at: str | None = None,
    ) -> None:
        identifier = event_id(evaluation.account_id, evaluation.conversation_id, identity)
        body = {
            "event": EVENT_PREFIX + name,
            "id": identifier,
            "occurred_at": format_time(at),
            "account_id": evaluation.account_id,
            "conversation_id": evaluation.conversation_id,
            "policy": dict(policy),
            "metric": metric,
            "due_at": due,
            "status": current["status"],
        }
        events.append(SlaEvent(identifier, EVENT_PREFIX + name, body, stopped_at, zone))

    for change in found:
        metric = change.metric
        result = evaluation.metrics.get(metric) if metric else None
        if change.kind == "applied":
            add("applied", "applied", change.at, None, None)
        elif change.kind == AT_RISK and result is not None:
            due = format_time(result.due_at)
            add("at_risk", f"at_risk:{metric}:{due}", change.at, metric, due)
        elif change.kind == "missed":
            miss = change.miss
            detail = current["misses_detail"][miss]
            stopped = result.stopped_at if result is not None and result.stopped_at else None
            add(
                "missed",
                f"missed:{miss}",
                change.at,
                metric,
                detail["due_at"],
                policy={"id": detail["policy"], "name": detail["policy_name"], "version": detail["policy_version"]},
                zone=detail.get("timezone") or timezone,
                stopped_at=format_time(stopped) if stopped and stopped > change.at else None,
            )
        elif change.kind == "miss_corrected":
            miss = change.miss
            detail = previous["misses_detail"][miss]
            add(
                "corrected",
                f"corrected:{miss}",
                change.at,
                metric,
                detail["due_at"],
                policy={"id": detail["policy"], "name": detail["policy_name"], "version": detail["policy_version"]},
                zone=detail.get("timezone") or timezone,
            )
    resolved_at = evaluation.facts.resolved_at if evaluation.facts is not None else None
    if current["status"] == HIT and previous.get("status") != HIT and resolved_at is not None:
        add("hit", f"hit:{format_time(resolved_at)}", resolved_at, None, None)
    return events


def routed(events: Sequence[SlaEvent], evaluation: Evaluation) -> list[tuple[SlaEvent, str]]:
    """Each event paired with every destination the policy in force sends it to."""
    if evaluation.policy is None:
        return []
    return [
        (event, destination) for event in events for destination in evaluation.policy.destinations_for(event.short_name)
    ]


def webhook_body(stored: Mapping[str, Any], conversation_url: str | None) -> dict[str, Any]:
    """The JSON body a ``webhook`` destination receives (keys in the documented order)."""
    body = dict(stored["body"])
    ordered = {key: body[key] for key in ("event", "id", "occurred_at", "account_id", "conversation_id")}
    ordered["conversation_url"] = conversation_url
    ordered.update({key: body[key] for key in ("policy", "metric", "due_at", "status")})
    return ordered


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``, the X-SLA-Signature header."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


_HEADLINES = {
    "sla.applied": ":large_blue_circle: SLA applied",
    "sla.at_risk": ":large_orange_circle: SLA at risk",
    "sla.missed": ":red_circle: SLA missed",
    "sla.hit": ":white_check_mark: SLA met",
    "sla.corrected": ":arrows_counterclockwise: SLA miss corrected",
}


def slack_message(stored: Mapping[str, Any], conversation_url: str | None, now: datetime) -> dict[str, Any]:
    """A Slack incoming-webhook message: the conversation (linked), the policy, the metric and how late."""
    body = stored["body"]
    name = body["event"]
    zone = ZoneInfo(stored.get("timezone") or "UTC")
    conversation = f"conversation #{body['conversation_id']}"
    link = f"<{conversation_url}|{conversation}>" if conversation_url else conversation
    metric = METRIC_NAMES.get(body["metric"] or "", body["metric"])
    policy = body["policy"]["name"]
    due = parse_time(body["due_at"]) if body.get("due_at") else None
    occurred = parse_time(body["occurred_at"])
    zone_name = zone_label(zone)
    if name == "sla.missed" and due is not None:
        stopped = parse_time(stored["stopped_at"]) if stored.get("stopped_at") else None
        late = (stopped or now) - due
        when = f"answered {local_time(stopped, zone, due)}" if stopped else "still open"
        detail = f"{metric} was due {local_time(due, zone, now)} {zone_name}; {when}, {duration_text(late)} late"
    elif name == "sla.at_risk" and due is not None:
        detail = f"{metric} is due {local_time(due, zone, now)} {zone_name}, in {duration_text(due - now)}"
    elif name == "sla.corrected" and due is not None:
        detail = (
            f"the {metric} miss (due {local_time(due, zone, now)} {zone_name}) did not happen: "
            "a late event shows it was met"
        )
    elif name == "sla.hit":
        detail = f"resolved {local_time(occurred, zone, now)} {zone_name} with every target met"
    else:
        detail = f"since {local_time(occurred, zone, now)} {zone_name}"
    headline = _HEADLINES.get(name, name)
    text = f"{headline}: {link} ({policy}): {detail}"
    fields = [f"*Policy:* {policy}", f"*Status:* {body['status'].replace('_', ' ')}"]
    if metric:
        fields.insert(1, f"*Metric:* {metric}")
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*: {link}\n{detail}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": item} for item in fields]},
        ],
    }
