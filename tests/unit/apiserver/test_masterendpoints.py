"""The default/kubernetes Endpoints each API server maintains (where the Service proxy sends in-pod clients)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.registry import resource
from kubelite.apiserver.masterendpoints import advertise_address, reconcile_kubernetes_endpoints
from kubelite.client import ApiError

ENDPOINTS = resource("", "endpoints")


def test_advertise_address() -> None:
    assert advertise_address("127.0.0.1") is None  # a pod's netns cannot reach the host's loopback
    assert advertise_address("10.1.2.3") == "10.1.2.3"
    picked = advertise_address("0.0.0.0")
    assert picked is None or not picked.startswith("127.")  # None only on a machine without a default route


def addresses(ep: dict[str, Any]) -> list[tuple[str, int]]:
    return [(a["ip"], p["port"]) for s in ep["subsets"] for a in s["addresses"] for p in s["ports"]]


async def test_reconcile_creates_merges_and_repairs(inproc_api: Any) -> None:
    objects, client = inproc_api.api.objects, inproc_api.client
    with pytest.raises(ApiError) as e:  # the in-process server binds 127.0.0.1: nothing advertised
        await client.get(ENDPOINTS, "kubernetes", "default")
    assert e.value.code == 404
    await reconcile_kubernetes_endpoints(objects, "10.0.0.2", 6443)
    first = await client.get(ENDPOINTS, "kubernetes", "default")
    assert addresses(first) == [("10.0.0.2", 6443)] and first["subsets"][0]["ports"][0]["name"] == "https"

    await reconcile_kubernetes_endpoints(objects, "10.0.0.2", 6443)  # nothing to do: no write
    assert (await client.get(ENDPOINTS, "kubernetes", "default"))["metadata"]["resourceVersion"] == \
        first["metadata"]["resourceVersion"]

    await reconcile_kubernetes_endpoints(objects, "10.0.0.1", 6443)  # a second master adds itself
    assert addresses(await client.get(ENDPOINTS, "kubernetes", "default")) == [("10.0.0.1", 6443), ("10.0.0.2", 6443)]

    broken = await client.get(ENDPOINTS, "kubernetes", "default")
    broken["subsets"] = [{"addresses": [{"ip": "10.9.9.9"}], "ports": [{"name": "https", "port": 1, "protocol": "TCP"}]}]
    await client.replace(ENDPOINTS, broken)  # someone points the Service elsewhere: our address comes back
    await reconcile_kubernetes_endpoints(objects, "10.0.0.2", 6443)
    assert addresses(await client.get(ENDPOINTS, "kubernetes", "default")) == [("10.0.0.2", 6443)]
