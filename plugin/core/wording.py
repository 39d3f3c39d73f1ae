"""How the plugin says times, durations and metrics to people (notes, Slack messages): pure text helpers."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

METRIC_NAMES = {"first_response": "first response", "next_response": "next response", "resolution": "resolution"}


def local_time(moment: datetime, zone: ZoneInfo, reference: datetime | None = None) -> str:
    """``09:15`` in *zone*, with the date when it is not *reference*'s local day."""
    local = moment.astimezone(zone)
    if reference is not None and reference.astimezone(zone).date() == local.date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def zone_label(zone: ZoneInfo) -> str:
    """One name for a zone: ``UTC``, ``Europe/Berlin``; never ``UTC (UTC)``."""
    return "UTC" if zone.key in ("UTC", "Etc/UTC") else zone.key


def duration_text(duration: timedelta) -> str:
    """``2d 3h 5m``, ``45m``, or ``under a minute``."""
    minutes = int(duration.total_seconds() // 60)
    if minutes <= 0:
        return "under a minute"
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts)
