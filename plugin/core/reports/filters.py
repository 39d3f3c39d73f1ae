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
            priority=tuple(value.lower() for value in values("priority")),
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
            bound = utc(datetime.combine(day + timedelta(days=1) if end_of_day else day, time(), place))
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            bound = utc(moment if moment.tzinfo is not None else moment.replace(tzinfo=place))
    except ValueError:
        raise ReportError(
            f"{name} must be an ISO-8601 date or time such as 2026-03-02 or 2026-03-02T09:00:00Z, got {text!r}"
        ) from None
    except OverflowError:  # a day after 9999-12-31, or an offset that moves the time out of years 1-9999
        bound = None
    if bound is None or not EARLIEST_BOUND <= bound <= LATEST_BOUND:
        raise ReportError(
            f"{name} must lie between {EARLIEST_BOUND:%Y-%m-%d} and {LATEST_BOUND:%Y-%m-%d}, got {text!r}"
        )
    return bound


# Report dates within these years: days, hours and zone offsets can be added to either without leaving the
# years Python's datetime and the databases hold (a request for until=9999-12-31 used to fail with a 500).
EARLIEST_BOUND = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_BOUND = datetime(9000, 1, 1, tzinfo=UTC)


# --- names typed where ids are expected -------------------------------------------------------------------

NAMED_FILTERS = {"inbox": "inbox", "team": "team", "agent": "agent", "policy": "policy"}
PRIORITIES = ("low", "medium", "high", "urgent")  # Chatwoot's conversation priorities
_SHOWN_CHOICES = 8


def resolve_names(
    params: Mapping[str, Sequence[str] | str], known: Mapping[str, Mapping[str, str]]
) -> dict[str, list[str]]:
    """``params`` with inbox, team, agent and policy names replaced by their ids (``known``: kind -> id ->
    name), so a person may type what the page shows. An id stays as it is. A value that is neither a known
    id nor a known name (ignoring case) raises :class:`ReportError` saying what to do instead, as does a
    priority Chatwoot does not have. A policy is checked only when some policy is known."""
    resolved: dict[str, list[str]] = {}
    for name, raw in params.items():
        listed = [raw] if isinstance(raw, str) else [value for value in raw if value is not None]
        kind = NAMED_FILTERS.get(name)
        if kind is None:
            if name == "priority":
                _check_priorities(listed)
            resolved[name] = listed
            continue
        parts = [part.strip() for value in listed for part in value.split(",") if part.strip()]
        resolved[name] = [key for part in parts for key in _ids_for(kind, part, known.get(kind, {}))]
    return resolved


def _ids_for(kind: str, value: str, names: Mapping[str, str]) -> list[str]:
    if value in names or (kind != "policy" and value.lstrip("-").isdigit()) or (kind == "policy" and not names):
        return [value]
    matches = sorted((key for key, name in names.items() if name.casefold() == value.casefold()), key=_id_order)
    if matches:
        return matches
    by_name = sorted(names.items(), key=lambda item: item[1].casefold())
    choices = ", ".join(f"{name} ({key})" for key, name in by_name[:_SHOWN_CHOICES])
    if len(by_name) > _SHOWN_CHOICES:
        choices += f" and {len(by_name) - _SHOWN_CHOICES} more"
    known_text = f" Known: {choices}." if names else f" No {kind} names are known yet: give the {kind}'s id."
    raise ReportError(
        f"no {kind} is called {value!r}: choose one from the {kind} list on the page, or give its id.{known_text}"
    )


def _id_order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.lstrip("-").isdigit() else (0, key)


def _check_priorities(values: list[str]) -> None:
    for part in (part.strip() for value in values for part in value.split(",")):
        if part and part.lower() not in PRIORITIES:
            raise ReportError(f"priority must be one of {', '.join(PRIORITIES)}; got {part!r}")
