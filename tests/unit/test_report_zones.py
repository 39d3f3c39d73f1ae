"""Report time zones: offset spans over a range agree with the zone at every instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugin.core.reports.figures import ReportError
from plugin.core.reports.zones import next_local_day, offset_seconds, offset_spans, zone

START = datetime(2025, 1, 1, tzinfo=UTC)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago"]


def offset_from_spans(spans, moment):
    return [offset for start, offset in spans if start <= moment][-1]


@given(
    name=st.sampled_from(ZONES),
    first=st.integers(0, 700 * 86400),
    length=st.integers(1, 400 * 86400),
    probes=st.lists(st.floats(0, 1), min_size=1, max_size=20),
)
def test_spans_give_the_zones_offset_at_every_instant(name, first, length, probes):
    place = zone(name)
    start = START + timedelta(seconds=first)
    end = start + timedelta(seconds=length)
    spans = offset_spans(place, start, end)
    assert spans[0][0] == start
    for fraction in probes:
        moment = start + timedelta(seconds=int(length * fraction))
        assert offset_from_spans(spans, moment) == offset_seconds(place, moment)


def test_a_change_is_found_to_the_second():
    spans = offset_spans(zone("Europe/Berlin"), datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC))
    assert spans[1:] == [(datetime(2026, 3, 29, 1, tzinfo=UTC), 7200)]


def test_local_days_have_23_24_or_25_hours():
    berlin = zone("Europe/Berlin")
    spring = datetime(2026, 3, 28, 23, tzinfo=UTC)
    autumn = datetime(2026, 10, 24, 22, tzinfo=UTC)
    assert next_local_day(berlin, spring) - spring == timedelta(hours=23)
    assert next_local_day(berlin, autumn) - autumn == timedelta(hours=25)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "Europe/"])
def test_unknown_zones_are_named(name):
    with pytest.raises(ReportError, match="unknown time zone"):
        zone(name)
