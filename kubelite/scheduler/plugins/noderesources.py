"""Node resources: NodeResourcesFit (does the request fit into allocatable minus what is placed),
and two scores, LeastAllocated (prefer emptier nodes) and BalancedAllocation (prefer nodes whose
cpu and memory use stay in proportion)."""

from __future__ import annotations

from kubelite.scheduler.framework import MAX_NODE_SCORE, CycleState, FilterPlugin, ScorePlugin, Status
from kubelite.scheduler.snapshot import NodeInfo, PodInfo

__all__ = ["BalancedAllocation", "LeastAllocated", "NodeResourcesFit", "insufficient_resources"]


def insufficient_resources(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Every reason the pod does not fit (kube-scheduler lists all of them, not just the first)."""
    reasons: list[str] = []
    if node.pod_count + 1 > node.alloc_pods:
        reasons.append("Too many pods")
    if pod.cpu and node.req_cpu + pod.cpu > node.alloc_cpu:
        reasons.append("Insufficient cpu")
    if pod.memory and node.req_memory + pod.memory > node.alloc_memory:
        reasons.append("Insufficient memory")
    for name, amount in pod.scalar.items():
        if node.req_scalar.get(name, 0) + amount > node.alloc_scalar.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


class NodeResourcesFit(FilterPlugin):
    name = "NodeResourcesFit"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        # The common case inline: a handful of integer comparisons per node.
        if (
            node.pod_count < node.alloc_pods
            and node.req_cpu + pod.cpu <= node.alloc_cpu
            and node.req_memory + pod.memory <= node.alloc_memory
            and not pod.scalar
        ):
            return None
        reasons = insufficient_resources(pod, node)
        return Status.unschedulable(*reasons, plugin=self.name) if reasons else None


def _free_share(requested: int, allocatable: int) -> int:
    if allocatable <= 0 or requested > allocatable:
        return 0
    return (allocatable - requested) * MAX_NODE_SCORE // allocatable


class LeastAllocated(ScorePlugin):
    """Mean free share of cpu and memory after placing the pod (non-zero requests, as upstream)."""

    name = "NodeResourcesLeastAllocated"

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        cpu = _free_share(node.nonzero_cpu + pod.nonzero_cpu, node.alloc_cpu)
        mem = _free_share(node.nonzero_memory + pod.nonzero_memory, node.alloc_memory)
        return (cpu + mem) // 2


class BalancedAllocation(ScorePlugin):
    """100 minus the spread of cpu and memory utilisation fractions (std dev of two = |a-b|/2)."""

    name = "NodeResourcesBalancedAllocation"

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if node.alloc_cpu <= 0 or node.alloc_memory <= 0:
            return 0
        cpu = min(1.0, (node.nonzero_cpu + pod.nonzero_cpu) / node.alloc_cpu)
        mem = min(1.0, (node.nonzero_memory + pod.nonzero_memory) / node.alloc_memory)
        return int((1.0 - abs(cpu - mem) / 2) * MAX_NODE_SCORE)
