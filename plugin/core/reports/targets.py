"""Targets that fit: how long conversations took in working time, and how a policy's target would have
done at other values, so an admin sees whether a target is realistic before editing it.

The figures come from a duration histogram: each stopped clock falls in a bucket relative to its own target,
``bucket = ceil(STEPS * seconds / target)`` (a twentieth of the target wide), every clock over ``CAP`` times
its target in one last bucket (:data:`OVER`). The hit rates at :data:`FACTORS` are exact (``seconds <= f x
target`` exactly when ``bucket <= STEPS x f``, a whole number), and a percentile is its bucket's upper edge:
the time was at most that, and at most a twentieth of the target less. The histogram is summed in SQL, from
the rollups or the base table alike (plugin/adapters/rollups.py), so the figures do not depend on which.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

PERCENTILES = (50, 90, 95)
FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)  # the current target times these
STEPS = 20  # buckets per target: percentiles are rounded up to a twentieth of the target
CAP = 10  # clocks over CAP x their target share one bucket
OVER = STEPS * CAP + 1
assert all(float(STEPS * factor).is_integer() for factor in FACTORS)  # so that the hit rates are exact

Bucket = tuple[int, int, int]  # (bucket, target seconds, clocks)


def bucket_of(seconds: int, target: int) -> int:
    """The histogram bucket of a clock that took ``seconds`` against ``target`` seconds (integer
    arithmetic, the same the SQL does): ``ceil(STEPS x seconds / target)``, or :data:`OVER` past the cap."""
    return OVER if seconds > CAP * target else (STEPS * seconds + target - 1) // target


def upper_edge(bucket: int, target: int) -> int | None:
    """The most seconds a clock of this bucket took (None: over the cap, no bound kept)."""
    return None if bucket >= OVER else bucket * target // STEPS


def percentile(buckets: Sequence[Bucket], share: float) -> tuple[int | None, bool]:
    """The nearest-rank percentile of the histogram as ``(upper edge, over the cap)``: the upper edge of the
    bucket holding the clock at rank ``ceil(share % x count)`` in order of upper edges; ``(None, False)``
    without clocks, ``(None, True)`` when that clock took over :data:`CAP` times its target."""
    total = sum(clocks for _, _, clocks in buckets)
    if not total:
        return None, False
    rank = max(1, math.ceil(share / 100 * total))
    seen = 0
    # Ordered by upper edge; STEPS is common to all, so bucket x target orders them, OVER last.
    for bucket, target, clocks in sorted(buckets, key=lambda row: (row[0] >= OVER, row[0] * row[1])):
        seen += clocks
        if seen >= rank:
            return upper_edge(bucket, target), bucket >= OVER
    raise AssertionError("the rank is within the total")  # pragma: no cover


def merge(rows: Iterable[Bucket]) -> list[Bucket]:
    """Rows of the same bucket and target added (a histogram read in parts: rollups and base table)."""
    found: Counter[tuple[int, int]] = Counter()
    for bucket, target, clocks in rows:
        found[(bucket, target)] += clocks
    return [(bucket, target, clocks) for (bucket, target), clocks in sorted(found.items()) if clocks]


def target_fit(buckets: Sequence[Bucket]) -> dict[str, Any]:
    """Figures of one metric of one policy from its histogram ``(bucket, target seconds, clocks)``.

    ``target_seconds`` is the target most clocks were judged against (the shorter one on a tie);
    ``p50``/``p90``/``p95`` are upper bounds (see :func:`percentile`), None past the cap, and ``over_cap``
    names those; ``hit_rates`` give, per factor, the share that would have been in time at ``factor x``
    each one's own target (``<=``, as a hit is).
    """
    total = sum(clocks for _, _, clocks in buckets)
    per_target: Counter[int] = Counter()
    for _, target, clocks in buckets:
        per_target[target] += clocks
    common = max(per_target.items(), key=lambda item: (item[1], -item[0]))[0] if per_target else None
    found = {share: percentile(buckets, share) for share in PERCENTILES}
    return {
        "count": total,
        "target_seconds": common,
        **{f"p{share}": edge for share, (edge, _) in found.items()},
        "over_cap": [f"p{share}" for share, (_, over) in found.items() if over],
        "hit_rates": [
            {
                "factor": factor,
                "target_seconds": round(common * factor) if common is not None else None,
                "hit_rate": (
                    sum(clocks for bucket, _, clocks in buckets if bucket <= STEPS * factor) / total if total else None
                ),
            }
            for factor in FACTORS
        ],
    }


def duration_text(seconds: int | None) -> str:
    """``5400`` -> ``"1h 30m"``; under a minute in seconds; None -> ``"n/a"``."""
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    return " ".join(part for part in parts if part)
