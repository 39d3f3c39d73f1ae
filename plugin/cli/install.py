"""``sla-plugin install`` / ``uninstall``: set the helpdesk up from manifest.json, idempotently.

Install first checks whose the API token is (``GET /api/v1/profile``): an administrator's passes; an agent's
is refused unless ``allow_agent_token``, because an agent sees only the inboxes it is a member of (the
plugin could neither label nor note nor reconcile conversations of the others) and may not register webhooks
or create labels. Then it creates the plugin's status labels (existing titles are left alone), registers the
webhook with the events the manifest lists, reads back the signing secret the helpdesk generated (Chatwoot
makes its own), and optionally registers the Dashboard App. Uninstall removes what install created. Both
print each step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from connectors.outbound import HelpdeskAdmin, NotPermitted

DASHBOARD_APP_TITLE = "SLA"


def account_webhook_path(manifest: Mapping[str, Any], account_id: int) -> str:
    """``/webhooks/chatwoot/<account id>``: the webhook path of one account of an accounts file."""
    return f"{manifest['webhook']['path'].rstrip('/')}/{account_id}"


class InstallRefused(Exception):
    """Install stopped before changing anything; the message says why and what to do."""


@dataclass
class InstallReport:
    """What install or uninstall did, one line per step."""

    lines: list[str] = field(default_factory=list)
    webhook_secret: str | None = None
    webhook_token: str | None = None  # the URL token of the registered webhook (an existing one keeps its own)

    def say(self, line: str) -> None:
        self.lines.append(line)


def install(
    client: HelpdeskAdmin,
    manifest: Mapping[str, Any],
    public_url: str,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    webhook_token: str | None = None,
    sidebar_token: str | None = None,
    dashboard_app: bool = False,
    allow_agent_token: bool = False,
    custom_attributes: bool = False,
    webhook_path: str | None = None,
    known_inboxes: Mapping[str, str] | None = None,
) -> InstallReport:
    """Check the token's user, then create labels, the webhook and (optionally) the Dashboard App; skip what
    already exists. Raises :class:`InstallRefused` for an agent's token unless ``allow_agent_token``.

    ``webhook_path`` replaces the manifest's (``/webhooks/chatwoot/<account id>`` for an accounts file)."""
    report = InstallReport()
    report.say(check_token(client, allow_agent_token, known_inboxes))
    labels = labels or manifest["labels"]
    existing = {label["title"] for label in client.list_account_labels()}
    for spec in labels.values():
        if spec["title"] in existing:
            report.say(f"label {spec['title']}: exists, kept")
            continue
        try:
            client.create_account_label(spec["title"], spec.get("description", ""), spec["color"])
        except NotPermitted:
            report.say(f"label {spec['title']}: NOT created, only an administrator may create labels")
            continue
        report.say(f"label {spec['title']}: created ({spec['color']})")
    if custom_attributes:
        _attribute_definitions(client, report)

    webhook_url = public_url.rstrip("/") + (webhook_path or manifest["webhook"]["path"])
    if webhook_token:
        webhook_url += "?" + urlencode({"token": webhook_token})
    try:
        ours = [hook for hook in client.list_webhooks() if _same_endpoint(hook.get("url", ""), webhook_url)]
    except NotPermitted:
        report.say(
            f"webhook {_without_query(webhook_url)}: NOT registered, only an administrator may register webhooks"
        )
        return _dashboard_app(client, manifest, public_url, sidebar_token, dashboard_app, report)
    if ours:
        report.say(f"webhook {_without_query(webhook_url)}: exists (id {ours[0].get('id')}), kept")
        report.webhook_secret = ours[0].get("secret")
        report.webhook_token = (parse_qs(urlsplit(ours[0].get("url", "")).query).get("token") or [None])[0]
    else:
        created = client.create_webhook(webhook_url, manifest["webhook"]["events"], name=manifest.get("title"))
        report.webhook_secret = created.get("secret")
        report.webhook_token = webhook_token
        report.say(
            f"webhook {_without_query(webhook_url)}: registered (id {created.get('id')}) for "
            f"{', '.join(manifest['webhook']['events'])}"
        )
    if report.webhook_secret is None:
        report.say("the helpdesk returned no signing secret: use SLA_WEBHOOK_TOKEN (unsigned install)")
    return _dashboard_app(client, manifest, public_url, sidebar_token, dashboard_app, report)


# The conversation attributes the plugin writes with writeback.custom_attributes (docs/notifications.md).
ATTRIBUTE_DEFINITIONS = (
    {
        "attribute_key": "sla_status",
        "attribute_display_name": "SLA status",
        "attribute_display_type": "list",
        "attribute_values": ["on_track", "at_risk", "missed", "hit"],
        "attribute_description": "Set by the SLA plugin: on_track, at_risk, missed; after resolution hit or missed.",
    },
    {
        "attribute_key": "sla_policy",
        "attribute_display_name": "SLA policy",
        "attribute_display_type": "text",
        "attribute_description": "Set by the SLA plugin: the SLA policy that applies.",
    },
    {
        "attribute_key": "sla_next_due_at",
        "attribute_display_name": "SLA next due",
        "attribute_display_type": "date",
        "attribute_description": "Set by the SLA plugin: when the next running SLA clock is due (empty: none runs).",
    },
)


def _attribute_definitions(client: HelpdeskAdmin, report: InstallReport) -> None:
    """Define the SLA's conversation attributes, so agents see them and can filter conversations by them."""
    try:
        existing = {item.get("attribute_key") for item in client.list_custom_attribute_definitions()}
    except NotPermitted:
        existing = set()
    for definition in ATTRIBUTE_DEFINITIONS:
        key = definition["attribute_key"]
        if key in existing:
            report.say(f"custom attribute {key}: exists, kept")
            continue
        try:
            client.create_custom_attribute_definition({**definition, "attribute_model": "conversation_attribute"})
        except NotPermitted:
            report.say(f"custom attribute {key}: NOT defined, only an administrator may define attributes")
            continue
        report.say(f"custom attribute {key}: defined ({definition['attribute_display_type']})")


def check_token(
    client: HelpdeskAdmin, allow_agent_token: bool = False, known_inboxes: Mapping[str, str] | None = None
) -> str:
    """One line saying whose the token is; raises :class:`InstallRefused` for an agent's token unless allowed.

    An agent's token sees only the inboxes its user is a member of (Chatwoot's InboxPolicy and
    Conversations::PermissionFilterService), and cannot list the others: the refusal names the inboxes it
    sees, and the ones it cannot see among ``known_inboxes`` (id -> name: those the plugin has met in webhooks).
    """
    profile = client.get_profile()
    role = client.role_in_account(profile)
    who = f"{profile.get('name') or 'user'} (user {profile.get('id')})"
    if role == "administrator":
        return f"token: {who}, administrator of account {client.account_id}"
    if role is None:
        raise InstallRefused(f"the API token's user {who} is not a member of account {client.account_id}")
    line = f"token: {who} is an {role} of account {client.account_id}, not an administrator. " + agent_sight(
        client.list_inboxes(), known_inboxes or {}
    )
    line += " An agent may not register the webhook or create labels either."
    if not allow_agent_token:
        raise InstallRefused(
            line + " Use an administrator's access token (Profile settings > Access Token of an administrator), "
            "or pass --allow-agent-token to go on with these limits."
        )
    return line + " Going on (--allow-agent-token)."


def agent_sight(visible: list[dict[str, Any]], known_inboxes: Mapping[str, str]) -> str:
    """What an agent's token sees and does not see, in words."""
    seen = ", ".join(f"{inbox.get('name')} (inbox {inbox.get('id')})" for inbox in visible) or "none"
    visible_ids = {str(inbox.get("id")) for inbox in visible}
    hidden = [f"{name} (inbox {key})" for key, name in sorted(known_inboxes.items()) if key not in visible_ids]
    text = f"It sees only the inboxes it is a member of: {seen}."
    if hidden:
        text += f" It cannot see: {', '.join(hidden)}."
    return text + " Conversations of every other inbox get no labels or notes and are not reconciled."


def _dashboard_app(
    client: HelpdeskAdmin,
    manifest: Mapping[str, Any],
    public_url: str,
    sidebar_token: str | None,
    dashboard_app: bool,
    report: InstallReport,
) -> InstallReport:
    if dashboard_app:
        app_url = public_url.rstrip("/") + manifest["endpoints"]["dashboard_app"]
        if sidebar_token:
            app_url += "?" + urlencode({"token": sidebar_token})
        apps = [app for app in client.list_dashboard_apps() if app.get("title") == DASHBOARD_APP_TITLE]
        if apps:
            report.say(f"dashboard app {DASHBOARD_APP_TITLE!r}: exists (id {apps[0].get('id')}), kept")
        else:
            created = client.create_dashboard_app(DASHBOARD_APP_TITLE, app_url)
            report.say(f"dashboard app {DASHBOARD_APP_TITLE!r}: registered (id {created.get('id')})")
    return report


def uninstall(
    client: HelpdeskAdmin,
    manifest: Mapping[str, Any],
    public_url: str,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    webhook_path: str | None = None,
) -> InstallReport:
    """Remove the webhook, the Dashboard App and the status labels that install created."""
    report = InstallReport()
    webhook_url = public_url.rstrip("/") + (webhook_path or manifest["webhook"]["path"])
    for hook in client.list_webhooks():
        if _same_endpoint(hook.get("url", ""), webhook_url):
            client.delete_webhook(hook["id"])
            report.say(f"webhook {_without_query(hook['url'])}: removed (id {hook['id']})")
    for app in client.list_dashboard_apps():
        if app.get("title") == DASHBOARD_APP_TITLE:
            client.delete_dashboard_app(app["id"])
            report.say(f"dashboard app {DASHBOARD_APP_TITLE!r}: removed (id {app['id']})")
    titles = {spec["title"] for spec in (labels or manifest["labels"]).values()}
    for label in client.list_account_labels():
        if label["title"] in titles:
            client.delete_account_label(label["id"])
            report.say(f"label {label['title']}: removed")
    if not report.lines:
        report.say("nothing to remove")
    return report


def save_secret(secret: str, path: Path, opener: Callable = os.open) -> None:
    """Write ``CHATWOOT_WEBHOOK_SECRET`` into an env file readable only by its owner (never printed)."""
    lines = path.read_text().splitlines() if path.exists() else []
    lines = [line for line in lines if not line.startswith("CHATWOOT_WEBHOOK_SECRET=")]
    lines.append(f"CHATWOOT_WEBHOOK_SECRET={secret}")
    descriptor = opener(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("\n".join(lines) + "\n")


def _without_query(url: str) -> str:
    # The URL token is a secret: never print it.
    return url.split("?", 1)[0]


def _same_endpoint(url: str, ours: str) -> bool:
    return _without_query(url).rstrip("/") == _without_query(ours).rstrip("/")
