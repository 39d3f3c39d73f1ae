"""``sla-plugin doctor``: check a deployment against the configured helpdesk and say, in plain words, what is
right and what is not. The first command to run after ``install``.

Helpdesk checks (through its REST API): the token is valid and whose it is; our webhook is registered with
our URL, the events we need and the secret (or URL token) we verify with; our status labels exist; the
Dashboard App is registered. Local checks: the rule files are valid, Redis and the database answer, a
sweeper holds its leader lock (a worker is running). With ``SLA_ACCOUNTS_FILE`` every account of the file is
checked against its own helpdesk, rules and webhook URL (``/webhooks/chatwoot/<id>``), each finding named
after its account. Nothing is changed anywhere. Secrets are compared, never shown.
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
from plugin.adapters.accounts import Account, Accounts, AccountsError
from plugin.adapters.rule_files import check_directory
from plugin.cli.install import DASHBOARD_APP_TITLE, account_webhook_path, agent_sight
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


@dataclass(frozen=True)
class Checked:
    """One account to check: its settings, its helpdesk client (None when its settings lack one), its webhook
    path and the prefix of its findings (empty for the single account of the single-account settings)."""

    account: Account
    client: ChatwootClient | None
    webhook_path: str
    prefix: str = ""


def accounts_to_check(
    accounts: Callable[[], Accounts], manifest: Mapping[str, Any], settings: Mapping[str, str], timeout: float
) -> tuple[list[Checked], list[Finding]]:
    """The accounts ``accounts()`` serves, each with a client built from its settings (``settings`` are the
    process's), and the findings of an accounts file that cannot be used or lists no account."""
    try:
        registry = accounts()
    except AccountsError as error:
        return [], [Finding("accounts file", PROBLEM, f"{error} (no account checked)")]
    checked = []
    for account in registry.all():
        try:
            client = ChatwootClient.from_settings(account.connector_settings(settings), timeout=timeout, max_attempts=1)
        except ValueError:
            client = None
        if registry.from_file:
            path, prefix = account_webhook_path(manifest, account.id or 0), f"account {account.id}: "
        else:
            path, prefix = manifest["webhook"]["path"], ""
        checked.append(Checked(account, client, path, prefix))
    if registry.from_file and not checked:
        return [], [Finding("accounts file", WARNING, f"{registry.path} lists no account: nothing is served")]
    return checked, []


def diagnose(
    checked: Sequence[Checked],
    manifest: Mapping[str, Any],
    public_url: str | None,
    redis_ping: Callable[[], Any],
    database_ping: Callable[[], Any],
    sweeper_alive: Callable[[], bool],
    known_inboxes: Callable[[Account], Mapping[str, str]] = lambda account: {},
) -> list[Finding]:
    """Every check, in the order a reader fixes them: each account's rules and helpdesk, then the local
    services. ``known_inboxes`` gives the inboxes the plugin has met in an account (id -> name), to name
    those an agent cannot see."""
    findings: list[Finding] = []
    for one in checked:
        findings.extend(_account(one, manifest, public_url, known_inboxes))
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


def _account(
    one: Checked,
    manifest: Mapping[str, Any],
    public_url: str | None,
    known_inboxes: Callable[[Account], Mapping[str, str]],
) -> list[Finding]:
    """The rules and helpdesk findings of one account, named after it when there are several."""
    findings: list[Finding] = []
    rules_dir = one.account.rules_dir
    rule_set, problems = check_directory(rules_dir)
    errors = [problem for problem in problems if problem.severity == ERROR]
    if rule_set is None or errors:
        listed = "; ".join(map(str, (errors or problems)[:5]))
        findings.append(Finding("rules", PROBLEM, f"{rules_dir} cannot be used: {listed}"))
    elif problems:
        findings.append(Finding("rules", WARNING, "valid, with warnings: " + "; ".join(map(str, problems[:5]))))
    else:
        findings.append(Finding("rules", OK, f"{rules_dir} is valid"))
    if one.client is None:
        missing = (
            f"chatwoot_url and api_token must be set for account {one.account.id} in SLA_ACCOUNTS_FILE"
            if one.prefix
            else "CHATWOOT_URL, CHATWOOT_ACCOUNT_ID and CHATWOOT_API_TOKEN must all be set"
        )
        findings.append(Finding("helpdesk", PROBLEM, missing))
    else:
        label_titles = (
            [spec.title for spec in rule_set.labels.values()]
            if rule_set is not None and rule_set.labels
            else [spec["title"] for spec in manifest["labels"].values()]
        )
        findings.extend(_helpdesk(one, manifest, public_url, label_titles, lambda: known_inboxes(one.account)))
    return [Finding(f"{one.prefix}{finding.check}", finding.level, finding.text) for finding in findings]


def _helpdesk(
    one: Checked,
    manifest: Mapping[str, Any],
    public_url: str | None,
    label_titles: Sequence[str],
    known_inboxes: Callable[[], Mapping[str, str]],
) -> list[Finding]:
    client = one.client
    assert client is not None
    try:
        profile = client.get_profile()
    except ChatwootError as error:
        unchecked = "webhook, labels and Dashboard App not checked: fix the token problem first"
        return [Finding("token", PROBLEM, _plain(error, client)), Finding("helpdesk", WARNING, unchecked)]
    findings = [_token(client, profile, known_inboxes)]
    for check, probe in (
        ("webhook", lambda: _webhook(one, manifest, public_url)),
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


def _webhook(one: Checked, manifest: Mapping[str, Any], public_url: str | None) -> list[Finding]:
    client, path = one.client, one.webhook_path
    assert client is not None
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
    findings.append(_webhook_secret(one, hook))
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


def _webhook_secret(one: Checked, hook: Mapping[str, Any]) -> Finding:
    # The settings' names in the single-account deployment, the accounts file's keys in one with several.
    secret_name, token_name = (
        ("webhook_secret", "webhook_token") if one.prefix else ("CHATWOOT_WEBHOOK_SECRET", "SLA_WEBHOOK_TOKEN")
    )
    secret = hook.get("secret")
    ours = one.account.webhook_secret
    if secret:
        if not ours:
            return Finding(
                "webhook secret",
                PROBLEM,
                f"Chatwoot signs this webhook but {secret_name} is not set: run sla-plugin install again",
            )
        if not hmac.compare_digest(str(secret).encode(), ours.encode()):
            return Finding(
                "webhook secret",
                PROBLEM,
                f"{secret_name} differs from the webhook's secret in Chatwoot: every delivery is "
                "refused (401); run sla-plugin install again",
            )
        return Finding("webhook secret", OK, f"signed deliveries; {secret_name} matches")
    if ours:
        return Finding(
            "webhook secret",
            PROBLEM,
            f"this Chatwoot (before v4.12) does not sign webhooks, but {secret_name} is set, so every "
            f"delivery is refused: unset it and use {token_name}",
        )
    token = (parse_qs(urlsplit(hook.get("url", "")).query).get("token") or [""])[0]
    expected = one.account.webhook_token or ""
    if not expected:
        return Finding(
            "webhook secret",
            PROBLEM,
            f"unsigned deliveries and no {token_name}: anyone can post events; set it and run install again",
        )
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return Finding(
            "webhook secret", PROBLEM, f"the webhook URL's token differs from {token_name}: run install again"
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
