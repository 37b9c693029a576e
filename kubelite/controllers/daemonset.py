"""The DaemonSet controller: one pod on every node the pod template fits, kept current.

Like Kubernetes (pkg/controller/daemon), the controller does not place pods itself: each pod gets
a required node affinity ``matchFields metadata.name In [<node>]`` and the scheduler binds it.
Per node it decides (``node_should_run``) whether a daemon pod should *start* there and whether
an existing one may *keep running*: a NoSchedule taint the pod does not tolerate stops new pods
but leaves a running one alone; an untolerated NoExecute taint, or a label change that makes the
node's selector/affinity stop matching, removes it.

After writing, the controller waits until its informer has seen its own creates and deletes
("expectations", ``podutil.Expectations``) before deciding again, so a lagging cache never makes
it create two pods for one node or delete past ``maxUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import Any

from kubelite.api.selectors import label_selector_from_dict
from kubelite.client import ApiError
from kubelite.client.informer import split_key
from kubelite.controllers import podutil
from kubelite.controllers.base import DAEMONSETS, NODES, PODS, Controller, owner_of
from kubelite.scheduler.plugins.nodeaffinity import parse_term
from kubelite.scheduler.plugins.tainttoleration import pod_tolerations, tolerates
from kubelite.scheduler.snapshot import NodeInfo, Taint

log = logging.getLogger(__name__)
Obj = dict[str, Any]

HASH_LABEL = "controller-revision-hash"
# Tolerations Kubernetes' DaemonSet controller adds to every daemon pod (util.AddOrUpdateDaemonPodTolerations):
# a daemon is part of the node, so node conditions must not keep it off or evict it.
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION: Obj = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}
# Unobserved expectations are given up after this long (a lost watch event must not wedge a DaemonSet).
EXPECTATIONS_TTL = 60.0


# ---- node fitness (the scheduler's own matching, so both agree on where a daemon pod fits) --------


def _node_info(node: Obj) -> NodeInfo:
    info = NodeInfo(str((node.get("metadata") or {}).get("name", "")))
    info.set_node(node)
    return info


def untolerated_taints(node: Obj, tolerations: list[Obj]) -> list[Taint]:
    """The node's NoSchedule/NoExecute taints no toleration covers (PreferNoSchedule never blocks)."""
    tols = pod_tolerations({"spec": {"tolerations": tolerations}})
    return [
        t for t in _node_info(node).taints if t[2] in ("NoSchedule", "NoExecute") and not tolerates(tols, t)
    ]


def node_matches(pod_spec: Mapping[str, Any], node: Obj) -> bool:
    """nodeSelector and required node affinity (the scheduler's NodeAffinity filter)."""
    info = _node_info(node)
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if info.labels.get(k) != v:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return any(parse_term(t).matches(info) for t in required.get("nodeSelectorTerms") or [])


def daemon_tolerations(pod_spec: Mapping[str, Any]) -> list[Obj]:
    """The template's tolerations plus the standard daemon ones it does not already state."""
    tolerations = [dict(t) for t in pod_spec.get("tolerations") or []]
    extra = [*DAEMON_TOLERATIONS, *([HOST_NETWORK_TOLERATION] if pod_spec.get("hostNetwork") else [])]
    for std in extra:
        if not any(t.get("key") == std["key"] and t.get("effect") == std["effect"] for t in tolerations):
            tolerations.append(dict(std))
    return tolerations


def node_should_run(template_spec: Mapping[str, Any], node: Obj) -> tuple[bool, bool]:
    """(should a daemon pod start on ``node``, may an existing one keep running there)."""
    if not node_matches(template_spec, node):
        return False, False
    blocking = untolerated_taints(node, daemon_tolerations(template_spec))
    if any(t[2] == "NoExecute" for t in blocking):
        return False, False
    if blocking:  # NoSchedule only: keeps new pods away but evicts nothing (as in Kubernetes)
        return False, True
    return True, True


def with_node_affinity(pod_spec: Obj, node_name: str) -> Obj:
    """util.ReplaceDaemonSetPodNodeNameNodeAffinity: pin the pod to ``node_name`` via matchFields."""
    pin = {"key": "metadata.name", "operator": "In", "values": [node_name]}
    affinity = dict(pod_spec.get("affinity") or {})
    node_aff = dict(affinity.get("nodeAffinity") or {})
    required = dict(node_aff.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = [dict(t) for t in required.get("nodeSelectorTerms") or []]
    if not terms:
        terms = [{"matchFields": [pin]}]
    else:
        for t in terms:
            t["matchFields"] = [pin]  # the node name replaces any other field requirement
    required["nodeSelectorTerms"] = terms
    node_aff["requiredDuringSchedulingIgnoredDuringExecution"] = required
    affinity["nodeAffinity"] = node_aff
    pod_spec["affinity"] = affinity
    return pod_spec


def target_node(pod: Obj) -> str:
    """The node a daemon pod is on, or (not yet scheduled) is pinned to by its affinity."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if (
                f.get("key") == "metadata.name"
                and f.get("operator") == "In"
                and len(f.get("values") or []) == 1
            ):
                return str(f["values"][0])
    return ""


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1]) * total / 100
        return math.ceil(pct) if round_up else math.floor(pct)
    return int(value or 0)


# ---- the controller ------------------------------------------------------------------------------


def _owner_key(pod: Obj) -> str | None:
    ref = owner_of(pod, "DaemonSet")
    if ref is None:
        return None
    return f"{(pod.get('metadata') or {}).get('namespace')}/{ref['name']}"


def _controller_uid(pod: Obj) -> list[str]:
    ref = owner_of(pod, "DaemonSet")
    return [str(ref["uid"])] if ref is not None and ref.get("uid") else []


def _created(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def _hash_of(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(HASH_LABEL, ""))


class DaemonSetController(Controller):
    name = "daemonset"
    primary = DAEMONSETS

    _OWNER_INDEX = "daemonset/controller-uid"

    def setup(self) -> None:
        self.expectations = podutil.Expectations(ttl=EXPECTATIONS_TTL)
        self.dsets = self.watch_primary()
        self.pods = self.informer(PODS)
        self.pods.add_index(self._OWNER_INDEX, _controller_uid)
        # Lower expectations as our own writes show up; registered before watch_owned so the
        # reconcile that the same event enqueues already sees them lowered.
        self.pods.add_handler(
            on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted
        )
        self.watch_owned(PODS)
        self.nodes = self.watch_mapped(NODES, lambda _node: self.dsets.keys())

    def _pod_added(self, pod: Obj) -> None:
        key = _owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            if podutil.is_terminating(pod):
                self.expectations.deletion_observed(key, str(pod["metadata"].get("uid")))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = _owner_key(new)
        if key is not None and podutil.is_terminating(new):
            self.expectations.deletion_observed(key, str(new["metadata"].get("uid")))

    def _pod_deleted(self, pod: Obj) -> None:
        key = _owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, str((pod.get("metadata") or {}).get("uid")))

    # ---- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        ds = self.dsets.get(ns, name)
        if ds is None:
            self.expectations.forget(key)
            return
        meta = ds["metadata"]
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        template_spec = template.get("spec") or {}
        pod_hash = podutil.compute_hash(template, spec.get("collisionCount"))
        selector = label_selector_from_dict(spec.get("selector"))
        pods = [
            p
            for p in self.pods.by_index(self._OWNER_INDEX, str(meta["uid"]))
            if selector.matches((p.get("metadata") or {}).get("labels"))
        ]
        nodes = {str(n["metadata"]["name"]): n for n in self.nodes.list()}
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            by_node.setdefault(target_node(p), []).append(p)

        # A DaemonSet being deleted is left to the garbage collector; until the informer has
        # caught up with our last writes, any decision would be made on a stale picture.
        if not meta.get("deletionTimestamp") and self.expectations.satisfied(key):
            creates, deletes, force = self._manage(template_spec, nodes, by_node)
            strategy = spec.get("updateStrategy") or {}
            if not creates and not deletes and strategy.get("type", "RollingUpdate") == "RollingUpdate":
                deletes = self._rolling_update(ds, nodes, by_node, pod_hash)
            await self._sync_nodes(ds, key, pod_hash, creates, deletes, force)

        requeue = await self._update_status(ds, nodes, by_node, pod_hash)
        if requeue is not None:
            self.queue.add_after(key, requeue)

    def _manage(
        self, template_spec: Obj, nodes: dict[str, Obj], by_node: dict[str, list[Obj]]
    ) -> tuple[list[str], list[Obj], set[str]]:
        """Nodes that need a pod, pods that must go, and the uids of those to delete without grace."""
        creates: list[str] = []
        deletes: list[Obj] = []
        force: set[str] = set()
        for node_name, node in sorted(nodes.items()):
            should_run, may_continue = node_should_run(template_spec, node)
            pods = by_node.get(node_name, [])
            live = [p for p in pods if not podutil.is_terminating(p)]
            if should_run and not pods:
                # A node whose old pod is still terminating waits for it: one daemon pod per node.
                creates.append(node_name)
            elif may_continue:
                failed = [p for p in live if (p.get("status") or {}).get("phase") == "Failed"]
                deletes.extend(failed)  # replaced once gone, as Kubernetes does with failed daemon pods
                running = sorted((p for p in live if p not in failed), key=_created)
                deletes.extend(running[1:])  # duplicates: keep the oldest
            else:
                deletes.extend(live)
        for node_name, pods in sorted(by_node.items()):
            if node_name not in nodes:
                # No agent is left to finish a graceful deletion on a node that no longer exists.
                for p in pods:
                    deletes.append(p)
                    force.add(str(p["metadata"]["uid"]))
        return creates, deletes, force

    def _rolling_update(
        self, ds: Obj, nodes: dict[str, Obj], by_node: dict[str, list[Obj]], pod_hash: str
    ) -> list[Obj]:
        """Old pods to delete now within maxUnavailable (the maxSurge=0 path of Kubernetes' rollingUpdate).

        The pods deleted here are recreated from the current template by the next pass of _manage.
        """
        spec = ds.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_spec = (spec.get("template") or {}).get("spec") or {}
        ru = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        desired = sorted(n for n, node in nodes.items() if node_should_run(template_spec, node)[0])
        max_unavailable = scaled_value(ru.get("maxUnavailable", 1), len(desired), round_up=True)
        if max_unavailable == 0:
            max_unavailable = 1  # maxSurge is 0 here, and 0 unavailable would never make progress
        unavailable = 0
        replace_now: list[Obj] = []  # old pods that are not available anyway: no budget needed
        candidates: list[Obj] = []
        for node_name in desired:
            pods = by_node.get(node_name, [])
            if len(pods) != 1 or podutil.is_terminating(pods[0]):
                unavailable += 1  # missing, terminating or duplicated: _manage is handling it
                continue
            pod = pods[0]
            available = podutil.is_pod_available(pod, min_ready)
            if _hash_of(pod) == pod_hash:
                unavailable += not available
            elif not available:
                replace_now.append(pod)
            else:
                candidates.append(pod)
        budget = max(0, min(max_unavailable - unavailable, len(candidates)))
        return replace_now + candidates[:budget]

    async def _sync_nodes(
        self, ds: Obj, key: str, pod_hash: str, creates: list[str], deletes: list[Obj], force: set[str]
    ) -> None:
        if not creates and not deletes:
            return
        # Expect first: the informer may deliver the new pods before the create calls return.
        self.expectations.expect_creations(key, len(creates))
        self.expectations.expect_deletions(key, [str(p["metadata"]["uid"]) for p in deletes])

        async def create(node_name: str) -> None:
            try:
                pod = await self.client.create(PODS, self._new_pod(ds, node_name, pod_hash))
            except ApiError as e:
                self.expectations.creation_observed(key)
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {e.message}")
                raise
            self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")

        async def delete(pod: Obj) -> None:
            m = pod["metadata"]
            uid = str(m["uid"])
            try:
                await self.client.delete(
                    PODS,
                    m["name"],
                    namespace=m["namespace"],
                    grace_period_seconds=0 if uid in force else None,
                    preconditions={"uid": uid},
                )
            except ApiError as e:
                self.expectations.deletion_observed(key, uid)
                if e.code in (404, 409):  # already gone (409: the name now belongs to another pod)
                    return
                self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {e.message}")
                raise
            self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

        results = await asyncio.gather(
            *(create(n) for n in creates), *(delete(p) for p in deletes), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r

    def _new_pod(self, ds: Obj, node_name: str, pod_hash: str) -> Obj:
        template = (ds.get("spec") or {}).get("template") or {}
        pod = podutil.pod_from_template(template, ds, extra_labels={HASH_LABEL: pod_hash})
        spec = pod["spec"]
        spec["tolerations"] = daemon_tolerations(spec)
        with_node_affinity(spec, node_name)
        return pod

    # ---- status ------------------------------------------------------------------------------

    async def _update_status(
        self, ds: Obj, nodes: dict[str, Obj], by_node: dict[str, list[Obj]], pod_hash: str
    ) -> float | None:
        """Write status if it changed; returns a delay after which availability must be looked at again."""
        spec = ds.get("spec") or {}
        template_spec = (spec.get("template") or {}).get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        desired = current = misscheduled = ready = available = updated = 0
        requeue: float | None = None
        for node_name, node in nodes.items():
            should_run, _ = node_should_run(template_spec, node)
            pods = sorted(by_node.get(node_name, []), key=_created)
            if not should_run:
                misscheduled += bool(pods)
                continue
            desired += 1
            if not pods:
                continue
            current += 1
            pod = pods[0]
            if podutil.is_pod_ready(pod):
                ready += 1
                if podutil.is_pod_available(pod, min_ready):
                    available += 1
                else:
                    requeue = float(min_ready)
            if _hash_of(pod) == pod_hash:
                updated += 1
        status = {
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": max(0, desired - available),
            "updatedNumberScheduled": updated,
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        old = ds.get("status") or {}
        if any(old.get(k) != v for k, v in status.items()):
            try:
                # A merge patch, not a compare-and-swap: these fields are ours alone, and a spec
                # change meanwhile makes the next sync (already queued) report the new generation.
                await self.client.patch(
                    DAEMONSETS, ds["metadata"]["name"], {"status": status},
                    namespace=ds["metadata"]["namespace"], patch_type="merge", subresource="status",
                )  # fmt: skip
            except ApiError as e:
                if e.code != 404:  # 404: deleted meanwhile, nothing left to report on
                    raise
        return requeue
