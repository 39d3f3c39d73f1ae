"""Reports over HTTP: ``GET /api/reports/...`` (JSON, or CSV with ``.csv`` / ``?format=csv``) and the
``GET /reports`` page. Thin: every figure comes from :class:`plugin.adapters.report_queries.Reports`.

JSON endpoints (filters as query parameters, see :meth:`plugin.adapters.report_queries.Filters.from_params`):
``summary``, ``series?bucket=hour|day``, ``grid``, ``breakdown?by=inbox|team|agent|policy|channel|priority|label``,
``conversations?page=&per_page=&missed=true`` and ``conversations/<account>/<id>`` (one conversation with
its misses and SLA event log). All need the admin token (:mod:`plugin.web.auth`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request, stream_with_context

from plugin.adapters.directory import Names, name_of
from plugin.adapters.report_queries import NAMED_DIMENSIONS, PAGE_BREAKDOWNS, Reports
from plugin.core.reports.csv_export import csv_lines
from plugin.core.reports.figures import (
    CONVERSATION_COLUMNS,
    METRIC_PREFIXES,
    ReportError,
    parse_page,
    percent,
    row_values,
    table,
)
from plugin.core.reports.filters import PRIORITIES, Filters, resolve_names
from plugin.core.reports.targets import duration_text
from plugin.core.reports.zones import all_zones
from plugin.web.auth import admin_download, admin_page, admin_required, sees, visible_account

blueprint = Blueprint(
    "reports", __name__, template_folder="../templates", static_folder="../static", static_url_path="/static/sla"
)

REPORT_KINDS = ("summary", "series", "grid", "breakdown", "conversations", "targets")


def reports() -> Reports:
    """The report queries on the app's database."""
    return current_app.extensions["sla"].reports()


def _params() -> dict[str, list[str]]:
    return request.args.to_dict(flat=False)


def filters_from(params: dict[str, list[str]], known: Names | None = None) -> Filters:
    """The request's filters, with names typed for ids resolved (``known``, default the stored names); the
    zone defaults to the ``SLA_REPORT_TIMEZONE`` setting. An account's token sees its own account only,
    whatever ``account`` the request names."""
    visible = visible_account()
    if visible is not None:
        params = {**params, "account": [str(visible)]}
    resolved = resolve_names(params, reports().names() if known is None else known)
    return Filters.from_params(resolved, default_tz=current_app.extensions["sla"].settings.SLA_REPORT_TIMEZONE)


def build(kind: str, params: dict[str, list[str]]) -> dict[str, Any]:
    """The report called ``kind`` for request parameters (raises ReportError on a bad value)."""
    filters = filters_from(params)
    source = reports()
    if kind == "summary":
        return source.summary(filters)
    if kind == "series":
        return source.series(filters, (params.get("bucket") or ["day"])[0])
    if kind == "grid":
        return source.grid(filters)
    if kind == "breakdown":
        return source.breakdown(filters, (params.get("by") or ["inbox"])[0])
    if kind == "targets":
        return source.targets(filters)
    page, per_page, only_missed = parse_page(params)
    return source.conversations(filters, page, per_page, only_missed)


@blueprint.errorhandler(ReportError)
def _bad_request(error: ReportError) -> tuple[Response, int]:
    return jsonify({"error": str(error)}), 400


@blueprint.get("/api/reports/<name>")
@admin_download
def report(name: str) -> Response:
    """One report as JSON, or as CSV for ``<kind>.csv`` or ``?format=csv``."""
    kind, _, extension = name.partition(".")
    if kind not in REPORT_KINDS or extension not in ("", "csv"):
        abort(404)
    params = _params()
    if extension == "csv" or request.args.get("format") == "csv":
        return _csv(kind, params)
    return jsonify(build(kind, params))


def _csv(kind: str, params: dict[str, list[str]]) -> Response:
    filters = filters_from(params)
    columns: tuple[str, ...]
    rows: Iterable[list[Any]]
    if kind == "conversations":
        # Every conversation of the cohort, not one page: streamed in chunks.
        only_missed = parse_page(params)[2]
        rows = (row_values(item, CONVERSATION_COLUMNS) for item in reports().iter_conversations(filters, only_missed))
        columns = CONVERSATION_COLUMNS
    else:
        columns, rows = table(kind, build(kind, params))
    name = (
        f"sla-{kind}-{filters.since:%Y%m%d}-{filters.until:%Y%m%d}.csv"
        if filters.since and filters.until
        else f"sla-{kind}.csv"
    )
    return Response(
        stream_with_context(csv_lines(columns, rows)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@blueprint.get("/api/reports/conversations/<int:account_id>/<int:conversation_id>")
@admin_required
def conversation(account_id: int, conversation_id: int) -> tuple[Response, int] | Response:
    """One conversation's applied SLA, every miss (corrected ones marked) and its SLA event log."""
    data = reports().conversation(account_id, conversation_id) if sees(account_id) else None
    if data is None:
        return jsonify({"error": "no SLA was applied to this conversation"}), 404
    return jsonify(data)


@blueprint.get("/reports")
@admin_page
def page() -> str | tuple[str, int]:
    """The reports page: figures, charts (drawn by static/reports.js from the embedded data), breakdowns
    and the drill-down, for the filters in the query string."""
    params = _params()
    if "missed" not in params:
        params["missed"] = ["true"]  # the page lists the conversations that missed, like Chatwoot's
    token = request.args.get("token")
    source = reports()
    known = source.names()
    try:
        filters = filters_from(params, known)
        page_number, per_page, only_missed = parse_page(params)
        results = {name: call() for name, call in source.page_calls(filters, page_number, per_page, only_missed)}
        data = {
            **results,
            "breakdowns": {by: results[f"breakdown {by}"] for by in PAGE_BREAKDOWNS},
        }
    except ReportError as error:
        return render_template("reports_error.html", error=str(error), back=_start_again(token)), 400
    link_params = {**filters.to_params(), **({"token": [token]} if token else {})}

    def link(path: str, **extra: Any) -> str:
        """``path`` with the page's filters (and token), plus ``extra`` parameters."""
        query = {**link_params, **{name: [str(value)] for name, value in extra.items()}}
        return f"{path}?{urlencode(query, doseq=True)}"

    return render_template(
        "reports.html",
        data=data,
        filters=filters.describe(),
        link=link,
        percent=percent,
        duration=duration_text,
        metric_prefixes=METRIC_PREFIXES,
        only_missed=only_missed,
        token=token,
        zones=all_zones(),
        local_range=filters.local_range(),
        form={**filters.form_values(), **_named_values(filters, known)},
        choices=_choices(known, data),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        account_choices=_account_choices(),
    )


def _account_choices() -> list[int]:
    """The accounts the page's picker offers: every account served, to a token that sees them all, when
    there is more than one."""
    if visible_account() is not None:
        return []
    ids = [account.id for account in current_app.extensions["sla"].accounts.all() if account.id is not None]
    return ids if len(ids) > 1 else []


@blueprint.get("/reports/conversations/<int:account_id>/<int:conversation_id>")
@admin_page
def conversation_page(account_id: int, conversation_id: int) -> tuple[str, int] | str:
    """One conversation's SLA, misses and event log, as a page linked from the drill-down."""
    data = reports().conversation(account_id, conversation_id) if sees(account_id) else None
    token = request.args.get("token")
    back = _start_again(token)
    if data is None:
        return render_template("reports_error.html", error="No SLA was applied to this conversation.", back=back), 404
    return render_template("conversation.html", item=data, back=back, metric_prefixes=METRIC_PREFIXES)


def _start_again(token: str | None) -> str:
    """The page with the default filters, keeping the token (a link cannot carry a header)."""
    return "/reports" + (f"?{urlencode({'token': token})}" if token else "")


def _named_values(filters: Filters, known: Names) -> dict[str, str]:
    """The form's inbox, team, agent and policy fields: the chosen ids shown as their names."""
    return {
        kind: ", ".join(name_of(known, kind, key) or "" for key in getattr(filters, kind))
        for kind in ("inbox", "team", "agent", "policy")
    }


def _choices(known: Names, data: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """The pickers' choices, ``(value typed, label)``: every known name, plus the values the range shows
    (ids without a name yet, channels, priorities, labels)."""
    found: dict[str, dict[str, str]] = {kind: {} for kind in ("inbox", "team", "agent", "policy")}
    for kind in found:
        for key, name in known.get(kind, {}).items():
            found[kind][name] = f"#{key}" if kind != "policy" else key
    for row in data["summary"]["policies"]:
        found["policy"].setdefault(row["name"], row["policy"])
    for by, breakdown in data["breakdowns"].items():
        choices = found.setdefault(by, {})
        for row in breakdown["rows"]:
            if row["key"] is not None:
                choices.setdefault(str(row["name"]), f"#{row['key']}" if by in NAMED_DIMENSIONS else "")
    for priority in PRIORITIES:
        found.setdefault("priority", {}).setdefault(priority, "")
    return {kind: sorted(values.items(), key=lambda item: item[0].casefold()) for kind, values in found.items()}


@blueprint.after_request
def _no_framing_no_referrer(response: Response) -> Response:
    # Admin pages are not framed by anyone, and a page URL holding ?token= never leaks through Referer.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    response.headers.setdefault("Cache-Control", "no-store")
    return response
