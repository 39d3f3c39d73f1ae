"""Hand-checked cases for business-hours calendars (plugin/core/calendar.py, docs/calendars.md)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from plugin.core.calendar import WALL_CLOCK, Calendar, CalendarError, calendar_from_chatwoot_inbox, parse_calendar

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
UTC = UTC
HOUR = 3600
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")


def office(zone: str = "Europe/Berlin", hours: list[str] | None = None, **extra) -> dict:
    return {"timezone": zone, "hours": {day: hours or ["09:00-17:00"] for day in WORKDAYS}, **extra}


def every_day(zone: str, hours: list[str]) -> dict:
    return {"timezone": zone, "hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), hours)}


def local(zone: ZoneInfo, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=zone)


# --- add_working: hand-checked due times -----------------------------------------------------------------

ADD_WORKING_CASES = [
    # (case, calendar spec, start, seconds, breaks, expected due)
    (
        "friday afternoon rolls to monday",
        office(),
        local(BERLIN, 2026, 1, 9, 16, 55),
        HOUR,
        [],
        local(BERLIN, 2026, 1, 12, 9, 55),
    ),
    (
        "a holiday on that monday moves it to tuesday",
        office(holidays={"dates": ["2026-01-12"]}),
        local(BERLIN, 2026, 1, 9, 16, 55),
        HOUR,
        [],
        local(BERLIN, 2026, 1, 13, 9, 55),
    ),
    (
        "an override closing that monday does the same",
        office(overrides={"2026-01-12": []}),
        local(BERLIN, 2026, 1, 9, 16, 55),
        HOUR,
        [],
        local(BERLIN, 2026, 1, 13, 9, 55),
    ),
    (
        "lunch break: 12:00 + 1h = 30 min before lunch + 30 min after 13:30",
        office(hours=["09:00-12:30", "13:30-17:00"]),
        local(BERLIN, 2026, 1, 12, 12, 0),
        HOUR,
        [],
        local(BERLIN, 2026, 1, 12, 14, 0),
    ),
    (
        "start inside the lunch break",
        office(hours=["09:00-12:30", "13:30-17:00"]),
        local(BERLIN, 2026, 1, 12, 12, 45),
        10 * 60,
        [],
        local(BERLIN, 2026, 1, 12, 13, 40),
    ),
    (
        "a full day lands on the closing time, not the next morning",
        office(),
        local(BERLIN, 2026, 1, 12, 9, 0),
        8 * HOUR,
        [],
        local(BERLIN, 2026, 1, 12, 17, 0),
    ),
    (
        "the last hour of the day lands on the closing time",
        office(),
        local(BERLIN, 2026, 1, 12, 16, 0),
        HOUR,
        [],
        local(BERLIN, 2026, 1, 12, 17, 0),
    ),
    (
        "one second after a closing time is one second after the next opening",
        office(),
        local(BERLIN, 2026, 1, 12, 17, 0),
        1,
        [],
        local(BERLIN, 2026, 1, 13, 9, 0, 1),
    ),
    ("start on saturday", office(), local(BERLIN, 2026, 1, 10, 10, 0), HOUR, [], local(BERLIN, 2026, 1, 12, 10, 0)),
    ("start before opening", office(), local(BERLIN, 2026, 1, 12, 7, 0), HOUR, [], local(BERLIN, 2026, 1, 12, 10, 0)),
    (
        "a week's target: 40 working hours from monday 09:00 is friday 17:00",
        office(),
        local(BERLIN, 2026, 1, 12, 9, 0),
        40 * HOUR,
        [],
        local(BERLIN, 2026, 1, 16, 17, 0),
    ),
    (
        "across Christmas with country holidays",
        office(holidays={"country": "DE", "subdivision": "BE"}),
        local(BERLIN, 2026, 12, 24, 16, 0),
        2 * HOUR,
        [],
        local(BERLIN, 2026, 12, 28, 10, 0),
    ),
    (
        "an override gives a shorter day, then new year's day (a friday) is a holiday",
        office(holidays={"country": "DE"}, overrides={"2026-12-31": ["09:00-13:00"]}),
        local(BERLIN, 2026, 12, 31, 12, 0),
        2 * HOUR,
        [],
        local(BERLIN, 2027, 1, 4, 10, 0),
    ),
    (
        "an override on a listed holiday wins",
        office(holidays={"dates": ["2026-12-24"]}, overrides={"2026-12-24": ["09:00-12:00"]}),
        local(BERLIN, 2026, 12, 24, 9, 0),
        2 * HOUR,
        [],
        local(BERLIN, 2026, 12, 24, 11, 0),
    ),
    (
        "an override opens a saturday",
        office(overrides={"2026-01-10": ["10:00-12:00"]}),
        local(BERLIN, 2026, 1, 9, 16, 0),
        2 * HOUR,
        [],
        local(BERLIN, 2026, 1, 10, 11, 0),
    ),
    (
        "a break inside open time",
        office(),
        local(BERLIN, 2026, 1, 12, 9, 0),
        2 * HOUR,
        [(local(BERLIN, 2026, 1, 12, 10, 0), local(BERLIN, 2026, 1, 12, 10, 30))],
        local(BERLIN, 2026, 1, 12, 11, 30),
    ),
    (
        "a break over the weekend's closed time",
        office(),
        local(BERLIN, 2026, 1, 9, 16, 0),
        2 * HOUR,
        [(local(BERLIN, 2026, 1, 9, 16, 30), local(BERLIN, 2026, 1, 12, 9, 30))],
        local(BERLIN, 2026, 1, 12, 11, 0),
    ),
    (
        "overlapping, unsorted breaks, one starting before the start",
        office(),
        local(BERLIN, 2026, 1, 12, 10, 0),
        HOUR,
        [
            (local(BERLIN, 2026, 1, 12, 10, 20), local(BERLIN, 2026, 1, 12, 10, 40)),
            (local(BERLIN, 2026, 1, 12, 8, 0), local(BERLIN, 2026, 1, 12, 10, 10)),
            (local(BERLIN, 2026, 1, 12, 10, 30), local(BERLIN, 2026, 1, 12, 11, 0)),
        ],
        local(BERLIN, 2026, 1, 12, 11, 50),
    ),
    (
        "a break ending exactly at the due time does not move it",
        office(),
        local(BERLIN, 2026, 1, 12, 9, 0),
        HOUR,
        [(local(BERLIN, 2026, 1, 12, 10, 0), local(BERLIN, 2026, 1, 12, 10, 30))],
        local(BERLIN, 2026, 1, 12, 10, 0),
    ),
    (
        "a break of many weeks",
        office(),
        local(BERLIN, 2026, 1, 12, 9, 0),
        HOUR,
        [(local(BERLIN, 2026, 1, 12, 9, 30), local(BERLIN, 2026, 3, 2, 12, 0))],
        local(BERLIN, 2026, 3, 2, 12, 30),
    ),
    # Clocks change on Sundays: these calendars open every day so the change falls on an open day.
    (
        "Berlin spring forward: 09:00-17:00 is still 8 hours",
        every_day("Europe/Berlin", ["09:00-17:00"]),
        local(BERLIN, 2026, 3, 29, 9, 0),
        8 * HOUR,
        [],
        local(BERLIN, 2026, 3, 29, 17, 0),
    ),
    (
        "Berlin fall back: 09:00-17:00 is still 8 hours",
        every_day("Europe/Berlin", ["09:00-17:00"]),
        local(BERLIN, 2026, 10, 25, 9, 0),
        8 * HOUR,
        [],
        local(BERLIN, 2026, 10, 25, 17, 0),
    ),
    (
        "New York spring forward",
        every_day("America/New_York", ["09:00-17:00"]),
        local(NEW_YORK, 2026, 3, 8, 9, 0),
        8 * HOUR,
        [],
        local(NEW_YORK, 2026, 3, 8, 17, 0),
    ),
    (
        "New York fall back",
        every_day("America/New_York", ["09:00-17:00"]),
        local(NEW_YORK, 2026, 11, 1, 9, 0),
        8 * HOUR,
        [],
        local(NEW_YORK, 2026, 11, 1, 17, 0),
    ),
    (
        "New York: friday evening across the weekend of the change",
        office("America/New_York"),
        local(NEW_YORK, 2026, 3, 6, 16, 30),
        HOUR,
        [],
        local(NEW_YORK, 2026, 3, 9, 9, 30),
    ),
    (
        "a whole Sunday across spring forward is 23 hours",
        {"timezone": "Europe/Berlin", "hours": {"sun": ["00:00-24:00"]}},
        local(BERLIN, 2026, 3, 29, 0, 0),
        23 * HOUR,
        [],
        local(BERLIN, 2026, 3, 30, 0, 0),
    ),
    (
        "one more second goes to the next Sunday",
        {"timezone": "Europe/Berlin", "hours": {"sun": ["00:00-24:00"]}},
        local(BERLIN, 2026, 3, 29, 0, 0),
        23 * HOUR + 1,
        [],
        local(BERLIN, 2026, 4, 5, 0, 0, 1),
    ),
    (
        "a whole Sunday across fall back is 25 hours",
        {"timezone": "Europe/Berlin", "hours": {"sun": ["00:00-24:00"]}},
        local(BERLIN, 2026, 10, 25, 0, 0),
        25 * HOUR,
        [],
        local(BERLIN, 2026, 10, 26, 0, 0),
    ),
    (
        "Kathmandu (+05:45)",
        office("Asia/Kathmandu", ["10:00-18:00"]),
        local(KATHMANDU, 2026, 1, 5, 9, 0),
        HOUR,
        [],
        datetime(2026, 1, 5, 5, 15, tzinfo=UTC),
    ),
    (
        "Kathmandu across the evening",
        office("Asia/Kathmandu", ["10:00-18:00"]),
        local(KATHMANDU, 2026, 1, 5, 17, 30),
        HOUR,
        [],
        local(KATHMANDU, 2026, 1, 6, 10, 30),
    ),
    (
        "Lord Howe half-hour spring forward: a whole Sunday is 23.5 hours",
        {"timezone": "Australia/Lord_Howe", "hours": {"sun": ["00:00-24:00"]}},
        local(LORD_HOWE, 2026, 10, 4, 0, 0),
        23 * HOUR + 1800,
        [],
        local(LORD_HOWE, 2026, 10, 5, 0, 0),
    ),
    (
        "Lord Howe half-hour fall back: a whole Sunday is 24.5 hours",
        {"timezone": "Australia/Lord_Howe", "hours": {"sun": ["00:00-24:00"]}},
        local(LORD_HOWE, 2026, 4, 5, 0, 0),
        24 * HOUR + 1800,
        [],
        local(LORD_HOWE, 2026, 4, 6, 0, 0),
    ),
    (
        "Lord Howe office day on the change is 8 hours",
        every_day("Australia/Lord_Howe", ["09:00-17:00"]),
        local(LORD_HOWE, 2026, 10, 4, 9, 0),
        8 * HOUR,
        [],
        local(LORD_HOWE, 2026, 10, 4, 17, 0),
    ),
]


@pytest.mark.parametrize(
    "spec, start, seconds, breaks, expected",
    [case[1:] for case in ADD_WORKING_CASES],
    ids=[case[0] for case in ADD_WORKING_CASES],
)
def test_add_working_hand_checked(spec, start, seconds, breaks, expected):
    calendar = parse_calendar(spec)
    due = calendar.add_working(start, seconds, breaks)
    assert due == expected
    assert due.tzinfo is UTC
    assert calendar.working_between(start, due, breaks) == seconds


def test_zero_seconds_returns_the_start_unchanged_even_when_closed():
    calendar = parse_calendar(office())
    saturday = local(BERLIN, 2026, 1, 10, 10, 0)
    assert calendar.add_working(saturday, 0) is saturday
    assert WALL_CLOCK.add_working(saturday, 0) is saturday


def test_negative_seconds_and_naive_datetimes_are_refused():
    calendar = parse_calendar(office())
    with pytest.raises(ValueError):
        calendar.add_working(local(BERLIN, 2026, 1, 12, 9, 0), -1)
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.add_working(datetime(2026, 1, 12, 9, 0), 60)
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.working_between(datetime(2026, 1, 12, 9, 0), local(BERLIN, 2026, 1, 12, 10, 0))


def test_fractions_of_a_second_are_floored():
    calendar = parse_calendar(office())
    start = local(BERLIN, 2026, 1, 12, 9, 0, 0, 999_999)
    assert calendar.add_working(start, 60) == local(BERLIN, 2026, 1, 12, 9, 1)


def test_starts_given_in_any_zone_mean_the_same_instant():
    calendar = parse_calendar(office())
    in_berlin = local(BERLIN, 2026, 1, 9, 16, 55)
    in_tokyo = in_berlin.astimezone(ZoneInfo("Asia/Tokyo"))
    assert calendar.add_working(in_tokyo, HOUR) == calendar.add_working(in_berlin, HOUR)


# --- DST: gap and fold conventions ------------------------------------------------------------------------


def test_a_local_time_in_the_spring_gap_moves_to_the_end_of_the_gap():
    # Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC). "01:30-02:30" is 01:30-03:00 local.
    calendar = parse_calendar({"timezone": "Europe/Berlin", "hours": {"sun": ["01:30-02:30"]}})
    sunday = local(BERLIN, 2026, 3, 29, 0, 0)
    assert calendar.working_between(sunday, sunday + timedelta(days=1)) == 30 * 60
    assert calendar.add_working(sunday, 30 * 60) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert calendar.segments(sunday, sunday + timedelta(days=1))[1] == (
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        "open",
    )


def test_an_interval_wholly_inside_the_gap_is_empty_that_day():
    # Lord Howe 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11:00).
    calendar = parse_calendar({"timezone": "Australia/Lord_Howe", "hours": {"sun": ["02:05-02:25", "09:00-10:00"]}})
    sunday = local(LORD_HOWE, 2026, 10, 4, 0, 0)
    assert calendar.working_between(sunday, sunday + timedelta(days=1)) == HOUR
    assert calendar.working_between(sunday + timedelta(days=7), sunday + timedelta(days=8)) == HOUR + 20 * 60


def test_an_ambiguous_local_time_means_its_first_occurrence():
    # Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:00-03:00 local happens twice.
    calendar = parse_calendar({"timezone": "Europe/Berlin", "hours": {"sun": ["02:30-03:30"]}})
    sunday = local(BERLIN, 2026, 10, 25, 0, 0)
    # From the first 02:30 (00:30 UTC) to 03:30 CET (02:30 UTC): two hours.
    assert calendar.working_between(sunday, sunday + timedelta(days=1)) == 2 * HOUR
    assert calendar.add_working(sunday, 1) == datetime(2026, 10, 25, 0, 30, 1, tzinfo=UTC)
    assert calendar.is_open(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # the second 02:30


def test_day_lengths_around_midnight_transitions():
    # Santiago de Chile changes clocks at midnight: 2026-09-06 starts at 01:00 (00:00-01:00 does not exist).
    santiago = ZoneInfo("America/Santiago")
    calendar = parse_calendar({"timezone": "America/Santiago", "hours": {"sun": ["00:00-24:00"]}})
    sunday = datetime(2026, 9, 6, 1, 0, tzinfo=santiago)
    assert calendar.working_between(sunday - timedelta(hours=1), sunday + timedelta(days=1)) == 23 * HOUR
    assert calendar.add_working(datetime(2026, 9, 5, 12, 0, tzinfo=santiago), 23 * HOUR) == datetime(
        2026, 9, 7, 0, 0, tzinfo=santiago
    )


# --- working_between, is_open, segments -------------------------------------------------------------------


def test_working_between_hand_checked():
    calendar = parse_calendar(office(hours=["09:00-12:30", "13:30-17:00"], holidays={"country": "DE"}))
    monday = local(BERLIN, 2026, 1, 12, 0, 0)
    assert calendar.working_between(monday, monday + timedelta(days=7)) == 5 * 7 * HOUR
    assert calendar.working_between(monday + timedelta(hours=12), monday + timedelta(hours=14)) == HOUR
    assert calendar.working_between(monday + timedelta(hours=14), monday + timedelta(hours=12)) == 0
    breaks = [(monday + timedelta(hours=10), monday + timedelta(hours=14))]
    assert calendar.working_between(monday, monday + timedelta(days=1), breaks) == 7 * HOUR - 3 * HOUR
    christmas_week = local(BERLIN, 2026, 12, 21, 0, 0)
    assert calendar.working_between(christmas_week, christmas_week + timedelta(days=7)) == 4 * 7 * HOUR


def test_is_open_edges():
    calendar = parse_calendar(office(holidays={"country": "DE"}))
    assert calendar.is_open(local(BERLIN, 2026, 1, 12, 9, 0))
    assert calendar.is_open(local(BERLIN, 2026, 1, 12, 16, 59, 59))
    assert not calendar.is_open(local(BERLIN, 2026, 1, 12, 17, 0))
    assert not calendar.is_open(local(BERLIN, 2026, 1, 12, 8, 59, 59))
    assert not calendar.is_open(local(BERLIN, 2026, 1, 10, 12, 0))
    assert not calendar.is_open(local(BERLIN, 2026, 12, 25, 12, 0))
    assert WALL_CLOCK.is_open(local(BERLIN, 2026, 12, 25, 3, 0))


def test_segments_show_open_closed_and_named_holidays():
    calendar = parse_calendar(
        office(holidays={"country": "DE", "dates": ["2026-12-24"]}, overrides={"2026-12-23": ["09:00-12:00"]})
    )
    pieces = calendar.segments(local(BERLIN, 2026, 12, 23, 8, 0), local(BERLIN, 2026, 12, 28, 10, 0))
    as_local = [
        (start.astimezone(BERLIN).strftime("%d %H:%M"), end.astimezone(BERLIN).strftime("%d %H:%M"), kind)
        for start, end, kind in pieces
    ]
    assert as_local == [
        ("23 08:00", "23 09:00", "closed"),
        ("23 09:00", "23 12:00", "open"),
        ("23 12:00", "24 00:00", "closed"),
        ("24 00:00", "25 00:00", "holiday: listed in holidays.dates"),
        ("25 00:00", "26 00:00", "holiday: Christmas Day"),
        ("26 00:00", "27 00:00", "holiday: Second Day of Christmas"),
        ("27 00:00", "28 09:00", "closed"),
        ("28 09:00", "28 10:00", "open"),
    ]
    assert all(start.tzinfo is UTC for start, _, _ in pieces)
    assert calendar.segments(local(BERLIN, 2026, 12, 23, 8, 0), local(BERLIN, 2026, 12, 23, 8, 0)) == []
    assert WALL_CLOCK.segments(local(BERLIN, 2026, 1, 1), local(BERLIN, 2026, 1, 2)) == [
        (datetime(2025, 12, 31, 23, tzinfo=UTC), datetime(2026, 1, 1, 23, tzinfo=UTC), "open")
    ]


def test_country_holidays_load_for_any_year():
    calendar = parse_calendar(office("America/New_York", holidays={"country": "US"}))
    for year in (1999, 2026, 2061):  # Thanksgiving, the fourth Thursday of November, is never a weekend
        thanksgiving = [day for day in range(1, 31) if date(year, 11, day).weekday() == 3][3]
        noon = local(NEW_YORK, year, 11, thanksgiving, 12, 0)
        assert not calendar.is_open(noon)
        assert calendar.is_open(noon - timedelta(days=1))
        assert calendar.segments(noon, noon + timedelta(hours=1))[0][2] == "holiday: Thanksgiving Day"


# --- the wall clock -------------------------------------------------------------------------------------


def test_wall_clock_is_plain_addition_extended_by_breaks():
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert WALL_CLOCK.is_wall_clock and WALL_CLOCK.timezone == "UTC"
    assert WALL_CLOCK.add_working(start, 90) == start + timedelta(seconds=90)
    breaks = [
        (start + timedelta(minutes=10), start + timedelta(minutes=20)),
        (start - timedelta(hours=1), start + timedelta(minutes=5)),
        (start + timedelta(minutes=15), start + timedelta(minutes=30)),
    ]
    due = WALL_CLOCK.add_working(start, HOUR, breaks)
    assert due == start + timedelta(hours=1, minutes=25)
    assert WALL_CLOCK.working_between(start, due, breaks) == HOUR


def test_a_calendar_open_around_the_clock_is_a_wall_clock_in_its_zone():
    calendar = parse_calendar(every_day("Europe/Berlin", ["00:00-24:00"]))
    assert calendar.is_wall_clock and calendar.timezone == "Europe/Berlin"
    assert not parse_calendar(office()).is_wall_clock
    sunday = local(BERLIN, 2026, 3, 29, 0, 0)
    assert calendar.working_between(sunday, sunday + timedelta(days=1)) == 23 * HOUR


def test_no_open_time_for_ten_years_raises_instead_of_looping():
    first_monday = date(2026, 1, 5)
    mondays = [first_monday + timedelta(weeks=week) for week in range(11 * 53)]
    calendar = Calendar("Europe/Berlin", [[(9 * HOUR, 17 * HOUR)], [], [], [], [], [], []], holiday_dates=mondays)
    with pytest.raises(CalendarError, match="no open time in the ten years"):
        calendar.add_working(local(BERLIN, 2026, 1, 1, 0, 0), HOUR)


# --- parsing ---------------------------------------------------------------------------------------------


def test_the_design_sample_parses():
    calendar = parse_calendar(
        {
            "timezone": "Europe/Berlin",
            "hours": {
                "mon": ["09:00-12:30", "13:30-17:00"],
                "tue": ["09:00-17:00"],
                "wed": ["09:00-17:00"],
                "thu": ["09:00-17:00"],
                "fri": ["09:00-16:00"],
                "sat": [],
                "sun": [],
            },
            "holidays": {"country": "DE", "subdivision": "BE", "dates": ["2026-12-24"]},
            "overrides": {"2026-12-31": ["09:00-13:00"]},
        }
    )
    assert calendar.timezone == "Europe/Berlin"
    week = local(BERLIN, 2026, 1, 12, 0, 0)
    assert calendar.working_between(week, week + timedelta(days=7)) == (7 + 8 * 3 + 7) * HOUR
    assert not calendar.is_open(local(BERLIN, 2026, 12, 24, 10, 0))  # listed date
    assert calendar.is_open(local(BERLIN, 2026, 12, 31, 12, 0))  # override
    assert not calendar.is_open(local(BERLIN, 2026, 12, 31, 14, 0))
    assert not calendar.is_open(local(BERLIN, 2027, 3, 8, 10, 0))  # Women's Day, a Berlin holiday


def test_same_json_gives_the_same_calendar():
    first = parse_calendar(office(holidays={"country": "DE"}))
    second = parse_calendar(office(holidays={"country": "DE"}))
    assert first is second
    rebuilt = Calendar("Europe/Berlin", [[(9 * HOUR, 17 * HOUR)]] * 5 + [[], []], country="DE")
    assert rebuilt == first and hash(rebuilt) == hash(first)
    assert parse_calendar(office()) != first


def test_touching_intervals_are_joined():
    calendar = parse_calendar(office(hours=["12:00-17:00", "09:00-12:00"]))
    monday = local(BERLIN, 2026, 1, 12, 0, 0)
    assert calendar.segments(monday + timedelta(hours=9), monday + timedelta(hours=17)) == [
        (local(BERLIN, 2026, 1, 12, 9, 0), local(BERLIN, 2026, 1, 12, 17, 0), "open")
    ]


PARSE_ERRORS = [
    (
        "crossing midnight gets the split hint",
        {"timezone": "UTC", "hours": {"fri": ["22:00-06:00"]}},
        "hours.fri[0]: '22:00-06:00' ends before it starts; an interval cannot cross midnight: split it into "
        "'22:00-24:00' on fri and '00:00-06:00' on sat",
    ),
    (
        "ends before it starts",
        office(hours=["09:00-12:30", "13:30-12:00"]),
        "hours.mon[1]: '13:30-12:00' ends before it starts",
    ),
    (
        "an override crossing midnight names the dates",
        office(overrides={"2026-12-31": ["20:00-02:00"]}),
        "split it into '20:00-24:00' on 2026-12-31 and '00:00-02:00' on 2027-01-01",
    ),
    ("empty interval", office(hours=["09:00-09:00"]), "hours.mon[0]: '09:00-09:00' is empty"),
    ("overlap", office(hours=["09:00-12:00", "11:00-13:00"]), "hours.mon: '09:00-12:00' and '11:00-13:00' overlap"),
    (
        "overlap in an override",
        office(overrides={"2026-12-31": ["09:00-12:00", "08:00-10:00"]}),
        "overrides.2026-12-31: '08:00-10:00' and '09:00-12:00' overlap",
    ),
    ("bad format", office(hours=["9-17"]), "hours.mon[0]: expected a time interval 'HH:MM-HH:MM'"),
    ("not a string", office(hours=[900]), "hours.mon[0]: expected a time interval"),
    ("impossible hour", office(hours=["09:00-25:00"]), "hours.mon[0]: '09:00-25:00' ends at an impossible time"),
    ("24:30", office(hours=["09:00-24:30"]), "ends at an impossible time"),
    ("starting at 24:00", office(hours=["24:00-24:00"]), "starts at an impossible time"),
    ("impossible minutes", office(hours=["09:75-17:00"]), "starts at an impossible time"),
    ("hours not a list", {"timezone": "UTC", "hours": {"mon": "09:00-17:00"}}, "hours.mon: expected a list"),
    (
        "unknown weekday",
        {"timezone": "UTC", "hours": {"monday": ["09:00-17:00"]}},
        "hours: unknown weekday(s) 'monday'; use mon, tue",
    ),
    ("unknown zone", office("Europe/Berln"), "timezone: unknown time zone 'Europe/Berln'"),
    ("zone not a string", office(zone=5), "timezone: expected an IANA time zone name"),
    ("missing zone", {"hours": {"mon": ["09:00-17:00"]}}, "timezone: required"),
    ("unknown country", office(holidays={"country": "XX"}), "holidays.country: unknown country 'XX'"),
    (
        "unknown subdivision",
        office(holidays={"country": "DE", "subdivision": "ZZ"}),
        "holidays.subdivision: DE has no subdivision 'ZZ'; known: BB, BE",
    ),
    ("subdivision without country", office(holidays={"subdivision": "BE"}), "needs holidays.country"),
    ("bad holiday date", office(holidays={"dates": ["2026-13-01"]}), "holidays.dates[0]: expected a date 'YYYY-MM-DD'"),
    ("bad override date", office(overrides={"31.12.2026": []}), "overrides: key '31.12.2026': expected a date"),
    ("unknown key", office(holiday={"country": "DE"}), "unknown calendar key(s) 'holiday'"),
    ("unknown holidays key", office(holidays={"county": "DE"}), "holidays: unknown key(s) 'county'"),
    ("no open time", {"timezone": "UTC", "hours": {"sat": [], "sun": []}}, "calendar has no open time"),
    (
        "no hours at all, only overrides",
        {"timezone": "UTC", "overrides": {"2026-12-31": ["09:00-13:00"]}},
        "calendar has no open time",
    ),
    ("not an object", ["09:00-17:00"], "a calendar is a JSON object"),
]


@pytest.mark.parametrize("spec, message", [case[1:] for case in PARSE_ERRORS], ids=[case[0] for case in PARSE_ERRORS])
def test_parse_errors_name_the_place_and_the_fix(spec, message):
    with pytest.raises(CalendarError) as raised:
        parse_calendar(spec)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


# --- Chatwoot inbox working hours --------------------------------------------------------------------------


def chatwoot_inbox(**changes) -> dict:
    rows = [
        {
            "day_of_week": 0,
            "closed_all_day": True,
            "open_hour": None,
            "open_minutes": None,
            "close_hour": None,
            "close_minutes": None,
            "open_all_day": False,
        }
    ]
    rows += [
        {
            "day_of_week": day,
            "closed_all_day": False,
            "open_hour": 9,
            "open_minutes": 0,
            "close_hour": 17,
            "close_minutes": 30,
            "open_all_day": False,
        }
        for day in range(1, 6)
    ]
    rows.append(
        {
            "day_of_week": 6,
            "closed_all_day": False,
            "open_hour": 0,
            "open_minutes": 0,
            "close_hour": 23,
            "close_minutes": 59,
            "open_all_day": True,
        }
    )
    inbox = {
        "id": 3,
        "name": "Support",
        "channel_type": "Channel::WebWidget",
        "working_hours_enabled": True,
        "out_of_office_message": "We are closed",
        "timezone": "America/New_York",
        "working_hours": rows,
    }
    inbox.update(changes)
    return inbox


def test_chatwoot_inbox_hours_become_a_calendar():
    calendar = calendar_from_chatwoot_inbox(chatwoot_inbox())
    assert calendar.timezone == "America/New_York" and not calendar.is_wall_clock
    friday = local(NEW_YORK, 2026, 1, 9, 17, 0)
    # 30 minutes on Friday, Saturday is open all day (24h), Sunday closed, then Monday from 09:00.
    assert calendar.add_working(friday, HOUR) == local(NEW_YORK, 2026, 1, 10, 0, 30)
    assert calendar.add_working(friday, 24 * HOUR + 45 * 60) == local(NEW_YORK, 2026, 1, 12, 9, 15)
    assert not calendar.is_open(local(NEW_YORK, 2026, 1, 11, 12, 0))


def test_chatwoot_inbox_with_working_hours_disabled_counts_wall_clock_time():
    assert calendar_from_chatwoot_inbox(chatwoot_inbox(working_hours_enabled=False)) is WALL_CLOCK
    assert calendar_from_chatwoot_inbox({"id": 1, "name": "Email"}) is WALL_CLOCK


def test_chatwoot_inbox_without_a_zone_is_utc():
    calendar = calendar_from_chatwoot_inbox(chatwoot_inbox(timezone=None))
    assert calendar.timezone == "UTC"


def test_chatwoot_inbox_closed_every_day_is_an_error_not_a_wall_clock():
    rows = [{"day_of_week": day, "closed_all_day": True} for day in range(7)]
    with pytest.raises(CalendarError, match="inbox 3 working hours: calendar has no open time"):
        calendar_from_chatwoot_inbox(chatwoot_inbox(working_hours=rows))


def test_chatwoot_inbox_bad_rows_are_errors():
    bad_day = chatwoot_inbox(working_hours=[{"day_of_week": 7, "open_hour": 9}])
    with pytest.raises(CalendarError, match=r"working_hours\[0\]: day_of_week"):
        calendar_from_chatwoot_inbox(bad_day)
    missing = chatwoot_inbox(working_hours=[{"day_of_week": 1, "closed_all_day": False}])
    with pytest.raises(CalendarError, match="needs open_hour"):
        calendar_from_chatwoot_inbox(missing)
    with pytest.raises(CalendarError, match="unknown time zone"):
        calendar_from_chatwoot_inbox(chatwoot_inbox(timezone="Eastern Time (US & Canada)"))


# --- sharing -----------------------------------------------------------------------------------------------


def test_one_calendar_shared_by_threads_gives_the_same_answers():
    spec = office(hours=["09:00-12:30", "13:30-17:00"], holidays={"country": "DE", "subdivision": "BY"})
    starts = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=7 * index) for index in range(400)]
    expected = [
        Calendar(
            "Europe/Berlin",
            [[(9 * HOUR, 12 * HOUR + 1800), (13 * HOUR + 1800, 17 * HOUR)]] * 5 + [[], []],
            country="DE",
            subdivision="BY",
        ).add_working(start, 40 * HOUR)
        for start in starts
    ]
    shared = Calendar(
        "Europe/Berlin",
        [[(9 * HOUR, 12 * HOUR + 1800), (13 * HOUR + 1800, 17 * HOUR)]] * 5 + [[], []],
        country="DE",
        subdivision="BY",
    )
    results: dict[int, list[datetime]] = {}

    def work(worker: int) -> None:
        results[worker] = [shared.add_working(start, 40 * HOUR) for start in starts]

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results.values())
    assert parse_calendar(spec) == shared
