"""Each plugin's Filter and Score on hand-built nodes and pods (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.scheduler.framework import CycleState, FilterPlugin, ScorePlugin, Status
from kubelite.scheduler.plugins import (
    BalancedAllocation,
    LeastAllocated,
    NodeAffinity,
    NodePorts,
    NodeReady,
    NodeResourcesFit,
    NodeUnschedulable,
    OwnerSpread,
    TaintToleration,
)
from kubelite.scheduler.snapshot import NodeInfo, Snapshot, pod_info
from tests.unit.scheduler._objects import make_node, make_pod, required_affinity

Obj = dict[str, Any]


def node_with(node: Obj, *bound: Obj) -> NodeInfo:
    snap = Snapshot()
    snap.add_node(node)
    for p in bound:
        p["spec"]["nodeName"] = node["metadata"]["name"]
        snap.update_pod(p)
    return snap.nodes[node["metadata"]["name"]]


def run_filter(plugin: FilterPlugin, pod: Obj, node: NodeInfo) -> list[str] | None:
    """The failure reasons, or None when the node passes (including a PreFilter skip)."""
    state = CycleState()
    info = pod_info(pod)
    pre = plugin.pre_filter(state, info)
    if pre is not None:
        assert pre.is_skip, pre
        return None
    st: Status | None = plugin.filter(state, info, node)
    return None if st is None else list(st.reasons)


def run_scores(plugin: ScorePlugin, pod: Obj, nodes: list[NodeInfo]) -> list[int] | None:
    """Normalised scores per node, or None when the plugin skips this pod."""
    state = CycleState()
    info = pod_info(pod)
    pre = plugin.pre_score(state, info, nodes)
    if pre is not None:
        assert pre.is_skip
        return None
    scores = [plugin.score(state, info, n) for n in nodes]
    plugin.normalize_score(state, info, scores)
    return scores


# --- NodeReady / NodeUnschedulable ------------------------------------------------------------

NOT_READY = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
UNREACHABLE = "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"


@pytest.mark.parametrize(
    ("ready", "tolerations", "expected"),
    [
        ("True", None, None),
        ("False", None, [NOT_READY]),
        ("Unknown", None, [UNREACHABLE]),
        (None, None, [NOT_READY]),  # no kubelet has reported yet
        ("Unknown", [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}], None),
        ("False", [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}], [NOT_READY]),
        ("False", [{"operator": "Exists"}], None),
    ],
)
def test_node_ready(ready: str | None, tolerations: list[Obj] | None, expected: list[str] | None) -> None:
    node = node_with(make_node("n1", ready=ready))
    assert run_filter(NodeReady(), make_pod("p", tolerations=tolerations), node) == expected


@pytest.mark.parametrize(
    ("unschedulable", "tolerations", "expected"),
    [
        (False, None, None),
        (True, None, ["node(s) were unschedulable"]),
        (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}], None),
        (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}],
         ["node(s) were unschedulable"]),
    ],
)  # fmt: skip
def test_node_unschedulable(
    unschedulable: bool, tolerations: list[Obj] | None, expected: list[str] | None
) -> None:
    node = node_with(make_node("n1", unschedulable=unschedulable))
    assert run_filter(NodeUnschedulable(), make_pod("p", tolerations=tolerations), node) == expected


# --- NodeResourcesFit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "bound", "pod", "expected"),
    [
        (make_node("n", cpu="2", memory="4Gi"), [], make_pod("p", "2", "4Gi"), None),
        (make_node("n", cpu="2", memory="4Gi"), [], make_pod("p", "2001m"), ["Insufficient cpu"]),
        (make_node("n", cpu="2", memory="4Gi"), [], make_pod("p", memory="5Gi"), ["Insufficient memory"]),
        (make_node("n", cpu="2", memory="4Gi"), [make_pod("a", "1500m", "3Gi")], make_pod("p", "500m", "1Gi"), None),
        (make_node("n", cpu="2", memory="4Gi"), [make_pod("a", "1500m", "3Gi")], make_pod("p", "501m", "1025Mi"),
         ["Insufficient cpu", "Insufficient memory"]),
        (make_node("n", pods="2"), [make_pod("a"), make_pod("b")], make_pod("p"), ["Too many pods"]),
        (make_node("n", pods="3"), [make_pod("a"), make_pod("b")], make_pod("p"), None),
        # Exact decimal arithmetic: 0.1 + 0.2 CPUs fill a 300m node exactly.
        (make_node("n", cpu="300m"), [make_pod("a", "0.1"), make_pod("b", "0.2")], make_pod("p", "1m"),
         ["Insufficient cpu"]),
        (make_node("n", cpu="300m"), [make_pod("a", "0.1")], make_pod("p", "0.2"), None),
    ],
)  # fmt: skip
def test_node_resources_fit(node: Obj, bound: list[Obj], pod: Obj, expected: list[str] | None) -> None:
    assert run_filter(NodeResourcesFit(), pod, node_with(node, *bound)) == expected


def test_init_containers_and_overhead_count_like_kubernetes() -> None:
    pod = make_pod("p", cpu="100m", memory="100Mi")
    pod["spec"]["initContainers"] = [
        {"name": "init", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
        {
            "name": "sidecar",
            "restartPolicy": "Always",
            "resources": {"requests": {"cpu": "50m", "memory": "50Mi"}},
        },
    ]
    pod["spec"]["overhead"] = {"cpu": "10m"}
    info = pod_info(pod)
    # init phase: 1 CPU alone; run phase: 100m + 50m sidecar; memory: 100Mi + 50Mi; plus overhead.
    assert info.cpu == 1000 + 10
    assert info.memory == 150 * 1024 * 1024


def test_releasing_a_pod_frees_its_resources() -> None:
    snap = Snapshot()
    snap.add_node(make_node("n", cpu="1"))
    big = make_pod("a", cpu="1")
    big["spec"]["nodeName"] = "n"
    snap.update_pod(big)
    assert run_filter(NodeResourcesFit(), make_pod("p", cpu="1"), snap.nodes["n"]) == ["Insufficient cpu"]
    big["status"]["phase"] = "Succeeded"
    assert snap.update_pod(big) is True
    assert run_filter(NodeResourcesFit(), make_pod("p", cpu="1"), snap.nodes["n"]) is None


# --- NodeAffinity -----------------------------------------------------------------------------

MISMATCH = ["node(s) didn't match Pod's node affinity/selector"]


def _expr(key: str, op: str, *values: str) -> Obj:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


@pytest.mark.parametrize(
    ("labels", "pod", "expected"),
    [
        ({"disk": "ssd"}, make_pod("p"), None),
        ({"disk": "ssd"}, make_pod("p", node_selector={"disk": "ssd"}), None),
        ({"disk": "hdd"}, make_pod("p", node_selector={"disk": "ssd"}), MISMATCH),
        ({}, make_pod("p", node_selector={"disk": "ssd"}), MISMATCH),
        ({"zone": "a"}, make_pod("p", affinity=required_affinity(_expr("zone", "In", "a", "b"))), None),
        ({"zone": "c"}, make_pod("p", affinity=required_affinity(_expr("zone", "In", "a", "b"))), MISMATCH),
        ({"zone": "c"}, make_pod("p", affinity=required_affinity(_expr("zone", "NotIn", "a"))), None),
        ({}, make_pod("p", affinity=required_affinity(_expr("zone", "NotIn", "a"))), None),
        ({"gpu": "x"}, make_pod("p", affinity=required_affinity(_expr("gpu", "Exists"))), None),
        ({}, make_pod("p", affinity=required_affinity(_expr("gpu", "Exists"))), MISMATCH),
        ({"gpu": "x"}, make_pod("p", affinity=required_affinity(_expr("gpu", "DoesNotExist"))), MISMATCH),
        ({"cores": "16"}, make_pod("p", affinity=required_affinity(_expr("cores", "Gt", "8"))), None),
        ({"cores": "4"}, make_pod("p", affinity=required_affinity(_expr("cores", "Gt", "8"))), MISMATCH),
        ({"cores": "4"}, make_pod("p", affinity=required_affinity(_expr("cores", "Lt", "8"))), None),
        ({"cores": "many"}, make_pod("p", affinity=required_affinity(_expr("cores", "Lt", "8"))), MISMATCH),
        # Terms are ORed; expressions within a term are ANDed.
        ({"zone": "b"}, make_pod("p", affinity=required_affinity(_expr("zone", "In", "a"), _expr("zone", "In", "b"))),
         None),
        ({"zone": "a", "disk": "hdd"}, make_pod("p", affinity=required_affinity(
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                  {"key": "disk", "operator": "In", "values": ["ssd"]}]})), MISMATCH),
        # DaemonSet pods pin themselves to one node by name.
        ({}, make_pod("p", affinity=required_affinity(
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})), None),
        ({}, make_pod("p", affinity=required_affinity(
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]})), MISMATCH),
        # nodeSelector and affinity must both hold.
        ({"zone": "a"}, make_pod("p", node_selector={"disk": "ssd"},
                                 affinity=required_affinity(_expr("zone", "In", "a"))), MISMATCH),
        # An empty term list matches nothing.
        ({"zone": "a"}, make_pod("p", affinity=required_affinity()), MISMATCH),
    ],
)  # fmt: skip
def test_node_affinity_filter(labels: dict[str, str], pod: Obj, expected: list[str] | None) -> None:
    node = node_with(make_node("n1", labels=labels))
    assert run_filter(NodeAffinity(), pod, node) == expected


def test_preferred_node_affinity_scores_matching_nodes_higher() -> None:
    pod = make_pod("p")
    pod["spec"]["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": _expr("zone", "In", "a")},
        {"weight": 30, "preference": _expr("disk", "In", "ssd")},
    ]}}  # fmt: skip
    nodes = [
        node_with(make_node("a", labels={"zone": "a"})),
        node_with(make_node("b", labels={"zone": "a", "disk": "ssd"})),
        node_with(make_node("c")),
    ]
    assert run_scores(NodeAffinity(), pod, nodes) == [25, 100, 0]
    assert run_scores(NodeAffinity(), make_pod("plain"), nodes) is None


# --- TaintToleration --------------------------------------------------------------------------


def _taint(key: str, effect: str, value: str = "") -> Obj:
    return {"key": key, "value": value, "effect": effect}


@pytest.mark.parametrize(
    ("taints", "tolerations", "expected"),
    [
        ([], None, None),
        ([_taint("dedicated", "NoSchedule", "gpu")], None, ["node(s) had untolerated taint {dedicated: gpu}"]),
        ([_taint("dedicated", "NoExecute", "gpu")], None, ["node(s) had untolerated taint {dedicated: gpu}"]),
        ([_taint("dedicated", "PreferNoSchedule", "gpu")], None, None),
        ([_taint("dedicated", "NoSchedule", "gpu")],
         [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], None),
        ([_taint("dedicated", "NoSchedule", "gpu")],
         [{"key": "dedicated", "operator": "Equal", "value": "cpu"}], ["node(s) had untolerated taint {dedicated: gpu}"]),
        ([_taint("dedicated", "NoSchedule", "gpu")], [{"key": "dedicated", "operator": "Exists"}], None),
        ([_taint("dedicated", "NoSchedule", "gpu")],
         [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}],
         ["node(s) had untolerated taint {dedicated: gpu}"]),
        ([_taint("a", "NoSchedule"), _taint("b", "NoExecute")], [{"operator": "Exists"}], None),
        ([_taint("a", "NoSchedule"), _taint("b", "NoExecute")], [{"key": "a", "operator": "Exists"}],
         ["node(s) had untolerated taint {b: }"]),
        ([_taint("node.kubernetes.io/unreachable", "NoExecute")], None,
         ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]),
    ],
)  # fmt: skip
def test_taint_toleration_filter(
    taints: list[Obj], tolerations: list[Obj] | None, expected: list[str] | None
) -> None:
    node = node_with(make_node("n1", taints=taints))
    assert run_filter(TaintToleration(), make_pod("p", tolerations=tolerations), node) == expected


def test_prefer_no_schedule_taints_lower_the_score() -> None:
    nodes = [
        node_with(make_node("clean")),
        node_with(make_node("one", taints=[_taint("a", "PreferNoSchedule")])),
        node_with(
            make_node("two", taints=[_taint("a", "PreferNoSchedule"), _taint("b", "PreferNoSchedule")])
        ),
    ]
    assert run_scores(TaintToleration(), make_pod("p"), nodes) == [100, 50, 0]
    tolerant = make_pod("t", tolerations=[{"key": "a", "operator": "Exists"}])
    assert run_scores(TaintToleration(), tolerant, nodes) == [100, 100, 0]
    assert run_scores(TaintToleration(), make_pod("p"), nodes[:1]) is None  # nothing to prefer against


# --- NodePorts --------------------------------------------------------------------------------

PORTS_TAKEN = ["node(s) didn't have free ports for the requested pod ports"]


@pytest.mark.parametrize(
    ("used", "wanted", "expected"),
    [
        (None, None, None),
        (None, 8080, None),
        (8080, 8080, PORTS_TAKEN),
        (8080, 8081, None),
        (8080, None, None),
    ],
)
def test_node_ports(used: int | None, wanted: int | None, expected: list[str] | None) -> None:
    node = node_with(make_node("n1"), make_pod("existing", host_port=used))
    assert run_filter(NodePorts(), make_pod("p", host_port=wanted), node) == expected


def test_host_ports_on_different_ips_or_protocols_do_not_conflict() -> None:
    existing = make_pod("existing", host_port=53)
    existing["spec"]["containers"][0]["ports"][0]["hostIP"] = "10.0.0.1"
    node = node_with(make_node("n1"), existing)
    other_ip = make_pod("p", host_port=53)
    other_ip["spec"]["containers"][0]["ports"][0]["hostIP"] = "10.0.0.2"
    assert run_filter(NodePorts(), other_ip, node) is None
    udp = make_pod("u", host_port=53)
    udp["spec"]["containers"][0]["ports"][0]["protocol"] = "UDP"
    assert run_filter(NodePorts(), udp, node) is None
    assert run_filter(NodePorts(), make_pod("any", host_port=53), node) == PORTS_TAKEN  # 0.0.0.0 overlaps


# --- scores -----------------------------------------------------------------------------------


def test_owner_spread_prefers_nodes_with_fewer_replicas() -> None:
    nodes = [
        node_with(make_node("a"), make_pod("r1", owner_uid="rs-1"), make_pod("r2", owner_uid="rs-1")),
        node_with(make_node("b"), make_pod("r3", owner_uid="rs-1"), make_pod("x", owner_uid="other")),
        node_with(make_node("c")),
    ]
    assert run_scores(OwnerSpread(), make_pod("new", owner_uid="rs-1"), nodes) == [0, 50, 100]
    assert run_scores(OwnerSpread(), make_pod("new", owner_uid="rs-2"), nodes) == [100, 100, 100]
    assert run_scores(OwnerSpread(), make_pod("orphan"), nodes) is None


def test_least_allocated_prefers_emptier_nodes() -> None:
    nodes = [
        node_with(make_node("busy", cpu="4", memory="8Gi"), make_pod("a", "3", "6Gi")),
        node_with(make_node("idle", cpu="4", memory="8Gi")),
    ]
    busy, idle = run_scores(LeastAllocated(), make_pod("p", "1", "2Gi"), nodes) or []
    assert (busy, idle) == (0, 75)


def test_best_effort_pods_still_count_for_least_allocated() -> None:
    # Pods without requests are scored as 100m / 200Mi, so they do not all pile onto one node.
    nodes = [node_with(make_node("a", cpu="1", memory="1Gi"), *(make_pod(f"b{i}") for i in range(5))),
             node_with(make_node("b", cpu="1", memory="1Gi"))]  # fmt: skip
    a, b = run_scores(LeastAllocated(), make_pod("p"), nodes) or []
    assert b > a


def test_balanced_allocation_prefers_proportional_use() -> None:
    nodes = [
        node_with(make_node("cpu-heavy", cpu="4", memory="4Gi"), make_pod("a", "3", "0")),
        node_with(make_node("even", cpu="4", memory="4Gi"), make_pod("b", "1", "1Gi")),
    ]
    heavy, even = run_scores(BalancedAllocation(), make_pod("p", "1", "1Gi"), nodes) or []
    assert even == 100
    assert heavy < even
