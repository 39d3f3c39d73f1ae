"""Report filters: which applied SLAs a report covers, read from request-style parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from plugin.core.events import format_time, utc
from plugin.core.reports.figures import DEFAULT_DAYS, MAX_ID, MODES, UTC, ReportError
from plugin.core.reports.zones import DEFAULT_ZONE, zone

# --- filters ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """Which applied SLAs a report covers. Several values of one filter mean any of them."""

    since: datetime | None = None
    until: datetime | None = None  # exclusive
    account: tuple[int, ...] = ()
    inbox: tuple[int, ...] = ()
    team: tuple[int, ...] = ()
    agent: tuple[int, ...] = ()
    policy: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    mode: str | None = None  # "live", "shadow" or None for both
    tz: str = DEFAULT_ZONE  # the IANA zone of date filters, buckets and the weekday x hour grid

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Sequence[str] | str],
        now: datetime | None = None,
        default_tz: str = DEFAULT_ZONE,
    ) -> Filters:
        """Filters from request-style parameters (name -> value or list of values, or comma-separated).

        ``tz`` is an IANA zone (default ``default_tz``). ``since`` and ``until`` take ISO-8601 times or
        dates; dates and times without an offset are in ``tz``, and a date as ``until`` means the end of
        that day. Without either, the last :data:`DEFAULT_DAYS` days up to ``now``. Empty values are
        ignored. Raises :class:`ReportError` on a value that cannot be read (an unknown zone included).
        """

        def values(name: str) -> list[str]:
            raw = params.get(name, ())
            raw = [raw] if isinstance(raw, str) else list(raw)
            # "1,2" is the same as two values (the page's form sends one text field per filter).
            parts = [part for value in raw if value is not None for part in value.split(",")]
            return [part.strip() for part in parts if part.strip()]

        def integers(name: str) -> tuple[int, ...]:
            try:
                found = tuple(int(value) for value in values(name))
            except ValueError:
                raise ReportError(f"{name} must be a whole number (an id), got {values(name)!r}") from None
            if any(abs(value) > MAX_ID for value in found):  # ids are BIGINT: a larger one matches nothing
                raise ReportError(f"{name} is out of range for an id, got {values(name)!r}")
            return found

        zones = values("tz")
        if len(zones) > 1:
            raise ReportError(f"tz takes one time zone, got {zones!r}")
        tz = zones[0] if zones else default_tz
        place = zone(tz)
        since = _parse_bound(values("since"), "since", end_of_day=False, place=place)
        until = _parse_bound(values("until"), "until", end_of_day=True, place=place)
        if since is None and until is None:
            until = utc(now or datetime.now(UTC))
            since = until - timedelta(days=DEFAULT_DAYS)
        if since is not None and until is not None and since >= until:
            raise ReportError(f"since ({format_time(since)}) must be before until ({format_time(until)})")
        modes = values("mode")
        if len(modes) > 1 or (modes and modes[0] not in (*MODES, "all")):
            raise ReportError(f"mode must be one of live, shadow, all; got {modes!r}")
        mode = modes[0] if modes and modes[0] != "all" else None
        return cls(
            since=since,
            until=until,
            mode=mode,
            account=integers("account"),
            inbox=integers("inbox"),
            team=integers("team"),
            agent=integers("agent"),
            policy=tuple(values("policy")),
            channel=tuple(values("channel")),
            priority=tuple(values("priority")),
            tz=tz,
            label=tuple(value.lower() for value in values("label")),
        )

    def to_params(self) -> dict[str, list[str]]:
        """The filters as request parameters (for links and for echoing them in answers)."""
        params: dict[str, list[str]] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, datetime):
                params[item.name] = [format_time(value)]
            elif isinstance(value, tuple) and value:
                params[item.name] = [str(part) for part in value]
            elif isinstance(value, str):
                params[item.name] = [value]
        return params

    def local_range(self) -> str:
        """The range as people read it, in the report's zone: ``2026-03-02 00:00 to 2026-03-09 00:00``."""
        place = zone(self.tz)

        def local(moment: datetime | None) -> str:
            return "the start" if moment is None else f"{moment.astimezone(place):%Y-%m-%d %H:%M}"

        return f"{local(self.since)} to {local(self.until) if self.until else 'now'}"

    def form_values(self) -> dict[str, str]:
        """``since`` and ``until`` as the page's form shows them: local to the report's zone, without an
        offset (so choosing another zone keeps the same local dates), a whole day as a date."""
        place = zone(self.tz)

        def local(moment: datetime | None, end: bool) -> str:
            if moment is None:
                return ""
            wall = moment.astimezone(place)
            if wall.time() == time():
                return (wall.date() - timedelta(days=1) if end else wall.date()).isoformat()
            return wall.strftime("%Y-%m-%dT%H:%M:%S")

        return {"since": local(self.since, end=False), "until": local(self.until, end=True)}

    def describe(self) -> dict[str, Any]:
        """The filters as JSON: times in ISO-8601, lists for the multi-valued ones."""
        return {
            item.name: (
                format_time(value)
                if isinstance(value, datetime)
                else list(value)
                if isinstance(value, tuple)
                else value
            )
            for item in fields(self)
            for value in [getattr(self, item.name)]
        }


def _parse_bound(values: list[str], name: str, end_of_day: bool, place: tzinfo) -> datetime | None:
    if not values:
        return None
    if len(values) > 1:
        raise ReportError(f"{name} takes one value, got {values!r}")
    text = values[0]
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return utc(datetime.combine(day + timedelta(days=1) if end_of_day else day, time(), place))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return utc(moment if moment.tzinfo is not None else moment.replace(tzinfo=place))
    except ValueError:
        raise ReportError(
            f"{name} must be an ISO-8601 date or time such as 2026-03-02 or 2026-03-02T09:00:00Z, got {text!r}"
        ) from None
