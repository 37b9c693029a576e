"""NodePorts: a pod's hostPorts must be free on the node (same protocol and port, overlapping IP)."""

from __future__ import annotations

from kubelite.scheduler.framework import CycleState, FilterPlugin, Status
from kubelite.scheduler.snapshot import HostPort, NodeInfo, PodInfo

__all__ = ["NodePorts", "ports_conflict"]

_ANY_IP = "0.0.0.0"


def ports_conflict(wanted: HostPort, used: HostPort) -> bool:
    proto, port, ip = wanted
    u_proto, u_port, u_ip = used
    return proto == u_proto and port == u_port and (ip == u_ip or _ANY_IP in (ip, u_ip))


class NodePorts(FilterPlugin):
    name = "NodePorts"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if pod.host_ports else Status.skip()

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        used = node.host_ports
        if not used:
            return None
        for wanted in pod.host_ports:
            for u in used:
                if ports_conflict(wanted, u):
                    return Status.unschedulable(
                        "node(s) didn't have free ports for the requested pod ports", plugin=self.name
                    )
        return None
