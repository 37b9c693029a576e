"""OwnerSpread: replicas of one controller (same controller ownerReference uid) prefer nodes that run
fewer of them, so a ReplicaSet or StatefulSet lands across nodes rather than on the emptiest one."""

from __future__ import annotations

from collections.abc import Sequence

from kubelite.scheduler.framework import MAX_NODE_SCORE, CycleState, ScorePlugin, Status
from kubelite.scheduler.snapshot import NodeInfo, PodInfo

__all__ = ["OwnerSpread"]


class OwnerSpread(ScorePlugin):
    name = "OwnerSpread"

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        return None if pod.owner_uid else Status.skip()

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """Raw score: how many pods of the same owner the node already has."""
        assert pod.owner_uid is not None
        return node.owners.get(pod.owner_uid, 0)

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        most = max(scores, default=0)
        for i, s in enumerate(scores):
            scores[i] = MAX_NODE_SCORE if most == 0 else MAX_NODE_SCORE * (most - s) // most
