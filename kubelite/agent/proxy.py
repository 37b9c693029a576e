"""The Service proxy (kube-proxy's iptables mode), run by the agent on every node.

Why iptables and not nftables: on Debian 12 ``iptables`` *is* iptables-nft (rules land in nf_tables
under the ``ip nat`` table), so nothing is lost, and the iptables model is what makes ownership
easy: every rule of ours lives in our own chains (``KUBELITE-*``), which ``iptables-restore
--noflush`` replaces in one atomic batch (declaring a chain flushes it; other chains are not
touched), and the only rules we add to the built-in chains are three jumps, found by their comment.

Layout (``nat`` table):

* ``PREROUTING``/``OUTPUT`` -> ``KUBELITE-SERVICES``: one rule per ClusterIP:port -> ``KUBELITE-SVC-<h>``,
  and last, for destinations that are this node's own addresses, -> ``KUBELITE-NODEPORTS``.
* ``KUBELITE-SVC-<h>``: one rule per ready endpoint -> ``KUBELITE-SEP-<h>``, the i-th of n matching with
  probability 1/(n-i) (uniform overall); with ``sessionAffinity: ClientIP`` first a ``recent`` check
  per endpoint sends a known client back to the endpoint it had.
* ``KUBELITE-SEP-<h>``: DNAT to the endpoint (and ``recent --set`` for affinity).
* ``KUBELITE-POSTROUTING`` (from ``POSTROUTING``): masquerade packets carrying our mark. We mark
  NodePort traffic (the endpoint may be on another node, its reply must come back through us),
  ClusterIP traffic from outside the cluster CIDR, and traffic from this node's pods to endpoints on
  this node (hairpin included): the reply would otherwise be bridged straight back, skipping de-NAT.

The proxy syncs on Service/Endpoints events (debounced) and on a resync timer, which repairs rules
deleted by hand. ``cleanup()`` removes exactly what it added.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.agent.netns import run_command
from kubelite.client import Informer

__all__ = [
    "CHAIN_PREFIX",
    "ProxyConfig",
    "ServiceProxy",
    "is_proxy_chain",
    "render_rules",
    "service_chain",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

CHAIN_PREFIX = "KUBELITE-"
SERVICES_CHAIN = "KUBELITE-SERVICES"
NODEPORTS_CHAIN = "KUBELITE-NODEPORTS"
POSTROUTING_CHAIN = "KUBELITE-POSTROUTING"
MARK_CHAIN = "KUBELITE-MARK-MASQ"
MASQ_MARK = "0x4000/0x4000"
AFFINITY_SECONDS_DEFAULT = 10800
# (built-in chain, our chain, comment): the only rules we put outside our own chains.
JUMPS = (
    ("PREROUTING", SERVICES_CHAIN, "kubelite service portals"),
    ("OUTPUT", SERVICES_CHAIN, "kubelite service portals"),
    ("POSTROUTING", POSTROUTING_CHAIN, "kubelite postrouting rules"),
)


OWN_FIXED = frozenset({SERVICES_CHAIN, NODEPORTS_CHAIN, POSTROUTING_CHAIN, MARK_CHAIN})


def is_proxy_chain(chain: str) -> bool:
    """Ours (the proxy's); other KUBELITE-* chains (the agent's egress masquerade) are not."""
    return chain in OWN_FIXED or chain.startswith(("KUBELITE-SVC-", "KUBELITE-SEP-"))


def _hash(text: str) -> str:
    # Chain names are at most 28 characters: prefix (13) + 15.
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:15]


def service_chain(namespace: str, name: str, port_name: str, protocol: str) -> str:
    return f"KUBELITE-SVC-{_hash(f'{namespace}/{name}:{port_name}/{protocol}')}"


def endpoint_chain(namespace: str, name: str, port_name: str, protocol: str, ip: str, port: int) -> str:
    return f"KUBELITE-SEP-{_hash(f'{namespace}/{name}:{port_name}/{protocol}:{ip}:{port}')}"


def _probability(remaining: int) -> str:
    # The kernel keeps it as a fraction of 2^31: render what iptables-save prints back.
    return f"{round(0x80000000 / remaining) / 0x80000000:.11f}"


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


@dataclass(frozen=True)
class ProxyConfig:
    cluster_cidr: str = "10.244.0.0/16"
    local_pod_cidr: str | None = None  # this node's podCIDR (for the local-endpoint masquerade)
    sync_period: float = 10.0  # resync (repair) interval
    min_sync_interval: float = 0.05  # debounce: events within this window become one sync


def _ready_endpoints(endpoints: Obj | None, port_name: str, protocol: str) -> list[tuple[str, int]]:
    """(ip, port) of the ready addresses serving the Service port named ``port_name``."""
    out: list[tuple[str, int]] = []
    for subset in (endpoints or {}).get("subsets") or []:
        for p in subset.get("ports") or []:
            if str(p.get("name") or "") == port_name and str(p.get("protocol") or "TCP") == protocol:
                out += [(str(a["ip"]), int(p["port"])) for a in subset.get("addresses") or [] if a.get("ip")]
    return sorted(set(out))


def render_rules(
    services: Iterable[Obj],
    endpoints: Mapping[str, Obj],
    config: ProxyConfig,
    existing_chains: Iterable[str] = (),
) -> str:
    """The ``iptables-restore --noflush`` input (nat table) for these Services and Endpoints.

    ``endpoints`` maps ``namespace/name`` to the Endpoints object. Chains in ``existing_chains``
    that are ours and no longer wanted are flushed and deleted in the same batch.
    """
    cluster = str(ipaddress.ip_network(config.cluster_cidr, strict=False))
    local = str(ipaddress.ip_network(config.local_pod_cidr, strict=False)) if config.local_pod_cidr else None
    chains: list[str] = [SERVICES_CHAIN, NODEPORTS_CHAIN, POSTROUTING_CHAIN, MARK_CHAIN]
    rules: list[str] = [
        f"-A {MARK_CHAIN} -j MARK --set-xmark {MASQ_MARK}",
        f"-A {POSTROUTING_CHAIN} -m mark ! --mark {MASQ_MARK} -j RETURN",
        # Clear the mark: a re-routed packet that passes POSTROUTING again is not masqueraded twice.
        f"-A {POSTROUTING_CHAIN} -j MARK --set-xmark 0x4000/0x0",  # = --xor-mark, as iptables-save prints it
        f"-A {POSTROUTING_CHAIN} {_comment('kubelite service traffic requiring SNAT')} -j MASQUERADE --random-fully",
    ]
    svc_chain_rules: list[str] = []
    nodeport_rules: list[str] = []
    for svc in sorted(services, key=lambda s: (s["metadata"].get("namespace", ""), s["metadata"]["name"])):
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        ns, name = str(meta.get("namespace", "")), str(meta["name"])
        cluster_ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName" or not cluster_ip or cluster_ip == "None":
            continue  # headless and ExternalName Services are DNS-only
        affinity = spec.get("sessionAffinity") == "ClientIP"
        timeout = int(
            ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
            or AFFINITY_SECONDS_DEFAULT
        )
        for sp in spec.get("ports") or []:
            port_name, proto = str(sp.get("name") or ""), str(sp.get("protocol") or "TCP")
            if proto not in ("TCP", "UDP", "SCTP"):
                continue
            p = proto.lower()
            eps = _ready_endpoints(endpoints.get(f"{ns}/{name}"), port_name, proto)
            if not eps:
                continue  # nothing to balance to: the packet goes its normal way and fails there
            label = f"{ns}/{name}:{port_name}" if port_name else f"{ns}/{name}"
            svc_chain = service_chain(ns, name, port_name, proto)
            chains.append(svc_chain)
            dst = f"-d {cluster_ip}/32 -p {p} -m {p} --dport {sp['port']}"
            rules.append(f"-A {SERVICES_CHAIN} {_comment(label + ' cluster IP')} {dst} -j {svc_chain}")
            # Clients outside the pod network (the node itself) must see replies come back through here.
            svc_chain_rules.append(f"-A {svc_chain} ! -s {cluster} {dst} -j {MARK_CHAIN}")
            if sp.get("nodePort") and spec.get("type") in ("NodePort", "LoadBalancer"):
                np = f"-p {p} -m {p} --dport {sp['nodePort']}"
                nodeport_rules.append(f"-A {NODEPORTS_CHAIN} {_comment(label)} {np} -j {MARK_CHAIN}")
                nodeport_rules.append(f"-A {NODEPORTS_CHAIN} {_comment(label)} {np} -j {svc_chain}")
            sep_chains = [endpoint_chain(ns, name, port_name, proto, ip, port) for ip, port in eps]
            if affinity:
                for sep in sep_chains:
                    svc_chain_rules.append(
                        f"-A {svc_chain} {_comment(label)} -m recent --rcheck --seconds {timeout} --reap"
                        f" --name {sep} --mask 255.255.255.255 --rsource -j {sep}"
                    )
            n = len(eps)
            for i, sep in enumerate(sep_chains):
                prob = f" -m statistic --mode random --probability {_probability(n - i)}" if i < n - 1 else ""
                svc_chain_rules.append(f"-A {svc_chain} {_comment(label)}{prob} -j {sep}")
            for sep, (ip, port) in zip(sep_chains, eps, strict=True):
                chains.append(sep)
                if local is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(local):
                    svc_chain_rules.append(f"-A {sep} {_comment(label)} -s {local} -j {MARK_CHAIN}")
                recent = f" -m recent --set --name {sep} --mask 255.255.255.255 --rsource" if affinity else ""
                svc_chain_rules.append(
                    f"-A {sep} {_comment(label)} -p {p} -m {p}{recent} -j DNAT --to-destination {ip}:{port}"
                )
    rules += svc_chain_rules
    rules += nodeport_rules
    # Last in SERVICES: NodePorts on every address of this node (only after every ClusterIP rule).
    rules.append(
        f"-A {SERVICES_CHAIN} {_comment('kubelite node ports')} -m addrtype --dst-type LOCAL -j {NODEPORTS_CHAIN}"
    )
    stale = sorted(c for c in set(existing_chains) if is_proxy_chain(c) and c not in set(chains))
    lines = ["*nat"]
    lines += [f":{c} - [0:0]" for c in chains + stale]  # declaring a chain flushes it (with --noflush)
    lines += rules
    lines += [f"-X {c}" for c in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def our_rules(save_output: str) -> tuple[set[str], list[str]]:
    """From ``iptables-save -t nat``: our chain names, and every rule line that is ours."""
    chains: set[str] = set()
    rules: list[str] = []
    for line in save_output.splitlines():
        if line.startswith(":") and is_proxy_chain(line[1:].split()[0]):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A ") and is_proxy_chain(line.split()[1]):
            rules.append(line)
    return chains, rules


def _normalise(rules: Iterable[str]) -> list[str]:
    """Rule lines compared as token multisets: iptables-save reorders matches and formats numbers."""
    return sorted(" ".join(sorted(r.replace('"', "").split())) for r in rules)


class ServiceProxy:
    """Keeps this node's nat table in step with the cluster's Services and Endpoints."""

    def __init__(self, services: Informer, endpoints: Informer, config: ProxyConfig, iptables: str = "iptables") -> None:
        self.services = services
        self.endpoints = endpoints
        self.config = config
        self.iptables = iptables
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.syncs = 0
        self.repairs = 0
        self.last_sync_seconds = 0.0
        self._last_rendered: list[str] | None = None
        for inf in (services, endpoints):
            inf.add_handler(
                on_add=lambda _o: self._dirty.set(),
                on_update=lambda _a, _b: self._dirty.set(),
                on_delete=lambda _o: self._dirty.set(),
            )

    def set_local_pod_cidr(self, cidr: str) -> None:
        if cidr != self.config.local_pod_cidr:
            self.config = ProxyConfig(**{**self.config.__dict__, "local_pod_cidr": cidr})
            self._dirty.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="service-proxy")

    async def stop(self, cleanup: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if cleanup:
            await self.cleanup()

    async def _run(self) -> None:
        await asyncio.gather(self.services.wait_synced(), self.endpoints.wait_synced())
        loop = asyncio.get_running_loop()
        next_resync = loop.time()
        while True:
            if loop.time() >= next_resync:
                self._dirty.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), max(0.0, next_resync - loop.time()))
            await asyncio.sleep(self.config.min_sync_interval)  # let a burst of events settle
            self._dirty.clear()
            try:
                await self.sync()
            except Exception as e:  # a failed sync is retried on the next event or resync
                log.error("service proxy sync failed: %s", e)
                await asyncio.sleep(1.0)
                self._dirty.set()
            next_resync = loop.time() + self.config.sync_period if loop.time() >= next_resync else next_resync

    def desired(self, existing_chains: Iterable[str] = ()) -> str:
        eps = {f"{e['metadata'].get('namespace', '')}/{e['metadata']['name']}": e for e in self.endpoints.list()}
        return render_rules(self.services.list(), eps, self.config, existing_chains)

    async def sync(self) -> None:
        """Program the rules: one ``iptables-restore --noflush`` batch, then make sure the jumps exist."""
        started = time.perf_counter()
        _, saved, _ = await run_command(f"{self.iptables}-save", "-t", "nat")
        chains, current = our_rules(saved)
        text = self.desired(chains)
        wanted = _normalise(line for line in text.splitlines() if line.startswith("-A "))
        if wanted != _normalise(current) or not await self._jumps_present():
            if self._last_rendered is not None and wanted == self._last_rendered:
                self.repairs += 1  # nothing changed in the cluster: someone changed our rules
                log.warning("service proxy: rules differ from what was programmed; repairing")
            await self._restore(text)
            await self._ensure_jumps()
        self._last_rendered = wanted
        self.syncs += 1
        self.last_sync_seconds = time.perf_counter() - started

    async def _restore(self, text: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            f"{self.iptables}-restore", "--noflush", "-w", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate(text.encode())
        if proc.returncode != 0:
            raise RuntimeError(f"iptables-restore failed ({proc.returncode}): {err.decode(errors='replace').strip()}")

    def _jump(self, builtin: str, target: str, comment: str) -> list[str]:
        return [builtin, "-m", "comment", "--comment", comment, "-j", target]

    async def _jumps_present(self) -> bool:
        for builtin, target, comment in JUMPS:
            code, _, _ = await run_command(self.iptables, "-w", "-t", "nat", "-C",
                                           *self._jump(builtin, target, comment), check=False)
            if code != 0:
                return False
        return True

    async def _ensure_jumps(self) -> None:
        for builtin, target, comment in JUMPS:
            code, _, _ = await run_command(self.iptables, "-w", "-t", "nat", "-C",
                                           *self._jump(builtin, target, comment), check=False)
            if code != 0:
                await run_command(self.iptables, "-w", "-t", "nat", "-I", *self._jump(builtin, target, comment))

    async def cleanup(self) -> None:
        """Remove our jumps and chains; nothing else in the table is touched."""
        for builtin, target, comment in JUMPS:
            while (await run_command(self.iptables, "-w", "-t", "nat", "-D",
                                     *self._jump(builtin, target, comment), check=False))[0] == 0:
                pass
        _, saved, _ = await run_command(f"{self.iptables}-save", "-t", "nat")
        chains, _ = our_rules(saved)
        if chains:
            text = "*nat\n" + "".join(f":{c} - [0:0]\n" for c in sorted(chains))
            text += "".join(f"-X {c}\n" for c in sorted(chains)) + "COMMIT\n"
            await self._restore(text)
        self._last_rendered = None
