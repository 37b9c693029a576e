"""The default plugin set and weights (kube-scheduler's default profile, trimmed to what kubelite has)."""

from __future__ import annotations

import random

from kubelite.scheduler.framework import FilterPlugin, Framework, ScorePlugin
from kubelite.scheduler.plugins.nodeaffinity import NodeAffinity
from kubelite.scheduler.plugins.nodeports import NodePorts
from kubelite.scheduler.plugins.noderesources import BalancedAllocation, LeastAllocated, NodeResourcesFit
from kubelite.scheduler.plugins.nodeunschedulable import NodeReady, NodeUnschedulable
from kubelite.scheduler.plugins.spread import OwnerSpread
from kubelite.scheduler.plugins.tainttoleration import TaintToleration
from kubelite.scheduler.plugins.volumebinding import ClaimLookup, VolumeBinding, VolumeLookup

__all__ = [
    "BalancedAllocation",
    "LeastAllocated",
    "NodeAffinity",
    "NodePorts",
    "NodeReady",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "OwnerSpread",
    "TaintToleration",
    "VolumeBinding",
    "default_framework",
]


def default_framework(
    percentage_of_nodes_to_score: int = 0,
    rng: random.Random | None = None,
    claims: ClaimLookup | None = None,
    volumes: VolumeLookup | None = None,
) -> Framework:
    """The default plugins; with ``claims``/``volumes`` lookups, VolumeBinding too."""
    affinity, taints = NodeAffinity(), TaintToleration()
    # Cheap, most selective checks first: a node is rejected by the first filter that fails.
    filters: list[FilterPlugin] = [
        NodeReady(), NodeUnschedulable(), affinity, taints, NodeResourcesFit(), NodePorts(),
    ]  # fmt: skip
    if claims is not None and volumes is not None:
        filters.append(VolumeBinding(claims, volumes))
    scorers: list[tuple[ScorePlugin, int]] = [
        (LeastAllocated(), 1),
        (BalancedAllocation(), 1),
        (OwnerSpread(), 2),
        (taints, 3),
        (affinity, 2),
    ]
    return Framework(filters, scorers, percentage_of_nodes_to_score, rng)
