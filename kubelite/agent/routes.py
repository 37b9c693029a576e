"""The node's part of the pod network across nodes (host-gw style), and the wiring of the agent's
networking: routes, the Service proxy and cluster DNS, all fed by informers.

* **Routes**: for every other Node, ``<its podCIDR> via <its InternalIP>``, kept from a Node watch:
  replaced as nodes come and go, deleted when a node leaves. Our routes carry their own protocol
  number (``proto 201``), so we list and delete exactly ours and never a route someone else added.
  Routes are left in place when the agent stops: pods keep running across an agent restart and
  must stay reachable.
* **Forwarding and egress**: ``net.ipv4.ip_forward=1`` (per network namespace), and pod traffic
  leaving the cluster CIDR is masqueraded (chain ``KUBELITE-EGRESS`` from ``POSTROUTING``, removed
  on a clean stop).
* :class:`ClusterNetwork` learns this node's podCIDR (``--pod-cidr``, else the control plane's
  ``spec.podCIDR``), hands it to the runtime, and runs :mod:`~kubelite.agent.proxy` and
  :mod:`~kubelite.agent.dns` from one Service and one Endpoints informer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.agent.dns import ClusterDns, DnsResolver
from kubelite.agent.netns import NodeNetwork, run_command
from kubelite.agent.proxy import ProxyConfig, ServiceProxy
from kubelite.agent.runtime import Runtime
from kubelite.api.registry import resource
from kubelite.client import ApiClient, ApiError, Informer

__all__ = ["ClusterNetwork", "NetworkConfig", "RouteManager", "desired_routes"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

NODES = resource("", "nodes")
SERVICES = resource("", "services")
ENDPOINTS = resource("", "endpoints")
ROUTE_PROTO = "201"  # marks our routes (iproute2 accepts any number not in use; 186-192 are routing daemons')
EGRESS_CHAIN = "KUBELITE-EGRESS"
EGRESS_COMMENT = "kubelite pod egress masquerade"


@dataclass(frozen=True)
class NetworkConfig:
    cluster_cidr: str = "10.244.0.0/16"
    pod_cidr: str | None = None  # --pod-cidr: this node's, instead of waiting for spec.podCIDR
    cluster_dns: str | None = None  # the DNS address pods use; None: the node bridge's gateway IP
    cluster_domain: str = "cluster.local"
    proxy: bool = True
    dns: bool = True
    dns_port: int = 53
    sync_period: float = 10.0  # routes and proxy rules are re-checked (and repaired) this often
    iptables: str = "iptables"


def internal_ip(node: Obj) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP" and a.get("address"):
            return str(a["address"])
    return None


def desired_routes(nodes: Iterable[Obj], own_name: str) -> dict[str, str]:
    """podCIDR -> next hop for every other node that has both."""
    out: dict[str, str] = {}
    for node in nodes:
        meta, spec = node.get("metadata") or {}, node.get("spec") or {}
        ip = internal_ip(node)
        if meta.get("name") == own_name or ip is None:
            continue
        for cidr in {*(spec.get("podCIDRs") or []), *([spec["podCIDR"]] if spec.get("podCIDR") else [])}:
            out[str(ipaddress.ip_network(cidr, strict=False))] = ip
    return out


class RouteManager:
    def __init__(self, own_name: str) -> None:
        self.own_name = own_name

    async def current(self) -> dict[str, str]:
        _, out, _ = await run_command("ip", "-4", "-o", "route", "show", "proto", ROUTE_PROTO)
        routes: dict[str, str] = {}
        for line in out.splitlines():
            fields = line.split()
            if "via" in fields:
                routes[fields[0]] = fields[fields.index("via") + 1]
        return routes

    async def sync(self, nodes: Iterable[Obj]) -> None:
        wanted = desired_routes(nodes, self.own_name)
        have = await self.current()
        for cidr, via in wanted.items():
            if have.get(cidr) != via:
                code, _, err = await run_command("ip", "route", "replace", cidr, "via", via, "proto", ROUTE_PROTO,
                                                 check=False)
                if code != 0:
                    log.warning("route %s via %s: %s", cidr, via, err.strip())
                else:
                    log.info("route %s via %s", cidr, via)
        for cidr in set(have) - set(wanted):
            await run_command("ip", "route", "del", cidr, "proto", ROUTE_PROTO, check=False)
            log.info("route %s removed (its node left)", cidr)


def enable_forwarding() -> None:
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")  # a /proc write: does not block


async def ensure_egress_masquerade(cluster_cidr: str, iptables: str = "iptables") -> None:
    text = (
        f"*nat\n:{EGRESS_CHAIN} - [0:0]\n"
        f'-A {EGRESS_CHAIN} -s {cluster_cidr} ! -d {cluster_cidr} -m comment --comment "{EGRESS_COMMENT}"'
        " -j MASQUERADE\nCOMMIT\n"
    )
    proc = await asyncio.create_subprocess_exec(
        f"{iptables}-restore", "--noflush", "-w", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(text.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"iptables-restore (egress): {err.decode(errors='replace').strip()}")
    jump = ["POSTROUTING", "-m", "comment", "--comment", EGRESS_COMMENT, "-j", EGRESS_CHAIN]
    if (await run_command(iptables, "-w", "-t", "nat", "-C", *jump, check=False))[0] != 0:
        await run_command(iptables, "-w", "-t", "nat", "-A", *jump)


async def remove_egress_masquerade(iptables: str = "iptables") -> None:
    jump = ["POSTROUTING", "-m", "comment", "--comment", EGRESS_COMMENT, "-j", EGRESS_CHAIN]
    while (await run_command(iptables, "-w", "-t", "nat", "-D", *jump, check=False))[0] == 0:
        pass
    await run_command(iptables, "-w", "-t", "nat", "-F", EGRESS_CHAIN, check=False)
    await run_command(iptables, "-w", "-t", "nat", "-X", EGRESS_CHAIN, check=False)


class ClusterNetwork:
    """Everything network-wide the agent does for its node (see the module docstring)."""

    def __init__(self, client: ApiClient, node_name: str, runtime: Runtime, config: NetworkConfig) -> None:
        self.client = client
        self.node_name = node_name
        self.runtime = runtime
        self.config = config
        self.nodes = Informer(client, NODES)
        self.services = Informer(client, SERVICES)
        self.endpoints = Informer(client, ENDPOINTS)
        self.routes = RouteManager(node_name)
        self.proxy = (
            ServiceProxy(self.services, self.endpoints,
                         ProxyConfig(cluster_cidr=config.cluster_cidr, local_pod_cidr=config.pod_cidr,
                                     sync_period=config.sync_period), iptables=config.iptables)
            if config.proxy else None
        )
        self.resolver = DnsResolver(self.services, self.endpoints, config.cluster_domain)
        self.dns: ClusterDns | None = None
        self.pod_cidr: str | None = None
        self._routes_dirty = asyncio.Event()
        self._pod_cidr_known = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.nodes.add_handler(
            on_add=self._node_event, on_update=lambda _old, new: self._node_event(new),
            on_delete=lambda _o: self._routes_dirty.set(),
        )

    def _node_event(self, node: Obj) -> None:
        self._routes_dirty.set()
        if (node.get("metadata") or {}).get("name") == self.node_name:
            cidr = self.config.pod_cidr or (node.get("spec") or {}).get("podCIDR")
            if cidr and cidr != self.pod_cidr:
                self.pod_cidr = str(cidr)
                self._pod_cidr_known.set()

    async def start(self) -> None:
        enable_forwarding()
        await ensure_egress_masquerade(self.config.cluster_cidr, self.config.iptables)
        informers = [self.nodes] + ([self.services, self.endpoints] if self.config.proxy or self.config.dns else [])
        self._tasks = [asyncio.create_task(i.run(), name=f"net-informer-{i.rt.plural}") for i in informers]
        self._tasks.append(asyncio.create_task(self._route_loop(), name="routes"))
        self._tasks.append(asyncio.create_task(self._pod_cidr_loop(), name="pod-cidr"))
        if self.proxy is not None:
            self.proxy.start()

    async def _route_loop(self) -> None:
        await self.nodes.wait_synced()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._routes_dirty.wait(), self.config.sync_period)
            await asyncio.sleep(0.05)  # coalesce a burst of node updates (heartbeats of every node)
            self._routes_dirty.clear()
            try:
                await self.routes.sync(self.nodes.list())
            except Exception as e:  # retried on the next event or period
                log.error("route sync failed: %s", e)

    async def _pod_cidr_loop(self) -> None:
        """Each time this node's pod CIDR is learnt: tell the runtime and the proxy, (re)start DNS."""
        if self.config.pod_cidr:
            await self._claim_pod_cidr(self.config.pod_cidr)
            self.pod_cidr = self.config.pod_cidr
            self._pod_cidr_known.set()
        while True:
            await self._pod_cidr_known.wait()
            self._pod_cidr_known.clear()
            cidr = self.pod_cidr
            assert cidr is not None
            log.info("node %s: pod CIDR %s", self.node_name, cidr)
            await self.runtime.update_runtime_config(cidr)
            if self.proxy is not None:
                self.proxy.set_local_pod_cidr(cidr)
            if self.config.dns:
                await self._start_dns(cidr)

    async def _claim_pod_cidr(self, cidr: str) -> None:
        """With --pod-cidr, publish it in the Node (if unset) so that the other nodes route to it."""
        while True:
            try:
                node = await self.client.get(NODES, self.node_name)
                current = (node.get("spec") or {}).get("podCIDR")
                if not current:
                    await self.client.patch(NODES, self.node_name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
                elif current != cidr:
                    log.error("node %s: --pod-cidr %s differs from spec.podCIDR %s; other nodes route to the latter",
                              self.node_name, cidr, current)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
                await asyncio.sleep(0.5)  # not registered yet

    def dns_address(self, cidr: str) -> str | None:
        if self.config.cluster_dns:
            return self.config.cluster_dns
        network = getattr(self.runtime, "network", None)
        if isinstance(network, NodeNetwork):
            return str(next(ipaddress.ip_network(cidr, strict=False).hosts()))
        return None  # a runtime without a node bridge (fake): no address to serve on

    async def _start_dns(self, cidr: str) -> None:
        address = self.dns_address(cidr)
        if address is None:
            log.warning("node %s: no cluster DNS address (give --cluster-dns)", self.node_name)
            return
        if self.dns is not None:
            if self.dns.address == address:
                return
            await self.dns.stop()
        if self.config.cluster_dns:
            # A per-node DNS address (the same on every node): local on lo, so pods reach it via their gateway.
            await run_command("ip", "addr", "replace", f"{address}/32", "dev", "lo")
        else:
            network = getattr(self.runtime, "network", None)
            assert isinstance(network, NodeNetwork)
            await network.ensure_bridge()  # the gateway address lives on the bridge
        self.dns = ClusterDns(self.resolver, address, self.config.dns_port)
        await self.dns.start()

    async def stop(self, cleanup: bool = True) -> None:
        """Stop watching; with ``cleanup`` remove proxy rules and the egress chain (routes stay, see above)."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for inf in (self.nodes, self.services, self.endpoints):
            inf.stop()
        if self.dns is not None:
            await self.dns.stop()
            self.dns = None
        if self.proxy is not None:
            await self.proxy.stop(cleanup=cleanup)
        if cleanup:
            await remove_egress_masquerade(self.config.iptables)
