"""``POST /webhooks/<connector>/<account id>`` and ``POST /webhooks/<connector>``: accept a helpdesk's webhook
and hand it to the workers.

The first is the URL of one account (docs/accounts.md): that account's secret or token verifies it, and its
events wait in that account's stream. The second serves the single account of a deployment without an
accounts file.

Checks run in this order, each answering as soon as it decides: unknown connector 404, an account this
deployment does not serve 404 (the same answer for every such id, so it tells nothing about which exist),
body too large 413, bad credential 401 (the connector's verdict, with the account's credentials), not a
JSON object (or one nested deeper than MAX_JSON_DEPTH) 400, a body naming another account: 401 on an
account's URL, 202 "ignored" on the single-account URL; already-seen delivery 202 "duplicate", else queued
202 "queued". Redis unreachable: 503. A delivery is
remembered in the same atomic step that queues it, so a 503 never leaves it remembered and unqueued: the
helpdesk's retry is queued, or is a duplicate of what was queued before the answer was lost. The request
parses the body once and runs no SLA logic; unknown event names are queued too (the worker ignores them).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, request
from redis.exceptions import RedisError

from connectors.base import UnknownConnector, WebhookRejected
from plugin.adapters.accounts import Account
from plugin.adapters.metrics import CounterBuffer
from plugin.adapters.streams import submit_once

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)

RECEIVED_METRIC = "sla_webhooks_received_total"
# Chatwoot's payloads nest about 6 levels (custom attributes may add a few); the workers handle far more.
MAX_JSON_DEPTH = 64


@blueprint.post("/webhooks/<connector_name>")
def receive(connector_name: str) -> Response:
    """Verify one webhook delivery of the single account and queue its raw body (see the module's docstring)."""
    sla = current_app.extensions["sla"]
    account = sla.accounts.default()
    if account is None:
        return _answer(404, "unknown_account")  # several accounts: each has its own URL
    return _receive(sla, connector_name, account, account_in_url=False)


@blueprint.post("/webhooks/<connector_name>/<account_id>")
def receive_for_account(connector_name: str, account_id: str) -> Response:
    """Verify one webhook delivery of the account in the URL and queue its raw body (see the module's
    docstring)."""
    sla = current_app.extensions["sla"]
    number = int(account_id) if account_id.isascii() and account_id.isdigit() else None
    account = sla.accounts.get(number) if number is not None else None
    if account is None or account.id is None:
        # Not counted or logged with the id: it comes from the URL, and anybody can make one up.
        return _answer(404, "unknown_account")
    return _receive(sla, connector_name, account, account_in_url=True)


def _receive(sla, connector_name: str, account: Account, account_in_url: bool) -> Response:
    try:
        connector = sla.connectors.get(account, connector_name)
    except UnknownConnector:
        # Not counted: the name comes from the URL, and a metric label per made-up name would grow unbounded.
        return _answer(404, "unknown_connector")
    name = connector.name

    limit = sla.settings.SLA_MAX_BODY_BYTES
    if request.content_length is not None and request.content_length > limit:
        return _refuse_too_large(sla.counters, name, request.content_length)
    body = request.get_data(cache=False)  # capped at limit + 1 bytes by the app's MAX_CONTENT_LENGTH
    if len(body) > limit:
        return _refuse_too_large(sla.counters, name, len(body))

    received_at = datetime.now(UTC)
    try:
        connector.verify(request.headers, body, request.args, received_at)
    except WebhookRejected as rejection:
        log.warning(
            "webhook rejected: %s",
            rejection.reason,
            extra={"connector": name, "status": rejection.status, "remote_addr": request.remote_addr},
        )
        return _counted(sla.counters, name, rejection.status, "rejected")

    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the parser's recursion limit
        log.warning("webhook body is not JSON", extra={"connector": name, "size": len(body)})
        return _counted(sla.counters, name, 400, "invalid")
    if not isinstance(payload, dict):
        log.warning(
            "webhook body is JSON but not an object", extra={"connector": name, "json_type": type(payload).__name__}
        )
        return _counted(sla.counters, name, 400, "invalid")
    if _nested_deeper_than(payload, MAX_JSON_DEPTH):
        # Real payloads are a few levels deep; a deeply nested one would exhaust the workers' recursion
        # (encoding the event, storing the state) and fail the whole batch it is read in.
        log.warning("webhook body nested too deeply", extra={"connector": name, "size": len(body)})
        return _counted(sla.counters, name, 400, "invalid")

    account_id = connector.account_of(payload)
    delivery_key = connector.delivery_key(request.headers, body)
    if account_in_url and account_id is not None and account_id != account.id:
        # Verified with this account's credentials but about another account: never let one account's
        # secret write into another's SLAs.
        log.warning(
            "webhook names another account than its URL: rejected",
            extra={"connector": name, "account_id": account.id, "named_account_id": account_id},
        )
        return _counted(sla.counters, name, 401, "rejected")
    if not account.serves(account_id):
        log.info(
            "webhook of another account ignored",
            extra={
                "connector": name,
                "account_id": account_id,
                "delivery_id": delivery_key,
                "event": payload.get("event"),
            },
        )
        return _counted(sla.counters, name, 202, "ignored")

    try:
        accepted = submit_once(
            sla.redis,
            name,
            delivery_key,
            body,
            received_at=received_at,
            stream=account.stream,
            account_id=account.id if account_in_url else None,
        )
        if accepted is None:
            log.info("duplicate webhook delivery dropped", extra={"connector": name, "delivery_id": delivery_key})
            return _counted(sla.counters, name, 202, "duplicate")
    except RedisError as error:
        # Nothing is lost: either nothing was written and the helpdesk's retry is queued, or the delivery was
        # queued before the answer was lost and the retry is its duplicate.
        log.error(
            "redis unavailable, webhook not queued",
            extra={"connector": name, "delivery_id": delivery_key, "error": type(error).__name__},
        )
        return _counted(sla.counters, name, 503, "unavailable")

    log.debug("webhook queued", extra={"connector": name, "delivery_id": delivery_key, "account_id": account_id})
    return _counted(sla.counters, name, 202, "queued")


def _nested_deeper_than(value, limit: int) -> bool:
    """Whether a parsed JSON value has arrays or objects nested more than ``limit`` levels (iterative: the
    check itself must not recurse)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _refuse_too_large(counters: CounterBuffer, connector: str, size: int) -> Response:
    log.warning("webhook body too large", extra={"connector": connector, "size": size})
    return _counted(counters, connector, 413, "too_large")


def _counted(counters: CounterBuffer, connector: str, status: int, outcome: str) -> Response:
    counters.incr(RECEIVED_METRIC, {"connector": connector, "outcome": outcome})
    return _answer(status, outcome)


def _answer(status: int, outcome: str) -> Response:
    # A fixed small body built by hand: jsonify's machinery is measurable at thousands of requests a second.
    return Response(f'{{"status":"{outcome}"}}', status=status, mimetype="application/json")
