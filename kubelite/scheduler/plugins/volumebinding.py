"""VolumeBinding: a pod whose claim is bound to a node-local volume must run on that node.

kubelite's local-path provisioner (the agent, ``agent/volumes.py``) binds a claim at first use to
a PersistentVolume with required node affinity to the node that holds its directory. From then on
the data lives there, so every later pod using the claim (a StatefulSet pod recreated after a
deletion, say) is filtered to the nodes that PV's affinity matches. A claim that is not bound yet
fits anywhere: the node it first runs on becomes its home. A missing claim makes the pod
unschedulable until it appears, as upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubelite.scheduler.framework import CycleState, FilterPlugin, Status
from kubelite.scheduler.plugins.nodeaffinity import NodeSelectorTerm, parse_term
from kubelite.scheduler.snapshot import NodeInfo, PodInfo

__all__ = ["VolumeBinding"]

Obj = dict[str, Any]
# (namespace, claim name) -> the claim, or None when absent
ClaimLookup = Callable[[str, str], Obj | None]
# PV name -> the volume, or None when absent
VolumeLookup = Callable[[str], Obj | None]

_STATE_KEY = "VolumeBinding/terms"
REASON = "node(s) had volume node affinity conflict"


class VolumeBinding(FilterPlugin):
    name = "VolumeBinding"

    def __init__(self, claims: ClaimLookup, volumes: VolumeLookup) -> None:
        self.claims = claims
        self.volumes = volumes

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        required: list[tuple[NodeSelectorTerm, ...]] = []
        for volume in (pod.pod.get("spec") or {}).get("volumes") or []:
            claim_ref = (volume or {}).get("persistentVolumeClaim")
            if not isinstance(claim_ref, dict) or not claim_ref.get("claimName"):
                continue
            claim_name = str(claim_ref["claimName"])
            claim = self.claims(pod.namespace, claim_name)
            if claim is None:
                return Status.unschedulable(f'persistentvolumeclaim "{claim_name}" not found', plugin=self.name)
            pv_name = (claim.get("spec") or {}).get("volumeName")
            if not pv_name:
                continue  # not bound yet: the first node to run it becomes its home
            pv = self.volumes(str(pv_name))
            if pv is None:
                return Status.unschedulable(
                    f'persistentvolume "{pv_name}" bound to claim "{claim_name}" not found', plugin=self.name
                )
            terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
                "nodeSelectorTerms"
            ) or []
            if terms:
                required.append(tuple(parse_term(t) for t in terms if isinstance(t, dict)))
        if not required:
            return Status.skip()
        state[_STATE_KEY] = required
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for terms in state.get(_STATE_KEY, ()):
            # Node affinity of a PV: OR over its terms; every claimed volume must be satisfied.
            if not any(term.matches(node) for term in terms):
                return Status.unschedulable(REASON, plugin=self.name)
        return None
