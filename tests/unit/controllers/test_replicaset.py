"""The ReplicaSet controller against a real in-process API server.

No node agent runs here, so pods never start by themselves: where a test needs Ready pods it
writes the status the agent would write (phase Running, Ready=True) through pods/{name}/status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.client import ApiClient
from kubelite.controllers.base import EVENTS, PODS, REPLICASETS
from tests.helpers import eventually, running_controllers

Obj = dict[str, Any]
NS = "default"


def rs_manifest(name: str, replicas: int, app: str | None = None, min_ready: int = 0) -> Obj:
    labels = {"app": app or name}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, "tier": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            },
        },
    }


async def active_pods(client: ApiClient, selector: str) -> list[Obj]:
    items = (await client.list(PODS, namespace=NS, label_selector=selector))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def mark_ready(client: ApiClient, pod: Obj, ready: bool = True) -> None:
    """Stand in for the node agent: report the pod Running and (not) Ready."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}],
    }
    await client.patch(PODS, pod["metadata"]["name"], {"status": status}, namespace=NS, subresource="status")


async def bind(client: ApiClient, pod: Obj, node: str = "node-1") -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod["metadata"]["name"]},
        "target": {"kind": "Node", "name": node},
    }
    await client.request("POST", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/binding", json=body)


@pytest.fixture
async def api(inproc_api: Any) -> AsyncIterator[ApiClient]:
    client: ApiClient = inproc_api.client
    async with running_controllers(client, ["replicaset"]):
        yield client


async def settled(client: ApiClient, name: str, replicas: int) -> Obj:
    """The ReplicaSet once its status reports ``replicas`` pods for its current generation."""

    async def check() -> Obj | None:
        rs = await client.get(REPLICASETS, name, namespace=NS)
        st = rs.get("status") or {}
        ok = st.get("replicas") == replicas and st.get("observedGeneration") == rs["metadata"]["generation"]
        return rs if ok else None

    result: Obj = await eventually(check, what=f"{name} to report {replicas} replicas")
    return result


async def test_creates_exactly_n_without_overshoot(api: ApiClient) -> None:
    created: set[str] = set()

    async def record() -> None:
        # Every pod ever created, even one created and deleted again between two polls.
        async for ev in api.watch(PODS, namespace=NS, label_selector="app=burst"):
            if ev.type == "ADDED":
                created.add(ev.object["metadata"]["name"])

    watcher = asyncio.create_task(record())
    await asyncio.sleep(0.1)  # the watch is open before anything is created
    try:
        await api.create(REPLICASETS, rs_manifest("burst", 50))
        await settled(api, "burst", 50)
        # A sync that trusted a lagging cache would create more: give it the chance, then count.
        await api.patch(REPLICASETS, "burst", {"metadata": {"labels": {"poke": "1"}}}, namespace=NS)
        await asyncio.sleep(0.5)
        pods = await active_pods(api, "app=burst")
        assert len(pods) == 50
        assert len(created) == 50
        for p in pods:
            assert p["metadata"]["generateName"] == "burst-"
            (ref,) = p["metadata"]["ownerReferences"]
            assert ref["kind"] == "ReplicaSet" and ref["name"] == "burst"
            assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
            assert p["metadata"]["labels"] == {"app": "burst", "tier": "web"}
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_scale_up_and_down(api: ApiClient) -> None:
    await api.create(REPLICASETS, rs_manifest("sc", 2))
    await settled(api, "sc", 2)
    await api.patch(REPLICASETS, "sc", {"spec": {"replicas": 5}}, namespace=NS)
    await settled(api, "sc", 5)
    assert len(await active_pods(api, "app=sc")) == 5
    await api.patch(REPLICASETS, "sc", {"spec": {"replicas": 1}}, namespace=NS)
    await settled(api, "sc", 1)
    assert len(await active_pods(api, "app=sc")) == 1
    await api.patch(REPLICASETS, "sc", {"spec": {"replicas": 0}}, namespace=NS)
    await settled(api, "sc", 0)
    assert await active_pods(api, "app=sc") == []


async def test_scale_down_deletes_least_valuable_first(api: ApiClient) -> None:
    await api.create(REPLICASETS, rs_manifest("pick", 4))
    await settled(api, "pick", 4)
    pods = sorted(await active_pods(api, "app=pick"), key=lambda p: p["metadata"]["name"])
    unscheduled, pending, running_unready, ready = pods
    for p in (pending, running_unready, ready):
        await bind(api, p)
    await mark_ready(api, running_unready, ready=False)
    await mark_ready(api, ready)

    async def keeps(n: int) -> set[str]:
        await api.patch(REPLICASETS, "pick", {"spec": {"replicas": n}}, namespace=NS)
        await settled(api, "pick", n)
        return {p["metadata"]["name"] for p in await active_pods(api, "app=pick")}

    def names(*pods: Obj) -> set[str]:
        return {p["metadata"]["name"] for p in pods}

    assert await keeps(3) == names(pending, running_unready, ready)  # unscheduled went first
    assert names(unscheduled).isdisjoint(await keeps(3))
    assert await keeps(2) == names(running_unready, ready)  # then pending before running
    assert await keeps(1) == names(ready)  # then not-ready before ready


async def test_scale_down_prefers_newer_pods(api: ApiClient) -> None:
    # Pods whose only difference is age: the newest goes first. creationTimestamp has 1 s
    # resolution, so make the age difference explicit with an orphan created earlier.
    old = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "old-one", "namespace": NS, "labels": {"app": "age", "tier": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }  # fmt: skip
    await api.create(PODS, old)
    await asyncio.sleep(1.1)
    await api.create(REPLICASETS, rs_manifest("age", 3))
    await settled(api, "age", 3)
    await api.patch(REPLICASETS, "age", {"spec": {"replicas": 1}}, namespace=NS)
    await settled(api, "age", 1)
    assert [p["metadata"]["name"] for p in await active_pods(api, "app=age")] == ["old-one"]


async def test_adopts_orphan(api: ApiClient) -> None:
    orphan: Obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": NS, "labels": {"app": "adopt", "tier": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }  # fmt: skip
    await api.create(PODS, orphan)
    rs = await api.create(REPLICASETS, rs_manifest("adopt", 2))
    await settled(api, "adopt", 2)
    pods = await active_pods(api, "app=adopt")
    assert len(pods) == 2
    stray = await api.get(PODS, "stray", namespace=NS)
    (ref,) = stray["metadata"]["ownerReferences"]
    assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"] is True

    # An orphan appearing later is adopted too, and the surplus it makes is removed.
    late = {**orphan, "metadata": {**orphan["metadata"], "name": "late"}}
    await api.create(PODS, late)

    async def adopted_and_trimmed() -> bool:
        pods = await active_pods(api, "app=adopt")
        owned = all(p["metadata"].get("ownerReferences") for p in pods)
        return len(pods) == 2 and owned

    await eventually(adopted_and_trimmed, what="late orphan adopted and surplus deleted")


async def test_does_not_adopt_pods_of_another_controller(api: ApiClient) -> None:
    foreign = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "foreign", "namespace": NS, "labels": {"app": "mine", "tier": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "other",
                                 "uid": "00000000-0000-0000-0000-000000000001", "controller": True}],
        },
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }  # fmt: skip
    await api.create(PODS, foreign)
    await api.create(REPLICASETS, rs_manifest("mine", 2))
    await settled(api, "mine", 2)
    assert len(await active_pods(api, "app=mine")) == 3  # its own two, plus the untouched foreign one
    f = await api.get(PODS, "foreign", namespace=NS)
    assert f["metadata"]["ownerReferences"][0]["name"] == "other"


async def test_releases_relabelled_pod_and_replaces_it(api: ApiClient) -> None:
    await api.create(REPLICASETS, rs_manifest("rel", 2))
    await settled(api, "rel", 2)
    victim = (await active_pods(api, "app=rel"))[0]
    name = victim["metadata"]["name"]
    await api.patch(PODS, name, {"metadata": {"labels": {"app": "debug"}}}, namespace=NS)

    async def released() -> bool:
        pod = await api.get(PODS, name, namespace=NS)
        return not pod["metadata"].get("ownerReferences")

    await eventually(released, what="the relabelled pod to be released")

    async def replaced() -> bool:
        pods = await active_pods(api, "app=rel")
        return len(pods) == 2 and name not in {p["metadata"]["name"] for p in pods}

    await eventually(replaced, what="a replacement pod")
    assert (await api.get(PODS, name, namespace=NS))["metadata"]["labels"]["app"] == "debug"


async def test_ignores_terminating_pods_and_replaces_them(api: ApiClient) -> None:
    await api.create(REPLICASETS, rs_manifest("term", 2))
    await settled(api, "term", 2)
    pod = (await active_pods(api, "app=term"))[0]
    await bind(api, pod)
    await mark_ready(api, pod)
    # Bound and running: a graceful delete only marks it (the agent would finish it).
    await api.delete(PODS, pod["metadata"]["name"], namespace=NS)
    still = await api.get(PODS, pod["metadata"]["name"], namespace=NS)
    assert still["metadata"].get("deletionTimestamp")

    async def replaced() -> bool:
        return len(await active_pods(api, "app=term")) == 2

    await eventually(replaced, what="a replacement for the terminating pod")
    rs = await settled(api, "term", 2)
    assert rs["status"]["replicas"] == 2


async def test_status_counts(api: ApiClient) -> None:
    await api.create(REPLICASETS, rs_manifest("st", 3))
    await settled(api, "st", 3)
    pods = await active_pods(api, "app=st")
    await mark_ready(api, pods[0])
    await mark_ready(api, pods[1])
    await api.patch(PODS, pods[2]["metadata"]["name"], {"metadata": {"labels": {"tier": None}}}, namespace=NS)

    async def counted() -> Obj | None:
        rs = await api.get(REPLICASETS, "st", namespace=NS)
        st = rs["status"]
        want = {"replicas": 3, "readyReplicas": 2, "availableReplicas": 2, "fullyLabeledReplicas": 2}
        return rs if all(st.get(k) == v for k, v in want.items()) else None

    rs = await eventually(counted, what="status to count ready and fully labelled pods")
    assert rs["status"]["observedGeneration"] == rs["metadata"]["generation"]


async def test_min_ready_seconds_delays_availability(api: ApiClient) -> None:
    await api.create(REPLICASETS, rs_manifest("mrs", 1, min_ready=1))
    await settled(api, "mrs", 1)
    (pod,) = await active_pods(api, "app=mrs")
    await mark_ready(api, pod)

    async def ready_not_available() -> bool:
        st = (await api.get(REPLICASETS, "mrs", namespace=NS))["status"]
        return st.get("readyReplicas") == 1 and st.get("availableReplicas") == 0

    async def available() -> bool:
        st = (await api.get(REPLICASETS, "mrs", namespace=NS))["status"]
        return st.get("availableReplicas") == 1

    await eventually(ready_not_available, what="ready but not yet available")
    # Nothing else changes: only the controller's own requeue can make it available.
    await eventually(available, timeout=5, what="available after minReadySeconds")


async def test_events_recorded(api: ApiClient) -> None:
    await api.create(REPLICASETS, rs_manifest("ev", 2))
    await settled(api, "ev", 2)
    await api.patch(REPLICASETS, "ev", {"spec": {"replicas": 1}}, namespace=NS)
    await settled(api, "ev", 1)

    async def events() -> list[str]:
        items = (await api.list(EVENTS, namespace=NS, field_selector="involvedObject.name=ev"))["items"]
        reasons = [e["reason"] for e in items]
        return reasons if "SuccessfulDelete" in reasons and reasons.count("SuccessfulCreate") == 2 else []

    await eventually(events, what="SuccessfulCreate and SuccessfulDelete events")
    items = (await api.list(EVENTS, namespace=NS, field_selector="involvedObject.name=ev"))["items"]
    assert all(e["message"].startswith(("Created pod: ev-", "Deleted pod: ev-")) for e in items)
