"""Pod helpers every workload controller shares (ReplicaSet, Deployment, DaemonSet, StatefulSet).

What Kubernetes keeps in ``pkg/api/v1/pod``, ``pkg/controller/controller_utils.go`` and
``pkg/util/hash``: readiness and availability of a pod, which pods count as active, the order in
which surplus pods are deleted, the pod-template hash, building a pod from a template, and the
"expectations" that keep a controller from acting twice on writes its informer has not seen yet.

All functions take and return plain API dicts and never mutate their arguments.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubelite.api.registry import ResourceType, by_kind
from kubelite.api.selectors import LabelSelector
from kubelite.client.rest import ApiClient, ApiError

__all__ = [
    "CONTROLLER_UID_INDEX",
    "POD_DELETION_COST",
    "POD_TEMPLATE_HASH_LABEL",
    "Expectations",
    "claim_candidates",
    "claim_dependents",
    "compute_hash",
    "controller_uid_index",
    "deletion_order",
    "get_condition",
    "get_controller_of",
    "is_active",
    "is_pod_available",
    "is_pod_ready",
    "is_terminating",
    "parse_time",
    "pod_from_template",
    "ready_since",
    "safe_encode",
    "templates_equal_ignoring_hash",
]

Obj = dict[str, Any]

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def parse_time(value: Any) -> float | None:
    """An RFC 3339 timestamp as epoch seconds, or None when missing or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def get_controller_of(obj: Mapping[str, Any]) -> Obj | None:
    """The ownerReference with ``controller: true``, whatever its kind (metav1.GetControllerOf)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


# Informer index of dependents by their controller's uid, orphans under "orphan:<namespace>"
# (Kubernetes' controllerUID index): a controller's sync then reads its own dependents and the
# orphans it may adopt, not every pod of the namespace.
CONTROLLER_UID_INDEX = "controller-uid"


def controller_uid_index(obj: Mapping[str, Any]) -> list[str]:
    ref = get_controller_of(obj)
    if ref is not None:
        return [str(ref.get("uid"))]
    return [f"orphan:{(obj.get('metadata') or {}).get('namespace') or ''}"]


def claim_candidates(informer: Any, owner: Mapping[str, Any]) -> list[Obj]:
    """What :func:`claim_dependents` must see for ``owner``: the objects it controls and the orphans
    of its namespace, from an informer with the :data:`CONTROLLER_UID_INDEX`."""
    om = owner.get("metadata") or {}
    return [*informer.by_index(CONTROLLER_UID_INDEX, str(om.get("uid"))),
            *informer.by_index(CONTROLLER_UID_INDEX, f"orphan:{om.get('namespace') or ''}")]  # fmt: skip


def get_condition(obj: Mapping[str, Any], type_: str) -> Obj | None:
    """The ``status.conditions`` entry of ``type_`` (pods, deployments, nodes all use this shape)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True (the agent sets it once every container passes readiness)."""
    cond = get_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def ready_since(pod: Mapping[str, Any]) -> float | None:
    """When the pod last became Ready (epoch seconds), or None if it is not Ready."""
    cond = get_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))


def is_pod_available(pod: Mapping[str, Any], min_ready_seconds: int | float, now: float | None = None) -> bool:
    """Ready for at least ``min_ready_seconds`` (``now`` defaults to the wall clock, epoch seconds).

    With min_ready_seconds 0 any Ready pod is available; otherwise a Ready condition without a
    parseable lastTransitionTime is not trusted to be old enough.
    """
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = ready_since(pod)
    if since is None:
        return False
    return since + float(min_ready_seconds) <= (time.time() if now is None else now)


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_active(pod: Mapping[str, Any]) -> bool:
    """Counts toward a controller's replicas: not being deleted and not finished (Succeeded/Failed)."""
    phase = (pod.get("status") or {}).get("phase")
    return not is_terminating(pod) and phase not in ("Succeeded", "Failed")


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_cost(pod: Mapping[str, Any]) -> int:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(POD_DELETION_COST)
    try:
        return int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        return 0


def _restarts(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(s.get("restartCount") or 0) for s in statuses if isinstance(s, dict)), default=0)


def _deletion_key(pod: Mapping[str, Any]) -> tuple[int, int, int, int, float, int, float]:
    # Kubernetes' ActivePods ordering (controller_utils.go): what sorts first is deleted first.
    since = ready_since(pod)
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or 0.0
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,  # unscheduled before scheduled
        _PHASE_RANK.get(str((pod.get("status") or {}).get("phase")), 0),  # pending < unknown < running
        1 if is_pod_ready(pod) else 0,  # not ready before ready
        _deletion_cost(pod),  # lower pod-deletion-cost first
        -(since or 0.0),  # ready for less time first
        -_restarts(pod),  # more restarts first
        -created,  # newer first
    )


def deletion_order(pods: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """``pods`` sorted so the ones to delete first come first (the cheapest to lose).

    Unscheduled < scheduled, Pending < Unknown < Running, not ready < ready, lower deletion cost,
    ready for less time, more restarts, newer: as Kubernetes' ReplicaSet controller chooses.
    """
    return [dict(p) for p in sorted(pods, key=_deletion_key)]


# --- template hash (k8s.io/kubernetes/pkg/util/hash + apimachinery rand.SafeEncodeString) -----

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # no vowels (no words), no look-alike 0/1/3


def safe_encode(s: str) -> str:
    """Map each character into an alphabet that cannot spell words, as Kubernetes does for names."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in s)


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """A stable, name-safe hash of a pod template (the ``pod-template-hash`` label value).

    FNV-1a (32 bit) over the key-sorted JSON of the template, then the collision count as four
    little-endian bytes when one is given, so bumping ``status.collisionCount`` yields a new name.
    Any pod-template-hash label already in the template is ignored.
    """
    t = _without_hash_label(template)
    data = orjson.dumps(t, option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += int(collision_count).to_bytes(4, "little", signed=False)
    return safe_encode(str(_fnv32a(data)))


def _without_hash_label(template: Mapping[str, Any]) -> Obj:
    t = copy.deepcopy(dict(template))
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
        if not labels:
            t["metadata"].pop("labels")
    return t


def templates_equal_ignoring_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two pod templates are the same apart from their pod-template-hash label."""
    return _without_hash_label(a) == _without_hash_label(b)


# --- making pods -----------------------------------------------------------------------------


def pod_from_template(
    template: Mapping[str, Any],
    owner: Mapping[str, Any],
    *,
    generate_name: str | None = None,
    name: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> Obj:
    """A Pod for ``owner`` from its pod template, ready to POST.

    Labels, annotations and finalizers come from the template (plus ``extra_labels``); the pod is
    in the owner's namespace and carries a controller ownerReference (blockOwnerDeletion) to it.
    Give ``name`` for a fixed name (StatefulSet) or ``generate_name``; the default is
    ``"<owner-name>-"`` as the ReplicaSet and DaemonSet controllers use.
    """
    om = owner.get("metadata") or {}
    tmeta = template.get("metadata") or {}
    meta: Obj = {"namespace": om.get("namespace") or "default"}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name if generate_name is not None else f"{om.get('name')}-"
    labels = {**(tmeta.get("labels") or {}), **(extra_labels or {})}
    if labels:
        meta["labels"] = labels
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    meta["ownerReferences"] = [
        {
            "apiVersion": owner.get("apiVersion"),
            "kind": owner.get("kind"),
            "name": om.get("name"),
            "uid": om.get("uid"),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


# --- expectations (controller_utils.go ControllerExpectations) --------------------------------


@dataclass
class _Expectation:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)  # pod UIDs whose deletion is not yet observed
    stamp: float = field(default_factory=time.monotonic)


class Expectations:
    """Creations and deletions a controller has asked for but its informer has not shown yet.

    The informer lags the API: right after creating 50 pods the cache may hold 3, and a sync that
    trusted the cache would create 47 more. So a controller records what it expects before
    writing (``expect_creations`` / ``expect_deletions``), its pod event handlers lower the
    counts as the informer catches up (``creation_observed`` / ``deletion_observed``), and it only
    decides on replicas when ``satisfied(key)``. Deletions are tracked by UID so a pod seen both
    terminating and then gone counts once. An expectation older than ``ttl`` is treated as
    satisfied, so a lost watch event cannot wedge a controller forever (Kubernetes: 5 minutes).
    """

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._by_key: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        exp = self._by_key.get(key)
        if exp is None:
            return True
        if exp.adds <= 0 and not exp.deletes:
            return True
        return time.monotonic() - exp.stamp > self.ttl

    def expect_creations(self, key: str, n: int) -> None:
        exp = self._by_key.setdefault(key, _Expectation())
        exp.adds = max(exp.adds, 0) + n
        exp.stamp = time.monotonic()

    def expect_deletions(self, key: str, uids: Iterable[str]) -> None:
        exp = self._by_key.setdefault(key, _Expectation())
        exp.deletes |= set(uids)
        exp.stamp = time.monotonic()

    def creation_observed(self, key: str, n: int = 1) -> None:
        """A pod the controller made appeared (or a create failed / was never attempted)."""
        exp = self._by_key.get(key)
        if exp is not None:
            exp.adds -= n

    def deletion_observed(self, key: str, uid: str) -> None:
        """A pod is terminating or gone (or its delete failed)."""
        exp = self._by_key.get(key)
        if exp is not None:
            exp.deletes.discard(uid)

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected, for logs and tests."""
        exp = self._by_key.get(key)
        return (max(exp.adds, 0), len(exp.deletes)) if exp else (0, 0)

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)


# --- adoption and release (controller_ref_manager.go) ------------------------------------------


async def claim_dependents(
    client: ApiClient,
    rt: ResourceType,
    owner: Mapping[str, Any],
    selector: LabelSelector,
    candidates: Iterable[Mapping[str, Any]],
) -> list[Obj]:
    """The dependents of ``owner`` among ``candidates`` after adopting and releasing, as Kubernetes'
    ControllerRefManager does for ReplicaSets (pods), Deployments (ReplicaSets) and the others.

    * owned by ``owner`` and matching ``selector``: kept;
    * owned by ``owner`` but no longer matching: released (its ownerReference removed);
    * with no controller at all, matching, not being deleted: adopted (a controller ref added);
    * owned by another controller: left alone.

    Nothing is adopted or released while ``owner`` is being deleted. Each adoption is checked
    against a fresh read of the owner (uid unchanged, not deleting), so a stale cache never
    adopts into an owner that is gone. Writes are merge patches guarded by the dependent's uid
    and resourceVersion; a dependent that changed or vanished meanwhile is skipped this round
    (its own watch event brings the owner back).
    """
    om = owner.get("metadata") or {}
    uid = om.get("uid")
    deleting = bool(om.get("deletionTimestamp"))
    owner_rt = by_kind(str(owner.get("apiVersion")), str(owner.get("kind")))
    claimed: list[Obj] = []
    can_adopt: bool | None = None
    for obj in candidates:
        m = obj.get("metadata") or {}
        labels = m.get("labels") or {}
        ref = get_controller_of(obj)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if selector.matches(labels):
                claimed.append(dict(obj))
            elif not deleting:
                await _patch_refs(client, rt, obj, [{"$patch": "delete", "uid": uid}])
            continue
        if deleting or is_terminating(obj) or not selector.matches(labels):
            continue
        if can_adopt is None:
            can_adopt = owner_rt is not None and await _still_adoptable(client, owner_rt, owner)
        if not can_adopt:
            continue
        adopted = await _patch_refs(client, rt, obj, [_controller_ref(owner)])
        if adopted is not None:
            claimed.append(adopted)
    return claimed


def _controller_ref(owner: Mapping[str, Any]) -> Obj:
    om = owner.get("metadata") or {}
    return {
        "apiVersion": owner.get("apiVersion"),
        "kind": owner.get("kind"),
        "name": om.get("name"),
        "uid": om.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


async def _still_adoptable(client: ApiClient, owner_rt: ResourceType, owner: Mapping[str, Any]) -> bool:
    om = owner.get("metadata") or {}
    try:
        fresh = await client.get(owner_rt, str(om.get("name")), namespace=om.get("namespace"))
    except ApiError as e:
        if e.code == 404:
            return False
        raise
    fm = fresh.get("metadata") or {}
    return fm.get("uid") == om.get("uid") and not fm.get("deletionTimestamp")


async def _patch_refs(client: ApiClient, rt: ResourceType, obj: Mapping[str, Any], refs: list[Obj]) -> Obj | None:
    """Add or ($patch: delete) ownerReferences by uid: a strategic merge touches only those
    entries, so it needs no resourceVersion and cannot lose to a concurrent status write. The
    uid guards against a dependent deleted and recreated under the same name."""
    m = obj.get("metadata") or {}
    body = {"metadata": {"ownerReferences": refs, "uid": m.get("uid")}}
    try:
        return await client.patch(rt, str(m.get("name")), body, namespace=m.get("namespace"), patch_type="strategic")
    except ApiError as e:
        # Gone, recreated (uid mismatch), or meanwhile controlled by someone else (422: two controllers).
        if e.code in (404, 409, 422):
            return None
        raise
