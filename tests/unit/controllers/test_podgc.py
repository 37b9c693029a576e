"""The pod garbage collector against a real in-process API server.

The test is the node agent (it renews the Lease); it never finalises terminating pods, which is
what a dead agent looks like. The force-delete period is shrunk to 3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.client import ApiClient, ApiError
from kubelite.controllers.base import LEASES, NODES, PODS, ControllerSettings
from tests.helpers import eventually, running_controllers

Obj = dict[str, Any]
NS = "default"
LEASE_NS = "kube-node-lease"
FORCE_AFTER = 3.0
SETTINGS = ControllerSettings(
    node_monitor_grace_period=2.0,
    node_monitor_period=0.2,
    default_toleration_seconds=1,
    statefulset_force_delete_after=FORCE_AFTER,
    extra={"terminated_pod_gc_threshold": 2},
)


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
async def api(inproc_api: Any) -> AsyncIterator[ApiClient]:
    client: ApiClient = inproc_api.client
    async with running_controllers(client, ["podgc"], SETTINGS):
        yield client


async def make_node(client: ApiClient, name: str) -> None:
    await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    await client.create(LEASES, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NS},
        "spec": {"holderIdentity": name, "renewTime": micro_now()},
    })  # fmt: skip


async def renew_forever(client: ApiClient, node: str, sent: list[float]) -> None:
    """Renew the node's Lease, recording when the last renewal was sent (the agent's fencing clock)."""
    while True:
        sent.append(time.monotonic())
        await client.patch(LEASES, node, {"spec": {"renewTime": micro_now()}}, namespace=LEASE_NS)
        await asyncio.sleep(0.3)


async def make_pod(client: ApiClient, name: str, node: str | None, phase: str = "Running") -> None:
    spec: Obj = {"containers": [{"name": "c", "image": "nginx:1"}]}
    if node:
        spec["nodeName"] = node
    await client.create(
        PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": spec}
    )
    await client.patch(PODS, name, {"status": {"phase": phase}}, namespace=NS, subresource="status")


async def pod_or_none(client: ApiClient, name: str) -> Obj | None:
    try:
        return await client.get(PODS, name, namespace=NS)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


async def gone(client: ApiClient, name: str) -> bool:
    return await pod_or_none(client, name) is None


async def test_terminating_pod_force_deleted_only_after_node_silent_for_period(api: ApiClient) -> None:
    await make_node(api, "n1")
    renewals: list[float] = []
    agent = asyncio.create_task(renew_forever(api, "n1", renewals))
    await make_pod(api, "web-0", "n1")
    await make_pod(api, "web-1", "n1")
    await api.delete(PODS, "web-0", namespace=NS)  # graceful: waits for the (absent) agent to finish it
    assert (await api.get(PODS, "web-0", namespace=NS))["metadata"].get("deletionTimestamp")

    # The agent is alive (renewing): it finishes its own pods, so nothing is force-deleted, however long.
    await asyncio.sleep(FORCE_AFTER + 1)
    assert not await gone(api, "web-0")

    agent.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await agent
    await asyncio.sleep(FORCE_AFTER / 2)
    # Safety: an agent might still run it until it fences; it must not be force-deleted yet.
    assert not await gone(api, "web-0")
    await eventually(
        lambda: gone(api, "web-0"), what="the terminating pod on the silent node to be force-deleted"
    )
    # Never before the period has passed since the agent's last renewal (after which it would fence).
    assert time.monotonic() - renewals[-1] >= FORCE_AFTER
    # Not terminating: not podgc's business (taint-based eviction decides about it).
    assert not await gone(api, "web-1")


async def test_orphan_pods_are_deleted(api: ApiClient) -> None:
    await make_node(api, "real")
    await make_pod(api, "on-ghost", "ghost")
    await make_pod(api, "on-real", "real")
    await make_pod(api, "unbound", None)
    await eventually(lambda: gone(api, "on-ghost"), what="the pod bound to a missing node to be deleted")
    assert not await gone(api, "on-real")
    assert not await gone(api, "unbound")

    await api.delete(NODES, "real")
    await eventually(lambda: gone(api, "on-real"), what="the pod of a deleted node to be deleted")
    assert not await gone(api, "unbound")


async def test_terminated_pods_beyond_threshold_are_deleted_oldest_first(api: ApiClient) -> None:
    await make_pod(api, "old-1", None, "Succeeded")
    await make_pod(api, "old-2", None, "Failed")
    await asyncio.sleep(1.1)  # creationTimestamp has second precision
    await make_pod(api, "new-1", None, "Succeeded")
    await make_pod(api, "new-2", None, "Failed")
    await make_pod(api, "running", None, "Running")

    async def remaining() -> list[str] | None:
        names = sorted(p["metadata"]["name"] for p in (await api.list(PODS, namespace=NS))["items"])
        return names if len(names) == 3 else None

    assert await eventually(remaining, what="two terminated pods deleted") == ["new-1", "new-2", "running"]
