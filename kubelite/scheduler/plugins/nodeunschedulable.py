"""Node state filters: the node must be Ready, and not cordoned (``spec.unschedulable``).

Kubernetes expresses both as taints the node lifecycle controller adds; checking the node's own
fields as well keeps a node that no controller has tainted yet (just registered, or the lifecycle
controller is not running) from receiving pods. A pod that tolerates the equivalent taint passes,
so DaemonSet pods still land on cordoned nodes.
"""

from __future__ import annotations

from kubelite.scheduler.framework import CycleState, FilterPlugin, Status
from kubelite.scheduler.plugins.tainttoleration import pod_tolerations, tolerates
from kubelite.scheduler.snapshot import NodeInfo, PodInfo

__all__ = ["NodeReady", "NodeUnschedulable"]

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


class NodeReady(FilterPlugin):
    name = "NodeReady"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.ready == "True":
            return None
        # The taint node lifecycle would set: not-ready when the kubelet says so, unreachable when
        # nobody reports (Unknown), not-ready for a node whose kubelet never posted a condition.
        key = TAINT_UNREACHABLE if node.ready == "Unknown" else TAINT_NOT_READY
        if tolerates(pod_tolerations(pod.pod), (key, "", "NoSchedule")):
            return None
        return Status.unschedulable(f"node(s) had untolerated taint {{{key}: }}", plugin=self.name)


class NodeUnschedulable(FilterPlugin):
    name = "NodeUnschedulable"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.unschedulable:
            return None
        if tolerates(pod_tolerations(pod.pod), (TAINT_UNSCHEDULABLE, "", "NoSchedule")):
            return None
        return Status.unschedulable("node(s) were unschedulable", plugin=self.name)
