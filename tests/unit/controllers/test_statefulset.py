"""The StatefulSet controller against a real in-process API server.

No scheduler or node agent runs here, so a stand-in makes their API writes: it binds pending
pods to node n1 (pods/{name}/binding), marks bound pods Running+Ready through /status, and
finishes graceful deletions (the agent's delete with grace 0). A watch records every pod change,
so ordering claims are checked at each instant rather than at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.client import ApiClient, ApiError
from kubelite.client.rest import resource_path
from kubelite.controllers.base import EVENTS, PODS, PVCS, STATEFULSETS
from kubelite.controllers.manager import ControllerManager
from kubelite.controllers.statefulset import ordinal_of
from tests.helpers import eventually

Obj = dict[str, Any]


async def update(client: ApiClient, rt: Any, name: str, change: Callable[[Obj], None]) -> Obj:
    """Read-modify-write, again on 409: the controller writes status concurrently."""
    for _ in range(20):
        obj = await client.get(rt, name, "default")
        change(obj)
        try:
            return await client.replace(rt, obj)
        except ApiError as e:
            if e.code != 409:
                raise
    raise AssertionError(f"could not update {name}")


def statefulset(replicas: int = 3, policy: str = "OrderedReady", image: str = "nginx:1") -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": image,
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "terminationGracePeriodSeconds": 5,
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }


@dataclass
class Stand:
    """The scheduler and node agent, reduced to the API writes they make; ``ready`` can be withheld."""

    client: ApiClient
    ready: bool = True

    async def run(self) -> None:
        while True:
            for pod in (await self.client.list(PODS, "default"))["items"]:
                await self._step(pod)
            await asyncio.sleep(0.03)

    async def _step(self, pod: Obj) -> None:
        m, client = pod["metadata"], self.client
        try:
            if m.get("deletionTimestamp"):
                await client.delete(
                    PODS, m["name"], "default", grace_period_seconds=0, preconditions={"uid": m["uid"]}
                )
            elif not pod["spec"].get("nodeName"):
                body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": m["name"]},
                        "target": {"kind": "Node", "name": "n1"}}  # fmt: skip
                await client.request("POST", resource_path(PODS, "default", m["name"], "binding"), json=body)
            elif self.ready and (pod.get("status") or {}).get("phase") != "Running":
                pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
                await client.replace_status(PODS, pod)
        except ApiError as e:
            if e.code not in (404, 409):
                raise


@dataclass
class Timeline:
    """Every pod change seen by a watch, with the ordering invariants checked at each instant."""

    pods: dict[str, Obj] = field(default_factory=dict)  # uid -> pod
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (event, pod name, uid)
    violations: list[str] = field(default_factory=list)
    check_order: bool = True

    def apply(self, type_: str, pod: Obj) -> None:
        m = pod["metadata"]
        name, uid = m["name"], m["uid"]
        prev = self.pods.get(uid)
        if type_ == "DELETED":
            self.pods.pop(uid, None)
            self.log.append(("deleted", name, uid))
            return
        if prev is None:
            self.log.append(("created", name, uid))
            self._check_created(name)
        elif m.get("deletionTimestamp") and not prev["metadata"].get("deletionTimestamp"):
            self.log.append(("terminating", name, uid))
        self.pods[uid] = pod
        ordinals = [ordinal_of("web", p["metadata"]["name"]) for p in self.pods.values()]
        if len(ordinals) != len(set(ordinals)):
            self.violations.append(
                f"two pods share an ordinal after {type_} {name}: {sorted(map(str, ordinals))}"
            )

    def _check_created(self, name: str) -> None:
        ordinal = ordinal_of("web", name)
        if not self.check_order or not ordinal:
            return
        before = [p for p in self.pods.values() if ordinal_of("web", p["metadata"]["name"]) == ordinal - 1]
        if not any(_ready(p) and not p["metadata"].get("deletionTimestamp") for p in before):
            self.violations.append(f"{name} created before web-{ordinal - 1} was Ready")

    def first(self, event: str, name: str) -> int:
        return next(i for i, (e, n, _) in enumerate(self.log) if e == event and n == name)


def _ready(pod: Obj) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )


@dataclass
class Cluster:
    client: ApiClient
    stand: Stand
    timeline: Timeline


@pytest.fixture
async def cluster(inproc_api: Any) -> AsyncIterator[Cluster]:
    client: ApiClient = inproc_api.client
    stand, timeline = Stand(client), Timeline()
    listed = await client.list(PODS, "default")
    ready = asyncio.Event()

    async def watch() -> None:
        ready.set()
        async for ev in client.watch(PODS, "default", resource_version=listed["metadata"]["resourceVersion"]):
            if ev.type != "BOOKMARK":
                timeline.apply(ev.type, ev.object)

    manager = ControllerManager(client, ["statefulset"])
    tasks = [asyncio.create_task(watch())]
    await ready.wait()
    tasks += [asyncio.create_task(manager.run()), asyncio.create_task(stand.run())]
    try:
        yield Cluster(client, stand, timeline)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    assert timeline.violations == []


async def status_with(client: ApiClient, **want: Any) -> Obj | None:
    sts = await client.get(STATEFULSETS, "web", "default")
    st = sts.get("status") or {}
    return sts if all(st.get(k) == v for k, v in want.items()) else None


async def pod_names(client: ApiClient) -> list[str]:
    return sorted(p["metadata"]["name"] for p in (await client.list(PODS, "default"))["items"])


async def claims(client: ApiClient) -> dict[str, str]:
    return {
        c["metadata"]["name"]: c["metadata"]["uid"] for c in (await client.list(PVCS, "default"))["items"]
    }


async def test_ordered_start_with_identity_and_claims(cluster: Cluster) -> None:
    client = cluster.client
    await client.create(STATEFULSETS, statefulset())
    sts = await eventually(lambda: status_with(client, readyReplicas=3, availableReplicas=3, replicas=3))
    st = sts["status"]
    assert st["currentReplicas"] == st["updatedReplicas"] == 3
    assert st["currentRevision"] == st["updateRevision"] and st["updateRevision"].startswith("web-")
    assert st["observedGeneration"] == 1

    created = [n for e, n, _ in cluster.timeline.log if e == "created"]
    assert created == ["web-0", "web-1", "web-2"]
    assert set(await claims(client)) == {"data-web-0", "data-web-1", "data-web-2"}

    pod = await client.get(PODS, "web-1", "default")
    assert pod["spec"]["hostname"] == "web-1" and pod["spec"]["subdomain"] == "web"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    assert labels["controller-revision-hash"] == st["updateRevision"] and labels["app"] == "web"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in pod["spec"]["volumes"]
    pvc = await client.get(PVCS, "data-web-1", "default")
    assert pvc["metadata"]["labels"] == {"app": "web"} and not pvc["metadata"].get("ownerReferences")

    messages = {
        e["message"]
        for e in (await client.list(EVENTS, "default"))["items"]
        if e["reason"] == "SuccessfulCreate"
    }
    assert "create Pod web-0 in StatefulSet web successful" in messages
    assert "create Claim data-web-0 Pod web-0 in StatefulSet web success" in messages


async def test_ordered_ready_waits_for_each_pod(cluster: Cluster) -> None:
    client = cluster.client
    cluster.stand.ready = False
    await client.create(STATEFULSETS, statefulset())
    await eventually(lambda: status_with(client, replicas=1, readyReplicas=0))
    # web-0 is not Ready yet, so nothing else may start (checked by the timeline at each event).
    assert await pod_names(client) == ["web-0"]
    cluster.stand.ready = True
    await eventually(lambda: status_with(client, readyReplicas=3))


async def test_deleted_pod_comes_back_with_the_same_claim(cluster: Cluster) -> None:
    client = cluster.client
    await client.create(STATEFULSETS, statefulset())
    await eventually(lambda: status_with(client, readyReplicas=3))
    before_claims = await claims(client)
    old = await client.get(PODS, "web-1", "default")

    await client.delete(PODS, "web-1", "default")  # graceful: the stand-in agent finishes it

    async def back() -> Obj | None:
        try:
            pod = await client.get(PODS, "web-1", "default")
        except ApiError:
            return None
        return pod if pod["metadata"]["uid"] != old["metadata"]["uid"] and _ready(pod) else None

    new = await eventually(back)
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in new["spec"]["volumes"]
    assert await claims(client) == before_claims  # the very same PVC objects
    tl = cluster.timeline
    # The replacement was created only once the old pod was gone.
    assert tl.log.index(("deleted", "web-1", old["metadata"]["uid"])) < tl.log.index(
        ("created", "web-1", new["metadata"]["uid"])
    )


async def test_scale_down_removes_highest_ordinal_first_and_keeps_claims(cluster: Cluster) -> None:
    client = cluster.client
    await client.create(STATEFULSETS, statefulset())
    await eventually(lambda: status_with(client, readyReplicas=3))

    await update(client, STATEFULSETS, "web", lambda s: s["spec"].update(replicas=1))
    await eventually(lambda: status_with(client, replicas=1, readyReplicas=1, observedGeneration=2))
    assert await pod_names(client) == ["web-0"]
    tl = cluster.timeline
    # web-2 goes first, and web-1 is touched only after web-2 is gone.
    assert tl.first("terminating", "web-2") < tl.first("deleted", "web-2") < tl.first("terminating", "web-1")
    assert set(await claims(client)) == {"data-web-0", "data-web-1", "data-web-2"}

    # Scaling up again reuses the surviving claims.
    before = await claims(client)
    await update(client, STATEFULSETS, "web", lambda s: s["spec"].update(replicas=3))
    await eventually(lambda: status_with(client, readyReplicas=3))
    assert await claims(client) == before


async def test_parallel_creates_all_at_once(cluster: Cluster) -> None:
    client = cluster.client
    cluster.stand.ready = False  # no pod becomes Ready, yet all are created
    cluster.timeline.check_order = False
    await client.create(STATEFULSETS, statefulset(policy="Parallel"))
    await eventually(lambda: status_with(client, replicas=3, readyReplicas=0))
    assert await pod_names(client) == ["web-0", "web-1", "web-2"]
    assert set(await claims(client)) == {"data-web-0", "data-web-1", "data-web-2"}

    # Parallel scale-down does not wait for one pod to go before deleting the next.
    await update(client, STATEFULSETS, "web", lambda s: s["spec"].update(replicas=0))
    await eventually(lambda: _eq(pod_names(client), []))
    assert len(await claims(client)) == 3


async def _eq(coro: Awaitable[Any], want: Any) -> bool:
    return bool(await coro == want)


def _set_image(image: str) -> Callable[[Obj], None]:
    def change(sts: Obj) -> None:
        sts["spec"]["template"]["spec"]["containers"][0]["image"] = image

    return change


async def test_rolling_update_in_reverse_order_with_partition(cluster: Cluster) -> None:
    client = cluster.client
    await client.create(STATEFULSETS, statefulset())
    first = (await eventually(lambda: status_with(client, readyReplicas=3)))["status"]["currentRevision"]

    def change(sts: Obj) -> None:
        _set_image("nginx:2")(sts)
        sts["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}

    await update(client, STATEFULSETS, "web", change)
    sts = await eventually(lambda: status_with(client, updatedReplicas=2, currentReplicas=1, readyReplicas=3))
    second = sts["status"]["updateRevision"]
    assert second != first and sts["status"]["currentRevision"] == first
    images = {
        p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
        for p in (await client.list(PODS, "default"))["items"]
    }
    assert images == {"web-0": "nginx:1", "web-1": "nginx:2", "web-2": "nginx:2"}
    tl = cluster.timeline
    # Highest ordinal first, and web-1 only after the new web-2 was created (and Ready: see Timeline).
    assert tl.first("terminating", "web-2") < tl.first("terminating", "web-1")
    assert tl.log.index(("created", "web-2", _uid(tl, "web-2", 1))) < tl.first("terminating", "web-1")

    await update(
        client,
        STATEFULSETS,
        "web",
        lambda s: s["spec"]["updateStrategy"]["rollingUpdate"].update(partition=0),
    )
    sts = await eventually(
        lambda: status_with(client, updatedReplicas=3, readyReplicas=3, currentRevision=second)
    )
    assert sts["status"]["currentReplicas"] == 3


def _uid(tl: Timeline, name: str, nth: int) -> str:
    """The uid of the nth (0-based) pod created under ``name``."""
    return [u for e, n, u in tl.log if e == "created" and n == name][nth]


async def test_on_delete_waits_for_manual_deletion(cluster: Cluster) -> None:
    client = cluster.client
    sts = statefulset(replicas=2)
    sts["spec"]["updateStrategy"] = {"type": "OnDelete"}
    await client.create(STATEFULSETS, sts)
    await eventually(lambda: status_with(client, readyReplicas=2))
    await update(client, STATEFULSETS, "web", _set_image("nginx:2"))
    await eventually(lambda: status_with(client, observedGeneration=2, updatedReplicas=0, currentReplicas=2))
    assert {p["spec"]["containers"][0]["image"] for p in (await client.list(PODS, "default"))["items"]} == {
        "nginx:1"
    }

    await client.delete(PODS, "web-1", "default")
    await eventually(lambda: status_with(client, updatedReplicas=1, readyReplicas=2))
    assert (await client.get(PODS, "web-1", "default"))["spec"]["containers"][0]["image"] == "nginx:2"
    assert (await client.get(PODS, "web-0", "default"))["spec"]["containers"][0]["image"] == "nginx:1"
