"""Pod sandbox networking on one node (kubenet-style): a bridge, and per pod a netns with a veth.

* The node's bridge ``kl-<hash of node name>`` carries the first address of the node's pod CIDR:
  it is every pod's default gateway, and the host reaches pod IPs through it.
* A pod gets a named network namespace (``ip netns add``, bind-mounted under /var/run/netns, so it
  outlives every process and can be joined by path from an OCI config) holding ``lo`` and ``eth0``;
  ``eth0``'s peer sits on the bridge.
* Pod IPs come from :class:`HostLocalIpam`: one file per allocated address under the agent's data
  dir (CNI host-local's scheme), created with O_EXCL, so two allocations never collide, even across
  agent restarts, and an address is released by removing its file.

Cross-node routes, Services and DNS are not here. ``ip`` (iproute2) does the netlink work, called
with argument lists: it is on every node already and needs no Python dependency; pyroute2 would
have to fork into each namespace for the per-pod half anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
from pathlib import Path

__all__ = [
    "CommandError",
    "HostLocalIpam",
    "NodeNetwork",
    "PodNetworkInfo",
    "bridge_name",
    "netns_path",
    "run_command",
]

log = logging.getLogger(__name__)

NETNS_DIR = Path("/var/run/netns")


class CommandError(Exception):
    def __init__(self, argv: list[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} failed ({code}): {stderr.strip()}")
        self.argv, self.code, self.stderr = argv, code, stderr


async def run_command(*argv: str, check: bool = True, timeout: float | None = 60.0) -> tuple[int, str, str]:
    """Run ``argv`` (no shell); returns (exit code, stdout, stderr). Raises CommandError if ``check``."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CommandError(list(argv), -9, f"timed out after {timeout}s") from None
    code = proc.returncode if proc.returncode is not None else -1
    if check and code != 0:
        raise CommandError(list(argv), code, err.decode(errors="replace"))
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def bridge_name(node_name: str) -> str:
    return f"kl-{_short_hash(node_name, 10)}"  # interface names are at most 15 bytes


def netns_name(sandbox_id: str) -> str:
    return f"kl-{sandbox_id[:12]}"


def netns_path(sandbox_id: str) -> Path:
    return NETNS_DIR / netns_name(sandbox_id)


def _host_veth(sandbox_id: str) -> str:
    return f"klv{sandbox_id[:12]}"


class HostLocalIpam:
    """Pod IPs of one CIDR, one file per address (content: the owning sandbox id)."""

    def __init__(self, state_dir: Path, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.gateway = next(self.network.hosts())
        self.dir = state_dir / str(self.network).replace("/", "_")

    def allocate(self, owner: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = self.owned_by(owner)
        if existing is not None:
            return existing
        for host in self.network.hosts():
            if host == self.gateway:
                continue
            try:
                fd = os.open(self.dir / str(host), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(owner)
            return host
        raise RuntimeError(f"no free pod IP left in {self.network}")

    def owned_by(self, owner: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        for ip, who in self.allocations().items():
            if who == owner:
                return ip
        return None

    def allocations(self) -> dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str]:
        out: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
        if self.dir.is_dir():
            for f in self.dir.iterdir():
                with contextlib.suppress(ValueError, OSError):
                    out[ipaddress.ip_address(f.name)] = f.read_text().strip()
        return out

    def release(self, owner: str) -> None:
        for ip, who in self.allocations().items():
            if who == owner:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / str(ip)).unlink()


class PodNetworkInfo:
    def __init__(self, netns: Path, ip: str, gateway: str, prefixlen: int) -> None:
        self.netns, self.ip, self.gateway, self.prefixlen = netns, ip, gateway, prefixlen


class NodeNetwork:
    """The pod network of one node: its bridge, and each pod's namespace, veth and address."""

    def __init__(self, node_name: str, state_dir: Path, pod_cidr: str | None) -> None:
        self.node_name = node_name
        self.bridge = bridge_name(node_name)
        self.state_dir = state_dir
        self.pod_cidr = pod_cidr
        self._lock = asyncio.Lock()
        self._bridge_ready_for: str | None = None

    def set_pod_cidr(self, cidr: str) -> None:
        self.pod_cidr = str(ipaddress.ip_network(cidr, strict=False))

    def ipam(self) -> HostLocalIpam:
        if not self.pod_cidr:
            raise RuntimeError(f"node {self.node_name} has no pod CIDR yet (spec.podCIDR is not set)")
        return HostLocalIpam(self.state_dir / "ipam", self.pod_cidr)

    async def ensure_bridge(self) -> HostLocalIpam:
        """Create the bridge with the gateway address of the current pod CIDR (idempotent)."""
        ipam = self.ipam()
        async with self._lock:
            if self._bridge_ready_for == str(ipam.network):
                return ipam
            code, _, err = await run_command("ip", "link", "add", self.bridge, "type", "bridge", check=False)
            if code != 0 and "exists" not in err:
                raise CommandError(["ip", "link", "add", self.bridge], code, err)
            gw = f"{ipam.gateway}/{ipam.network.prefixlen}"
            _, out, _ = await run_command("ip", "-o", "addr", "show", "dev", self.bridge)
            for line in out.splitlines():  # a changed pod CIDR: drop the old gateway address
                fields = line.split()
                if "inet" in fields or "inet6" in fields:
                    addr = fields[fields.index("inet" if "inet" in fields else "inet6") + 1]
                    if addr != gw and not addr.startswith("fe80:"):
                        await run_command("ip", "addr", "del", addr, "dev", self.bridge)
            await run_command("ip", "addr", "replace", gw, "dev", self.bridge)
            await run_command("ip", "link", "set", self.bridge, "up")
            self._bridge_ready_for = str(ipam.network)
            return ipam

    async def setup_pod(self, sandbox_id: str) -> PodNetworkInfo:
        """Namespace, veth pair on the bridge, ``eth0`` with an address and a default route."""
        ipam = await self.ensure_bridge()
        ip = ipam.allocate(sandbox_id)
        ns, veth, peer = netns_name(sandbox_id), _host_veth(sandbox_id), f"klp{sandbox_id[:12]}"
        try:
            if not netns_path(sandbox_id).exists():
                await run_command("ip", "netns", "add", ns)
            await run_command("ip", "link", "del", veth, check=False)  # a leftover of an interrupted setup
            await run_command("ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", ns)
            await run_command("ip", "link", "set", veth, "master", self.bridge, "up")
            await run_command("ip", "-n", ns, "link", "set", peer, "name", "eth0")
            await run_command("ip", "-n", ns, "addr", "add", f"{ip}/{ipam.network.prefixlen}", "dev", "eth0")
            await run_command("ip", "-n", ns, "link", "set", "eth0", "up")
            await run_command("ip", "-n", ns, "link", "set", "lo", "up")
            await run_command("ip", "-n", ns, "route", "add", "default", "via", str(ipam.gateway))
            # A reused address: drop the bridge's neighbour entry for the previous pod's MAC, which would
            # otherwise black-hole traffic to this pod until the entry goes stale (~30 s).
            await run_command("ip", "neigh", "del", str(ip), "dev", self.bridge, check=False)
        except BaseException:
            await self.teardown_pod(sandbox_id)
            raise
        return PodNetworkInfo(netns_path(sandbox_id), str(ip), str(ipam.gateway), ipam.network.prefixlen)

    async def teardown_pod(self, sandbox_id: str) -> None:
        """Remove the pod's veth and namespace and release its IP (idempotent)."""
        await run_command("ip", "link", "del", _host_veth(sandbox_id), check=False)
        if netns_path(sandbox_id).exists():
            await run_command("ip", "netns", "del", netns_name(sandbox_id), check=False)
        # Every CIDR this node ever used: the pod may predate a change of the node's pod CIDR.
        ipam_root = self.state_dir / "ipam"
        if ipam_root.is_dir():
            for d in ipam_root.iterdir():
                HostLocalIpam(ipam_root, d.name.replace("_", "/")).release(sandbox_id)

    def pod_netns_exists(self, sandbox_id: str) -> bool:
        return netns_path(sandbox_id).exists()

    async def remove_bridge(self) -> None:
        await run_command("ip", "link", "del", self.bridge, check=False)
        self._bridge_ready_for = None
