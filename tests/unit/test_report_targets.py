"""Targets that fit: nearest-rank percentiles and hit rates at other targets, from working times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from plugin.core.reports.targets import duration_text, percentile, target_fit


def test_percentiles_are_durations_that_happened():
    ordered = list(range(1, 101))  # 1..100 seconds
    assert (percentile(ordered, 50), percentile(ordered, 90), percentile(ordered, 95)) == (50, 90, 95)
    assert percentile([7], 95) == 7 and percentile([], 50) is None
    assert percentile([10, 20, 30], 50) == 20


def test_hit_rates_at_other_targets_count_each_clock_against_its_own_target():
    # Four first responses against a 1 h target, one against 2 h (an older version of the policy).
    fit = target_fit([(1200, 3600), (2400, 3600), (3600, 3600), (6000, 3600), (5000, 7200)])
    assert (fit["count"], fit["target_seconds"], fit["p50"], fit["p90"]) == (5, 3600, 3600, 6000)
    rates = {rate["factor"]: (rate["target_seconds"], rate["hit_rate"]) for rate in fit["hit_rates"]}
    assert rates[1.0] == (3600, 4 / 5)  # 3600 <= 3600 is a hit; 5000 <= 7200 too
    assert rates[0.5] == (1800, 1 / 5)  # 1200 <= 1800 only (5000 > 3600)
    assert rates[2.0] == (7200, 1.0)
    assert target_fit([])["p50"] is None and target_fit([])["hit_rates"][0]["hit_rate"] is None


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 10**5)), min_size=1))
def test_hit_rates_grow_with_the_target(timed):
    rates = [rate["hit_rate"] for rate in target_fit(timed)["hit_rates"]]
    assert rates == sorted(rates) and all(0 <= rate <= 1 for rate in rates)
    fit = target_fit(timed)
    assert fit["p50"] <= fit["p90"] <= fit["p95"]


def test_durations_read_as_people_say_them():
    assert [duration_text(value) for value in (None, 42, 60, 5400, 86400 + 7260)] == [
        "n/a",
        "42s",
        "1m",
        "1h 30m",
        "1d 2h 1m",
    ]
