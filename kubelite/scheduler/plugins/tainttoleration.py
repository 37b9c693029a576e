"""TaintToleration: NoSchedule/NoExecute taints the pod does not tolerate rule a node out; untolerated
PreferNoSchedule taints only lower its score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubelite.scheduler.framework import (
    MAX_NODE_SCORE,
    CycleState,
    FilterPlugin,
    ScorePlugin,
    Status,
)
from kubelite.scheduler.snapshot import NodeInfo, PodInfo, Taint

__all__ = ["TaintToleration", "Toleration", "pod_tolerations", "tolerates"]

# (key, operator, value, effect)
Toleration = tuple[str, str, str, str]
_STATE_KEY = "TaintToleration/tolerations"
_HARD = ("NoSchedule", "NoExecute")


def pod_tolerations(pod: dict[str, Any]) -> tuple[Toleration, ...]:
    return tuple(
        (str(t.get("key") or ""), str(t.get("operator") or "Equal"), str(t.get("value") or ""),
         str(t.get("effect") or ""))
        for t in (pod.get("spec") or {}).get("tolerations") or []
    )  # fmt: skip


def tolerates(tolerations: Sequence[Toleration], taint: Taint) -> bool:
    """Does any toleration match the taint (v1.Toleration.ToleratesTaint)?"""
    key, value, effect = taint
    for t_key, op, t_value, t_effect in tolerations:
        if t_effect and t_effect != effect:
            continue
        if t_key and t_key != key:
            continue  # an empty key with operator Exists tolerates every taint
        if op == "Exists" or (op == "Equal" and t_value == value):
            return True
    return False


def _tolerations(state: CycleState, pod: PodInfo) -> tuple[Toleration, ...]:
    tols = state.get(_STATE_KEY)
    if tols is None:
        tols = state[_STATE_KEY] = pod_tolerations(pod.pod)
    return tols


class TaintToleration(FilterPlugin, ScorePlugin):
    name = "TaintToleration"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        _tolerations(state, pod)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.taints:
            return None
        tols = _tolerations(state, pod)
        for taint in node.taints:
            if taint[2] in _HARD and not tolerates(tols, taint):
                return Status.unschedulable(
                    f"node(s) had untolerated taint {{{taint[0]}: {taint[1]}}}", plugin=self.name
                )
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if not any(t[2] == "PreferNoSchedule" for n in nodes for t in n.taints):
            return Status.skip()
        _tolerations(state, pod)
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """Raw score: the number of untolerated PreferNoSchedule taints (fewer is better)."""
        tols = _tolerations(state, pod)
        return sum(1 for t in node.taints if t[2] == "PreferNoSchedule" and not tolerates(tols, t))

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        worst = max(scores, default=0)
        for i, s in enumerate(scores):
            scores[i] = MAX_NODE_SCORE if worst == 0 else MAX_NODE_SCORE * (worst - s) // worst
