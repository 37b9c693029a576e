"""DaemonSet placement, checked on the machines: one pod of each DaemonSet on every matching machine, none elsewhere.

Whether a node matches is worked out here from the Node and the pod template (nodeSelector, required
node affinity, taints against tolerations), independently of the DaemonSet controller under test.

A worker added during the run (``kubelite cluster add-node``: the provider creates the machine, the
deploy joins it) must get one pod of each DaemonSet, seen on that machine; it is removed again
(``remove-node``) at the end of this module so the checks after it see the cluster as it was.
``--no-add-node`` leaves this step out, for clusters whose provider cannot create machines (ssh).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from testinfra.host import Host

from kubelite.controllers.base import DAEMONSETS, PODS
from tests.infra.cluster import Api, InfraCluster, is_terminating, next_worker_name, node_ready, retry
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


SETTLE_ADDED = 60.0  # a new node: its DaemonSet pod is created, bound, its image pulled, started
GONE_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _needs_containers(cluster: InfraCluster, workloads: Workloads) -> None:
    if cluster.spec.runtime == "fake":
        pytest.skip("placement is read from the machines' containers; the fake runtime runs none")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``added_host``: the worker add-node will create, named (as it names it) before it exists."""
    if "added_host" in metafunc.fixturenames:
        cluster = InfraCluster.load(str(metafunc.config.getoption("--cluster")))
        name = next_worker_name(cluster.state)
        cluster.close()
        metafunc.parametrize("added_host", [name], ids=[name], indirect=True, scope="module")


@pytest.fixture(scope="module")
def added_host(request: pytest.FixtureRequest, cluster: InfraCluster, api: Api) -> Iterator[Host]:
    """A worker added for this module (and then removed, leaving the cluster as it was)."""
    if request.config.getoption("--no-add-node"):
        pytest.skip("--no-add-node: no node is added during the run")
    if not cluster.powers_machines:
        pytest.fail(f"the {cluster.spec.provider} provider cannot add a machine: run the suite with --no-add-node")
    request.getfixturevalue("workloads")  # the DaemonSets to place exist before the node comes
    try:
        name = cluster.add_worker()
    except AssertionError:
        # A machine created but not joined is removed too: the next run must find the cluster as it was.
        if request.param in [m.name for m in cluster.state.machines()]:
            cluster.remove_worker(request.param)
        raise
    assert name == request.param, f"add-node added {name}, the suite expected {request.param}"
    try:
        node = api.nodes().get(name)
        assert node is not None and node_ready(node), f"add-node returned but Node {name} is not Ready"
        yield cluster.connect(name)
    finally:
        cluster.remove_worker(name)
        deadline = time.monotonic() + GONE_TIMEOUT
        while (left := _left_of(api, name)) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, f"after remove-node {name}: {'; '.join(left)}"


def _left_of(api: Api, node: str) -> list[str]:
    """What the API still holds of a removed node: the Node, pods bound to it."""
    left = [f"Node {node} still exists"] if node in api.nodes() else []
    pods = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in api.pods_on(node)]
    return left + ([f"pods still bound to it: {', '.join(pods)}"] if pods else [])


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


def _placement_problems(host: Host, machine: str, api: Api) -> list[str]:
    """Each DaemonSet has exactly one pod running on ``machine`` if the machine matches it, else none."""
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


def test_one_pod_of_each_daemonset_per_matching_machine(host: Host, machine: str, api: Api) -> None:
    problems = retry(lambda: _placement_problems(host, machine, api), SETTLE)
    assert not problems, "; ".join(problems)


def test_added_node_gets_one_pod_of_each_daemonset(added_host: Host, api: Api) -> None:
    machine = str(added_host.backend.get_hostname())
    problems = retry(lambda: _placement_problems(added_host, machine, api), SETTLE_ADDED, interval=2.0)
    assert not problems, f"added node {machine}: " + "; ".join(problems)


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
