"""What changed between two evaluations of one conversation: SLA log entries and write-back intents.

Pure: the store records these, the write-back workers act on them. A miss is identified by its metric and
instance (``first_response#0``, ``next_response#2``), so a retried or duplicated evaluation yields no new
miss, and a miss that a late event disproves yields one correction (docs/writeback.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from plugin.core.engine.clocks import AT_RISK, HIT, MISSED, ON_TRACK, PAUSED
from plugin.core.engine.evaluate import Evaluation
from plugin.core.events import format_time

# The status label a conversation status asks for. A resolved conversation that kept its SLA asks for the
# ``hit`` label, which the writer maps to the on-track label when the rule files define no ``labels.hit``
# (removing the label would hide a kept SLA from filters).
LABEL_FOR_STATUS = {ON_TRACK: "on_track", AT_RISK: "at_risk", MISSED: "missed", HIT: "hit"}


@dataclass(frozen=True)
class Change:
    """One entry of the append-only SLA log."""

    kind: str  # applied, policy_changed, paused, resumed, at_risk, hit, missed, miss_corrected
    at: datetime
    metric: str | None = None
    detail: Mapping[str, Any] | None = None

    @property
    def miss(self) -> str:
        """The miss a ``missed`` or ``miss_corrected`` entry is about."""
        if self.detail is None or "miss" not in self.detail:
            raise ValueError(f"a {self.kind} log entry names no miss")
        return self.detail["miss"]


def miss_key(metric: str, index: int) -> str:
    """The identity of one miss of one clock instance."""
    return f"{metric}#{index}"


def summary(evaluation: Evaluation) -> dict[str, Any]:
    """The stored form of an evaluation: the replay contract's object plus misses and label intent."""
    data = evaluation.to_replay_json()
    data["evaluated_at"] = format_time(evaluation.at)
    data["resolved"] = evaluation.resolved
    data["live"] = bool(evaluation.policy and evaluation.policy.live)
    data["label"] = LABEL_FOR_STATUS.get(evaluation.status)
    data["prioritized"] = evaluation.prioritized
    data["policy_name"] = evaluation.policy.name if evaluation.policy else None
    data["contact_id"] = evaluation.conversation.contact.id if evaluation.conversation else None
    data["misses_detail"] = {
        miss_key(miss.metric, miss.index): {
            "metric": miss.metric,
            "due_at": format_time(miss.due_at),
            "policy": miss.policy_id,
            "policy_name": miss.policy_name,
            "policy_version": miss.policy_version,
            "timezone": miss.calendar_timezone,
        }
        for miss in evaluation.misses
    }
    return data


def changes(previous: Mapping[str, Any] | None, current: Evaluation) -> list[Change]:
    """The log entries that take a conversation from the ``previous`` summary to ``current``."""
    previous = previous or {}
    now = current.at
    found: list[Change] = []
    if current.policy is not None:
        # Logged at the instant it happened in the conversation's timeline, not when it was computed.
        if previous.get("policy") is None:
            found.append(
                Change(
                    "applied",
                    current.applied_at or now,
                    detail={"policy": current.policy.id, "rule": current.rule, "version": current.policy.version},
                )
            )
        elif (previous.get("policy"), previous.get("policy_version")) != (current.policy.id, current.policy.version):
            switched_at = current.segments[-1].start if current.segments else now
            found.append(
                Change(
                    "policy_changed",
                    switched_at,
                    detail={"from": previous.get("policy"), "to": current.policy.id, "version": current.policy.version},
                )
            )
    before_metrics = previous.get("metrics") or {}
    for metric, result in current.metrics.items():
        before = (before_metrics.get(metric) or {}).get("status")
        if before == result.status or result.status == MISSED:
            continue  # misses are logged per instance below
        if result.status in (PAUSED, AT_RISK, HIT):
            at = result.stopped_at if result.status == HIT and result.stopped_at else now
            found.append(Change(result.status, at, metric))
        elif before == PAUSED:
            found.append(Change("resumed", now, metric))
    before_misses = previous.get("misses_detail") or {}
    current_misses = {miss_key(miss.metric, miss.index): miss for miss in current.misses}
    for key, miss in current_misses.items():
        if key not in before_misses:
            found.append(Change("missed", miss.due_at, miss.metric, {"miss": key, "policy": miss.policy_id}))
    for key, detail in before_misses.items():
        if key not in current_misses:
            found.append(Change("miss_corrected", now, detail["metric"], {"miss": key}))
    return found


LABELS_KEY = "labels"
PRIORITY_KEY = "priority"
ATTRIBUTES_KEY = "attributes"
# Intents that a newer one replaces (and resets to pending); every other key is recorded once, ever.
REPLACED_KEYS = (LABELS_KEY, ATTRIBUTES_KEY)
# The conversation custom attributes the plugin keeps (writeback.custom_attributes), in definition order.
SLA_ATTRIBUTES = ("sla_status", "sla_policy", "sla_next_due_at")


def sla_attributes(current: Mapping[str, Any]) -> dict[str, str] | None:
    """The SLA as conversation custom attributes: status, policy name, and the earliest due time of a running
    clock (ISO 8601, empty when none runs); None when no live policy applies (the attributes are removed)."""
    if not current.get("live") or current.get("policy") is None:
        return None
    running = sorted(
        metric["due_at"]
        for metric in (current.get("metrics") or {}).values()
        if metric.get("status") in ("running", "at_risk") and metric.get("due_at")
    )
    return {
        "sla_status": current["status"],
        "sla_policy": current.get("policy_name") or current["policy"],
        "sla_next_due_at": running[0] if running else "",
    }


def mentions_of(evaluation: Evaluation | None) -> tuple[dict[str, Any], ...] | None:
    """Who the policy's ``mention`` names on this conversation: ``{"type": "user"|"team", "id", "name"}``
    for an assigned person and for the team; None when the policy has no ``mention``."""
    if evaluation is None or evaluation.policy is None or not evaluation.policy.mention:
        return None
    conversation = evaluation.conversation
    found: list[dict[str, Any]] = []
    if conversation is not None:
        wanted = evaluation.policy.mention
        if "assignee" in wanted and conversation.assignee_id is not None and conversation.assignee_name:
            found.append({"type": "user", "id": conversation.assignee_id, "name": conversation.assignee_name})
        if "team" in wanted and conversation.team_id is not None and conversation.team_name:
            found.append({"type": "team", "id": conversation.team_id, "name": conversation.team_name})
    return tuple(found)


def writeback_intents(
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    found: Sequence[Change],
    evaluation: Evaluation | None = None,
    custom_attributes: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """The write-back work a change asks for, keyed so that recording it twice does nothing twice.

    ``labels`` carries the status label wanted now (None: the plugin's labels removed, e.g. when a policy
    goes to shadow mode); ``note:<miss>`` one miss note; ``correction:<miss>`` one correction note;
    ``at_risk:<metric>@<due>`` one at-risk note per episode, only when the policy has ``mention``;
    ``priority`` the priority a ``prioritize`` rule gave the conversation, to set in the helpdesk once;
    with *custom_attributes*, ``attributes`` the :func:`sla_attributes` wanted now (None: remove them).
    Shadow policies write nothing. With *evaluation*, miss and at-risk notes carry the people the policy
    mentions (its ``mention``: the assignee and/or the team, as the conversation shows them now), and a
    miss note the time its clock stopped when it stopped late.
    """
    previous = previous or {}
    intents: list[tuple[str, dict[str, Any]]] = []
    wanted = current["label"] if current["live"] else None
    had = previous.get("label") if previous.get("live") else None
    if wanted != had or (wanted is not None and not previous):
        intents.append((LABELS_KEY, {"label": wanted}))
    if custom_attributes:
        attributes = sla_attributes(current)
        if attributes != sla_attributes(previous) or (attributes is not None and not previous):
            intents.append((ATTRIBUTES_KEY, {"attributes": attributes}))
    shadow = evaluation is not None and evaluation.policy is not None and not evaluation.policy.live
    if current.get("prioritized") and current["prioritized"] != previous.get("prioritized") and not shadow:
        # Recorded once per conversation (the key is never reset): the helpdesk's priority is set once.
        rule = evaluation.prioritized_by if evaluation is not None else None
        intents.append((PRIORITY_KEY, {"kind": "priority", "priority": current["prioritized"], "rule": rule}))
    if not current["live"]:
        return intents
    mentions = mentions_of(evaluation)
    metrics = current.get("metrics") or {}
    for change in found:
        if change.kind == "missed":
            key = change.miss
            detail = current["misses_detail"][key]
            stopped = (metrics.get(detail["metric"]) or {}).get("stopped_at")
            late_stop = stopped if stopped and stopped > detail["due_at"] else None
            note = {"kind": "miss", "miss": key, **detail, "stopped_at": late_stop, "mentions": list(mentions or ())}
            intents.append((f"note:{key}", note))
        elif change.kind == AT_RISK and mentions is not None and evaluation is not None and change.metric:
            policy = evaluation.policy
            due = (metrics.get(change.metric) or {}).get("due_at")
            if policy is None or due is None:
                continue
            note = {
                "kind": "at_risk",
                "metric": change.metric,
                "due_at": due,
                "policy": policy.id,
                "policy_name": policy.name,
                "policy_version": policy.version,
                "timezone": policy.calendar.timezone,
                "mentions": list(mentions),
            }
            intents.append((f"at_risk:{change.metric}@{due}", note))
        elif change.kind == "miss_corrected":
            key = change.miss
            intents.append((f"correction:{key}", {"kind": "correction", "miss": key, **previous["misses_detail"][key]}))
    return intents
