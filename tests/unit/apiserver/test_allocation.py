"""ClusterIP and NodePort allocation: unique under concurrency, released on delete, refused when taken."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from kubelite.api.registry import resource
from kubelite.client import ApiClient, ApiError

SERVICES = resource("", "services")


def svc(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


async def test_concurrent_creates_get_distinct_cluster_ips(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    created = await asyncio.gather(*(client.create(SERVICES, svc(f"s{i}"), namespace="default") for i in range(60)))
    ips = [s["spec"]["clusterIP"] for s in created]
    assert len(set(ips)) == 60
    net = ipaddress.ip_network(inproc_api.api.config.service_cidr)
    assert all(ipaddress.ip_address(ip) in net for ip in ips)
    assert "10.43.0.1" not in ips  # reserved for the `kubernetes` Service


async def test_requested_ip_taken_or_out_of_range_is_422(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    first = await client.create(SERVICES, svc("a"), namespace="default")
    with pytest.raises(ApiError) as taken:
        await client.create(SERVICES, svc("b", clusterIP=first["spec"]["clusterIP"]), namespace="default")
    assert taken.value.code == 422 and "already allocated" in taken.value.message
    with pytest.raises(ApiError) as outside:
        await client.create(SERVICES, svc("c", clusterIP="192.0.2.10"), namespace="default")
    assert outside.value.code == 422 and "spec.clusterIP" in outside.value.message
    # Deleting a Service frees its address for the next one who asks for it.
    await client.delete(SERVICES, "a", namespace="default")
    again = await client.create(SERVICES, svc("d", clusterIP=first["spec"]["clusterIP"]), namespace="default")
    assert again["spec"]["clusterIP"] == first["spec"]["clusterIP"]


async def test_node_ports_unique_and_kept_on_update(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    a = await client.create(SERVICES, svc("np-a", type="NodePort"), namespace="default")
    port = a["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    with pytest.raises(ApiError) as dup:
        await client.create(
            SERVICES, svc("np-b", type="NodePort", ports=[{"port": 80, "nodePort": port}]), namespace="default"
        )
    assert dup.value.code == 422
    # A replace that leaves out the allocated values keeps them.
    body = {**a, "spec": {**a["spec"], "ports": [{"port": 80}]}}
    body["spec"].pop("clusterIP")
    body["spec"].pop("clusterIPs")
    updated = await client.replace(SERVICES, body)
    assert updated["spec"]["ports"][0]["nodePort"] == port
    assert updated["spec"]["clusterIP"] == a["spec"]["clusterIP"]
