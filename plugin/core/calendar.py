"""Business-hours calendars: working-time arithmetic exact to the second (docs/calendars.md; the format:
docs/contracts.md section 1).

A calendar is an IANA time zone, open intervals per weekday in local wall time, dated overrides and closed
holidays (explicit dates and a country's holidays from the ``holidays`` package). Two operations carry the
SLA clocks: :meth:`Calendar.add_working` (due time = start + working seconds) and
:meth:`Calendar.working_between` (working seconds in an interval). Both skip closed time and the *breaks*
the engine passes in (pause intervals), which are treated exactly like closed time, as Zammad does.

How local wall times become instants, so that every operation agrees with every other:

- each local day is turned, once, into its open intervals as UTC instants (cached); every operation reads
  the same intervals, so ``working_between`` and ``add_working`` are exact inverses, DST days included;
- a local time that does not exist (the spring-forward gap) is moved forward to the first instant after the
  gap: "02:30" on a day clocks jump from 02:00 to 03:00 means 03:00 (so "01:00-02:30" that day is 1 hour,
  and "02:00-02:30" is empty);
- a local time that exists twice (fall-back) means its first occurrence (``fold=0``): "00:00-24:00" on
  that day is 25 hours, "09:00-17:00" stays 8 hours;
- an instant's local day is the day whose midnight-to-midnight window holds it, so those windows tile time
  without gaps or overlaps.

Instants are floored to whole seconds, as the engine floors event times (docs/contracts.md section 4).

The module is a leaf: no I/O, nothing from the rest of the plugin.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_package

__all__ = ["CalendarError", "Calendar", "WALL_CLOCK", "parse_calendar", "calendar_from_chatwoot_inbox"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86_400
UTC = UTC

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# add_working gives up after this many consecutive days without open time (about ten years), so a calendar
# whose remaining days are all holidays or closing overrides raises instead of looping.
_GIVE_UP_AFTER_CLOSED_DAYS = 3653
# Day plans are small; the cap only matters for a process that walks centuries of one calendar.
_DAY_CACHE_LIMIT = 100_000
_PARSE_CACHE_LIMIT = 512
_LISTED_HOLIDAY = "listed in holidays.dates"

_INTERVAL_PATTERN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CALENDAR_KEYS = {"timezone", "hours", "holidays", "overrides", "name", "description", "$comment"}
_HOLIDAY_KEYS = {"country", "subdivision", "dates"}

LocalInterval = tuple[int, int]  # seconds after local midnight, end exclusive, 0 <= start < end <= 86400


class CalendarError(ValueError):
    """A calendar that cannot be used, with a message meant for the admin who wrote it."""


def _clock_text(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _interval_text(interval: LocalInterval) -> str:
    return f"{_clock_text(interval[0])}-{_clock_text(interval[1])}"


def _normalise_day(
    intervals: Sequence[LocalInterval], where: str, day_name: str, next_day_name: str
) -> tuple[LocalInterval, ...]:
    """Check one day's intervals and return them sorted, with touching intervals joined."""
    for index, (start, end) in enumerate(intervals):
        text = _interval_text((start, end))
        if not 0 <= start < DAY_SECONDS:
            raise CalendarError(f"{where}[{index}]: '{text}' starts outside the day (00:00 to 23:59)")
        if not 0 <= end <= DAY_SECONDS:
            raise CalendarError(f"{where}[{index}]: '{text}' ends outside the day (00:01 to 24:00)")
        if end == start:
            raise CalendarError(
                f"{where}[{index}]: '{text}' is empty (it ends when it starts); "
                f"write '00:00-24:00' for a day open around the clock"
            )
        if end < start:
            raise CalendarError(
                f"{where}[{index}]: '{text}' ends before it starts; an interval cannot cross midnight: "
                f"split it into '{_clock_text(start)}-24:00' on {day_name} and "
                f"'00:00-{_clock_text(end)}' on {next_day_name}"
            )
    ordered = sorted(intervals)
    joined: list[LocalInterval] = []
    for start, end in ordered:
        if joined and start < joined[-1][1]:
            raise CalendarError(
                f"{where}: '{_interval_text(joined[-1])}' and '{_interval_text((start, end))}' "
                f"overlap; merge them or make one end before the other starts"
            )
        if joined and start == joined[-1][1]:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return tuple(joined)


def _epoch_seconds(instant: datetime, what: str) -> int:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {instant!r}")
    return math.floor(instant.timestamp())


def _instant(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _merged_breaks(breaks: Iterable[tuple[datetime, datetime]], not_before: int) -> list[tuple[int, int]]:
    """Breaks as sorted, disjoint epoch intervals, clipped so that none starts before ``not_before``."""
    spans = []
    for index, (begin_at, end_at) in enumerate(breaks):
        begin_epoch = max(_epoch_seconds(begin_at, f"breaks[{index}] start"), not_before)
        end_epoch = _epoch_seconds(end_at, f"breaks[{index}] end")
        if end_epoch > begin_epoch:
            spans.append((begin_epoch, end_epoch))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for begin, end in spans:
        if merged and begin <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return merged


class _DayPlan:
    """One local day as instants: its midnight-to-midnight window and its open intervals."""

    __slots__ = ("window_start", "window_end", "intervals", "open_seconds", "holiday")

    def __init__(
        self, window_start: int, window_end: int, intervals: tuple[tuple[int, int], ...], holiday: str | None
    ) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self.intervals = intervals
        self.open_seconds = sum(end - start for start, end in intervals)
        self.holiday = holiday


class Calendar:
    """Business hours in one time zone; immutable after construction and safe to share across threads.

    Usually built by :func:`parse_calendar` from a rule file. The constructor takes the parsed form: for each
    weekday (Monday first) a list of ``(start, end)`` seconds after local midnight, ``overrides`` from a date
    to such a list (an empty list closes the day), closed ``holiday_dates``, and an optional ``country`` /
    ``subdivision`` whose holidays (``holidays`` package) are closed too. An override wins over a holiday.
    """

    def __init__(
        self,
        timezone: str,
        weekly_hours: Sequence[Sequence[LocalInterval]],
        *,
        overrides: Mapping[date, Sequence[LocalInterval]] | None = None,
        holiday_dates: Iterable[date] = (),
        country: str | None = None,
        subdivision: str | None = None,
    ) -> None:
        self.timezone = timezone
        self._zone = _zone(timezone, "timezone")
        if len(weekly_hours) != 7:
            raise CalendarError(f"hours: expected 7 weekdays (Monday first), got {len(weekly_hours)}")
        self._weekly = tuple(
            _normalise_day(list(weekly_hours[weekday]), f"hours.{name}", name, WEEKDAYS[(weekday + 1) % 7])
            for weekday, name in enumerate(WEEKDAYS)
        )
        if not any(self._weekly):
            raise CalendarError(
                "calendar has no open time: no weekday in 'hours' has an open interval "
                "(overrides alone cannot keep the clocks running for an unbounded future); "
                'give at least one weekday hours such as "mon": ["09:00-17:00"]'
            )
        self._overrides = {
            day.toordinal(): _normalise_day(
                list(intervals), f"overrides.{day.isoformat()}", day.isoformat(), (day + timedelta(days=1)).isoformat()
            )
            for day, intervals in (overrides or {}).items()
        }
        self._holiday_ordinals = frozenset(day.toordinal() for day in holiday_dates)
        self.country = country
        self.subdivision = subdivision
        self._country_holidays = None if country is None else _country_holidays(country, subdivision)
        self._holidays_by_year: dict[int, dict[int, str]] = {}
        self._holiday_lock = threading.Lock()
        self._days: dict[int, _DayPlan] = {}
        self._always_open = (
            all(day == ((0, DAY_SECONDS),) for day in self._weekly)
            and country is None
            and not self._holiday_ordinals
            and all(day == ((0, DAY_SECONDS),) for day in self._overrides.values())
        )

    # Value semantics: two calendars built from the same hours are interchangeable (policies compare equal).
    def _identity(self) -> tuple:
        return (
            self.timezone,
            self._weekly,
            tuple(sorted(self._overrides.items())),
            tuple(sorted(self._holiday_ordinals)),
            self.country,
            self.subdivision,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calendar):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        if self._always_open:
            return "Calendar(wall clock)"
        hours = ", ".join(
            f"{name}={[_interval_text(i) for i in day]}"
            for name, day in zip(WEEKDAYS, self._weekly, strict=True)
            if day
        )
        return f"Calendar({self.timezone}: {hours})"

    @property
    def is_wall_clock(self) -> bool:
        """True when the calendar is open around the clock every day (no closed time, no holidays)."""
        return self._always_open

    # --- the two clock operations -------------------------------------------------------------------

    def add_working(self, start: datetime, seconds: int, breaks: Sequence[tuple[datetime, datetime]] = ()) -> datetime:
        """The instant ``seconds`` of open, unpaused time after ``start`` (an aware UTC datetime).

        Closed hours, holidays and the ``breaks`` (aware ``(begin, end)`` pairs, in any order, possibly
        overlapping or starting before ``start``) count no time. ``seconds == 0`` returns ``start``
        unchanged. A due time may land exactly on a closing time. Raises :class:`CalendarError` when no
        open time follows within about ten years.
        """
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        cursor = _epoch_seconds(start, "start")
        if seconds == 0:
            return start
        remaining = int(seconds)
        pauses = _merged_breaks(breaks, cursor)
        if self._always_open:
            return _instant(_add_wall_clock(cursor, remaining, pauses))
        pause_count = len(pauses)
        pause_index = 0
        ordinal = self._ordinal_of(cursor)
        closed_days = 0
        while True:
            plan = self._day(ordinal)
            while pause_index < pause_count and pauses[pause_index][1] <= cursor:
                pause_index += 1
            if (
                pause_index < pause_count
                and pauses[pause_index][0] <= cursor
                and pauses[pause_index][1] >= plan.window_end
            ):
                # A pause that outlasts the day: jump straight to its end instead of walking the days under it.
                cursor = pauses[pause_index][1]
                ordinal = self._ordinal_of(cursor)
                continue
            if not plan.intervals:
                closed_days += 1
                if closed_days > _GIVE_UP_AFTER_CLOSED_DAYS:
                    raise CalendarError(
                        f"calendar has no open time in the ten years after {start.isoformat()}: "
                        f"every day is a holiday or closed by an override"
                    )
                cursor = max(cursor, plan.window_end)
                ordinal += 1
                continue
            closed_days = 0
            untouched = cursor <= plan.intervals[0][0] and (
                pause_index == pause_count or pauses[pause_index][0] >= plan.window_end
            )
            if untouched and remaining > plan.open_seconds:
                remaining -= plan.open_seconds
                cursor = plan.window_end
                ordinal += 1
                continue
            for interval_start, interval_end in plan.intervals:
                if interval_end <= cursor:
                    continue
                piece_start = max(interval_start, cursor)
                while piece_start < interval_end:
                    while pause_index < pause_count and pauses[pause_index][1] <= piece_start:
                        pause_index += 1
                    if pause_index < pause_count and pauses[pause_index][0] <= piece_start:
                        piece_start = pauses[pause_index][1]
                        continue
                    piece_end = interval_end
                    if pause_index < pause_count and pauses[pause_index][0] < interval_end:
                        piece_end = pauses[pause_index][0]
                    length = piece_end - piece_start
                    if remaining <= length:
                        return _instant(piece_start + remaining)
                    remaining -= length
                    piece_start = piece_end
            cursor = max(cursor, plan.window_end)
            ordinal += 1

    def working_between(self, a: datetime, b: datetime, breaks: Sequence[tuple[datetime, datetime]] = ()) -> int:
        """Open, unpaused seconds in ``[a, b)``; 0 when ``b <= a``. The inverse of :meth:`add_working`."""
        begin = _epoch_seconds(a, "a")
        end = _epoch_seconds(b, "b")
        if end <= begin:
            return 0
        pauses = _merged_breaks(breaks, begin)
        if self._always_open:
            return (end - begin) - sum(
                min(pause_end, end) - pause_start for pause_start, pause_end in pauses if pause_start < end
            )
        total = 0
        pause_count = len(pauses)
        pause_index = 0
        ordinal = self._ordinal_of(begin)
        while True:
            plan = self._day(ordinal)
            if plan.window_start >= end:
                return total
            ordinal += 1
            if not plan.intervals:
                continue
            while pause_index < pause_count and pauses[pause_index][1] <= plan.window_start:
                pause_index += 1
            no_pause_today = pause_index == pause_count or pauses[pause_index][0] >= plan.window_end
            if no_pause_today and begin <= plan.intervals[0][0] and plan.intervals[-1][1] <= end:
                total += plan.open_seconds
                continue
            for interval_start, interval_end in plan.intervals:
                piece_start = max(interval_start, begin)
                piece_end = min(interval_end, end)
                if piece_end <= piece_start:
                    continue
                total += piece_end - piece_start
                # Pauses are disjoint and sorted; walk those overlapping this piece without losing our place.
                scan = pause_index
                while scan < pause_count and pauses[scan][0] < piece_end:
                    overlap = min(pauses[scan][1], piece_end) - max(pauses[scan][0], piece_start)
                    if overlap > 0:
                        total -= overlap
                    scan += 1

    def is_open(self, instant: datetime) -> bool:
        """Whether the calendar counts working time at ``instant`` (a closing time itself is closed)."""
        moment = _epoch_seconds(instant, "instant")
        if self._always_open:
            return True
        plan = self._day(self._ordinal_of(moment))
        return any(start <= moment < end for start, end in plan.intervals)

    def segments(self, a: datetime, b: datetime) -> list[tuple[datetime, datetime, str]]:
        """Consecutive ``(start, end, kind)`` pieces covering ``[a, b)``, in UTC, for printing a timeline.

        ``kind`` is ``"open"``, ``"closed"``, or ``"holiday: <name>"`` (e.g. ``"holiday: Christmas Day"``);
        neighbouring pieces of the same kind are joined. A date with an override shows the override's hours.
        """
        begin = _epoch_seconds(a, "a")
        end = _epoch_seconds(b, "b")
        if end <= begin:
            return []
        if self._always_open:
            return [(_instant(begin), _instant(end), "open")]
        pieces: list[list[Any]] = []

        def add(piece_start: int, piece_end: int, kind: str) -> None:
            piece_start, piece_end = max(piece_start, begin), min(piece_end, end)
            if piece_end <= piece_start:
                return
            if pieces and pieces[-1][2] == kind and pieces[-1][1] == piece_start:
                pieces[-1][1] = piece_end
            else:
                pieces.append([piece_start, piece_end, kind])

        ordinal = self._ordinal_of(begin)
        while True:
            plan = self._day(ordinal)
            if plan.window_start >= end:
                break
            ordinal += 1
            if plan.holiday is not None:
                add(plan.window_start, plan.window_end, f"holiday: {plan.holiday}")
                continue
            position = plan.window_start
            for interval_start, interval_end in plan.intervals:
                add(position, interval_start, "closed")
                add(interval_start, interval_end, "open")
                position = interval_end
            add(position, plan.window_end, "closed")
        return [(_instant(piece_start), _instant(piece_end), kind) for piece_start, piece_end, kind in pieces]

    # --- days -------------------------------------------------------------------------------------------

    def _ordinal_of(self, moment: int) -> int:
        """The local day whose window holds ``moment`` (checked against the windows, which tile time)."""
        ordinal = datetime.fromtimestamp(moment, self._zone).toordinal()
        plan = self._day(ordinal)
        while moment < plan.window_start:
            ordinal -= 1
            plan = self._day(ordinal)
        while moment >= plan.window_end:
            ordinal += 1
            plan = self._day(ordinal)
        return ordinal

    def _day(self, ordinal: int) -> _DayPlan:
        plan = self._days.get(ordinal)
        if plan is None:
            plan = self._plan_day(ordinal)
            if len(self._days) >= _DAY_CACHE_LIMIT:
                self._days.clear()
            self._days[ordinal] = plan
        return plan

    def _plan_day(self, ordinal: int) -> _DayPlan:
        holiday = None
        if ordinal in self._overrides:
            local_intervals = self._overrides[ordinal]
        else:
            holiday = self._holiday_name(ordinal)
            local_intervals = () if holiday is not None else self._weekly[(ordinal - 1) % 7]
        window_start = self._local_to_epoch(ordinal, 0)
        window_end = self._local_to_epoch(ordinal + 1, 0)
        intervals: list[tuple[int, int]] = []
        for start, end in local_intervals:
            start_epoch = self._local_to_epoch(ordinal, start)
            end_epoch = window_end if end == DAY_SECONDS else self._local_to_epoch(ordinal, end)
            if end_epoch <= start_epoch:
                continue  # wholly inside a spring-forward gap
            if intervals and start_epoch <= intervals[-1][1]:
                intervals[-1] = (intervals[-1][0], end_epoch)
            else:
                intervals.append((start_epoch, end_epoch))
        return _DayPlan(window_start, window_end, tuple(intervals), holiday)

    def _local_to_epoch(self, ordinal: int, seconds: int) -> int:
        """The instant of a local wall time: first occurrence when ambiguous, end of the gap when skipped."""
        naive_epoch = (ordinal - _EPOCH_ORDINAL) * DAY_SECONDS + seconds
        naive = datetime(1970, 1, 1) + timedelta(seconds=naive_epoch)
        offset = self._offset_seconds(naive)  # fold=0: the earlier offset
        epoch = naive_epoch - offset
        if datetime.fromtimestamp(epoch, self._zone).replace(tzinfo=None) == naive:
            return epoch
        # In a gap: find the transition, the first instant whose local time is later than the wall time.
        later_offset = self._offset_seconds(naive.replace(fold=1))
        low, high = naive_epoch - later_offset, epoch  # local(low) < naive < local(high)
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self._zone).replace(tzinfo=None) > naive:
                high = middle
            else:
                low = middle
        return high

    def _offset_seconds(self, naive: datetime) -> int:
        offset = self._zone.utcoffset(naive)
        assert offset is not None  # a ZoneInfo has an offset for every wall time
        return int(offset.total_seconds())

    def _holiday_name(self, ordinal: int) -> str | None:
        name = None
        if self.country is not None:
            year = date.fromordinal(ordinal).year
            by_ordinal = self._holidays_by_year.get(year)
            if by_ordinal is None:
                by_ordinal = self._load_holiday_year(self.country, year)
            name = by_ordinal.get(ordinal)
        if name is None and ordinal in self._holiday_ordinals:
            name = _LISTED_HOLIDAY
        return name

    def _load_holiday_year(self, country: str, year: int) -> dict[int, str]:
        with self._holiday_lock:
            loaded = self._holidays_by_year.get(year)
            if loaded is None:
                country_year = holidays_package.country_holidays(
                    country, subdiv=self.subdivision, years=year, language=self._holiday_language()
                )
                loaded = {day.toordinal(): name for day, name in country_year.items() if day.year == year}
                self._holidays_by_year[year] = loaded
            return loaded

    def _holiday_language(self) -> str | None:
        # Notes and timelines are written in English; use English holiday names where the package has them.
        supported = getattr(self._country_holidays, "supported_languages", ()) or ()
        return "en_US" if "en_US" in supported else None


def _add_wall_clock(cursor: int, remaining: int, pauses: list[tuple[int, int]]) -> int:
    for pause_start, pause_end in pauses:
        if pause_end <= cursor:
            continue
        if pause_start - cursor >= remaining:
            break
        if pause_start > cursor:
            remaining -= pause_start - cursor
        cursor = pause_end
    return cursor + remaining


def _zone(name: Any, where: str) -> ZoneInfo:
    if not isinstance(name, str) or not name.strip():
        raise CalendarError(f"{where}: expected an IANA time zone name such as 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CalendarError(
            f"{where}: unknown time zone {name!r} (expected an IANA name such as 'Europe/Berlin' or 'America/New_York')"
        ) from None


def _country_holidays(country: Any, subdivision: Any) -> Any:
    if not isinstance(country, str) or not country:
        raise CalendarError(f"holidays.country: expected a country code such as 'DE', got {country!r}")
    if subdivision is not None and (not isinstance(subdivision, str) or not subdivision):
        raise CalendarError(f"holidays.subdivision: expected a subdivision code such as 'BE', got {subdivision!r}")
    if country not in holidays_package.list_supported_countries():
        raise CalendarError(
            f"holidays.country: unknown country {country!r} (expected an ISO 3166-1 alpha-2 "
            f"code that the holidays package supports, such as 'DE', 'US' or 'GB')"
        )
    try:
        return holidays_package.country_holidays(country, subdiv=subdivision, years=())
    except NotImplementedError:
        known = holidays_package.list_supported_countries().get(country, [])
        raise CalendarError(
            f"holidays.subdivision: {country} has no subdivision {subdivision!r}; known: {', '.join(known) or 'none'}"
        ) from None


def _parse_interval(text: Any, where: str) -> LocalInterval:
    found = _INTERVAL_PATTERN.match(text) if isinstance(text, str) else None
    if found is None:
        raise CalendarError(f"{where}: expected a time interval 'HH:MM-HH:MM' such as '09:00-17:00', got {text!r}")
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in found.groups())
    if start_hour > 23 or start_minute > 59:
        raise CalendarError(f"{where}: {text!r} starts at an impossible time (start 00:00 to 23:59)")
    if end_minute > 59 or end_hour > 24 or (end_hour == 24 and end_minute != 0):
        raise CalendarError(f"{where}: {text!r} ends at an impossible time (end 00:01 to 24:00)")
    return start_hour * 3600 + start_minute * 60, end_hour * 3600 + end_minute * 60


def _parse_day(value: Any, where: str) -> list[LocalInterval]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CalendarError(f'{where}: expected a list of intervals such as ["09:00-17:00"], got {value!r}')
    return [_parse_interval(text, f"{where}[{index}]") for index, text in enumerate(value)]


def _parse_date(text: Any, where: str) -> date:
    if isinstance(text, str) and _DATE_PATTERN.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise CalendarError(f"{where}: expected a date 'YYYY-MM-DD' such as '2026-12-24', got {text!r}")


_parse_cache: dict[str, Calendar] = {}
_parse_cache_lock = threading.Lock()


def parse_calendar(spec: Mapping[str, Any]) -> Calendar:
    """A :class:`Calendar` from its rule-file JSON (docs/contracts.md section 1); raises :class:`CalendarError`.

    ``{"timezone": "Europe/Berlin", "hours": {"mon": ["09:00-12:30", "13:30-17:00"], ...},
    "holidays": {"country": "DE", "subdivision": "BE", "dates": ["2026-12-24"]},
    "overrides": {"2026-12-31": ["09:00-13:00"]}}``. The same JSON gives back the same (immutable) calendar
    object, so its cached days and holidays are shared by every policy that uses it.
    """
    if not isinstance(spec, Mapping):
        raise CalendarError(f"a calendar is a JSON object with 'timezone' and 'hours', got {spec!r}")
    try:
        key = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        key = None
    if key is not None and (cached := _parse_cache.get(key)) is not None:
        return cached
    calendar = _build_calendar(spec)
    if key is not None:
        with _parse_cache_lock:
            if len(_parse_cache) >= _PARSE_CACHE_LIMIT:
                _parse_cache.clear()
            _parse_cache[key] = calendar
    return calendar


def _build_calendar(spec: Mapping[str, Any]) -> Calendar:
    unknown = sorted(set(spec) - _CALENDAR_KEYS)
    if unknown:
        raise CalendarError(
            f"unknown calendar key(s) {', '.join(map(repr, unknown))}; "
            f"expected 'timezone', 'hours', 'holidays', 'overrides'"
        )
    if "timezone" not in spec:
        raise CalendarError("timezone: required, an IANA time zone name such as 'Europe/Berlin'")
    _zone(spec["timezone"], "timezone")

    hours = spec.get("hours") or {}
    if not isinstance(hours, Mapping):
        raise CalendarError(f'hours: expected an object of weekdays such as {{"mon": ["09:00-17:00"]}}, got {hours!r}')
    unknown_days = sorted(set(hours) - set(WEEKDAYS))
    if unknown_days:
        raise CalendarError(
            f"hours: unknown weekday(s) {', '.join(map(repr, unknown_days))}; use {', '.join(WEEKDAYS)}"
        )
    intervals_by_day = {name: _parse_day(hours.get(name), f"hours.{name}") for name in WEEKDAYS}

    holiday_spec = spec.get("holidays") or {}
    if not isinstance(holiday_spec, Mapping):
        raise CalendarError(
            f"holidays: expected an object with 'country', 'subdivision', 'dates', got {holiday_spec!r}"
        )
    unknown = sorted(set(holiday_spec) - _HOLIDAY_KEYS)
    if unknown:
        raise CalendarError(
            f"holidays: unknown key(s) {', '.join(map(repr, unknown))}; expected 'country', 'subdivision', 'dates'"
        )
    country = holiday_spec.get("country")
    subdivision = holiday_spec.get("subdivision")
    if subdivision is not None and country is None:
        raise CalendarError("holidays.subdivision: needs holidays.country as well")
    dates = holiday_spec.get("dates") or []
    if not isinstance(dates, list):
        raise CalendarError(f'holidays.dates: expected a list of dates such as ["2026-12-24"], got {dates!r}')
    holiday_dates = [_parse_date(text, f"holidays.dates[{index}]") for index, text in enumerate(dates)]

    override_spec = spec.get("overrides") or {}
    if not isinstance(override_spec, Mapping):
        raise CalendarError(
            f"overrides: expected an object from dates to intervals such as "
            f'{{"2026-12-31": ["09:00-13:00"]}}, got {override_spec!r}'
        )
    overrides = {
        _parse_date(text, f"overrides: key {text!r}"): _parse_day(value, f"overrides.{text}")
        for text, value in override_spec.items()
    }

    return Calendar(
        spec["timezone"],
        [intervals_by_day[name] for name in WEEKDAYS],
        overrides=overrides,
        holiday_dates=holiday_dates,
        country=country,
        subdivision=subdivision,
    )


def calendar_from_chatwoot_inbox(inbox: Mapping[str, Any]) -> Calendar:
    """The calendar of a Chatwoot inbox's own working hours (``GET /api/v1/accounts/{id}/inboxes/{id}``).

    Follows Chatwoot: with ``working_hours_enabled`` false (or absent) the inbox counts wall-clock time, so
    this returns :data:`WALL_CLOCK`. Rows give ``day_of_week`` (0 = Sunday ... 6 = Saturday), ``open_hour``,
    ``open_minutes``, ``close_hour``, ``close_minutes``, ``closed_all_day``, ``open_all_day`` (the whole day,
    midnight to midnight); the zone is the inbox's ``timezone`` (Chatwoot's default ``UTC``); a missing row
    closes its day. One deliberate difference (docs/semantics.md): when the hours are enabled but every day
    is closed, Chatwoot silently falls back to wall-clock time, and this raises :class:`CalendarError`.
    """
    if not inbox.get("working_hours_enabled"):
        return WALL_CLOCK
    zone_name = inbox.get("timezone") or "UTC"
    weekly: list[list[LocalInterval]] = [[] for _ in WEEKDAYS]
    for index, row in enumerate(inbox.get("working_hours") or []):
        where = f"working_hours[{index}]"
        day_of_week = row.get("day_of_week")
        if not isinstance(day_of_week, int) or not 0 <= day_of_week <= 6:
            raise CalendarError(f"{where}: day_of_week must be 0 (Sunday) to 6 (Saturday), got {day_of_week!r}")
        weekday = (day_of_week - 1) % 7  # Chatwoot counts from Sunday, this module from Monday
        if row.get("closed_all_day"):
            continue
        if row.get("open_all_day"):
            weekly[weekday].append((0, DAY_SECONDS))
            continue
        try:
            start = int(row["open_hour"]) * 3600 + int(row.get("open_minutes") or 0) * 60
            end = int(row["close_hour"]) * 3600 + int(row.get("close_minutes") or 0) * 60
        except (KeyError, TypeError, ValueError):
            raise CalendarError(
                f"{where}: needs open_hour, open_minutes, close_hour, close_minutes "
                f"unless closed_all_day or open_all_day, got {dict(row)!r}"
            ) from None
        weekly[weekday].append((start, end))
    try:
        return Calendar(zone_name, weekly)
    except CalendarError as error:
        raise CalendarError(f"inbox {inbox.get('id', '?')} working hours: {error}") from None


WALL_CLOCK = Calendar("UTC", [[(0, DAY_SECONDS)]] * 7)
"""Always open, in UTC: the clock of a policy without a calendar. ``add_working`` is plain addition."""
