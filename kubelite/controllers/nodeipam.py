"""Node IPAM: gives every Node a ``spec.podCIDR`` (and ``podCIDRs``), one subnet of the cluster CIDR each.

Safe with several servers (or a leader change mid-allocation): before a subnet is written to a
Node it is *reserved* by creating a Lease named after it in ``kube-system`` (create fails with 409
when the name exists, so the store's compare-and-swap is the lock, as for ClusterIPs in
``apiserver/alloc.py``). The Node is then updated with its read resourceVersion (a CAS: a stale
write gets 409 and is retried), and the API forbids changing a podCIDR once set. The used set is
rebuilt from the Nodes and the reservations on start, so nothing is held only in memory.
A reservation whose Node is gone, or whose Node ended up with another subnet, is deleted.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from kubelite.client import ApiError
from kubelite.controllers.base import LEASES, NODES, Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_MASK = 24
RESERVATION_NAMESPACE = "kube-system"
RESERVATION_LABEL = "kubelite.io/pod-cidr-reservation"


def reservation_name(cidr: str) -> str:
    return "podcidr-" + cidr.replace(".", "-").replace("/", "-").replace(":", "-")


def node_cidrs(node: Obj) -> set[str]:
    spec = node.get("spec") or {}
    out = {str(c) for c in spec.get("podCIDRs") or []}
    if spec.get("podCIDR"):
        out.add(str(spec["podCIDR"]))
    return out


class NodeIpamController(Controller):
    name = "nodeipam"
    primary = NODES

    def setup(self) -> None:
        extra = self.settings.extra
        self.cluster = ipaddress.ip_network(str(extra.get("cluster_cidr") or DEFAULT_CLUSTER_CIDR), strict=False)
        self.mask = int(extra.get("node_cidr_mask_size") or DEFAULT_NODE_MASK)
        if self.mask < self.cluster.prefixlen:
            raise ValueError(f"node CIDR mask /{self.mask} is larger than the cluster CIDR {self.cluster}")
        self.nodes = self.watch_primary()
        # Nodes told the range is used up: not retried on each of their heartbeats (a traceback and
        # an event per Node update at scale), only when a subnet is released.
        self._waiting: set[str] = set()
        self._reservations: dict[str, str] | None = None  # cidr -> node name; loaded on first use

    async def _load_reservations(self) -> dict[str, str]:
        if self._reservations is None:
            listed = await self.client.list(LEASES, RESERVATION_NAMESPACE, label_selector=RESERVATION_LABEL)
            self._reservations = {
                str((item.get("metadata") or {}).get("labels", {}).get(RESERVATION_LABEL, "")).replace("_", "/"):
                str((item.get("spec") or {}).get("holderIdentity", ""))
                for item in listed.get("items") or []
            }
            for holder in set(self._reservations.values()):
                if self.nodes.get_by_key(holder) is None:
                    self.queue.add(holder)  # deleted while no allocator ran: release its subnet
        return self._reservations

    def _used(self, reservations: dict[str, str]) -> set[str]:
        used = set(reservations)
        for node in self.nodes.list():
            used |= node_cidrs(node)
        return used

    async def _reserve(self, cidr: str, node_name: str) -> bool:
        """Create the reservation; False if someone else holds the subnet."""
        assert self._reservations is not None
        lease = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": reservation_name(cidr), "namespace": RESERVATION_NAMESPACE,
                         "labels": {RESERVATION_LABEL: cidr.replace("/", "_")}},
            "spec": {"holderIdentity": node_name},
        }
        try:
            await self.client.create(LEASES, lease)
        except ApiError as e:
            if e.code != 409:
                raise
            current = await self.client.get(LEASES, reservation_name(cidr), RESERVATION_NAMESPACE)
            holder = str((current.get("spec") or {}).get("holderIdentity", ""))
            self._reservations[cidr] = holder
            return holder == node_name
        self._reservations[cidr] = node_name
        return True

    async def _release(self, cidr: str) -> None:
        assert self._reservations is not None
        try:
            await self.client.delete(LEASES, reservation_name(cidr), RESERVATION_NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
        self._reservations.pop(cidr, None)
        for key in self._waiting:  # a subnet came free: try the nodes that wait for one
            self.queue.add(key)
        self._waiting.clear()

    async def reconcile(self, key: str) -> None:
        reservations = await self._load_reservations()
        node = self.nodes.get_by_key(key)
        # Reservations of this node that its (final) subnet does not use: a deleted node, or a lost race.
        keep = node_cidrs(node) if node is not None else set()
        for cidr, holder in list(reservations.items()):
            if holder == key and cidr not in keep and (node is None or keep):
                await self._release(cidr)
        if node is None or keep:
            self._waiting.discard(key)
            return
        if key in self._waiting:
            return
        used = self._used(reservations)
        for subnet in self.cluster.subnets(new_prefix=self.mask):
            cidr = str(subnet)
            if cidr in used and reservations.get(cidr) != key:
                continue
            if not await self._reserve(cidr, key):
                continue
            updated = {**node, "spec": {**(node.get("spec") or {}), "podCIDR": cidr, "podCIDRs": [cidr]}}
            try:
                await self.client.replace(NODES, updated)
            except ApiError as e:
                if e.code == 404:
                    await self._release(cidr)
                    return
                raise  # 409: the node changed; the reservation stays ours and is reused on retry
            log.info("node %s: podCIDR %s", key, cidr)
            self.recorder.event(node, "Normal", "CIDRAssignmentSucceeded", f"podCIDR {cidr} assigned")
            return
        self._waiting.add(key)
        self.recorder.event(node, "Warning", "CIDRNotAvailable", f"no free /{self.mask} left in {self.cluster}")
        log.warning("node %s: no free /%d left in cluster CIDR %s (--cluster-cidr)", key, self.mask, self.cluster)
