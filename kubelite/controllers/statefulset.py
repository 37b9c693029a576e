"""The StatefulSet controller: pods with a stable name, network identity and storage, in order.

As in Kubernetes (pkg/controller/statefulset/stateful_set_control.go), one sync:

1. computes status from the pods it owns (``<set>-<ordinal>``, ordinals ``start..start+replicas-1``);
2. walks the wanted ordinals upwards: a missing pod is created (its PVCs first), a failed one is
   deleted to be recreated; with ``OrderedReady`` the walk stops at the first pod that is not
   Running and Ready, or is terminating, so ordinal i starts only after 0..i-1 are Ready;
3. deletes condemned pods (ordinals past the end) from the highest down, one at a time under
   ``OrderedReady`` (waiting for each to be gone), all at once under ``Parallel``;
4. under ``RollingUpdate``, deletes the highest-ordinal pod at or above ``partition`` that is not
   at the update revision, one at a time, waiting for the replacement to be Ready.

Pod names are the ordinal identity, so the API server itself guarantees no two pods ever share an
ordinal; the controller only ever recreates a pod once the previous one is gone from its cache
(a pod with deletionTimestamp still holds its name). PVCs are never deleted here: they outlive pods.

kubelite keeps no ControllerRevision history: a revision is ``<set>-<template hash>``, and pods
are always (re)created from the current template. Kubernetes would recreate a pod below the
partition from the old revision; here it gets the new one.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from kubelite.api.selectors import label_selector_from_dict
from kubelite.client import ApiError
from kubelite.client.informer import split_key
from kubelite.controllers import podutil
from kubelite.controllers.base import PODS, PVCS, STATEFULSETS, Controller, owner_of

log = logging.getLogger(__name__)
Obj = dict[str, Any]

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    """The ordinal in ``<set>-<ordinal>``, or None when the pod is not a member by name."""
    m = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]*)", pod_name)
    return int(m.group(1)) if m else None


def claim_name(claim: str, set_name: str, ordinal: int) -> str:
    return f"{claim}-{set_name}-{ordinal}"


def revision_name(sts: Obj) -> str:
    spec = sts.get("spec") or {}
    return f"{sts['metadata']['name']}-{podutil.compute_hash(spec.get('template') or {}, spec.get('collisionCount'))}"


def is_running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and podutil.is_pod_ready(pod)


def _is_healthy(pod: Obj) -> bool:
    return is_running_and_ready(pod) and not podutil.is_terminating(pod)


def _is_failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def _revision(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL, ""))


def _controller_uid(obj: Obj) -> list[str]:
    ref = owner_of(obj, "StatefulSet")
    return [str(ref["uid"])] if ref is not None and ref.get("uid") else []


def new_pod(sts: Obj, ordinal: int, revision: str) -> Obj:
    """The pod for ``ordinal``: identity labels, hostname/subdomain, and a PVC volume per claim template."""
    spec = sts.get("spec") or {}
    set_name = sts["metadata"]["name"]
    name = f"{set_name}-{ordinal}"
    labels = {POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), REVISION_LABEL: revision}
    pod = podutil.pod_from_template(spec.get("template") or {}, sts, name=name, extra_labels=labels)
    pod_spec = pod["spec"]
    pod_spec["hostname"] = name
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []]
    # A claim template replaces any template volume of the same name: mounts refer to it by that name.
    volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") not in claims]
    volumes += [
        {"name": c, "persistentVolumeClaim": {"claimName": claim_name(c, set_name, ordinal)}} for c in claims
    ]
    if volumes:
        pod_spec["volumes"] = volumes
    return pod


def new_claims(sts: Obj, ordinal: int) -> list[Obj]:
    """The PVCs of ``ordinal``: no ownerReference, so they survive the pod and the set (Retain)."""
    spec = sts.get("spec") or {}
    match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    out = []
    for tmpl in spec.get("volumeClaimTemplates") or []:
        tmeta = tmpl.get("metadata") or {}
        meta: Obj = {
            "name": claim_name(tmeta["name"], sts["metadata"]["name"], ordinal),
            "namespace": sts["metadata"]["namespace"],
            "labels": {**(tmeta.get("labels") or {}), **match_labels},
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": meta,
                "spec": dict(tmpl.get("spec") or {}),
            }
        )
    return out


class _Wait(Exception):
    """Stop this sync: ordered progress has to wait for a pod to become Ready or go away."""


class StatefulSetController(Controller):
    name = "statefulset"
    primary = STATEFULSETS

    _OWNER_INDEX = "statefulset/controller-uid"

    def setup(self) -> None:
        self.sets = self.watch_primary()
        self.pods = self.watch_owned(PODS)
        self.pods.add_index(self._OWNER_INDEX, _controller_uid)
        self.pvcs = self.informer(PVCS)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        sts = self.sets.get(ns, name)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return  # a set being deleted is the garbage collector's
        spec = sts.get("spec") or {}
        selector = label_selector_from_dict(spec.get("selector"))
        pods: dict[int, Obj] = {}
        for p in self.pods.by_index(self._OWNER_INDEX, str(sts["metadata"]["uid"])):
            ordinal = ordinal_of(name, p["metadata"]["name"])
            if ordinal is not None and selector.matches(p["metadata"].get("labels")):
                pods[ordinal] = p
        update_rev = revision_name(sts)
        current_rev = (sts.get("status") or {}).get("currentRevision") or update_rev

        try:
            await self._sync(sts, pods, update_rev)
        except _Wait:
            pass
        finally:
            # Status from the cache as this sync found it; the events of our writes enqueue the set again.
            requeue = await self._update_status(sts, pods, current_rev, update_rev)
        if requeue is not None:
            self.queue.add_after(key, requeue)

    async def _sync(self, sts: Obj, pods: dict[int, Obj], update_rev: str) -> None:
        spec = sts.get("spec") or {}
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        wanted = range(start, start + int(spec.get("replicas", 1)))

        for ordinal in wanted:
            pod = pods.get(ordinal)
            if pod is not None and _is_failed(pod) and not podutil.is_terminating(pod):
                await self._delete_pod(sts, pod)  # recreated with the same name once it is gone
                if ordered:
                    raise _Wait
                continue
            if pod is None:
                await self._create_pod(sts, ordinal, update_rev)
                if ordered:
                    raise _Wait
                continue
            # Claims deleted by hand are recreated for a pod that is still there.
            await self._ensure_claims(sts, ordinal)
            if ordered and not _is_healthy(pod):
                raise _Wait

        condemned = sorted((o for o in pods if o not in wanted), reverse=True)
        for ordinal in condemned:
            pod = pods[ordinal]
            if podutil.is_terminating(pod):
                if ordered:
                    raise _Wait
                continue
            await self._delete_pod(sts, pod)
            if ordered:
                raise _Wait

        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        for ordinal in reversed(wanted):
            if ordinal - start < partition:
                break
            pod = pods.get(ordinal)
            if pod is None:
                raise _Wait
            if _revision(pod) != update_rev and not podutil.is_terminating(pod):
                await self._delete_pod(sts, pod)
                raise _Wait
            if not _is_healthy(pod):
                raise _Wait

    # ---- writes ------------------------------------------------------------------------------

    async def _ensure_claims(self, sts: Obj, ordinal: int) -> None:
        ns = sts["metadata"]["namespace"]
        pod_name = f"{sts['metadata']['name']}-{ordinal}"
        for claim in new_claims(sts, ordinal):
            cname = claim["metadata"]["name"]
            existing = self.pvcs.get(ns, cname)
            if existing is not None:
                if podutil.is_terminating(existing):
                    # Kubernetes refuses too: the pod would start on storage that is going away.
                    raise RuntimeError(f"pod {pod_name}: PersistentVolumeClaim {cname} is being deleted")
                continue
            try:
                await self.client.create(PVCS, claim, namespace=ns)
            except ApiError as e:
                if e.code == 409:
                    continue  # already there (our cache is behind)
                self.recorder.event(
                    sts, "Warning", "FailedCreate",
                    f"create Claim {cname} for Pod {pod_name} in StatefulSet {sts['metadata']['name']} failed error: {e.message}",
                )  # fmt: skip
                raise
            self.recorder.event(
                sts, "Normal", "SuccessfulCreate",
                f"create Claim {cname} Pod {pod_name} in StatefulSet {sts['metadata']['name']} success",
            )  # fmt: skip

    async def _create_pod(self, sts: Obj, ordinal: int, revision: str) -> None:
        await self._ensure_claims(sts, ordinal)
        pod = new_pod(sts, ordinal, revision)
        pod_name, set_name = pod["metadata"]["name"], sts["metadata"]["name"]
        try:
            await self.client.create(PODS, pod, namespace=sts["metadata"]["namespace"])
        except ApiError as e:
            if e.code == 409:
                return  # the name is taken: the old pod is still there (our cache is behind)
            self.recorder.event(
                sts,
                "Warning",
                "FailedCreate",
                f"create Pod {pod_name} in StatefulSet {set_name} failed error: {e.message}",
            )
            raise
        self.recorder.event(
            sts, "Normal", "SuccessfulCreate", f"create Pod {pod_name} in StatefulSet {set_name} successful"
        )

    async def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        m = pod["metadata"]
        set_name = sts["metadata"]["name"]
        try:
            # The uid precondition keeps a stale cache from deleting a pod's successor.
            await self.client.delete(
                PODS, m["name"], namespace=m["namespace"], preconditions={"uid": m["uid"]}
            )
        except ApiError as e:
            if e.code in (404, 409):
                return
            self.recorder.event(
                sts,
                "Warning",
                "FailedDelete",
                f"delete Pod {m['name']} in StatefulSet {set_name} failed error: {e.message}",
            )
            raise
        self.recorder.event(
            sts, "Normal", "SuccessfulDelete", f"delete Pod {m['name']} in StatefulSet {set_name} successful"
        )

    # ---- status ------------------------------------------------------------------------------

    async def _update_status(
        self, sts: Obj, pods: dict[int, Obj], current_rev: str, update_rev: str
    ) -> float | None:
        """Write status if it changed; returns a delay after which availability must be looked at again."""
        spec = sts.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        replicas = ready = available = current = updated = 0
        requeue: float | None = None
        for pod in pods.values():
            replicas += 1
            if is_running_and_ready(pod):
                ready += 1
                if podutil.is_pod_available(pod, min_ready):
                    available += 1
                else:
                    requeue = float(min_ready)
            if not podutil.is_terminating(pod):
                current += _revision(pod) == current_rev
                updated += _revision(pod) == update_rev
        if current_rev != update_rev and updated == replicas == ready == int(spec.get("replicas", 1)):
            # Every pod runs the update revision and is Ready: it becomes the current one.
            current_rev, current = update_rev, updated
        status = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": available,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "currentRevision": current_rev,
            "updateRevision": update_rev,
        }
        old = sts.get("status") or {}
        if any(old.get(k) != v for k, v in status.items()):
            try:
                # A merge patch, not a compare-and-swap: these fields are ours alone, and a spec
                # change meanwhile makes the next sync (already queued) report the new generation.
                await self.client.patch(
                    STATEFULSETS, sts["metadata"]["name"], {"status": status},
                    namespace=sts["metadata"]["namespace"], patch_type="merge", subresource="status",
                )  # fmt: skip
            except ApiError as e:
                if e.code != 404:  # 404: deleted meanwhile, nothing left to report on
                    raise
        return requeue
