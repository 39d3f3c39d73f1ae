"""Targets that fit: how long conversations took in working time, and how a policy's target would have
done at other values, so an admin sees whether a target is realistic before editing it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

PERCENTILES = (50, 90, 95)
FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)  # the current target times these
TIMED = ("working_seconds", "target_seconds")  # the stored columns (per metric prefix) these figures read


def percentile(ordered: Sequence[int], share: float) -> int | None:
    """The nearest-rank percentile of sorted values: the smallest value with at least ``share`` % of the
    values at or below it (an actual duration, never an interpolation); None without values."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share / 100 * len(ordered)) - 1)]


def target_fit(timed: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Figures of one metric of one policy from ``(working seconds, target seconds)`` of each stopped clock.

    ``target_seconds`` is the target most of them were judged against; ``hit_rates`` give, per factor, the
    share that would have been in time at ``factor x`` each one's own target (``<=``, as a hit is).
    """
    ordered = sorted(seconds for seconds, _ in timed)
    common = Counter(target for _, target in timed).most_common(1)
    return {
        "count": len(ordered),
        "target_seconds": common[0][0] if common else None,
        **{f"p{share}": percentile(ordered, share) for share in PERCENTILES},
        "hit_rates": [
            {
                "factor": factor,
                "target_seconds": round(common[0][0] * factor) if common else None,
                "hit_rate": (sum(1 for seconds, target in timed if seconds <= factor * target) / len(timed))
                if timed
                else None,
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
