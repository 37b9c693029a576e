"""DaemonSet placement, checked on the machines: one pod of each DaemonSet on every matching machine, none elsewhere.

Whether a node matches is worked out here from the Node and the pod template (nodeSelector, required
node affinity, taints against tolerations), independently of the DaemonSet controller under test.
"""

from __future__ import annotations

from typing import Any

import pytest
from testinfra.host import Host

from kubelite.controllers.base import DAEMONSETS, PODS
from tests.infra.cluster import Api, InfraCluster, is_terminating, retry
from tests.infra.machine import running_containers
from tests.infra.workloads import TAINT, Workloads

Obj = dict[str, Any]
SETTLE = 20.0

# Tolerations the DaemonSet controller adds to every pod it creates (as Kubernetes does).
DAEMON_TOLERATIONS = [
    {"key": k, "operator": "Exists", "effect": e}
    for k, e in (
        ("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"), ("node.kubernetes.io/unschedulable", "NoSchedule"),
    )
]  # fmt: skip


@pytest.fixture(autouse=True)
def _needs_containers(cluster: InfraCluster, workloads: Workloads) -> None:
    if cluster.spec.runtime != "runc":
        pytest.skip(f"placement is read from runc containers; this cluster runs {cluster.spec.runtime}")


def _tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and str(t.get("value", "")) == str(taint.get("value", "")):
            return True
    return False


def _expression_matches(labels: dict[str, str], expr: Obj) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise AssertionError(f"node affinity operator {op!r} is not evaluated by this check")


def should_run(ds: Obj, node: Obj) -> bool:
    spec = ds["spec"]["template"].get("spec", {})
    labels = node.get("metadata", {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = (required or {}).get("nodeSelectorTerms") or []
    if terms and not any(all(_expression_matches(labels, e) for e in t.get("matchExpressions") or []) for t in terms):
        return False
    tolerations = [*(spec.get("tolerations") or []), *DAEMON_TOLERATIONS]
    taints = [t for t in node.get("spec", {}).get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    return all(_tolerated(t, tolerations) for t in taints)


def _owner_uid(pod: Obj) -> str | None:
    return next((r.get("uid") for r in pod["metadata"].get("ownerReferences") or [] if r.get("kind") == "DaemonSet"), None)


def test_one_pod_of_each_daemonset_per_matching_machine(host: Host, machine: str, api: Api) -> None:
    def check() -> list[str]:
        node = api.nodes().get(machine)
        if node is None:
            return [f"no Node {machine} in the API"]
        pods = {p["metadata"]["uid"]: p for p in api.objects(PODS)}
        on_machine: dict[str, set[str]] = {}  # DaemonSet uid -> uids of its pods running here
        for c in running_containers(host, machine):
            pod = pods.get(c.pod_uid)
            owner = _owner_uid(pod) if pod and not is_terminating(pod) else None
            if owner:
                on_machine.setdefault(owner, set()).add(c.pod_uid)
        problems = []
        for ds in api.objects(DAEMONSETS):
            name = f"{ds['metadata']['namespace']}/{ds['metadata']['name']}"
            want = 1 if should_run(ds, node) else 0
            have = len(on_machine.get(ds["metadata"]["uid"], set()))
            if have != want:
                problems.append(f"DaemonSet {name}: {have} pod(s) running on {machine}, expected {want}")
        return problems

    problems = retry(check, SETTLE)
    assert not problems, "; ".join(problems)


def test_tainted_machine_gets_no_daemonset_pod(cluster: InfraCluster, api: Api, workloads: Workloads) -> None:
    """The suite's own DaemonSet has no toleration for the taint it put on a master."""
    tainted = workloads.tainted_node
    node = api.nodes()[tainted]
    assert any(t.get("key") == TAINT["key"] for t in node["spec"].get("taints") or []), f"{tainted} lost the suite's taint"
    bound = [p["metadata"]["name"] for p in api.pods_on(tainted)
             if p["metadata"].get("namespace") == workloads.namespace and p["metadata"]["name"].startswith("infra-ds-")]  # fmt: skip
    assert not bound, f"{tainted} is tainted {TAINT['key']}:{TAINT['effect']} yet the API binds {', '.join(bound)} to it"
    running = [c.pod for c in running_containers(cluster.connect(tainted), tainted)
               if c.pod.startswith(f"{workloads.namespace}/infra-ds-")]  # fmt: skip
    assert not running, f"{tainted} is tainted yet runs DaemonSet pod(s) {', '.join(running)}"
    others = [n for n in cluster.names() if n != tainted]
    with_pod = {p["spec"].get("nodeName") for p in api.objects(PODS, workloads.namespace) if p["metadata"]["name"].startswith("infra-ds-")}
    assert set(others) <= with_pod, f"untainted machines without the DaemonSet's pod: {sorted(set(others) - with_pod)}"
