"""The Endpoints controller against a real in-process API server.

No node agent runs: the tests write the pod status an agent would (podIP, phase, Ready).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.client import ApiClient, ApiError
from kubelite.controllers.base import ENDPOINTS, NODES, PODS, SERVICES
from tests.helpers import eventually, running_controllers

Obj = dict[str, Any]
NS = "default"


@pytest.fixture
async def api(inproc_api: Any) -> AsyncIterator[ApiClient]:
    client: ApiClient = inproc_api.client
    async with running_controllers(client, ["endpoints"]):
        yield client


def service(name: str, selector: dict[str, str] | None, ports: list[Obj] | None, **spec: Any) -> Obj:
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": dict(spec),
    }
    if selector is not None:
        body["spec"]["selector"] = selector
    if ports is not None:
        body["spec"]["ports"] = ports
    return body


async def make_pod(
    client: ApiClient,
    name: str,
    labels: dict[str, str],
    ip: str | None,
    ready: bool,
    ports: list[Obj] | None = None,
    node: str | None = None,
    **spec: Any,
) -> Obj:
    container: Obj = {"name": "c", "image": "nginx:1"}
    if ports:
        container["ports"] = ports
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [container], **spec, **({"nodeName": node} if node else {})},
    }
    pod = await client.create(PODS, body)
    await set_status(client, name, ip, ready)
    return pod


async def set_status(client: ApiClient, name: str, ip: str | None, ready: bool) -> None:
    """Stand in for the node agent."""
    status: Obj = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    await client.patch(PODS, name, {"status": status}, namespace=NS, subresource="status")


async def get_endpoints(client: ApiClient, name: str) -> Obj | None:
    try:
        return await client.get(ENDPOINTS, name, namespace=NS)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


def summary(ep: Obj | None) -> list[tuple[list[str], list[str], list[tuple[Any, ...]]]]:
    """Each subset as (ready pod names, not-ready pod names, ports)."""
    if ep is None:
        return []
    out = []
    for s in ep.get("subsets") or []:
        out.append((
            sorted(a["targetRef"]["name"] for a in s.get("addresses") or []),
            sorted(a["targetRef"]["name"] for a in s.get("notReadyAddresses") or []),
            [(p.get("name"), p["port"], p["protocol"]) for p in s.get("ports") or []],
        ))  # fmt: skip
    return out


async def wait_summary(client: ApiClient, name: str, want: list[Any]) -> Obj:
    async def check() -> Obj | None:
        ep = await get_endpoints(client, name)
        return ep if summary(ep) == want else None

    try:
        result: Obj = await eventually(check, what=f"endpoints {name} == {want}")
    except AssertionError:
        raise AssertionError(
            f"endpoints {name}: {summary(await get_endpoints(client, name))} != {want}"
        ) from None
    return result


async def test_addresses_follow_readiness(api: ApiClient) -> None:
    await api.create(
        SERVICES, service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": 8080}])
    )
    await make_pod(api, "web-1", {"app": "web"}, "10.0.0.1", ready=True)
    await make_pod(api, "web-2", {"app": "web"}, "10.0.0.2", ready=False)
    await make_pod(api, "web-noip", {"app": "web"}, None, ready=False)
    await make_pod(api, "other", {"app": "other"}, "10.0.0.9", ready=True)
    http = [("http", 8080, "TCP")]

    ep = await wait_summary(api, "web", [(["web-1"], ["web-2"], http)])
    addr = ep["subsets"][0]["addresses"][0]
    pod = await api.get(PODS, "web-1", namespace=NS)
    assert addr["ip"] == "10.0.0.1"
    assert addr["targetRef"] == {
        "kind": "Pod",
        "name": "web-1",
        "namespace": NS,
        "uid": pod["metadata"]["uid"],
    }

    await set_status(api, "web-2", "10.0.0.2", ready=True)
    await wait_summary(api, "web", [(["web-1", "web-2"], [], http)])

    await set_status(api, "web-1", "10.0.0.1", ready=False)
    await wait_summary(api, "web", [(["web-2"], ["web-1"], http)])

    # A label change takes a pod out of (and into) the Service.
    await api.patch(PODS, "web-2", {"metadata": {"labels": {"app": "gone"}}}, namespace=NS)
    await api.patch(PODS, "other", {"metadata": {"labels": {"app": "web"}}}, namespace=NS)
    await wait_summary(api, "web", [(["other"], ["web-1"], http)])

    await api.delete(PODS, "other", namespace=NS)
    await wait_summary(api, "web", [([], ["web-1"], http)])


async def test_terminating_pods_are_excluded(api: ApiClient) -> None:
    await api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
    await api.create(SERVICES, service("db", {"app": "db"}, [{"port": 5432}]))
    await make_pod(api, "db-0", {"app": "db"}, "10.0.1.1", ready=True, node="node-1")
    await make_pod(api, "db-1", {"app": "db"}, "10.0.1.2", ready=True, node="node-1")
    ep = await wait_summary(api, "db", [(["db-0", "db-1"], [], [(None, 5432, "TCP")])])
    assert {a["nodeName"] for a in ep["subsets"][0]["addresses"]} == {"node-1"}
    # Bound and graceful: it stays, terminating, until an agent would finish it.
    await api.delete(PODS, "db-0", namespace=NS)
    assert (await api.get(PODS, "db-0", namespace=NS))["metadata"].get("deletionTimestamp")
    await wait_summary(api, "db", [(["db-1"], [], [(None, 5432, "TCP")])])


async def test_named_target_port_groups_pods_by_resolved_port(api: ApiClient) -> None:
    ports = [
        {"name": "http", "port": 80, "targetPort": "web"},
        {"name": "metrics", "port": 9100, "targetPort": 9100},
    ]
    await api.create(SERVICES, service("named", {"app": "named"}, ports))
    await make_pod(
        api, "a", {"app": "named"}, "10.0.2.1", True, ports=[{"name": "web", "containerPort": 8080}]
    )
    await make_pod(
        api, "b", {"app": "named"}, "10.0.2.2", True, ports=[{"name": "web", "containerPort": 9090}]
    )
    await make_pod(
        api, "c", {"app": "named"}, "10.0.2.3", False, ports=[{"name": "web", "containerPort": 8080}]
    )
    # No port named "web": it gets only the numeric one.
    await make_pod(
        api, "d", {"app": "named"}, "10.0.2.4", True, ports=[{"name": "other", "containerPort": 7070}]
    )
    await wait_summary(api, "named", [
        (["a"], ["c"], [("http", 8080, "TCP"), ("metrics", 9100, "TCP")]),
        (["b"], [], [("http", 9090, "TCP"), ("metrics", 9100, "TCP")]),
        (["d"], [], [("metrics", 9100, "TCP")]),
    ])  # fmt: skip


async def test_headless_service_with_hostnames_and_publish_not_ready(api: ApiClient) -> None:
    await api.create(
        SERVICES, service("peers", {"app": "peers"}, None, clusterIP="None", publishNotReadyAddresses=True)
    )
    await make_pod(api, "p-0", {"app": "peers"}, "10.0.3.1", True, hostname="p-0", subdomain="peers")
    await make_pod(api, "p-1", {"app": "peers"}, "10.0.3.2", False, hostname="p-1", subdomain="peers")
    await make_pod(api, "p-x", {"app": "peers"}, "10.0.3.3", True, hostname="p-x", subdomain="elsewhere")
    ep = await wait_summary(api, "peers", [(["p-0", "p-1", "p-x"], [], [])])
    hostnames = {a["targetRef"]["name"]: a.get("hostname") for a in ep["subsets"][0]["addresses"]}
    assert hostnames == {"p-0": "p-0", "p-1": "p-1", "p-x": None}
    assert "service.kubernetes.io/headless" in ep["metadata"]["labels"]


async def test_selectorless_endpoints_are_left_alone_and_deleted_with_service(api: ApiClient) -> None:
    await api.create(SERVICES, service("manual", None, [{"port": 80}]))
    created = await api.create(ENDPOINTS, {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual", "namespace": NS},
        "subsets": [{"addresses": [{"ip": "192.168.1.1"}], "ports": [{"port": 80}]}],
    })  # fmt: skip
    await api.create(SERVICES, service("auto", {"app": "auto"}, [{"port": 80}]))
    await make_pod(api, "auto-1", {"app": "auto"}, "10.0.4.1", True)
    await wait_summary(api, "auto", [(["auto-1"], [], [(None, 80, "TCP")])])
    # The controller has processed "auto"; "manual" (created before it) must be untouched.
    manual = await api.get(ENDPOINTS, "manual", namespace=NS)
    assert manual["subsets"] == [
        {"addresses": [{"ip": "192.168.1.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}
    ]
    assert manual["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    await api.delete(SERVICES, "auto", namespace=NS)
    await eventually(lambda: _gone(api, "auto"), what="endpoints auto deleted with its service")


async def test_endpoints_recreated_after_deletion_and_unchanged_when_nothing_changes(api: ApiClient) -> None:
    await api.create(SERVICES, service("steady", {"app": "steady"}, [{"port": 80}]))
    await make_pod(api, "steady-1", {"app": "steady"}, "10.0.5.1", True)
    ep = await wait_summary(api, "steady", [(["steady-1"], [], [(None, 80, "TCP")])])
    # An unrelated pod update re-runs the sync; an unchanged result must not be written.
    await api.patch(PODS, "steady-1", {"metadata": {"annotations": {"poke": "1"}}}, namespace=NS)
    await asyncio.sleep(0.3)
    again = await get_endpoints(api, "steady")
    assert again is not None and again["metadata"]["resourceVersion"] == ep["metadata"]["resourceVersion"]

    await api.delete(ENDPOINTS, "steady", namespace=NS)
    await wait_summary(api, "steady", [(["steady-1"], [], [(None, 80, "TCP")])])


async def _gone(client: ApiClient, name: str) -> bool:
    return await get_endpoints(client, name) is None
