"""The node lifecycle controller: notices nodes whose agent went silent, and evicts their pods.

As in Kubernetes (pkg/controller/nodelifecycle):

* Health. An agent heartbeats by renewing its Lease in ``kube-node-lease`` (and by posting node
  status). Every ``node_monitor_period`` each node is checked; one not heard from for
  ``node_monitor_grace_period`` gets its conditions set to Unknown ("Kubelet stopped posting node
  status."), and the pods on it are marked not Ready so Services stop sending them traffic.
  "Heard from" is measured on this process's monotonic clock, from when a *change* of the lease's
  renewTime (or the Ready heartbeat) was observed, never by comparing the agent's timestamps with
  our clock: clock skew between machines cannot make a live node look dead.
* Taints. Ready=Unknown -> ``node.kubernetes.io/unreachable:NoExecute``, Ready=False ->
  ``node.kubernetes.io/not-ready:NoExecute``, Ready=True -> neither; ``timeAdded`` records when.
* Taint-based eviction. A pod on a node with a NoExecute taint it does not tolerate is deleted
  (gracefully) now; one tolerating it with ``tolerationSeconds`` is deleted that long after the
  taint's ``timeAdded``; one tolerating it without a limit stays. The API server does not add the
  DefaultTolerationSeconds admission tolerations, so a pod with no toleration for not-ready /
  unreachable is treated as tolerating them for ``default_toleration_seconds``.

Eviction is a normal graceful DELETE: the pod becomes terminating, its owner (which ignores
terminating pods) creates a replacement elsewhere. The pod object itself goes once the agent
finalises it, or, on a node that stays silent, when the pod GC force-deletes it after the fencing
safety period (see ``podgc`` and docs/failover.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.apiserver.meta import rfc3339
from kubelite.client import ApiError, Informer
from kubelite.controllers import podutil
from kubelite.controllers.base import LEASES, NODES, PODS, Controller

__all__ = [
    "NODE_LEASE_NAMESPACE",
    "TAINT_NOT_READY",
    "TAINT_UNREACHABLE",
    "HeartbeatTracker",
    "NodeLifecycleController",
    "desired_taints",
    "toleration_matches",
    "toleration_seconds",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

NODE_LEASE_NAMESPACE = "kube-node-lease"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
# The conditions an agent owns; when it goes silent their values are no longer known.
AGENT_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
NODE_INDEX = "nodelifecycle/spec.nodeName"  # per controller: the pods informer is shared
NEVER_UPDATED = "NodeStatusNeverUpdated"


# ---- heartbeats -------------------------------------------------------------------------------


@dataclass
class _Heard:
    signature: tuple[str | None, str | None]
    at: float  # time.monotonic() when this signature was first observed


class HeartbeatTracker:
    """When each node was last heard from, by this process's monotonic clock.

    A heartbeat is any change of the node's Lease renewTime or of its Ready condition's
    lastHeartbeatTime. A node first seen counts as heard from now (Kubernetes does the same):
    after a restart, a dead node is detected one grace period later, never earlier.
    """

    def __init__(self, nodes: Informer, leases: Informer) -> None:
        self.nodes = nodes
        self.leases = leases
        self._heard: dict[str, _Heard] = {}
        # Record heartbeats as the watch delivers them, not when some reconcile happens to look.
        nodes.add_handler(
            on_add=lambda n: self.observe(_name(n)),
            on_update=lambda _o, n: self.observe(_name(n)),
            on_delete=self._forget,
        )
        leases.add_handler(
            on_add=self._on_lease,
            on_update=lambda _o, lease: self._on_lease(lease),
        )

    def _forget(self, node: Obj) -> None:
        self._heard.pop(_name(node), None)

    def _on_lease(self, lease: Obj) -> None:
        if (lease.get("metadata") or {}).get("namespace") == NODE_LEASE_NAMESPACE:
            self.observe(_name(lease))

    def signature(self, node_name: str) -> tuple[str | None, str | None]:
        lease = self.leases.get(NODE_LEASE_NAMESPACE, node_name)
        renew = (lease.get("spec") or {}).get("renewTime") if lease else None
        node = self.nodes.get(None, node_name)
        ready = podutil.get_condition(node, "Ready") if node else None
        if ready is not None and ready.get("reason") == NEVER_UPDATED:
            ready = None  # written by us, not by an agent
        return (str(renew) if renew else None, str(ready.get("lastHeartbeatTime")) if ready else None)

    def observe(self, node_name: str) -> None:
        sig = self.signature(node_name)
        heard = self._heard.get(node_name)
        if heard is None or heard.signature != sig:
            self._heard[node_name] = _Heard(sig, time.monotonic())

    def silence(self, node_name: str) -> float:
        """Seconds since the node was last heard from."""
        self.observe(node_name)
        return time.monotonic() - self._heard[node_name].at


# ---- taints and tolerations -------------------------------------------------------------------


def toleration_matches(tol: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if tol.get("effect") and tol.get("effect") != taint.get("effect"):
        return False
    if tol.get("key") and tol.get("key") != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    return op == "Equal" and (tol.get("value") or "") == (taint.get("value") or "")


def toleration_seconds(pod: Obj, taint: Mapping[str, Any], default_seconds: float) -> float | None:
    """How long ``pod`` may stay on a node with NoExecute ``taint``: 0 if it does not tolerate it,
    None if forever. As in Kubernetes, the first matching toleration decides."""
    for tol in (pod.get("spec") or {}).get("tolerations") or []:
        if toleration_matches(tol, taint):
            seconds = tol.get("tolerationSeconds")
            return None if seconds is None else max(0.0, float(seconds))
    # DefaultTolerationSeconds admission, applied here since the API server does not.
    if taint.get("key") in (TAINT_NOT_READY, TAINT_UNREACHABLE):
        return float(default_seconds)
    return 0.0


def _parse_time(value: Any) -> float | None:
    return podutil.parse_time(value)


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _newest(cached: Obj | None, written: Obj | None) -> Obj | None:
    """The cached object, unless what we wrote is newer (same object, higher resourceVersion)."""
    if cached is None or written is None:
        return cached
    same = (cached.get("metadata") or {}).get("uid") == (written.get("metadata") or {}).get("uid")
    return written if same and _rv(written) > _rv(cached) else cached


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _set_condition_unknown(cond: Obj | None, type_: str, now: str, created: str) -> Obj:
    if cond is None:
        return {
            "type": type_,
            "status": "Unknown",
            "reason": NEVER_UPDATED,
            "message": "Kubelet never posted node status.",
            "lastHeartbeatTime": created,
            "lastTransitionTime": now,
        }
    new = dict(cond)
    if new.get("status") != "Unknown":
        new["lastTransitionTime"] = now
    new["status"] = "Unknown"
    new["reason"] = "NodeStatusUnknown"
    new["message"] = "Kubelet stopped posting node status."
    return new


def desired_taints(node: Obj, now: str) -> list[Obj]:
    """The node's taints with the not-ready/unreachable NoExecute taint matching its Ready condition."""
    ready = podutil.get_condition(node, "Ready")
    if ready is None:
        # Not reported yet: the health check adds Ready=Unknown after the grace period, then we taint.
        return list((node.get("spec") or {}).get("taints") or [])
    want = {"Unknown": TAINT_UNREACHABLE, "False": TAINT_NOT_READY}.get(str(ready.get("status")))
    taints: list[Obj] = []
    have_wanted = False
    for t in (node.get("spec") or {}).get("taints") or []:
        if t.get("effect") == "NoExecute" and t.get("key") in (TAINT_UNREACHABLE, TAINT_NOT_READY):
            if t.get("key") != want:
                continue
            have_wanted = True  # keep its timeAdded: tolerationSeconds count from it
        taints.append(t)
    if want is not None and not have_wanted:
        taints.append({"key": want, "effect": "NoExecute", "timeAdded": now})
    return taints


# ---- the controller ---------------------------------------------------------------------------


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    primary = NODES

    def setup(self) -> None:
        self.nodes = self.watch_primary()
        self.leases = self.watch_mapped(LEASES, self._node_of_lease)
        self.pods = self.watch_mapped(PODS, self._node_of_pod)
        self.pods.add_index(NODE_INDEX, lambda p: [n] if (n := (p.get("spec") or {}).get("nodeName")) else [])
        self.heartbeats = HeartbeatTracker(self.nodes, self.leases)
        # The node as we last wrote it: newer than the cache until our write's watch event arrives.
        self._written: dict[str, Obj] = {}
        # First sighting of a NoExecute taint that carries no timeAdded (one a user added by hand).
        self._taint_seen: dict[tuple[str, str, str], float] = {}

    @staticmethod
    def _node_of_lease(lease: Obj) -> list[str]:
        m = lease.get("metadata") or {}
        return [str(m.get("name"))] if m.get("namespace") == NODE_LEASE_NAMESPACE else []

    @staticmethod
    def _node_of_pod(pod: Obj) -> list[str]:
        node = (pod.get("spec") or {}).get("nodeName")
        return [str(node)] if node else []

    async def reconcile(self, key: str) -> None:
        node = _newest(self.nodes.get(None, key), self._written.get(key))
        if node is None:
            self._written.pop(key, None)
            for k in [k for k in self._taint_seen if k[0] == key]:
                del self._taint_seen[k]
            return
        try:
            node = await self._monitor_health(node)
            node = await self._update_taints(node)
            self._written[key] = node
            if self._ready_status(node) == "Unknown":
                await self._mark_pods_not_ready(key)
            next_check = await self._evict(node)
        finally:
            # Level-based polling: every node is looked at again each monitor period, whatever happens.
            self.queue.add_after(key, self.settings.node_monitor_period)
        if next_check is not None:
            self.queue.add_after(key, next_check)

    @staticmethod
    def _ready_status(node: Obj) -> str | None:
        ready = podutil.get_condition(node, "Ready")
        return str(ready.get("status")) if ready else None

    async def _monitor_health(self, node: Obj) -> Obj:
        """Set the agent's conditions to Unknown once it has been silent for the grace period."""
        name = _name(node)
        if self.heartbeats.silence(name) < self.settings.node_monitor_grace_period:
            return node
        now = rfc3339()
        status = dict(node.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or []]
        by_type = {c.get("type"): i for i, c in enumerate(conditions)}
        changed = False
        for type_ in AGENT_CONDITIONS:
            i = by_type.get(type_)
            old = conditions[i] if i is not None else None
            if old is None and type_ != "Ready":
                continue  # only Ready is added when missing, as in Kubernetes
            if old is not None and old.get("status") == "Unknown":
                continue
            created = str((node.get("metadata") or {}).get("creationTimestamp") or now)
            new = _set_condition_unknown(old, type_, now, created)
            if i is None:
                conditions.append(new)
            else:
                conditions[i] = new
            changed = True
        if not changed:
            return node
        was = self._ready_status(node)
        updated = {**node, "status": {**status, "conditions": conditions}}
        result = await self.client.replace_status(NODES, updated)
        log.info("node %s: no heartbeat for %.0fs, Ready=Unknown", name, self.heartbeats.silence(name))
        if was != "Unknown":
            self.recorder.event(result, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        return result

    async def _update_taints(self, node: Obj) -> Obj:
        taints = desired_taints(node, rfc3339())
        current = (node.get("spec") or {}).get("taints") or []
        if taints == current:
            return node
        spec = {**(node.get("spec") or {}), "taints": taints}
        if not taints:
            spec.pop("taints")
        # resourceVersion from what we read: a concurrent change to the taints gives 409 and a retry.
        result = await self.client.replace(NODES, {**node, "spec": spec})
        added = {t["key"] for t in taints} - {t.get("key") for t in current}
        removed = {t.get("key") for t in current} - {t["key"] for t in taints}
        log.info("node %s: taints +%s -%s", _name(node), sorted(added), sorted(str(k) for k in removed))
        return result

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """Nobody else can say the pods on a silent node are not serving: take them out of Endpoints."""
        now = rfc3339()
        for pod in self.pods.by_index(NODE_INDEX, node_name):
            if not podutil.is_pod_ready(pod):
                continue
            status = dict(pod.get("status") or {})
            status["conditions"] = [
                {**c, "status": "False", "lastTransitionTime": now} if c.get("type") == "Ready" else c
                for c in status.get("conditions") or []
            ]
            try:
                await self.client.replace_status(PODS, {**pod, "status": status})
            except ApiError as e:
                # Gone, or changed since our cache saw it: the next monitor pass looks again.
                if e.code not in (404, 409):
                    raise

    def _taint_start(self, node_name: str, taint: Obj) -> float:
        added = _parse_time(taint.get("timeAdded"))
        if added is not None:
            return added
        key = (node_name, str(taint.get("key")), str(taint.get("value") or ""))
        return self._taint_seen.setdefault(key, time.time())

    async def _evict(self, node: Obj) -> float | None:
        """Delete pods whose toleration of the node's NoExecute taints ran out.

        Returns the seconds until the next pod's toleration runs out, if any does.
        """
        name = _name(node)
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            return None
        now = time.time()
        next_due: float | None = None
        for pod in self.pods.by_index(NODE_INDEX, name):
            if podutil.is_terminating(pod):
                continue
            due: float | None = None  # None: tolerates every taint forever
            for taint in taints:
                seconds = toleration_seconds(pod, taint, self.settings.default_toleration_seconds)
                if seconds is None:
                    continue
                deadline = self._taint_start(name, taint) + seconds if seconds > 0 else now
                due = deadline if due is None else min(due, deadline)
            if due is None:
                continue
            if due > now:
                next_due = due - now if next_due is None else min(next_due, due - now)
                continue
            await self._evict_pod(pod)
        return next_due

    async def _evict_pod(self, pod: Obj) -> None:
        m = pod.get("metadata") or {}
        ns, pod_name = m.get("namespace"), str(m.get("name"))
        try:
            await self.client.delete(PODS, pod_name, namespace=ns, preconditions={"uid": str(m.get("uid"))})
        except ApiError as e:
            if e.code in (404, 409):
                return  # already gone, or replaced by a new pod of the same name
            raise
        log.info("evicting pod %s/%s from node %s", ns, pod_name, (pod.get("spec") or {}).get("nodeName"))
        self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{pod_name}")

