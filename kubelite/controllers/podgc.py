"""Pod garbage collection: pods nobody else will ever finish off.

* Terminating pods on a silent node. A graceful delete only sets deletionTimestamp; the node's
  agent removes the object once the containers have stopped. An agent that cannot reach the API
  never does, so the pod (and, for a StatefulSet, its identity) is stuck. Force-deleting it is
  safe only once the pod cannot still be running: the agent fences itself (stops every pod) when
  it has failed to renew its Lease for its fencing period (``--fencing-period``, default 20 s),
  and this controller force-deletes only after it has itself seen no heartbeat from the node for
  ``statefulset_force_delete_after`` (default 30 s), which must be longer. Silence is measured on
  our own monotonic clock from when we last *saw* the lease change (see HeartbeatTracker), which
  is never earlier than the agent's last successful renewal, so the margin only grows.
  A node that reports Ready=False but still heartbeats has a live agent that finalises its own
  pods, and does not fence: its pods are never force-deleted here.
* Orphans: pods bound to a node that no longer exists (checked with a live GET, the cache lags).
* Terminated (Succeeded/Failed) pods beyond ``terminated_pod_gc_threshold`` (settings.extra,
  Kubernetes' default 12500), oldest first.

See docs/failover.md for the timeline and how to tune it.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.client import ApiError
from kubelite.client.informer import object_key, split_key
from kubelite.controllers import podutil
from kubelite.controllers.base import LEASES, NODES, PODS, Controller
from kubelite.controllers.nodelifecycle import HeartbeatTracker

log = logging.getLogger(__name__)
Obj = dict[str, Any]

NODE_INDEX = "podgc/spec.nodeName"  # per controller: the pods informer is shared
DEFAULT_TERMINATED_THRESHOLD = 12500
# Not a pod key (those are always namespace/name): the sweep over terminated pods.
SWEEP_KEY = ":terminated-pods"


def _node_name(pod: Obj) -> str | None:
    node = (pod.get("spec") or {}).get("nodeName")
    return str(node) if node else None


def _is_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class PodGCController(Controller):
    name = "podgc"
    primary = PODS

    def setup(self) -> None:
        self.pods = self.watch_primary()
        self.pods.add_index(NODE_INDEX, lambda p: [n] if (n := _node_name(p)) else [])
        self.pods.add_handler(on_add=self._maybe_sweep, on_update=lambda _o, p: self._maybe_sweep(p))
        self.nodes = self.watch_mapped(NODES, self._pods_on_gone_node)
        self.leases = self.informer(LEASES)
        self.heartbeats = HeartbeatTracker(self.nodes, self.leases)
        self.threshold = int(self.settings.extra.get("terminated_pod_gc_threshold", DEFAULT_TERMINATED_THRESHOLD))

    def _pods_on_gone_node(self, node: Obj) -> list[str]:
        name = str((node.get("metadata") or {}).get("name"))
        if self.nodes.get(None, name) is not None:
            return []  # still there: silence is noticed from the pod's own requeue
        return [object_key(p) for p in self.pods.by_index(NODE_INDEX, name)]

    def _maybe_sweep(self, pod: Obj) -> None:
        if _is_terminated(pod):
            self.queue.add(SWEEP_KEY)

    async def reconcile(self, key: str) -> None:
        if key == SWEEP_KEY:
            await self._gc_terminated()
            return
        pod = self.pods.get_by_key(key)
        if pod is None:
            return
        node_name = _node_name(pod)
        if node_name is None:
            return
        if self.nodes.get(None, node_name) is None:
            await self._gc_orphan(pod, node_name)
            return
        if not podutil.is_terminating(pod):
            return
        silence = self.heartbeats.silence(node_name)
        wait = self.settings.statefulset_force_delete_after - silence
        if wait > 0:
            # Heartbeats reset the clock: look again when the period would have run out.
            self.queue.add_after(key, wait)
            return
        await self._force_delete(pod, f"node {node_name} silent for {silence:.0f}s")

    async def _gc_orphan(self, pod: Obj, node_name: str) -> None:
        try:
            await self.client.get(NODES, node_name)
            return  # the node exists; our cache has not caught up yet
        except ApiError as e:
            if e.code != 404:
                raise
        await self._force_delete(pod, f"bound to node {node_name}, which does not exist")

    async def _gc_terminated(self) -> None:
        terminated = [p for p in self.pods.list() if _is_terminated(p) and not podutil.is_terminating(p)]
        excess = len(terminated) - self.threshold
        if excess <= 0:
            return
        terminated.sort(key=lambda p: podutil.parse_time((p.get("metadata") or {}).get("creationTimestamp")) or 0.0)
        for pod in terminated[:excess]:
            await self._force_delete(pod, f"more than {self.threshold} terminated pods")

    async def _force_delete(self, pod: Obj, why: str) -> None:
        m = pod.get("metadata") or {}
        ns, name = split_key(object_key(pod))
        try:
            await self.client.delete(
                PODS, name, namespace=ns, grace_period_seconds=0, preconditions={"uid": str(m.get("uid"))}
            )
        except ApiError as e:
            if e.code in (404, 409):
                return  # gone already, or a new pod took the name
            raise
        log.info("force-deleted pod %s/%s: %s", ns, name, why)
