"""Property tests for business-hours calendars: the clock operations agree with each other everywhere,
DST transitions, holidays, split shifts and breaks included, and with a plain reference where it applies."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.core.calendar import WALL_CLOCK, parse_calendar

UTC = UTC
HOUR = 3600
DAY = 86_400
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")

CALENDARS = {
    "berlin office, lunch, holidays, overrides": parse_calendar(
        {
            "timezone": "Europe/Berlin",
            "hours": {
                "mon": ["09:00-12:30", "13:30-17:00"],
                "tue": ["09:00-17:00"],
                "wed": ["09:00-17:00"],
                "thu": ["09:00-17:00"],
                "fri": ["09:00-16:00"],
            },
            "holidays": {"country": "DE", "subdivision": "BE", "dates": ["2026-12-24", "2027-12-24"]},
            "overrides": {"2026-12-31": ["09:00-13:00"], "2026-03-28": ["10:00-14:00"], "2026-10-25": ["00:00-24:00"]},
        }
    ),
    "new york split shift and saturdays": parse_calendar(
        {
            "timezone": "America/New_York",
            "hours": {**{day: ["08:00-12:00", "13:00-17:30"] for day in WORKDAYS}, "sat": ["10:00-14:00"]},
            "holidays": {"country": "US"},
        }
    ),
    # Boundaries inside the hours clocks change in, on the Sundays they change: gap and fold in both zones.
    "berlin night shifts on the DST hours": parse_calendar(
        {
            "timezone": "Europe/Berlin",
            "hours": {
                "sun": ["00:00-01:30", "02:15-02:45", "03:00-24:00"],
                "mon": ["00:00-02:30"],
                "sat": ["01:59-02:01", "22:00-24:00"],
            },
        }
    ),
    "lord howe around the clock on weekends": parse_calendar(
        {
            "timezone": "Australia/Lord_Howe",
            "hours": {"sat": ["00:00-24:00"], "sun": ["01:45-02:15", "02:20-24:00"], "wed": ["09:00-17:00"]},
        }
    ),
    "kathmandu": parse_calendar(
        {
            "timezone": "Asia/Kathmandu",
            "hours": {day: ["10:00-13:00", "14:00-18:00"] for day in ("sun", "mon", "tue", "wed", "thu")},
        }
    ),
    "wall clock": WALL_CLOCK,
}

# Clock changes of the zones above in 2026 and 2027, as UTC instants.
TRANSITIONS = [
    datetime(*fields, tzinfo=UTC)
    for fields in (
        (2026, 3, 29, 1),
        (2026, 10, 25, 1),
        (2027, 3, 28, 1),
        (2027, 10, 31, 1),  # Europe/Berlin
        (2026, 3, 8, 7),
        (2026, 11, 1, 6),
        (2027, 3, 14, 7),
        (2027, 11, 7, 6),  # America/New_York
        (2026, 4, 4, 15),
        (2026, 10, 3, 15, 30),
        (2027, 4, 3, 15),
        (2027, 10, 2, 15, 30),  # Australia/Lord_Howe
    )
]
ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)

calendars = st.sampled_from(sorted(CALENDARS))
anywhere = st.integers(0, 2 * 365 * DAY).map(lambda offset: ORIGIN + timedelta(seconds=offset))
near_a_transition = st.builds(
    lambda transition, offset: transition + timedelta(seconds=offset),
    st.sampled_from(TRANSITIONS),
    st.integers(-3 * DAY, 3 * DAY),
)
instants = st.one_of(anywhere, near_a_transition)
durations = st.one_of(st.integers(1, 4 * HOUR), st.integers(1, 300 * HOUR))


@st.composite
def breaks_near(draw, around: datetime) -> list[tuple[datetime, datetime]]:
    spans = draw(st.lists(st.tuples(st.integers(-2 * DAY, 20 * DAY), st.integers(1, 3 * DAY)), max_size=4))
    return [
        (around + timedelta(seconds=offset), around + timedelta(seconds=offset + length)) for offset, length in spans
    ]


@st.composite
def situations(draw):
    name = draw(calendars)
    start = draw(instants)
    return CALENDARS[name], start, draw(breaks_near(start))


PROPERTY_SETTINGS = settings(deadline=None, derandomize=True, max_examples=200)


@PROPERTY_SETTINGS
@given(situations(), durations)
def test_working_between_inverts_add_working(situation, seconds):
    calendar, start, breaks = situation
    due = calendar.add_working(start, seconds, breaks)
    assert due > start
    assert calendar.working_between(start, due, breaks) == seconds
    # The due time is the first instant at which the target is reached, never the next opening after it.
    assert calendar.working_between(start, due - timedelta(seconds=1), breaks) == seconds - 1


@PROPERTY_SETTINGS
@given(situations(), durations, durations)
def test_splitting_a_duration_gives_the_same_due_time(situation, first, second):
    calendar, start, breaks = situation
    in_two_steps = calendar.add_working(calendar.add_working(start, first, breaks), second, breaks)
    assert in_two_steps == calendar.add_working(start, first + second, breaks)


@PROPERTY_SETTINGS
@given(situations(), st.integers(0, 5 * DAY), durations, durations)
def test_due_times_grow_with_the_start_and_the_target(situation, later_by, seconds, more):
    calendar, start, breaks = situation
    due = calendar.add_working(start, seconds, breaks)
    assert calendar.add_working(start + timedelta(seconds=later_by), seconds, breaks) >= due
    assert calendar.add_working(start, seconds + more, breaks) > due


@PROPERTY_SETTINGS
@given(situations(), st.integers(0, 10 * DAY), st.integers(0, 10 * DAY))
def test_working_between_adds_up_over_consecutive_intervals(situation, first, second):
    calendar, start, breaks = situation
    middle = start + timedelta(seconds=first)
    end = middle + timedelta(seconds=second)
    whole = calendar.working_between(start, end, breaks)
    assert whole == calendar.working_between(start, middle, breaks) + calendar.working_between(middle, end, breaks)
    assert 0 <= whole <= (end - start).total_seconds()


@PROPERTY_SETTINGS
@given(calendars, instants, st.integers(1, 9 * DAY))
def test_segments_tile_the_interval_and_agree_with_the_clock(name, start, length):
    calendar = CALENDARS[name]
    end = start + timedelta(seconds=length)
    pieces = calendar.segments(start, end)
    assert pieces[0][0] == start.replace(microsecond=0) and pieces[-1][1] == end
    assert all(
        previous[1] == following[0] and previous[2] != following[2]
        for previous, following in itertools.pairwise(pieces)
    )
    open_seconds = sum(
        (piece_end - piece_start).total_seconds() for piece_start, piece_end, kind in pieces if kind == "open"
    )
    assert open_seconds == calendar.working_between(start, end)
    for piece_start, piece_end, kind in pieces:
        assert calendar.is_open(piece_start) == (kind == "open")
        assert calendar.is_open(piece_end - timedelta(seconds=1)) == (kind == "open")


@PROPERTY_SETTINGS
@given(calendars, instants)
def test_is_open_means_the_next_second_counts(name, instant):
    calendar = CALENDARS[name]
    assert calendar.is_open(instant) == (calendar.working_between(instant, instant + timedelta(seconds=1)) == 1)


# --- against a plain reference, for calendars whose hours never touch a clock change -------------------------

REFERENCE_SPEC = {
    "timezone": "America/New_York",
    "hours": {**{day: ["08:00-12:00", "13:00-17:30"] for day in WORKDAYS}, "sat": ["10:00-14:00"]},
    "holidays": {"dates": ["2026-07-03", "2026-11-26", "2026-12-25"]},
    "overrides": {"2026-12-24": ["08:00-12:00"], "2026-11-28": []},
}
REFERENCE_CALENDAR = parse_calendar(REFERENCE_SPEC)


def reference_open_spans(begin: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Open spans from local wall times, day by day, the obvious way (valid when no boundary is in a gap)."""
    zone = ZoneInfo(REFERENCE_SPEC["timezone"])
    weekdays = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    spans = []
    day = begin.astimezone(zone).date() - timedelta(days=1)
    while datetime.combine(day, datetime.min.time(), zone) < end:
        if day.isoformat() in REFERENCE_SPEC["overrides"]:
            hours = REFERENCE_SPEC["overrides"][day.isoformat()]
        elif day.isoformat() in REFERENCE_SPEC["holidays"]["dates"]:
            hours = []
        else:
            hours = REFERENCE_SPEC["hours"].get(weekdays[day.weekday()], [])
        for text in hours:
            opens, closes = (
                datetime.combine(day, datetime.strptime(part, "%H:%M").time(), zone) for part in text.split("-")
            )
            spans.append((max(opens, begin), min(closes, end)))
        day += timedelta(days=1)
    return [(opens, closes) for opens, closes in spans if opens < closes]


def reference_working_between(begin: datetime, end: datetime, breaks) -> int:
    total = 0
    for opens, closes in reference_open_spans(begin, end):
        cut = [(opens, closes)]
        for pause_start, pause_end in breaks:
            cut = [
                piece
                for span_start, span_end in cut
                for piece in ((span_start, min(span_end, pause_start)), (max(span_start, pause_end), span_end))
                if piece[0] < piece[1]
            ]
        total += sum(int((span_end - span_start).total_seconds()) for span_start, span_end in cut)
    return total


@PROPERTY_SETTINGS
@given(instants, st.integers(0, 12 * DAY), st.data())
def test_working_between_matches_the_reference(start, length, data):
    end = start + timedelta(seconds=length)
    breaks = data.draw(breaks_near(start))
    assert REFERENCE_CALENDAR.working_between(start, end, breaks) == reference_working_between(start, end, breaks)


@PROPERTY_SETTINGS
@given(st.dates(date(2026, 1, 1), date(2027, 12, 31)))
def test_a_full_local_day_of_hours_counts_as_written(day):
    # 09:00-17:00 never meets a clock change in these zones, so each open day is exactly 8 hours.
    for zone_name in ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"):
        calendar = parse_calendar(
            {"timezone": zone_name, "hours": {name: ["09:00-17:00"] for name in ("mon", "sat", "sun")}}
        )
        zone = ZoneInfo(zone_name)
        midnight = datetime.combine(day, datetime.min.time(), zone)
        expected = 8 * HOUR if day.weekday() in (0, 5, 6) else 0
        assert (
            calendar.working_between(midnight, datetime.combine(day + timedelta(days=1), datetime.min.time(), zone))
            == expected
        )
