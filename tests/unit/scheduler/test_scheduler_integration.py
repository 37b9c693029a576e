"""The Scheduler against a real in-process API server: binding, spreading, Unschedulable reporting,
retry when the cluster changes, taints and selectors."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import pytest

from kubelite.api.registry import resource
from kubelite.client import ApiClient
from kubelite.controllers.base import EVENTS, NODES, PODS
from kubelite.controllers.manager import ControllerManager
from tests.helpers import eventually, running_controllers
from tests.unit.scheduler._objects import make_node, make_pod, required_affinity

Obj = dict[str, Any]


async def create_node(client: ApiClient, node: Obj) -> None:
    status = node.pop("status")
    await client.create(NODES, node)
    await client.patch(NODES, node["metadata"]["name"], {"status": status}, subresource="status")


async def create_pod(client: ApiClient, pod: Obj) -> None:
    pod["metadata"].pop("uid", None)  # the server assigns it
    await client.create(PODS, pod)


async def pods_by_name(client: ApiClient) -> dict[str, Obj]:
    items = (await client.list(PODS, "default"))["items"]
    return {p["metadata"]["name"]: p for p in items}


def pod_scheduled(pod: Obj) -> Obj | None:
    return next(
        (c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == "PodScheduled"), None
    )


def running_scheduler(client: ApiClient) -> contextlib.AbstractAsyncContextManager[ControllerManager]:
    return running_controllers(client, ["scheduler"])


@pytest.fixture
async def client(inproc_api: Any) -> ApiClient:
    c: ApiClient = inproc_api.client
    for name in ("n1", "n2", "n3"):
        await create_node(c, make_node(name, cpu="2", memory="4Gi", pods="110"))
    return c


async def test_replicas_spread_and_a_too_big_pod_waits_for_a_big_node(client: ApiClient) -> None:
    for i in range(10):
        await create_pod(client, make_pod(f"web-{i}", cpu="100m", memory="128Mi", owner_uid="rs-web"))
    await create_pod(client, make_pod("huge", cpu="100m", memory="8Gi"))

    async with running_scheduler(client):

        async def all_web_bound() -> dict[str, Obj] | None:
            pods = await pods_by_name(client)
            web = [p for n, p in pods.items() if n.startswith("web-")]
            return pods if all(p["spec"].get("nodeName") for p in web) else None

        pods = await eventually(all_web_bound)
        per_node = Counter(p["spec"]["nodeName"] for n, p in pods.items() if n.startswith("web-"))
        assert set(per_node) == {"n1", "n2", "n3"}
        assert max(per_node.values()) - min(per_node.values()) <= 1
        assert all(pod_scheduled(p)["status"] == "True" for n, p in pods.items() if n.startswith("web-"))  # type: ignore[index]

        async def huge_unschedulable() -> Obj | None:
            pod = (await pods_by_name(client))["huge"]
            cond = pod_scheduled(pod)
            return cond if cond and cond["status"] == "False" else None

        cond = await eventually(huge_unschedulable)
        assert cond["reason"] == "Unschedulable"
        assert cond["message"] == "0/3 nodes are available: 3 Insufficient memory."
        assert not (await pods_by_name(client))["huge"]["spec"].get("nodeName")

        async def failed_scheduling_event() -> list[Obj]:
            events = (await client.list(EVENTS, "default"))["items"]
            return [
                e
                for e in events
                if e["involvedObject"]["name"] == "huge" and e["reason"] == "FailedScheduling"
            ]

        events = await eventually(failed_scheduling_event)
        assert events[0]["type"] == "Warning"
        assert "Insufficient memory" in events[0]["message"]

        async def scheduled_events() -> list[Obj]:
            events = (await client.list(EVENTS, "default"))["items"]
            found = [e for e in events if e["reason"] == "Scheduled"]
            return found if len(found) >= 10 else []

        scheduled = await eventually(scheduled_events)
        web0 = next(e for e in scheduled if e["involvedObject"]["name"] == "web-0")
        assert (
            web0["message"] == f"Successfully assigned default/web-0 to {pods['web-0']['spec']['nodeName']}"
        )

        # A node that can hold it appears: the parked pod is retried without waiting for the slow flush.
        await create_node(client, make_node("big", cpu="4", memory="16Gi"))

        async def huge_bound() -> str | None:
            return (await pods_by_name(client))["huge"]["spec"].get("nodeName")

        assert await eventually(huge_bound) == "big"
        assert pod_scheduled((await pods_by_name(client))["huge"])["status"] == "True"  # type: ignore[index]


async def test_a_burst_never_overcommits_and_a_deleted_pod_makes_room(client: ApiClient) -> None:
    # 3 nodes x 2 CPUs: six 1-CPU pods fit, the seventh must wait. The burst is scheduled before
    # any bind returns, so only the assumed pods stop a node from being picked twice.
    for i in range(7):
        await create_pod(client, make_pod(f"cpu-{i}", cpu="1", memory="64Mi"))
    async with running_scheduler(client):

        async def settled() -> dict[str, Obj] | None:
            pods = await pods_by_name(client)
            bound = [p for p in pods.values() if p["spec"].get("nodeName")]
            waiting = [p for p in pods.values() if (pod_scheduled(p) or {}).get("status") == "False"]
            return pods if len(bound) == 6 and len(waiting) == 1 else None

        pods = await eventually(settled)
        assert Counter(p["spec"]["nodeName"] for p in pods.values() if p["spec"].get("nodeName")) == {
            "n1": 2, "n2": 2, "n3": 2,
        }  # fmt: skip
        (waiting,) = [p for p in pods.values() if not p["spec"].get("nodeName")]
        assert pod_scheduled(waiting)["message"] == "0/3 nodes are available: 3 Insufficient cpu."  # type: ignore[index]

        victim = next(p for p in pods.values() if p["spec"].get("nodeName"))
        await client.delete(PODS, victim["metadata"]["name"], "default", grace_period_seconds=0)
        name = waiting["metadata"]["name"]

        async def waiting_bound() -> str | None:
            return (await pods_by_name(client))[name]["spec"].get("nodeName")

        assert await eventually(waiting_bound) == victim["spec"]["nodeName"]


async def test_taints_selectors_and_pods_that_are_not_ours(client: ApiClient) -> None:
    await create_node(client, make_node(
        "gpu", labels={"accel": "gpu"}, taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    ))  # fmt: skip
    gpu_toleration = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    await create_pod(client, make_pod("trainer", node_selector={"accel": "gpu"}, tolerations=gpu_toleration))
    await create_pod(client, make_pod("intruder", node_selector={"accel": "gpu"}))
    for i in range(4):
        await create_pod(client, make_pod(f"plain-{i}"))  # never onto the tainted node
    await create_pod(client, make_pod("pinned", affinity=required_affinity(
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
    )))  # fmt: skip
    other = make_pod("other-scheduler")
    other["spec"]["schedulerName"] = "someone-else"
    await create_pod(client, other)
    await create_pod(client, make_pod("preassigned", node_name="n3"))

    async with running_scheduler(client):

        async def settled() -> dict[str, Obj] | None:
            pods = await pods_by_name(client)
            done = all(
                pods[n]["spec"].get("nodeName")
                for n in ("trainer", "pinned", *(f"plain-{i}" for i in range(4)))
            )
            intruder = pod_scheduled(pods["intruder"])
            return pods if done and intruder and intruder["status"] == "False" else None

        pods = await eventually(settled)
        assert pods["trainer"]["spec"]["nodeName"] == "gpu"
        assert pods["pinned"]["spec"]["nodeName"] == "n2"
        assert all(pods[f"plain-{i}"]["spec"]["nodeName"] in ("n1", "n2", "n3") for i in range(4))
        assert pod_scheduled(pods["intruder"])["message"] == (  # type: ignore[index]
            "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
            "3 node(s) didn't match Pod's node affinity/selector."
        )
        # Pods for another scheduler, or already assigned, are left exactly as they were.
        await asyncio.sleep(0.3)
        pods = await pods_by_name(client)
        assert not pods["other-scheduler"]["spec"].get("nodeName")
        assert pod_scheduled(pods["other-scheduler"]) is None
        assert pods["preassigned"]["spec"]["nodeName"] == "n3"
        assert pod_scheduled(pods["preassigned"]) is None


async def test_a_pod_whose_claim_is_bound_to_a_node_local_volume_goes_to_that_node(client: ApiClient) -> None:
    pvcs, pvs = resource("", "persistentvolumeclaims"), resource("", "persistentvolumes")
    claim = {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    await client.create(pvcs, claim, namespace="default")
    # What the agent's local-path provisioner records at first use: a PV pinned to its node.
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}  # fmt: skip
    pv = {"metadata": {"name": "pvc-data"}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/x"},
        "nodeAffinity": affinity, "claimRef": {"namespace": "default", "name": "data"}}}  # fmt: skip
    await client.create(pvs, pv)
    await client.patch(pvcs, "data", {"spec": {"volumeName": "pvc-data"}}, namespace="default")

    def with_claim(name: str, claim_name: str) -> Obj:
        pod = make_pod(name)
        pod["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": claim_name}}]
        return pod

    async with running_scheduler(client):
        for i in range(4):
            await create_pod(client, with_claim(f"p{i}", "data"))
        await create_pod(client, with_claim("orphan", "missing"))

        async def placed() -> dict[str, Obj] | None:
            pods = await pods_by_name(client)
            return pods if all(pods[f"p{i}"]["spec"].get("nodeName") for i in range(4)) else None

        pods = await eventually(placed, what="pods with the claim bound")
        assert {pods[f"p{i}"]["spec"]["nodeName"] for i in range(4)} == {"n2"}

        async def orphan_waits() -> Obj | None:
            cond = pod_scheduled((await pods_by_name(client))["orphan"])
            return cond if cond and cond["status"] == "False" else None

        cond = await eventually(orphan_waits, what="a pod with a missing claim to be unschedulable")
        assert 'persistentvolumeclaim "missing" not found' in cond["message"]
        await client.create(pvcs, {**claim, "metadata": {"name": "missing"}}, namespace="default")

        async def orphan_placed() -> bool:
            return bool((await pods_by_name(client))["orphan"]["spec"].get("nodeName"))

        await eventually(orphan_placed, what="the pod to be placed once its claim exists")
