"""nodeipam: every Node gets its own /24 of the cluster CIDR, also with two allocators racing."""

from __future__ import annotations

from typing import Any

from kubelite.controllers.base import EVENTS, LEASES, NODES, ControllerSettings
from kubelite.controllers.nodeipam import RESERVATION_LABEL, RESERVATION_NAMESPACE
from tests.helpers import eventually, running_controllers

SETTINGS = ControllerSettings(extra={"cluster_cidr": "10.200.0.0/16"})


async def _cidrs(client: Any, count: int) -> dict[str, str] | None:
    nodes = (await client.list(NODES))["items"]
    out = {n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR") for n in nodes}
    return out if len(out) == count and all(out.values()) else None


async def test_two_allocators_never_hand_out_the_same_cidr(inproc_api: Any) -> None:
    client = inproc_api.client
    for i in range(12):
        await client.create(NODES, {"metadata": {"name": f"n{i}"}})
    # Two controller managers (as two servers without leader election) racing over the same Nodes.
    async with (
        running_controllers(client, ["nodeipam"], SETTINGS),
        running_controllers(client, ["nodeipam"], SETTINGS),
    ):
        cidrs = await eventually(lambda: _cidrs(client, 12), timeout=10, what="a podCIDR on every node")
    assert len(set(cidrs.values())) == 12
    assert all(c.startswith("10.200.") and c.endswith(".0/24") for c in cidrs.values())
    node = await client.get(NODES, "n0")
    assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
    leases = (await client.list(LEASES, RESERVATION_NAMESPACE, label_selector=RESERVATION_LABEL))["items"]
    assert sorted(lease["spec"]["holderIdentity"] for lease in leases) == sorted(
        cidrs
    )  # no stray reservations


async def test_a_deleted_node_frees_its_cidr_and_a_restart_keeps_the_used_set(inproc_api: Any) -> None:
    client = inproc_api.client
    for name in ("a", "b"):
        await client.create(NODES, {"metadata": {"name": name}})
    async with running_controllers(client, ["nodeipam"], SETTINGS):
        first = await eventually(lambda: _cidrs(client, 2), timeout=10, what="CIDRs for a and b")
        await client.delete(NODES, "a")

        async def released() -> bool:
            leases = (await client.list(LEASES, RESERVATION_NAMESPACE, label_selector=RESERVATION_LABEL))[
                "items"
            ]
            return [lease["spec"]["holderIdentity"] for lease in leases] == ["b"]

        await eventually(released, timeout=10, what="a's reservation released")
    # A new allocator (a restarted server) learns the used set from the API, not from memory.
    await client.create(NODES, {"metadata": {"name": "c"}})
    async with running_controllers(client, ["nodeipam"], SETTINGS):
        after = await eventually(lambda: _cidrs(client, 2), timeout=10, what="a CIDR for c")
    assert after["b"] == first["b"]
    assert after["c"] != after["b"]


async def test_a_full_range_makes_nodes_wait_until_a_subnet_is_freed(inproc_api: Any) -> None:
    client = inproc_api.client
    small = ControllerSettings(extra={"cluster_cidr": "10.201.0.0/23"})  # room for two /24s
    for name in ("a", "b", "c"):
        await client.create(NODES, {"metadata": {"name": name}})
    async with running_controllers(client, ["nodeipam"], small):

        async def two_of_three() -> dict[str, str] | None:
            nodes = {
                n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR")
                for n in (await client.list(NODES))["items"]
            }
            return nodes if sorted(bool(v) for v in nodes.values()) == [False, True, True] else None

        nodes = await eventually(two_of_three, timeout=10, what="two nodes with a CIDR, one without")
        waiting = next(name for name, cidr in nodes.items() if not cidr)
        events = (await client.list(EVENTS, "default"))["items"]
        told = [
            e for e in events if e["reason"] == "CIDRNotAvailable" and e["involvedObject"]["name"] == waiting
        ]
        assert len(told) == 1
        # Heartbeats of the waiting node do not retry (nor repeat the event) ...
        for i in range(5):
            await client.patch(NODES, waiting, {"metadata": {"labels": {"beat": str(i)}}})
        # ... but a freed subnet goes to it.
        holder = next(name for name, cidr in nodes.items() if cidr)
        await client.delete(NODES, holder)

        async def waiting_got_it() -> str | None:
            cidr: str | None = ((await client.get(NODES, waiting)).get("spec") or {}).get("podCIDR")
            return cidr

        assert (
            await eventually(waiting_got_it, timeout=10, what="the freed /24 for the waiting node")
            == nodes[holder]
        )
    events = (await client.list(EVENTS, "default"))["items"]
    told = [e for e in events if e["reason"] == "CIDRNotAvailable" and e["involvedObject"]["name"] == waiting]
    assert len(told) == 1 and told[0].get("count", 1) == 1
