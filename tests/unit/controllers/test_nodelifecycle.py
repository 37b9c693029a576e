"""The node lifecycle controller against a real in-process API server.

The test is the node agent: it renews the node's Lease and posts node status, and stops doing so
to make the node "die". Settings are shrunk (grace 2 s, default toleration 1 s) to keep it fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.client import ApiClient
from kubelite.controllers.base import EVENTS, LEASES, NODES, PODS, ControllerSettings
from tests.helpers import eventually, running_controllers

Obj = dict[str, Any]
NS = "default"
LEASE_NS = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
SETTINGS = ControllerSettings(
    node_monitor_grace_period=2.0, node_monitor_period=0.2, default_toleration_seconds=1
)


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeAgent:
    """What a node agent does for the control plane: renew the Lease and post Ready."""

    def __init__(self, client: ApiClient, node: str) -> None:
        self.client = client
        self.node = node
        self._task: asyncio.Task[None] | None = None

    async def register(self) -> None:
        await self.client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node}})
        await self.client.create(LEASES, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.node, "namespace": LEASE_NS},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": micro_now()},
        })  # fmt: skip
        await self.post_ready("True")

    async def post_ready(self, status: str) -> None:
        now = micro_now()
        cond = {"type": "Ready", "status": status, "reason": "KubeletReady" if status == "True" else "KubeletNotReady",
                "lastHeartbeatTime": now, "lastTransitionTime": now}  # fmt: skip
        await self.client.patch(NODES, self.node, {"status": {"conditions": [cond]}}, subresource="status")

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _renew(self) -> None:
        while True:
            await self.client.patch(
                LEASES, self.node, {"spec": {"renewTime": micro_now()}}, namespace=LEASE_NS
            )
            await asyncio.sleep(0.3)


@pytest.fixture
async def api(inproc_api: Any) -> AsyncIterator[ApiClient]:
    client: ApiClient = inproc_api.client
    async with running_controllers(client, ["nodelifecycle"], SETTINGS):
        yield client


async def make_pod(client: ApiClient, name: str, node: str, tolerations: list[Obj] | None = None) -> None:
    spec: Obj = {"nodeName": node, "containers": [{"name": "c", "image": "nginx:1"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    await client.create(
        PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": spec}
    )
    status = {"phase": "Running", "podIP": "10.1.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
    await client.patch(PODS, name, {"status": status}, namespace=NS, subresource="status")


def ready_condition(node: Obj) -> Obj:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def noexecute_keys(node: Obj) -> set[str]:
    return {t["key"] for t in (node.get("spec") or {}).get("taints") or [] if t["effect"] == "NoExecute"}


async def terminating(client: ApiClient, name: str) -> bool:
    return bool((await client.get(PODS, name, namespace=NS))["metadata"].get("deletionTimestamp"))


def tol(seconds: int | None) -> Obj:
    t: Obj = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


async def test_silent_node_is_tainted_and_its_pods_evicted_by_toleration(api: ApiClient) -> None:
    agent = FakeAgent(api, "n1")
    await agent.register()
    agent.start()
    await make_pod(api, "default-tol", "n1")
    await make_pod(api, "zero", "n1", [tol(0)])
    await make_pod(api, "forever", "n1", [tol(None)])
    await make_pod(api, "long", "n1", [tol(3600)])
    await make_pod(
        api, "not-ready-only", "n1", [{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"}]
    )

    # Alive for longer than the grace period: nothing happens.
    await asyncio.sleep(SETTINGS.node_monitor_grace_period + 1)
    node = await api.get(NODES, "n1")
    assert ready_condition(node)["status"] == "True"
    assert not noexecute_keys(node)
    assert not await terminating(api, "default-tol")

    await agent.stop()

    async def unreachable() -> Obj | None:
        n = await api.get(NODES, "n1")
        return n if ready_condition(n)["status"] == "Unknown" and UNREACHABLE in noexecute_keys(n) else None

    node = await eventually(unreachable, what="Ready=Unknown and the unreachable taint")
    cond = ready_condition(node)
    assert cond["reason"] == "NodeStatusUnknown"
    assert cond["message"] == "Kubelet stopped posting node status."
    taint = next(t for t in node["spec"]["taints"] if t["key"] == UNREACHABLE)
    assert taint.get("timeAdded")

    await eventually(lambda: terminating(api, "zero"), what="the pod tolerating 0 s to be evicted")
    await eventually(
        lambda: terminating(api, "default-tol"), what="the pod with the default toleration to be evicted"
    )
    # A toleration for not-ready does not cover unreachable: the default toleration applies to it.
    await eventually(lambda: terminating(api, "not-ready-only"), what="the pod tolerating only not-ready")
    await asyncio.sleep(1.0)  # well past the default toleration
    assert not await terminating(api, "forever")
    assert not await terminating(api, "long")

    # Pods on the silent node are no longer Ready (Endpoints drop them before any eviction).
    forever = await api.get(PODS, "forever", namespace=NS)
    assert next(c for c in forever["status"]["conditions"] if c["type"] == "Ready")["status"] == "False"

    async def evicted_event() -> bool:
        events = (await api.list(EVENTS, namespace=NS))["items"]
        return any(
            e["reason"] == "TaintManagerEviction"
            and e["message"] == f"Marking for deletion Pod {NS}/default-tol"
            for e in events
        )

    await eventually(evicted_event, what="a TaintManagerEviction event")


async def test_node_coming_back_loses_its_taint(api: ApiClient) -> None:
    agent = FakeAgent(api, "n2")
    await agent.register()
    await make_pod(api, "stays", "n2", [tol(None)])

    async def tainted() -> bool:
        return UNREACHABLE in noexecute_keys(await api.get(NODES, "n2"))

    await eventually(tainted, what="the unreachable taint on a node that never renews")
    agent.start()
    await agent.post_ready("True")

    async def untainted() -> bool:
        n = await api.get(NODES, "n2")
        return not noexecute_keys(n) and ready_condition(n)["status"] == "True"

    await eventually(untainted, what="the taint removed once the node is back")
    # And it stays that way while the agent keeps renewing.
    await asyncio.sleep(SETTINGS.node_monitor_grace_period + 0.5)
    assert await untainted()
    assert not await terminating(api, "stays")
    await agent.stop()


async def test_agent_reporting_not_ready_gets_not_ready_taint(api: ApiClient) -> None:
    agent = FakeAgent(api, "n3")
    await agent.register()
    agent.start()
    await agent.post_ready("False")

    async def not_ready_taint() -> Obj | None:
        n = await api.get(NODES, "n3")
        return n if noexecute_keys(n) == {NOT_READY} else None

    node = await eventually(not_ready_taint, what="the not-ready taint")
    # The agent is alive: its own Ready=False is kept, not replaced by Unknown.
    assert ready_condition(node)["status"] == "False"
    await agent.post_ready("True")
    await eventually(lambda: _no_taints(api, "n3"), what="the not-ready taint removed")
    await agent.stop()


async def _no_taints(client: ApiClient, node: str) -> bool:
    return not noexecute_keys(await client.get(NODES, node))
