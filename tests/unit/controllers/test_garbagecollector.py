"""The garbage collector against a real in-process API server.

Owners and dependents are real kinds (Deployment -> ReplicaSet -> Pods, ConfigMaps, Node -> Lease)
with hand-written ownerReferences; no workload controller runs, so nothing recreates anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kubelite.api.registry import ResourceType
from kubelite.client import ApiClient, ApiError
from kubelite.controllers.base import CONFIGMAPS, DEPLOYMENTS, LEASES, NODES, PODS, REPLICASETS
from tests.helpers import eventually, running_controllers

Obj = dict[str, Any]
NS = "default"
LABELS = {"app": "gc"}


@pytest.fixture
async def api(inproc_api: Any) -> AsyncIterator[ApiClient]:
    client: ApiClient = inproc_api.client
    async with running_controllers(client, ["garbagecollector"]):
        yield client


def ref(owner: Obj, controller: bool = True, block: bool = True) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": block,
    }


TEMPLATE = {"metadata": {"labels": LABELS}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


async def deployment(client: ApiClient, name: str) -> Obj:
    return await client.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 0, "selector": {"matchLabels": LABELS}, "template": TEMPLATE},
    })  # fmt: skip


async def replicaset(client: ApiClient, name: str, owner: Obj | None) -> Obj:
    meta: Obj = {"name": name, "namespace": NS}
    if owner is not None:
        meta["ownerReferences"] = [ref(owner)]
    return await client.create(REPLICASETS, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
        "spec": {"replicas": 0, "selector": {"matchLabels": LABELS}, "template": TEMPLATE},
    })  # fmt: skip


async def pod(client: ApiClient, name: str, owners: list[Obj], node: str | None = None) -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": "nginx:1"}], **({"nodeName": node} if node else {})}
    meta: Obj = {"name": name, "namespace": NS, "labels": LABELS, "ownerReferences": owners}
    return await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})


async def configmap(client: ApiClient, name: str, owners: list[Obj] | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": NS, **({"ownerReferences": owners} if owners else {})}
    return await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta})


async def get_or_none(client: ApiClient, rt: ResourceType, name: str, ns: str | None = NS) -> Obj | None:
    try:
        return await client.get(rt, name, namespace=ns)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


def gone(
    client: ApiClient, rt: ResourceType, name: str, ns: str | None = NS
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await get_or_none(client, rt, name, ns) is None

    return check


async def test_background_deletes_the_whole_chain(api: ApiClient) -> None:
    d = await deployment(api, "web")
    rs = await replicaset(api, "web-abc", d)
    await pod(api, "web-abc-1", [ref(rs)])
    await pod(api, "web-abc-2", [ref(rs)])
    keeper = await configmap(api, "keeper")
    shared = await configmap(api, "shared", [ref(d, controller=False), ref(keeper, controller=False)])
    unrelated = await pod(api, "unrelated", [])
    assert shared["metadata"]["ownerReferences"]

    await api.delete(DEPLOYMENTS, "web", namespace=NS)  # default propagation: Background
    assert await get_or_none(api, DEPLOYMENTS, "web") is None  # the owner goes at once

    await eventually(gone(api, REPLICASETS, "web-abc"), what="the ReplicaSet deleted")
    await eventually(gone(api, PODS, "web-abc-1"), what="pod 1 deleted")
    await eventually(gone(api, PODS, "web-abc-2"), what="pod 2 deleted")

    # A dependent with another, live owner stays; only the reference to the deleted owner goes.
    async def shared_refs() -> list[str] | None:
        cm = await get_or_none(api, CONFIGMAPS, "shared")
        names = [r["name"] for r in (cm or {}).get("metadata", {}).get("ownerReferences") or []]
        return names if names == ["keeper"] else None

    await eventually(shared_refs, what="the dangling reference stripped from the shared ConfigMap")
    assert await get_or_none(api, PODS, unrelated["metadata"]["name"]) is not None


async def test_only_a_matching_uid_counts_as_the_owner(api: ApiClient) -> None:
    owner = await configmap(api, "owner")
    impostor_ref = {**ref(owner, controller=False), "uid": "00000000-0000-0000-0000-000000000000"}
    await configmap(api, "real-dependent", [ref(owner, controller=False)])
    # The owner's name exists, but with another UID: this dependent's owner is gone.
    await configmap(api, "stale-dependent", [impostor_ref])
    await eventually(gone(api, CONFIGMAPS, "stale-dependent"), what="the dependent of a vanished UID deleted")
    await asyncio.sleep(0.3)
    assert await get_or_none(api, CONFIGMAPS, "real-dependent") is not None


async def test_foreground_deletes_dependents_first(api: ApiClient) -> None:
    d = await deployment(api, "fg")
    rs = await replicaset(api, "fg-abc", d)
    # Bound pods: a graceful delete leaves them terminating until "the agent" (this test) finishes them.
    await pod(api, "fg-abc-1", [ref(rs)], node="node-1")
    await pod(api, "fg-abc-2", [ref(rs)], node="node-1")

    await api.delete(DEPLOYMENTS, "fg", namespace=NS, propagation_policy="Foreground")

    async def pods_terminating() -> bool:
        pods = [await api.get(PODS, n, namespace=NS) for n in ("fg-abc-1", "fg-abc-2")]
        return all(p["metadata"].get("deletionTimestamp") for p in pods)

    await eventually(pods_terminating, what="the pods deleted first")
    await asyncio.sleep(0.5)
    # The owners wait for their blocking dependents to be gone.
    dep = await get_or_none(api, DEPLOYMENTS, "fg")
    rs_now = await get_or_none(api, REPLICASETS, "fg-abc")
    assert dep is not None and "foregroundDeletion" in dep["metadata"]["finalizers"]
    assert rs_now is not None and "foregroundDeletion" in rs_now["metadata"]["finalizers"]

    for name in ("fg-abc-1", "fg-abc-2"):  # the agent finishes the pods
        await api.delete(PODS, name, namespace=NS, grace_period_seconds=0)

    await eventually(gone(api, REPLICASETS, "fg-abc"), what="the ReplicaSet gone after its pods")
    await eventually(gone(api, DEPLOYMENTS, "fg"), what="the Deployment gone after its ReplicaSet")


async def test_orphan_keeps_dependents_and_strips_their_references(api: ApiClient) -> None:
    rs = await replicaset(api, "orph", None)
    await pod(api, "orph-1", [ref(rs)])
    await pod(api, "orph-2", [ref(rs)])

    await api.delete(REPLICASETS, "orph", namespace=NS, propagation_policy="Orphan")
    await eventually(gone(api, REPLICASETS, "orph"), what="the orphaning owner gone")
    for name in ("orph-1", "orph-2"):
        p = await api.get(PODS, name, namespace=NS)
        assert not p["metadata"].get("ownerReferences")
        assert not p["metadata"].get("deletionTimestamp")


async def test_cluster_scoped_owner_of_namespaced_dependent(api: ApiClient) -> None:
    node = await api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-gc"}})
    await api.create(LEASES, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n-gc", "namespace": "kube-node-lease", "ownerReferences": [ref(node, controller=False)]},
        "spec": {"holderIdentity": "n-gc"},
    })  # fmt: skip
    await api.delete(NODES, "n-gc")
    await eventually(gone(api, LEASES, "n-gc", "kube-node-lease"), what="the node's Lease deleted with it")
