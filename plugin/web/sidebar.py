"""Chatwoot's Dashboard App for the conversation sidebar: ``GET /sidebar`` and its JSON endpoint.

The page (static/sidebar.js) asks its parent for context with ``'chatwoot-dashboard-app:fetch-info'``,
accepts the answer only from the ``CHATWOOT_URL`` origin, and reads the conversation's SLA from
``GET /api/sidebar/conversations/<account>/<display id>``. Both take ``SLA_SIDEBAR_TOKEN`` (carried in the
app's URL as ``?token=``); that token opens nothing else. Countdowns tick in the browser from the due times;
this endpoint adds what only the policy's calendar knows: whether it is open now, when that changes, and
the working time left (Chatwoot's ``DashboardApp/Frame.vue``; docs/contracts.md section 3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from plugin.adapters.accounts import Account
from plugin.core.engine.clocks import AT_RISK, RUNNING
from plugin.core.events import format_time, parse_time
from plugin.core.policy import METRICS, policy_from_snapshot
from plugin.core.reports.figures import METRIC_PREFIXES
from plugin.web.auth import sees, sidebar_required, visible_account
from plugin.web.reports import reports

blueprint = Blueprint(
    "sidebar",
    __name__,
    template_folder="../templates",
    static_folder="../static",
    static_url_path="/static/sla-sidebar",
)

# How far ahead to look for the calendar's next opening or closing (a long holiday still fits).
CALENDAR_LOOKAHEAD = timedelta(days=21)


def chatwoot_origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of the helpdesk URL: what ``event.origin`` of its messages is."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


@blueprint.get("/sidebar")
@sidebar_required
def page() -> tuple[str, int] | Response:
    """The Dashboard App page (an iframe in Chatwoot's conversation view)."""
    account = _page_account()
    origin = chatwoot_origin(account.chatwoot_url if account is not None else None)
    default_account = account.id if account is not None and account.id is not None else ""
    response = current_app.make_response(
        render_template("sidebar.html", chatwoot_origin=origin or "", default_account=default_account)
    )
    # Only the helpdesk may frame the app; without CHATWOOT_URL nobody can, and the page says why.
    response.headers["Content-Security-Policy"] = f"frame-ancestors {origin or chr(39) + 'none' + chr(39)}"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get("/api/sidebar/conversations/<int:account_id>/<int:conversation_id>")
@sidebar_required
def conversation(account_id: int, conversation_id: int) -> tuple[Response, int] | Response:
    """One conversation's SLA for the sidebar: policy, per-metric status and calendar state, timeline."""
    if current_app.extensions["sla"].accounts.get(account_id) is None or not sees(account_id):
        return jsonify({"error": "not this plugin's account"}), 404
    now = datetime.now(UTC)
    return jsonify(sidebar_view(reports().conversation(account_id, conversation_id), account_id, conversation_id, now))


def _page_account() -> Account | None:
    """The account whose helpdesk frames the page: the token's account, else ``?account=`` (a deployment-wide
    token with an accounts file), else the single account."""
    accounts = current_app.extensions["sla"].accounts
    visible = visible_account()
    if visible is not None:
        return accounts.get(visible)
    named = request.args.get("account", "")
    if named.isascii() and named.isdigit():
        return accounts.get(int(named))
    return accounts.default()


def sidebar_view(item: dict[str, Any] | None, account_id: int, conversation_id: int, now: datetime) -> dict[str, Any]:
    """What the sidebar shows of one conversation (``item`` from :meth:`Reports.conversation`)."""
    base = {"account_id": account_id, "conversation_id": conversation_id, "now": format_time(now)}
    if item is None:
        return {**base, "policy": None, "status": "none", "metrics": {}, "timeline": []}
    policy = policy_from_snapshot(item["policy_snapshot"])
    calendar = policy.calendar
    open_now = calendar.is_open(now)
    changes_at = None
    if not calendar.is_wall_clock:
        pieces = calendar.segments(now, now + CALENDAR_LOOKAHEAD)
        changes_at = format_time(pieces[0][1]) if pieces else None
    metrics = {}
    for metric in METRICS:
        prefix = METRIC_PREFIXES[metric]
        status = item[f"{prefix}_status"]
        if status is None:
            continue
        due_at = item[f"{prefix}_due_at"]
        running = status in (RUNNING, AT_RISK) and due_at is not None
        remaining = None
        if running:
            due = parse_time(due_at)
            remaining = calendar.working_between(now, due) if due > now else -int((now - due).total_seconds())
        metrics[metric] = {
            "status": status,
            "due_at": due_at,
            "stopped_at": item[f"{prefix}_stopped_at"],
            "missed_at": item[f"{prefix}_missed_at"],
            "misses": item[f"{prefix}_misses"],
            "target_seconds": policy.targets.get(metric),
            "calendar_open_now": open_now,
            "calendar_changes_at": changes_at,
            "remaining_working_seconds": remaining,
            **({"misses_per_message": item["nrt_misses_per_message"]} if prefix == "nrt" else {}),
        }
    return {
        **base,
        "status": item["status"],
        "resolved": item["resolved"],
        "evaluated_at": item["evaluated_at"],
        "policy": {
            "id": policy.id,
            "name": policy.name,
            "description": policy.description,
            "mode": policy.mode,
            "version": policy.version[:12],
            "target": policy.target,
            "calendar": policy.calendar_id,
            "timezone": calendar.timezone,
            "pause_when": sorted(policy.pause_when),
        },
        "metrics": metrics,
        "misses": [miss for miss in item["misses"] if miss["corrected_at"] is None],
        # In the order things happened (the log is in the order they were recorded; a late event's
        # entries are recorded after later ones). The sort is stable: equal times keep their order.
        "timeline": sorted(item["log"], key=lambda entry: entry["at"]),
    }
