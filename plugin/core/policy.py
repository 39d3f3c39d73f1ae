"""SLA policies as typed, immutable values, and their content-hashed snapshots.

A policy is what a rule applies: targets per metric, a calendar, warning and pause settings. An applied SLA
keeps a *snapshot* (the policy's JSON and its calendar's JSON) so editing a rule file never rewrites the
history of conversations already under an SLA (docs/semantics.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plugin.core.calendar import WALL_CLOCK, Calendar, parse_calendar

FIRST_RESPONSE, NEXT_RESPONSE, RESOLUTION = "first_response", "next_response", "resolution"
METRICS = (FIRST_RESPONSE, NEXT_RESPONSE, RESOLUTION)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")

# SLA events a policy's ``notify`` routes may name (rule files write them with or without the ``sla.`` prefix).
SLA_EVENTS = ("applied", "at_risk", "missed", "hit", "corrected")
MENTION_TARGETS = ("assignee", "team")


class PolicyError(ValueError):
    """A policy or duration that cannot be used, with a message meant for the admin."""


def event_name(name: str) -> str:
    """An SLA event's short name (``"sla.missed"`` and ``"missed"`` are the same event)."""
    return name.removeprefix("sla.")


@dataclass(frozen=True)
class NotifyRoute:
    """One ``notify`` entry of a policy: these SLA events (short names) go to these destination ids."""

    events: frozenset[str]
    destinations: tuple[str, ...]


def parse_duration(value: Any) -> int:
    """Seconds from ``"30m"``, ``"4h"``, ``"2d"``, ``"90s"`` or a number of seconds.

    ``d`` is 24 hours of the policy's clock: working hours when the policy has a calendar.
    """
    if isinstance(value, bool):
        raise PolicyError(f'expected a duration such as "30m", "4h", "2d" or seconds, got {value!r}')
    if isinstance(value, (int, float)):
        seconds = value
    elif isinstance(value, str) and (found := _DURATION.match(value)):
        seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    else:
        raise PolicyError(f'expected a duration such as "30m", "4h", "2d" or seconds, got {value!r}')
    if seconds <= 0:
        raise PolicyError(f"a duration must be more than zero, got {value!r}")
    return int(round(seconds))


@dataclass(frozen=True)
class WarnBefore:
    """When a running clock turns at risk: a fixed time before the due time, or a share of the target."""

    seconds: int | None = None
    ratio: float | None = None

    def for_target(self, target_seconds: int) -> int:
        """The warning window, in working seconds, for a metric with this target."""
        if self.ratio is not None:
            return int(target_seconds * self.ratio)
        return self.seconds or 0


def parse_warn_before(value: Any) -> WarnBefore | None:
    """``"15m"`` / seconds, or a percentage such as ``"20%"``."""
    if value is None:
        return None
    if isinstance(value, str) and (found := _PERCENT.match(value)):
        ratio = float(found.group(1)) / 100
        if not 0 < ratio < 1:
            raise PolicyError(f"warn_before as a percentage must be between 0% and 100%, got {value!r}")
        return WarnBefore(ratio=ratio)
    return WarnBefore(seconds=parse_duration(value))


@dataclass(frozen=True)
class Policy:
    """One SLA policy, resolved against its calendar, identified by id and content version."""

    id: str
    name: str
    version: str
    targets: Mapping[str, int]  # metric -> seconds of working time; a metric absent is not tracked
    calendar: Calendar = WALL_CLOCK
    calendar_id: str | None = None
    description: str = ""
    warn_before: WarnBefore | None = None
    pause_when: frozenset[str] = frozenset()
    on_reopen: str = "resume"
    target: float | None = None
    mode: str = "live"
    notify: tuple[NotifyRoute, ...] = ()
    mention: tuple[str, ...] = ()
    snapshot: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def live(self) -> bool:
        """Whether the plugin writes this policy's state back to the helpdesk (shadow mode does not)."""
        return self.mode == "live"

    def destinations_for(self, event: str) -> tuple[str, ...]:
        """The destination ids an SLA event (short name) of this policy goes to, each once, in rule order."""
        found: dict[str, None] = {}
        for route in self.notify:
            if event in route.events:
                found.update(dict.fromkeys(route.destinations))
        return tuple(found)


def canonical_json(value: Any) -> str:
    """The canonical JSON text that content hashes are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def policy_snapshot(policy_id: str, policy: Mapping[str, Any], calendar: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stored form of an applied policy: its id, its JSON, its calendar's JSON."""
    return {"id": policy_id, "policy": dict(policy), "calendar": None if calendar is None else dict(calendar)}


def policy_from_snapshot(snapshot: Mapping[str, Any]) -> Policy:
    """Build a :class:`Policy` from a snapshot; the version is the sha256 of the snapshot's canonical JSON.

    Raises :class:`PolicyError` (or the calendar's error) when the snapshot is not a usable policy.
    """
    raw = snapshot["policy"]
    calendar_spec = snapshot.get("calendar")
    targets = {metric: parse_duration(raw[metric]) for metric in METRICS if raw.get(metric) is not None}
    on_reopen = raw.get("on_reopen", "resume")
    if on_reopen not in ("resume", "restart"):
        raise PolicyError(f'on_reopen must be "resume" or "restart", got {on_reopen!r}')
    mode = raw.get("mode", "live")
    if mode not in ("live", "shadow"):
        raise PolicyError(f'mode must be "live" or "shadow", got {mode!r}')
    version_source = {"policy": raw, "calendar": calendar_spec}
    return Policy(
        id=snapshot["id"],
        name=raw.get("name") or snapshot["id"],
        version=hashlib.sha256(canonical_json(version_source).encode()).hexdigest(),
        targets=targets,
        calendar=WALL_CLOCK if calendar_spec is None else parse_calendar(calendar_spec),
        calendar_id=raw.get("calendar"),
        description=raw.get("description", ""),
        warn_before=parse_warn_before(raw.get("warn_before")),
        pause_when=frozenset(raw.get("pause_when") or ()),
        on_reopen=on_reopen,
        target=raw.get("target"),
        mode=mode,
        notify=tuple(
            NotifyRoute(frozenset(event_name(name) for name in route.get("on", ())), tuple(route.get("to", ())))
            for route in raw.get("notify") or ()
        ),
        mention=tuple(raw.get("mention") or ()),
        snapshot=dict(snapshot),
    )
