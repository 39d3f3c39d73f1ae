"""Targets that fit: a duration histogram relative to each clock's own target gives exact hit rates at the
factors and percentiles as upper bounds within a twentieth of the target."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from plugin.core.reports.targets import CAP, OVER, STEPS, bucket_of, duration_text, merge, percentile, target_fit

timed_clocks = st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 10**5)), min_size=1)


def histogram(timed: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(bucket, target, clocks) of (seconds, target) pairs, as the SQL groups them."""
    return merge((bucket_of(seconds, target), target, 1) for seconds, target in timed)


def test_buckets_are_twentieths_of_the_target_rounded_up_and_one_past_the_cap():
    assert [bucket_of(seconds, 3600) for seconds in (0, 1, 180, 181, 3600, 3601, 36000, 36001)] == [
        0,
        1,
        1,
        2,
        20,
        21,
        200,
        OVER,
    ]
    assert OVER == STEPS * CAP + 1


def test_percentiles_are_upper_bounds_of_the_durations_that_happened():
    buckets = histogram([(seconds, 100) for seconds in range(1, 101)])  # 1..100 s against 100 s: 5 s buckets
    assert [percentile(buckets, share) for share in (50, 90, 95)] == [(50, False), (90, False), (95, False)]
    assert percentile(histogram([(7, 100)]), 95) == (10, False)  # 7 s: at most 10 s
    assert percentile([], 50) == (None, False)
    assert percentile(histogram([(1, 100), (2000, 100)]), 95) == (None, True)  # 20 x the target: over the cap


def test_hit_rates_at_other_targets_count_each_clock_against_its_own_target():
    # Four first responses against a 1 h target, one against 2 h (an older version of the policy).
    fit = target_fit(histogram([(1200, 3600), (2400, 3600), (3600, 3600), (6000, 3600), (5000, 7200)]))
    assert (fit["count"], fit["target_seconds"], fit["p50"], fit["p90"], fit["over_cap"]) == (5, 3600, 3600, 6120, [])
    rates = {rate["factor"]: (rate["target_seconds"], rate["hit_rate"]) for rate in fit["hit_rates"]}
    assert rates[1.0] == (3600, 4 / 5)  # 3600 <= 3600 is a hit; 5000 <= 7200 too
    assert rates[0.5] == (1800, 1 / 5)  # 1200 <= 1800 only (5000 > 3600)
    assert rates[2.0] == (7200, 1.0)
    assert target_fit([])["p50"] is None and target_fit([])["hit_rates"][0]["hit_rate"] is None


def test_the_common_target_is_the_shorter_one_on_a_tie():
    assert target_fit(histogram([(10, 7200), (10, 3600)]))["target_seconds"] == 3600


@given(timed_clocks)
def test_hit_rates_are_exact_and_percentiles_within_a_twentieth_of_the_target(timed):
    fit = target_fit(histogram(timed))
    for rate in fit["hit_rates"]:
        exact = sum(1 for seconds, target in timed if seconds <= rate["factor"] * target) / len(timed)
        assert rate["hit_rate"] == exact
    rates = [rate["hit_rate"] for rate in fit["hit_rates"]]
    assert rates == sorted(rates) and all(0 <= rate <= 1 for rate in rates)
    ordered = sorted(seconds for seconds, _ in timed)
    # Within a twentieth of the widest target; a clock over the cap counts as longer than every other.
    widest = max(target for _, target in timed) / STEPS
    capped = any(seconds > CAP * target for seconds, target in timed)
    for share in (50, 90, 95):
        true = ordered[max(0, math.ceil(share / 100 * len(ordered)) - 1)]
        bound = fit[f"p{share}"]
        if bound is None:
            assert f"p{share}" in fit["over_cap"] and capped
        else:
            assert true <= bound and (capped or bound < true + widest)
    assert fit["count"] == len(timed) == sum(Counter(target for _, target in timed).values())


def test_durations_read_as_people_say_them():
    assert [duration_text(value) for value in (None, 42, 60, 5400, 86400 + 7260)] == [
        "n/a",
        "42s",
        "1m",
        "1h 30m",
        "1d 2h 1m",
    ]
