"""The framework over a snapshot, without HTTP: fit errors, assume/forget, and a property test that
scheduling never over-commits a node."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kubelite.scheduler.framework import num_feasible_nodes_to_find
from kubelite.scheduler.plugins import default_framework
from kubelite.scheduler.snapshot import Snapshot, pod_info
from tests.unit.scheduler._objects import make_node, make_pod


def snapshot_of(*nodes: dict[str, Any]) -> Snapshot:
    snap = Snapshot()
    for n in nodes:
        snap.add_node(n)
    return snap


def test_fit_error_message_counts_reasons_per_node() -> None:
    snap = snapshot_of(
        make_node("a", memory="1Gi"),
        make_node("b", memory="1Gi"),
        make_node("c", memory="8Gi", ready="Unknown"),
    )
    result = default_framework().schedule(pod_info(make_pod("p", memory="2Gi")), snap)
    assert result.node is None and result.error is not None
    assert result.error.message() == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
        "2 Insufficient memory."
    )


def test_no_nodes_at_all() -> None:
    result = default_framework().schedule(pod_info(make_pod("p")), Snapshot())
    assert result.error is not None and result.error.message() == "no nodes available to schedule pods"


def test_assumed_pod_takes_resources_until_forgotten() -> None:
    snap = snapshot_of(make_node("a", cpu="1"))
    fw = default_framework()
    first = pod_info(make_pod("p1", cpu="600m"))
    result = fw.schedule(first, snap)
    assert result.node == "a"
    snap.assume(first, "a")
    assert fw.schedule(pod_info(make_pod("p2", cpu="600m")), snap).node is None
    snap.forget(first.key)
    assert fw.schedule(pod_info(make_pod("p2", cpu="600m")), snap).node == "a"


def test_informer_confirmation_replaces_the_assumption_without_double_counting() -> None:
    snap = snapshot_of(make_node("a", cpu="1"))
    pod = make_pod("p1", cpu="600m")
    snap.assume(pod_info(pod), "a")
    snap.update_pod(pod)  # a pending-pod event while the bind is in flight keeps the assumption
    assert snap.nodes["a"].req_cpu == 600
    bound = {**pod, "spec": {**pod["spec"], "nodeName": "a"}}
    snap.update_pod(bound)
    assert not snap.is_assumed("default/p1")
    assert snap.nodes["a"].req_cpu == 600
    snap.forget("default/p1")  # a late failure report changes nothing once confirmed
    assert snap.nodes["a"].req_cpu == 600
    snap.remove_pod(bound)
    assert snap.nodes["a"].req_cpu == 0


def test_large_clusters_look_for_a_share_of_nodes() -> None:
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(500) == 230  # 46 % (50 - 500/125), as kube-scheduler
    assert num_feasible_nodes_to_find(5000) == 500
    assert num_feasible_nodes_to_find(500, percentage=100) == 500


def _sizes(step: int, steps: int) -> st.SearchStrategy[int]:
    # Mostly a coarse grid, so exactly-full nodes (the boundary that matters) are common; sometimes
    # any value, so off-by-a-little mistakes show too.
    return st.one_of(st.integers(0, steps).map(lambda n: n * step), st.integers(0, step * steps))


nodes_strategy = st.lists(
    st.tuples(
        _sizes(250, 16), _sizes(256, 32), st.integers(min_value=0, max_value=8)
    ),  # cpu m, memory Mi, pods
    min_size=1,
    max_size=8,
)
pods_strategy = st.lists(
    st.tuples(
        st.one_of(st.none(), _sizes(250, 10)),
        st.one_of(st.none(), _sizes(256, 20)),
        st.sampled_from([None, "owner-a", "owner-b"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(nodes=nodes_strategy, pods=pods_strategy, seed=st.integers(0, 2**16))
def test_scheduling_never_overcommits_a_node(
    nodes: list[tuple[int, int, int]], pods: list[tuple[int | None, int | None, str | None]], seed: int
) -> None:
    snap = snapshot_of(*(make_node(f"n{i}", f"{c}m", f"{m}Mi", str(p)) for i, (c, m, p) in enumerate(nodes)))
    fw = default_framework(rng=random.Random(seed))
    placed: dict[str, list[tuple[int, int]]] = {f"n{i}": [] for i in range(len(nodes))}
    for i, (cpu, mem, owner) in enumerate(pods):
        pod = make_pod(
            f"p{i}", None if cpu is None else f"{cpu}m", None if mem is None else f"{mem}Mi", owner_uid=owner
        )
        info = pod_info(pod)
        result = fw.schedule(info, snap)
        if result.node is None:
            # Unschedulable must mean it really fits nowhere.
            for j, (c, m, p) in enumerate(nodes):
                used = placed[f"n{j}"]
                fits = (len(used) + 1 <= p and sum(u[0] for u in used) + (cpu or 0) <= c
                        and sum(u[1] for u in used) + (mem or 0) <= m)  # fmt: skip
                assert not fits, f"p{i} fits n{j} but was reported unschedulable"
            continue
        snap.assume(info, result.node)
        placed[result.node].append((cpu or 0, mem or 0))
    for j, (c, m, p) in enumerate(nodes):
        used = placed[f"n{j}"]
        assert len(used) <= p
        assert sum(u[0] for u in used) <= c
        assert sum(u[1] for u in used) <= m
        node = snap.nodes[f"n{j}"]
        assert (node.req_cpu, node.req_memory, node.pod_count) == (
            sum(u[0] for u in used), sum(u[1] for u in used) * 1024 * 1024, len(used),
        )  # fmt: skip
