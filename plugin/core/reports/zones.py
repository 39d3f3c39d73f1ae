"""Report time zones: reading a zone name, and the zone's UTC offsets over a range of instants.

Reports bucket times in a zone the reader chooses (``tz``). The SQL that buckets them is given the zone as
the offsets it has over the range (:func:`offset_spans`): a few spans, one per daylight-saving change, so
both databases shift each stored UTC time by the offset in force at that instant. A day with a change has
23 or 25 hours, and the repeated autumn hour stays two hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from plugin.core.reports.figures import ReportError

DEFAULT_ZONE = "UTC"
# Zones change their offset at most a few times a year: checking every 6 hours finds every change.
_PROBE = timedelta(hours=6)


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; :class:`ReportError` naming it when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ReportError(
            f"unknown time zone {name!r}: use an IANA zone name such as UTC, Europe/Berlin or America/New_York"
        ) from None


@cache
def all_zones() -> tuple[str, ...]:
    """Every IANA zone name this system knows, sorted (the page's zone picker)."""
    return tuple(sorted(available_timezones()))


def offset_seconds(place: ZoneInfo, moment: datetime) -> int:
    """The zone's UTC offset at ``moment``, in seconds."""
    offset = moment.astimezone(place).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def offset_spans(place: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The zone's offsets over ``[start, end]``: ``(from, offset seconds)`` pairs, the first from ``start``,
    each in force until the next one's ``from`` (exact to the second)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    spans = [(start, offset_seconds(place, start))]
    moment = start
    while moment < end:
        following = min(moment + _PROBE, end)
        if offset_seconds(place, following) != spans[-1][1]:
            spans.append(_change_between(place, moment, following))
        moment = following
    return spans


def _change_between(place: ZoneInfo, before: datetime, after: datetime) -> tuple[datetime, int]:
    """The first instant in ``(before, after]`` with ``after``'s offset, found by halving to the second."""
    wanted = offset_seconds(place, after)
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        middle = middle.replace(microsecond=0)
        if offset_seconds(place, middle) == wanted:
            after = middle
        else:
            before = middle
    return after, wanted


def local_day_start(place: ZoneInfo, moment: datetime) -> datetime:
    """The instant (UTC) at which the local day holding ``moment`` began."""
    local = moment.astimezone(place)
    return datetime(local.year, local.month, local.day, tzinfo=place).astimezone(UTC)


def local_hour_start(place: ZoneInfo, moment: datetime) -> datetime:
    """The instant (UTC) at which the local hour holding ``moment`` began."""
    local = moment.astimezone(place)
    return (local - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)).astimezone(
        UTC
    )


def next_hour(place: ZoneInfo, start: datetime) -> datetime:
    """The start of the hour after the one starting at ``start`` (an hour is an hour in every zone)."""
    return start + timedelta(hours=1)


def next_local_day(place: ZoneInfo, start: datetime) -> datetime:
    """The instant (UTC) the local day after the one holding ``start`` begins: 23, 24 or 25 hours on."""
    local = start.astimezone(place).date() + timedelta(days=1)
    return datetime(local.year, local.month, local.day, tzinfo=place).astimezone(UTC)


def local_text(place: ZoneInfo, moment: datetime) -> str:
    """``moment`` as local ISO-8601 with its offset (``2026-03-29T03:00:00+02:00``), for labels."""
    return moment.astimezone(place).replace(microsecond=0).isoformat()
