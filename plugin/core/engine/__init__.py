"""The sans-I/O SLA engine: pure functions over typed data, with the clock passed in.

Imports point inward: this package knows events, policies and calendars, and nothing of Flask, RQ,
requests or SQL.
"""

from plugin.core.engine.clocks import (
    AT_RISK,
    HIT,
    MISSED,
    NONE,
    NOT_STARTED,
    ON_TRACK,
    PAUSED,
    RUNNING,
    MetricResult,
    Miss,
)
from plugin.core.engine.evaluate import Evaluation, evaluate
from plugin.core.engine.state import ConversationState, Decision, add_events, needs_history, state_from_json

__all__ = [
    "AT_RISK",
    "HIT",
    "MISSED",
    "NONE",
    "NOT_STARTED",
    "ON_TRACK",
    "PAUSED",
    "RUNNING",
    "MetricResult",
    "Miss",
    "Evaluation",
    "evaluate",
    "ConversationState",
    "Decision",
    "add_events",
    "needs_history",
    "state_from_json",
]
