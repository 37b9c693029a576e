"""Pure helpers of the Deployment controller (Kubernetes' ``pkg/controller/deployment/util``).

Arithmetic on Deployments and their ReplicaSets, no I/O: surge/unavailability fenceposts, the
replica counts a rolling update may use, revisions and the annotations carried on ReplicaSets,
conditions, and the status computed from the ReplicaSets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from kubelite.controllers.podutil import get_condition, parse_time

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
# Deployment annotations that are not copied onto its ReplicaSets.
_NOT_COPIED = frozenset(
    {REVISION, DESIRED_REPLICAS, MAX_REPLICAS, REVISION_HISTORY, "kubectl.kubernetes.io/last-applied-configuration"}
)

# Condition reasons (deployment/util/deployment_util.go).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- counts ----------------------------------------------------------------------------------


def spec_replicas(obj: Obj | None) -> int:
    if obj is None:
        return 0
    return int((obj.get("spec") or {}).get("replicas", 1))


def status_int(obj: Obj | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def pod_count_bound(rs: Obj) -> int:
    """An upper bound on the ReplicaSet's live pods: its target, or more while a scale-down is
    still deleting (status.replicas lags). Used for the surge cap, so that the new ReplicaSet
    never grows before the old one's pods are really gone."""
    return max(spec_replicas(rs), status_int(rs, "replicas"))


def available_bound(rs: Obj) -> int:
    """A lower bound on the ReplicaSet's available pods: a status written before a scale-down
    may still count pods that are already deleted."""
    return min(spec_replicas(rs), status_int(rs, "availableReplicas"))


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString of a Deployment (``2`` or ``"25%"``) against ``total``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            pct = float(text[:-1])
            exact = pct * total / 100.0
            return math.ceil(exact) if round_up else math.floor(exact)
        return int(text)
    raise ValueError(f"invalid int-or-percent value {value!r}")


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts: surge rounds up, unavailable down; both 0 becomes
    unavailable 1 so a rollout can always make progress (Kubernetes' ResolveFenceposts)."""
    spec = d.get("spec") or {}
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    replicas = spec_replicas(d)
    surge = int_or_percent(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or spec_replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], spec_replicas(d))


def new_rs_new_replicas(d: Obj, all_rss: Iterable[Obj], new_rs: Obj | None) -> int:
    """How big the new ReplicaSet may be now (Kubernetes' NewRSNewReplicas)."""
    current_new = spec_replicas(new_rs)
    if not is_rolling(d):
        return spec_replicas(d)
    replicas = spec_replicas(d)
    current = sum(pod_count_bound(rs) for rs in all_rss)
    max_total = replicas + max_surge(d)
    if current >= max_total:
        return current_new
    scale_up = min(max_total - current, replicas - current_new)
    return current_new + max(scale_up, 0)


# --- revisions and annotations ---------------------------------------------------------------


def revision(obj: Obj | None) -> int:
    if obj is None:
        return 0
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0")
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Copy the Deployment's annotations onto ``rs`` and raise its revision; True if changed."""
    meta = rs.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    before = dict(annotations)
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k not in _NOT_COPIED:
            annotations[k] = v
    old_rev = revision(rs)
    if old_rev < new_revision:
        annotations[REVISION] = str(new_revision)
    elif not exists and REVISION not in annotations:
        annotations[REVISION] = str(new_revision)
    if annotations == before:
        return False
    meta["annotations"] = annotations
    return True


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    meta = rs.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    want = {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(max_replicas)}
    if all(annotations.get(k) == v for k, v in want.items()):
        return False
    annotations.update(want)
    meta["annotations"] = annotations
    return True


def annotated_int(rs: Obj, key: str) -> int | None:
    raw = ((rs.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def created(rs: Obj) -> tuple[float, str]:
    m = rs.get("metadata") or {}
    return (parse_time(m.get("creationTimestamp")) or 0.0, str(m.get("name", "")))


def replicaset_fraction(rs: Obj, d: Obj) -> int:
    """How much ``rs`` grows (+) or shrinks (-) when the Deployment is resized mid-rollout:
    proportionally to its share of the size recorded in its max-replicas annotation."""
    if spec_replicas(d) == 0:
        return -spec_replicas(rs)
    deployment_replicas = spec_replicas(d) + max_surge(d)
    annotated = annotated_int(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = status_int(d, "replicas")
    if annotated <= 0:
        return 0
    new_size = spec_replicas(rs) * deployment_replicas / annotated
    return math.floor(new_size + 0.5) - spec_replicas(rs)  # Go's math.Round for positives


# --- conditions and status -------------------------------------------------------------------


def set_condition(status: Obj, type_: str, cond_status: str, reason: str, message: str) -> None:
    """Set a condition as Kubernetes' SetDeploymentCondition: an identical status+reason is left
    alone; a changed reason keeps lastTransitionTime; a changed status gets a new one."""
    conds: list[Obj] = list(status.get("conditions") or [])
    current = next((c for c in conds if c.get("type") == type_), None)
    now = now_rfc3339()
    if current is not None and current.get("status") == cond_status and current.get("reason") == reason:
        return
    new = {
        "type": type_,
        "status": cond_status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }
    if current is not None and current.get("status") == cond_status:
        new["lastTransitionTime"] = current.get("lastTransitionTime", now)
    status["conditions"] = [c for c in conds if c.get("type") != type_] + [new]


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def has_progress_deadline(d: Obj) -> bool:
    pds = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return pds is not None and pds < 2**31 - 1


def calculate_status(all_rss: list[Obj], new_rs: Obj | None, d: Obj) -> Obj:
    """The Deployment's status from its ReplicaSets' (Kubernetes' calculateStatus)."""
    available = sum(status_int(rs, "availableReplicas") for rs in all_rss)
    total_spec = sum(spec_replicas(rs) for rs in all_rss)
    status: Obj = {
        "observedGeneration": (d.get("metadata") or {}).get("generation", 0),
        "replicas": sum(status_int(rs, "replicas") for rs in all_rss),
        "updatedReplicas": status_int(new_rs, "replicas"),
        "readyReplicas": sum(status_int(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(total_spec - available, 0),
    }
    old = d.get("status") or {}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = [dict(c) for c in old["conditions"]]
    if available >= spec_replicas(d) - max_unavailable(d):
        set_condition(status, "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.")
    else:
        set_condition(status, "Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.")
    return status


def deployment_complete(d: Obj, status: Obj) -> bool:
    want = spec_replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0) >= int((d.get("metadata") or {}).get("generation") or 0)
    )


def deployment_progressing(d: Obj, new_status: Obj) -> bool:
    old = d.get("status") or {}

    def g(s: Obj, f: str) -> int:
        return int(s.get(f) or 0)

    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new_status, "replicas") - g(new_status, "updatedReplicas")
    return (
        g(new_status, "updatedReplicas") > g(old, "updatedReplicas")
        or new_old < old_old
        or g(new_status, "readyReplicas") > g(old, "readyReplicas")
        or g(new_status, "availableReplicas") > g(old, "availableReplicas")
    )


def deployment_timed_out(d: Obj, status: Obj, now: float | None = None) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition({"status": status}, "Progressing")
    if cond is None:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    deadline = float((d.get("spec") or {}).get("progressDeadlineSeconds") or 0)
    return since + deadline < (time.time() if now is None else now)
