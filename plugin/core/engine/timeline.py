"""A clock's timeline, for people: when it ran, when it was paused and why, when the office was closed.

Pure: built from an evaluation's judgements and the policy's calendar. Times are shown in the calendar's
time zone (docs/semantics.md: "every decision is explainable").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from plugin.core.engine.clocks import Judgement, pause_spans
from plugin.core.engine.evaluate import Evaluation

RUNNING_STATE, OUTSIDE_HOURS, RESOLVED_STATE = "running", "outside hours", "resolved"


@dataclass(frozen=True)
class Piece:
    """The clock was in ``state`` from ``start`` to ``end``."""

    start: datetime
    end: datetime
    state: str

    def to_json(self, zone: ZoneInfo) -> dict[str, str]:
        """``from`` / ``to`` in the calendar's zone, with their offset."""
        return {
            "from": self.start.astimezone(zone).isoformat(),
            "to": self.end.astimezone(zone).isoformat(),
            "state": self.state,
        }


def clock_timeline(evaluation: Evaluation, metric: str) -> list[Piece]:
    """The latest clock instance of ``metric``: from its start to its stop (or the evaluation instant)."""
    judgements = evaluation.judgements.get(metric) or []
    if not judgements or evaluation.facts is None:
        return []
    return _pieces(judgements[-1], evaluation)


def timelines_json(evaluation: Evaluation) -> dict[str, list[dict[str, str]]]:
    """Every metric's timeline, JSON-ready, in the policy calendar's zone."""
    if evaluation.policy is None:
        return {}
    zone = ZoneInfo(evaluation.policy.calendar.timezone)
    return {
        metric: [piece.to_json(zone) for piece in clock_timeline(evaluation, metric)] for metric in evaluation.metrics
    }


def _pieces(judgement: Judgement, evaluation: Evaluation) -> list[Piece]:
    instance, policy = judgement.instance, judgement.policy
    end = instance.stop or evaluation.at
    if end <= instance.start:
        return []
    assert evaluation.facts is not None  # a judged clock was judged on the conversation's facts
    labelled_breaks = [
        (start, stop, f"paused ({status})")
        for start, stop, status in pause_spans(policy, evaluation.facts, evaluation.at)
    ]
    labelled_breaks += [(start, stop, RESOLVED_STATE) for start, stop in instance.breaks]
    pieces: list[Piece] = []
    for start, stop, kind in policy.calendar.segments(instance.start, end):
        for piece in _split(start, stop, kind, labelled_breaks):
            if pieces and pieces[-1].state == piece.state and pieces[-1].end == piece.start:
                pieces[-1] = Piece(pieces[-1].start, piece.end, piece.state)
            else:
                pieces.append(piece)
    return pieces


def _split(
    start: datetime, end: datetime, kind: str, labelled_breaks: list[tuple[datetime, datetime, str]]
) -> list[Piece]:
    """One calendar segment cut by the breaks that overlap it; a pause shows even outside hours."""
    base = RUNNING_STATE if kind == "open" else OUTSIDE_HOURS if kind == "closed" else kind
    cuts = sorted(
        {start, end}
        | {
            moment
            for break_start, break_end, _ in labelled_breaks
            for moment in (break_start, break_end)
            if start < moment < end
        }
    )
    pieces = []
    for left, right in zip(cuts, cuts[1:], strict=False):
        state = next(
            (label for break_start, break_end, label in labelled_breaks if break_start <= left and right <= break_end),
            base,
        )
        pieces.append(Piece(left, right, state))
    return pieces
