"""Token checks for the reports, admin and sidebar endpoints. Nothing is open by default.

- Reports and admin: ``SLA_ADMIN_TOKEN``, as ``Authorization: Bearer <token>``; pages and CSV downloads also
  take ``?token=`` (a link or a bookmark cannot carry a header).
- Sidebar (Chatwoot's Dashboard App): ``SLA_SIDEBAR_TOKEN``, which travels in the app's URL, so it is
  read-only and opens one conversation's SLA at a time and nothing else; the admin token works there too.

A setting that is not configured closes its endpoints with 403 and says which variable to set; a missing or
wrong token gets 401. Tokens are compared in constant time and never logged (the log handler also masks
every configured secret).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable

from flask import Response, current_app, jsonify, request

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


def check(settings_names: tuple[str, ...], allow_query: bool) -> Response | None:
    """None when the request carries the token of one of ``settings_names``, else the refusal to send."""
    settings = current_app.extensions["sla"].settings
    expected = [getattr(settings, name) for name in settings_names]
    if not any(expected):
        return _refuse(
            403,
            f"these endpoints are disabled until {settings_names[0]} is set (an environment variable of the plugin)",
        )
    presented = _presented(allow_query)
    if presented is None:
        how = "an Authorization: Bearer header" + (" or ?token=" if allow_query else "")
        return _refuse(401, f"missing token: send {how}")
    # Every configured token is compared, so the time taken does not tell which one nearly matched.
    if not [True for value in expected if _matches(presented, value)]:
        return _refuse(401, "wrong token")
    return None


def requires(*settings_names: str, allow_query: bool | Callable[[], bool] = False) -> Callable:
    """Decorate a view so it answers only requests with one of these settings' tokens; ``allow_query`` (or,
    when callable, its answer for the request) says whether ``?token=`` is taken besides the header."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            refusal = check(settings_names, allow_query() if callable(allow_query) else allow_query)
            return refusal if refusal is not None else view(*args, **kwargs)

        return guarded

    return decorate


def _asks_for_csv() -> bool:
    return request.path.endswith(".csv") or request.args.get("format") == "csv"


admin_required = requires(ADMIN)
# A CSV download is a link (from the page, a bookmark), which cannot carry a header: ?token= is taken there,
# and only there, never for the same endpoint's JSON nor for any other admin endpoint.
admin_download = requires(ADMIN, allow_query=_asks_for_csv)
admin_page = requires(ADMIN, allow_query=True)
# The Dashboard App's URL carries the sidebar token, so its page and API take it as ?token= as well.
sidebar_required = requires(SIDEBAR, ADMIN, allow_query=True)
