"""Token checks for the reports, admin and sidebar endpoints. Nothing is open by default.

- Reports and admin: ``SLA_ADMIN_TOKEN``, as ``Authorization: Bearer <token>``; pages and CSV downloads also
  take ``?token=`` (a link or a bookmark cannot carry a header).
- Sidebar (Chatwoot's Dashboard App): ``SLA_SIDEBAR_TOKEN``, which travels in the app's URL, so it is
  read-only and opens one conversation's SLA at a time and nothing else; the admin token works there too.
- With an accounts file (docs/accounts.md), each account's ``admin_token`` and ``sidebar_token`` work the same
  way but see that account's conversations only; ``SLA_ADMIN_TOKEN`` sees every account.

A setting that is not configured closes its endpoints with 403 and says which variable to set; a missing or
wrong token gets 401. Tokens are compared in constant time and never logged (the log handler also masks
every configured secret).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable

from flask import Response, current_app, g, jsonify, request

ADMIN = "SLA_ADMIN_TOKEN"
SIDEBAR = "SLA_SIDEBAR_TOKEN"


def _presented(allow_query: bool) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        return request.args.get("token") or None
    return None


def _matches(presented: str | None, expected: str | None) -> bool:
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def _refuse(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sla-plugin"'
    return response


def _tokens(kind: str) -> list[tuple[str, int | None]]:
    """The configured tokens of an endpoint kind (``"admin"`` or ``"sidebar"``), each with the account it sees
    (None: every account). Admin tokens open the sidebar too."""
    sla = current_app.extensions["sla"]
    accounts = sla.accounts.all()
    tokens = [(sla.settings.SLA_ADMIN_TOKEN, None), *((account.admin_token, account.id) for account in accounts)]
    if kind == "sidebar":
        tokens += [
            (sla.settings.SLA_SIDEBAR_TOKEN, None),
            *((account.sidebar_token, account.id) for account in accounts),
        ]
    return [(token, account_id) for token, account_id in tokens if token]


def check(kind: str, allow_query: bool) -> Response | None:
    """None when the request carries a token of ``kind`` (then :func:`visible_account` says which account it
    sees), else the refusal to send."""
    expected = _tokens(kind)
    if not expected:
        first = ADMIN if kind == "admin" else SIDEBAR
        return _refuse(
            403,
            f"these endpoints are disabled until {first} is set (an environment variable of the plugin)",
        )
    presented = _presented(allow_query)
    if presented is None:
        how = "an Authorization: Bearer header" + (" or ?token=" if allow_query else "")
        return _refuse(401, f"missing token: send {how}")
    # Every configured token is compared, so the time taken does not tell which one nearly matched.
    matched = [account_id for token, account_id in expected if _matches(presented, token)]
    if not matched:
        return _refuse(401, "wrong token")
    # A deployment-wide token wins over an account's, should an operator have given both the same value.
    g.sla_visible_account = None if None in matched else matched[0]
    return None


def visible_account() -> int | None:
    """The one account the request's token sees, or None when it sees every account (``SLA_ADMIN_TOKEN``,
    ``SLA_SIDEBAR_TOKEN``). Only valid in a view guarded by :func:`requires`."""
    return g.sla_visible_account


def sees(account_id: int) -> bool:
    """Whether the request's token may see ``account_id``'s conversations."""
    visible = visible_account()
    return visible is None or visible == account_id


def requires(kind: str, allow_query: bool | Callable[[], bool] = False) -> Callable:
    """Decorate a view so it answers only requests with a token of ``kind`` (``"admin"``: reports and admin
    endpoints; ``"sidebar"``: the Dashboard App); ``allow_query`` (or, when callable, its answer for the
    request) says whether ``?token=`` is taken besides the header."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            refusal = check(kind, allow_query() if callable(allow_query) else allow_query)
            return refusal if refusal is not None else view(*args, **kwargs)

        return guarded

    return decorate


def _asks_for_csv() -> bool:
    return request.path.endswith(".csv") or request.args.get("format") == "csv"


admin_required = requires("admin")
# A CSV download is a link (from the page, a bookmark), which cannot carry a header: ?token= is taken there,
# and only there, never for the same endpoint's JSON nor for any other admin endpoint.
admin_download = requires("admin", allow_query=_asks_for_csv)
admin_page = requires("admin", allow_query=True)
# The Dashboard App's URL carries the sidebar token, so its page and API take it as ?token= as well.
sidebar_required = requires("sidebar", allow_query=True)
