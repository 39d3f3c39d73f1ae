"""HTTP out to notification destinations (Slack incoming webhooks, generic webhook receivers).

One POST per call, a short timeout, redirects never followed (a redirect could carry a signed body to a
host the admin never named). What comes back is an :class:`Outcome` whose ``reason`` names the failure
without the URL: a Slack webhook URL is itself a secret, and request exceptions quote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import requests

# Connect and read timeouts, in seconds: a slow receiver holds one delivery job this long at most.
TIMEOUT = (5.0, 10.0)
USER_AGENT = "sla-plugin-notifications/1"


@dataclass(frozen=True)
class Outcome:
    """How one POST ended: delivered (a 2xx answer) or not, and why, in words safe to log."""

    delivered: bool
    reason: str


def post(session: requests.Session, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
    """POST *body* (JSON) to *url*; never raises for network or HTTP failures."""
    try:
        response = session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
    except requests.Timeout:
        return Outcome(False, "timeout")
    except requests.ConnectionError:
        return Outcome(False, "connection failed")
    except requests.RequestException as error:
        return Outcome(False, type(error).__name__)
    try:
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(True, f"HTTP {status}")
        if 300 <= status < 400:
            return Outcome(False, f"redirect not followed (HTTP {status})")
        return Outcome(False, f"HTTP {status}")
    finally:
        response.close()
