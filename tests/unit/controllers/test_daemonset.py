"""The DaemonSet controller against a real in-process API server.

No scheduler or node agent runs here, so a small stand-in does their API writes: it binds each
pending daemon pod to the node its required affinity names (pods/{name}/binding, as the scheduler
does), marks bound pods Running+Ready through /status, and finishes graceful deletions (as the
agent does once containers stop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kubelite.client import ApiClient, ApiError
from kubelite.client.rest import resource_path
from kubelite.controllers.base import DAEMONSETS, EVENTS, NODES, PODS
from kubelite.controllers.daemonset import (
    HASH_LABEL,
    node_should_run,
    target_node,
    with_node_affinity,
)
from kubelite.controllers.manager import ControllerManager
from tests.helpers import eventually

Obj = dict[str, Any]


async def update(
    client: ApiClient, rt: Any, name: str, change: Callable[[Obj], None], ns: str | None = None
) -> Obj:
    """Read-modify-write, again on 409: the controller writes status concurrently."""
    for _ in range(20):
        obj = await client.get(rt, name, ns)
        change(obj)
        try:
            return await client.replace(rt, obj)
        except ApiError as e:
            if e.code != 409:
                raise
    raise AssertionError(f"could not update {name}")


def node(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or []},
    }


def daemonset(
    name: str = "agent", node_selector: dict[str, str] | None = None, image: str = "busybox:1"
) -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": image}], "terminationGracePeriodSeconds": 5}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


async def node_stand_in(client: ApiClient) -> None:
    """Scheduler + agents, reduced to the API writes they make for daemon pods."""
    while True:
        for pod in (await client.list(PODS, "default"))["items"]:
            m, spec = pod["metadata"], pod["spec"]
            try:
                if m.get("deletionTimestamp"):
                    await client.delete(PODS, m["name"], "default", grace_period_seconds=0)
                elif not spec.get("nodeName"):
                    target = target_node(pod)
                    nodes = {n["metadata"]["name"] for n in (await client.list(NODES))["items"]}
                    if target in nodes:
                        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": m["name"]},
                                "target": {"kind": "Node", "name": target}}  # fmt: skip
                        await client.request(
                            "POST", resource_path(PODS, "default", m["name"], "binding"), json=body
                        )
                elif (pod.get("status") or {}).get("phase") != "Running":
                    pod["status"] = {
                        "phase": "Running",
                        "conditions": [
                            {"type": "Ready", "status": "True"},
                            {"type": "PodScheduled", "status": "True"},
                        ],
                    }
                    await client.replace_status(PODS, pod)
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
        await asyncio.sleep(0.03)


@pytest.fixture
async def cluster(inproc_api: Any) -> AsyncIterator[ApiClient]:
    client: ApiClient = inproc_api.client
    manager = ControllerManager(client, ["daemonset"])
    tasks = [asyncio.create_task(manager.run()), asyncio.create_task(node_stand_in(client))]
    try:
        yield client
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def pods_by_node(client: ApiClient, ds: str = "agent") -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for p in (await client.list(PODS, "default", label_selector=f"app={ds}"))["items"]:
        out.setdefault(target_node(p), []).append(p)
    return out


async def live_nodes(client: ApiClient, ds: str = "agent") -> set[str]:
    """Nodes with a bound, Ready, non-terminating pod of the DaemonSet."""
    return {
        n
        for n, pods in (await pods_by_node(client, ds)).items()
        if any(p["spec"].get("nodeName") == n and not p["metadata"].get("deletionTimestamp")
               and (p.get("status") or {}).get("phase") == "Running" for p in pods)
    }  # fmt: skip


async def test_one_pod_per_node_and_a_new_node_gets_one(cluster: ApiClient) -> None:
    client = cluster
    for n in ("n1", "n2"):
        await client.create(NODES, node(n))
    await client.create(DAEMONSETS, daemonset())

    async def two_ready() -> Obj | None:
        ds = await client.get(DAEMONSETS, "agent", "default")
        st = ds.get("status") or {}
        return ds if st.get("numberReady") == 2 and await live_nodes(client) == {"n1", "n2"} else None

    ds = await eventually(two_ready)
    st = ds["status"]
    assert st["desiredNumberScheduled"] == 2 and st["currentNumberScheduled"] == 2
    assert st["updatedNumberScheduled"] == 2 and st["numberAvailable"] == 2 and st["numberMisscheduled"] == 0
    assert st["observedGeneration"] == ds["metadata"]["generation"]

    by_node = await pods_by_node(client)
    assert {n: len(p) for n, p in by_node.items()} == {"n1": 1, "n2": 1}
    pod = by_node["n1"][0]
    # Placed through the scheduler: pinned by affinity, with the standard daemon tolerations.
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    keys = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/unreachable", "NoExecute") in keys
    assert pod["metadata"]["labels"][HASH_LABEL]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]

    await client.create(NODES, node("n3"))
    await eventually(lambda: _eq(live_nodes(client), {"n1", "n2", "n3"}))
    assert all(len(p) == 1 for p in (await pods_by_node(client)).values())

    events = (await client.list(EVENTS, "default"))["items"]
    assert (
        sum(e["reason"] == "SuccessfulCreate" and e["involvedObject"]["name"] == "agent" for e in events) >= 3
    )


async def _eq(coro: Awaitable[Any], want: Any) -> bool:
    return bool(await coro == want)


async def test_unschedulable_taints_and_node_selector(cluster: ApiClient) -> None:
    client = cluster
    await client.create(NODES, node("plain", {"disk": "ssd"}))
    await client.create(
        NODES, node("tainted", {"disk": "ssd"}, [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    )
    await client.create(NODES, node("hdd", {"disk": "hdd"}))
    # cordoned nodes still run daemons: the unschedulable taint is tolerated automatically
    await client.create(NODES, node("cordoned", {"disk": "ssd"},
                                    [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]))  # fmt: skip
    await client.create(DAEMONSETS, daemonset(node_selector={"disk": "ssd"}))

    await eventually(lambda: _eq(live_nodes(client), {"plain", "cordoned"}))
    ds = await eventually(lambda: _status_with(client, desiredNumberScheduled=2, numberReady=2))
    assert ds["status"]["numberMisscheduled"] == 0
    assert set(await pods_by_node(client)) == {"plain", "cordoned"}

    # A new NoSchedule taint keeps a running daemon pod; NoExecute evicts it.
    await update(
        client, NODES, "plain", lambda n: n["spec"].update(taints=[{"key": "maint", "effect": "NoSchedule"}])
    )
    await eventually(lambda: _status_with(client, desiredNumberScheduled=1, numberMisscheduled=1))
    assert "plain" in await live_nodes(client)
    await update(
        client, NODES, "plain", lambda n: n["spec"].update(taints=[{"key": "maint", "effect": "NoExecute"}])
    )
    await eventually(lambda: _eq(pods_by_node(client), {"cordoned": _Any()}))

    # The node selector stops matching: the pod goes; it matches again: a pod comes back.
    await update(client, NODES, "cordoned", lambda n: n["metadata"]["labels"].update(disk="hdd"))
    await eventually(lambda: _eq(pods_by_node(client), {}))
    await update(client, NODES, "hdd", lambda n: n["metadata"]["labels"].update(disk="ssd"))
    await eventually(lambda: _eq(live_nodes(client), {"hdd"}))
    assert set(await pods_by_node(client)) == {"hdd"}


def _set_image(image: str) -> Callable[[Obj], None]:
    def change(ds: Obj) -> None:
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = image

    return change


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


async def _status_with(client: ApiClient, **want: int) -> Obj | None:
    ds = await client.get(DAEMONSETS, "agent", "default")
    st = ds.get("status") or {}
    return ds if all(st.get(k) == v for k, v in want.items()) else None


async def test_deleted_node_loses_its_pod(cluster: ApiClient) -> None:
    client = cluster
    for n in ("n1", "n2"):
        await client.create(NODES, node(n))
    await client.create(DAEMONSETS, daemonset())
    await eventually(lambda: _eq(live_nodes(client), {"n1", "n2"}))
    doomed = (await pods_by_node(client))["n2"][0]["metadata"]["name"]

    await client.delete(NODES, "n2")

    async def gone() -> bool:
        try:
            await client.get(PODS, doomed, "default")
        except ApiError as e:
            return e.code == 404
        return False

    await eventually(gone)
    await eventually(lambda: _status_with(client, desiredNumberScheduled=1, currentNumberScheduled=1))
    assert set(await pods_by_node(client)) == {"n1"}


async def test_rolling_update_replaces_pods_one_at_a_time(cluster: ApiClient) -> None:
    client = cluster
    names = ["n1", "n2", "n3", "n4"]
    for n in names:
        await client.create(NODES, node(n))
    await client.create(DAEMONSETS, daemonset())
    await eventually(lambda: _status_with(client, numberAvailable=4))
    old_pods = {p["metadata"]["name"] for ps in (await pods_by_node(client)).values() for p in ps}
    old_hash = next(iter((await pods_by_node(client)).values()))[0]["metadata"]["labels"][HASH_LABEL]

    # Watch every pod change from here on, to check maxUnavailable=1 at each step.
    rv = (await client.list(PODS, "default"))["metadata"]["resourceVersion"]
    seen: dict[str, Obj] = {}
    worst = len(names)

    async def observe() -> None:
        nonlocal worst
        async for ev in client.watch(PODS, "default", resource_version=rv):
            if ev.type == "BOOKMARK":
                continue
            name = ev.object["metadata"]["name"]
            if ev.type == "DELETED":
                seen.pop(name, None)
            else:
                seen[name] = ev.object
            serving = {
                p["spec"].get("nodeName")
                for p in seen.values()
                if not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") == "Running"
            }
            worst = min(worst, len(serving))

    for p in (await client.list(PODS, "default"))["items"]:
        seen[p["metadata"]["name"]] = p
    watcher = asyncio.create_task(observe())
    try:
        await update(client, DAEMONSETS, "agent", _set_image("busybox:2"), "default")

        async def rolled() -> bool:
            by_node = await pods_by_node(client)
            pods = [p for ps in by_node.values() for p in ps]
            return (
                len(pods) == 4
                and set(by_node) == set(names)
                and all(p["spec"]["containers"][0]["image"] == "busybox:2" for p in pods)
                and await live_nodes(client) == set(names)
            )

        await eventually(rolled, timeout=15)
        st = (await eventually(lambda: _status_with(client, updatedNumberScheduled=4, numberAvailable=4)))[
            "status"
        ]
        assert st["observedGeneration"] == 2
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    new_pods = {p["metadata"]["name"] for ps in (await pods_by_node(client)).values() for p in ps}
    assert not new_pods & old_pods
    assert all(
        p["metadata"]["labels"][HASH_LABEL] != old_hash
        for ps in (await pods_by_node(client)).values()
        for p in ps
    )
    assert worst == len(names) - 1  # never more than one node without a serving daemon pod


async def test_on_delete_strategy_leaves_old_pods(cluster: ApiClient) -> None:
    client = cluster
    await client.create(NODES, node("n1"))
    ds = daemonset()
    ds["spec"]["updateStrategy"] = {"type": "OnDelete"}
    await client.create(DAEMONSETS, ds)
    await eventually(lambda: _status_with(client, numberAvailable=1))
    await update(client, DAEMONSETS, "agent", _set_image("busybox:2"), "default")
    await eventually(lambda: _status_with(client, observedGeneration=2, updatedNumberScheduled=0))
    old = (await pods_by_node(client))["n1"][0]
    assert old["spec"]["containers"][0]["image"] == "busybox:1"

    await client.delete(PODS, old["metadata"]["name"], "default")

    async def replaced() -> bool:
        pods = (await pods_by_node(client)).get("n1", [])
        return len(pods) == 1 and pods[0]["spec"]["containers"][0]["image"] == "busybox:2"

    await eventually(replaced)


# ---- node fitness, as pure functions ---------------------------------------------------------


@pytest.mark.parametrize(
    ("taints", "tolerations", "want"),
    [
        ([], [], (True, True)),
        ([{"key": "k", "effect": "NoSchedule"}], [], (False, True)),
        ([{"key": "k", "effect": "NoExecute"}], [], (False, False)),
        ([{"key": "k", "effect": "PreferNoSchedule"}], [], (True, True)),
        ([{"key": "k", "value": "v", "effect": "NoExecute"}], [{"key": "k", "value": "v"}], (True, True)),
        ([{"key": "k", "value": "v", "effect": "NoExecute"}], [{"key": "k", "value": "w"}], (False, False)),
        ([{"key": "k", "effect": "NoSchedule"}], [{"operator": "Exists"}], (True, True)),
        ([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}], [], (True, True)),
        ([{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}], [], (True, True)),
        ([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}], [], (False, True)),
    ],
)
def test_node_should_run_taints(taints: list[Obj], tolerations: list[Obj], want: tuple[bool, bool]) -> None:
    assert node_should_run({"tolerations": tolerations}, node("n", taints=taints)) == want


def test_node_should_run_affinity_and_pinning() -> None:
    spec: Obj = {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    }  # fmt: skip
    assert node_should_run(spec, node("n", {"zone": "a"})) == (True, True)
    assert node_should_run(spec, node("n", {"zone": "b"})) == (False, False)
    pinned = with_node_affinity(spec, "n7")
    term = pinned["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    # The template's expressions stay; the node name is added as a field requirement.
    assert term["matchExpressions"] == [{"key": "zone", "operator": "In", "values": ["a"]}]
    assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]
    assert target_node({"spec": pinned}) == "n7"
    assert node_should_run(pinned, node("n7", {"zone": "a"})) == (True, True)
    assert node_should_run(pinned, node("n8", {"zone": "a"})) == (False, False)
