"""``sla-plugin doctor``: check a deployment against the configured helpdesk and say, in plain words, what is
right and what is not. The first command to run after ``install``.

Helpdesk checks (through its REST API): the token is valid and whose it is; our webhook is registered with
our URL, the events we need and the secret (or URL token) we verify with; our status labels exist; the
Dashboard App is registered. Local checks: the rule files are valid, Redis and the database answer, a
sweeper holds its leader lock (a worker is running). Nothing is changed anywhere. Secrets are compared,
never shown.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.chatwoot.client import (
    ChatwootClient,
    ChatwootError,
    NotPermitted,
    RateLimited,
    ServerError,
    TokenRefused,
    TransportError,
)
from plugin.adapters.rule_files import check_directory
from plugin.adapters.settings import Settings
from plugin.cli.install import DASHBOARD_APP_TITLE, agent_sight
from plugin.core.rules.model import ERROR

OK, WARNING, PROBLEM = "ok", "warning", "problem"


@dataclass(frozen=True)
class Finding:
    """One check's verdict: ``level`` is ok, warning (works, but worth knowing) or problem."""

    check: str
    level: str
    text: str

    def line(self) -> str:
        mark = {OK: "ok     ", WARNING: "WARNING", PROBLEM: "PROBLEM"}[self.level]
        return f"[{mark}] {self.check}: {self.text}"


def diagnose(
    settings: Settings,
    client: ChatwootClient | None,
    manifest: Mapping[str, Any],
    public_url: str | None,
    redis_ping: Callable[[], Any],
    database_ping: Callable[[], Any],
    sweeper_alive: Callable[[], bool],
    known_inboxes: Callable[[], Mapping[str, str]] = dict,
) -> list[Finding]:
    """Every check, in the order a reader fixes them. ``client`` is None when the helpdesk settings are missing;
    ``known_inboxes`` gives the inboxes the plugin has met (id -> name), to name those an agent cannot see."""
    findings: list[Finding] = []
    rule_set, problems = check_directory(settings.SLA_RULES_DIR)
    errors = [problem for problem in problems if problem.severity == ERROR]
    if rule_set is None or errors:
        listed = "; ".join(map(str, (errors or problems)[:5]))
        findings.append(Finding("rules", PROBLEM, f"{settings.SLA_RULES_DIR} cannot be used: {listed}"))
    elif problems:
        findings.append(Finding("rules", WARNING, "valid, with warnings: " + "; ".join(map(str, problems[:5]))))
    else:
        findings.append(Finding("rules", OK, f"{settings.SLA_RULES_DIR} is valid"))
    if client is None:
        findings.append(
            Finding("helpdesk", PROBLEM, "CHATWOOT_URL, CHATWOOT_ACCOUNT_ID and CHATWOOT_API_TOKEN must all be set")
        )
    else:
        label_titles = (
            [spec.title for spec in rule_set.labels.values()]
            if rule_set is not None and rule_set.labels
            else [spec["title"] for spec in manifest["labels"].values()]
        )
        findings.extend(_helpdesk(settings, client, manifest, public_url, label_titles, known_inboxes))
    findings.append(_local("redis", redis_ping, "Redis answers"))
    findings.append(_local("database", database_ping, "the database answers"))
    try:
        alive = sweeper_alive()
    except Exception as error:  # noqa: BLE001 - a check reports every failure instead of raising it
        findings.append(Finding("sweeper", PROBLEM, f"cannot tell (Redis: {type(error).__name__})"))
    else:
        findings.append(
            Finding("sweeper", OK, "a worker's sweeper is running")
            if alive
            else Finding(
                "sweeper",
                PROBLEM,
                "no sweeper is running: start a worker (sla-plugin worker); without it no deadline is noticed",
            )
        )
    return findings


def _helpdesk(
    settings: Settings,
    client: ChatwootClient,
    manifest: Mapping[str, Any],
    public_url: str | None,
    label_titles: Sequence[str],
    known_inboxes: Callable[[], Mapping[str, str]],
) -> list[Finding]:
    try:
        profile = client.get_profile()
    except ChatwootError as error:
        unchecked = "webhook, labels and Dashboard App not checked: fix the token problem first"
        return [Finding("token", PROBLEM, _plain(error, client)), Finding("helpdesk", WARNING, unchecked)]
    findings = [_token(client, profile, known_inboxes)]
    for check, probe in (
        ("webhook", lambda: _webhook(settings, client, manifest, public_url)),
        ("labels", lambda: _labels(client, label_titles)),
        ("dashboard app", lambda: _dashboard_app(client)),
    ):
        try:
            findings.extend(probe())
        except ChatwootError as error:
            findings.append(Finding(check, PROBLEM, _plain(error, client)))
    return findings


def _token(
    client: ChatwootClient, profile: Mapping[str, Any], known_inboxes: Callable[[], Mapping[str, str]]
) -> Finding:
    role = client.role_in_account(profile)
    who = f"{profile.get('name') or 'a user'} (user {profile.get('id')})"
    if role == "administrator":
        return Finding("token", OK, f"valid; {who} is an administrator of account {client.account_id}")
    if role is None:
        return Finding("token", PROBLEM, f"valid, but {who} is not a member of account {client.account_id}")
    try:
        known = known_inboxes()
    except Exception:  # noqa: BLE001 - the database has its own check; without it, no hidden inbox is named
        known = {}
    sight = agent_sight(client.list_inboxes(), known)
    return Finding("token", WARNING, f"valid; {who} is an {role}, not an administrator. {sight}")


def _webhook(
    settings: Settings, client: ChatwootClient, manifest: Mapping[str, Any], public_url: str | None
) -> list[Finding]:
    path = manifest["webhook"]["path"]
    wanted = public_url.rstrip("/") + path if public_url else None
    hooks = [
        hook
        for hook in client.list_webhooks()
        if (_without_query(hook.get("url", "")) == wanted if wanted else urlsplit(hook.get("url", "")).path == path)
    ]
    if not hooks:
        where = wanted or f"a URL ending in {path}"
        return [Finding("webhook", PROBLEM, f"no webhook points to {where}: run sla-plugin install")]
    hook = hooks[0]
    url = hook.get("url", "")
    findings = []
    missing = sorted(set(manifest["webhook"]["events"]) - set(hook.get("subscriptions") or ()))
    if missing:
        findings.append(Finding("webhook", PROBLEM, f"{_without_query(url)} lacks the events {', '.join(missing)}"))
    else:
        findings.append(Finding("webhook", OK, f"{_without_query(url)} (id {hook.get('id')}) has every event we need"))
    findings.append(_webhook_secret(settings, hook))
    host = urlsplit(url).hostname or ""
    if _private(host):
        findings.append(
            Finding(
                "webhook",
                WARNING,
                f"{host} is a private address: Chatwoot v4.14.0 and later deliver to it only when its server has "
                "SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true (v4.14.0 itself never does)",
            )
        )
    return findings


def _webhook_secret(settings: Settings, hook: Mapping[str, Any]) -> Finding:
    secret = hook.get("secret")
    ours = settings.CHATWOOT_WEBHOOK_SECRET
    if secret:
        if not ours:
            return Finding(
                "webhook secret",
                PROBLEM,
                "Chatwoot signs this webhook but CHATWOOT_WEBHOOK_SECRET is not set: run sla-plugin install again",
            )
        if not hmac.compare_digest(str(secret).encode(), ours.encode()):
            return Finding(
                "webhook secret",
                PROBLEM,
                "CHATWOOT_WEBHOOK_SECRET differs from the webhook's secret in Chatwoot: every delivery is "
                "refused (401); run sla-plugin install again",
            )
        return Finding("webhook secret", OK, "signed deliveries; CHATWOOT_WEBHOOK_SECRET matches")
    if ours:
        return Finding(
            "webhook secret",
            PROBLEM,
            "this Chatwoot (before v4.12) does not sign webhooks, but CHATWOOT_WEBHOOK_SECRET is set, so every "
            "delivery is refused: unset it and use SLA_WEBHOOK_TOKEN",
        )
    token = (parse_qs(urlsplit(hook.get("url", "")).query).get("token") or [""])[0]
    expected = settings.SLA_WEBHOOK_TOKEN or ""
    if not expected:
        return Finding(
            "webhook secret",
            PROBLEM,
            "unsigned deliveries and no SLA_WEBHOOK_TOKEN: anyone can post events; set it and run install again",
        )
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return Finding(
            "webhook secret", PROBLEM, "the webhook URL's token differs from SLA_WEBHOOK_TOKEN: run install again"
        )
    return Finding("webhook secret", OK, "unsigned deliveries (Chatwoot before v4.12); the URL token matches")


def _labels(client: ChatwootClient, titles: Sequence[str]) -> list[Finding]:
    present = {label.get("title") for label in client.list_account_labels()}
    missing = [title for title in titles if title not in present]
    if missing:
        return [Finding("labels", PROBLEM, f"missing: {', '.join(missing)}: run sla-plugin install")]
    return [Finding("labels", OK, f"present: {', '.join(titles)}")]


def _dashboard_app(client: ChatwootClient) -> list[Finding]:
    apps = [app for app in client.list_dashboard_apps() if app.get("title") == DASHBOARD_APP_TITLE]
    if not apps:
        return [
            Finding(
                "dashboard app",
                WARNING,
                f"no {DASHBOARD_APP_TITLE!r} app: agents see no SLA beside conversations "
                "(sla-plugin install --dashboard-app adds it)",
            )
        ]
    return [Finding("dashboard app", OK, f"{DASHBOARD_APP_TITLE!r} is registered (id {apps[0].get('id')})")]


def _local(check: str, probe: Callable[[], Any], success: str) -> Finding:
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - a check reports every failure instead of raising it
        return Finding(check, PROBLEM, f"unreachable ({type(error).__name__})")
    return Finding(check, OK, success)


def _plain(error: ChatwootError, client: ChatwootClient) -> str:
    """What a failed helpdesk call means, for the person setting the plugin up."""
    if isinstance(error, TokenRefused):
        return (
            "Chatwoot refused the API token (wrong or revoked, or not a member of the account): set "
            "CHATWOOT_API_TOKEN to an administrator's access token"
        )
    if isinstance(error, NotPermitted):
        return "the token's user may not do this: only an administrator may (use an administrator's token)"
    if isinstance(error, TransportError) and "Timeout" in str(error):
        return f"Chatwoot at {client.base_url} did not answer in time ({error})"
    if isinstance(error, TransportError):
        return f"cannot reach Chatwoot at {client.base_url} ({error})"
    if isinstance(error, RateLimited):
        return "Chatwoot is rate-limiting this host (HTTP 429): try again in a minute"
    if isinstance(error, ServerError):
        return f"Chatwoot failed (HTTP {error.status}): try again, or look at Chatwoot's logs"
    return f"unexpected answer from Chatwoot: {error}"


def _without_query(url: str) -> str:
    # The URL token is a secret: never shown.
    return url.split("?", 1)[0].rstrip("/")


def _private(host: str) -> bool:
    if host == "localhost" or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local
