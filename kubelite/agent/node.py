"""The Node object and its heartbeat: registration, the kube-node-lease Lease, status updates, fencing.

Kubernetes' split (KEP-589): the Lease is the cheap, frequent "I am alive" (every
``heartbeat_interval``); the Node's status (conditions' ``lastHeartbeatTime``) is written only every
``status_update_interval`` or when a condition changes, since every Node write fans out to every
watcher of nodes.

Fencing (kubelite's rule for StatefulSet safety): a node that could not renew its Lease for
``fencing_period`` seconds must assume the control plane considers it dead and may already run its
pods elsewhere, so it stops its containers; once renewals succeed again its pods are re-synced.
The control plane waits longer than the fencing period before force-deleting such pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import platform
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kubelite import KUBE_VERSION
from kubelite.api.quantity import parse_quantity
from kubelite.api.registry import by_path
from kubelite.api.validation import is_label_value, is_qualified_name
from kubelite.client import ApiClient, ApiConnectionError, ApiError

__all__ = [
    "AGENT_SCHEME_ANNOTATION",
    "NODE_LEASE_NAMESPACE",
    "NodeConfig",
    "NodeHeartbeat",
    "build_lease",
    "build_node",
    "detect_node_ip",
    "host_capacity",
    "node_conditions",
    "parse_labels",
    "parse_taints",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

NODE_LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40  # kubelet's default nodeLeaseDurationSeconds
AGENT_PORT = 10250  # the agent's logs/exec endpoint (kubelet's port), reported in daemonEndpoints
AGENT_SCHEME_ANNOTATION = "kubelite.io/agent-scheme"  # http or https: how the API server dials that endpoint
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_NODES = by_path("", "v1", "nodes")
_LEASES = by_path("coordination.k8s.io", "v1", "leases")
assert _NODES is not None and _LEASES is not None
NODES, LEASES = _NODES, _LEASES


def rfc3339(t: dt.datetime | None = None) -> str:
    return (t or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(t: dt.datetime | None = None) -> str:
    """MicroTime, as Lease.spec.renewTime is typed: ``2026-01-01T00:00:00.000000Z``."""
    return (t or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- flag syntax ----------------------------------------------------------------------------


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` -> dict; ValueError with a one-line message on bad syntax or names."""
    labels: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"invalid label {item!r}: expected key=value")
        key, value = key.strip(), value.strip()
        problems = is_qualified_name(key) if key else ["must not be empty"]
        if problems:
            raise ValueError(f"invalid label key {key!r}: {problems[0]}")
        problems = is_label_value(value)
        if problems:
            raise ValueError(f"invalid label value {value!r} for {key}: {problems[0]}")
        labels[key] = value
    return labels


def parse_taints(text: str) -> list[Obj]:
    """``key=value:Effect,key:Effect`` -> Node taints; ValueError with a one-line message."""
    taints: list[Obj] = []
    seen: set[tuple[str, str]] = set()
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        body, sep, effect = item.rpartition(":")
        if not sep or not body:
            raise ValueError(f"invalid taint {item!r}: expected key=value:Effect or key:Effect")
        if effect not in TAINT_EFFECTS:
            raise ValueError(f"invalid taint effect {effect!r} in {item!r}: expected one of {', '.join(TAINT_EFFECTS)}")
        key, has_value, value = body.partition("=")
        problems = is_qualified_name(key) if key else ["must not be empty"]
        if problems:
            raise ValueError(f"invalid taint key {key!r} in {item!r}: {problems[0]}")
        if has_value and value:
            problems = is_label_value(value)
            if problems:
                raise ValueError(f"invalid taint value {value!r} in {item!r}: {problems[0]}")
        if (key, effect) in seen:
            raise ValueError(f"duplicate taint {key}:{effect}")
        seen.add((key, effect))
        taint: Obj = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        taints.append(taint)
    return taints


# --- host facts -------------------------------------------------------------------------------


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}.get(
        machine, machine or "amd64"
    )


def host_capacity() -> tuple[str, str]:
    """(cpu count, memory) of this machine from /proc, as Node quantities ("4", "8025364Ki")."""
    cpus = 0
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpus = sum(1 for line in f if line.startswith("processor"))
    memory = "0"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1])}Ki"
                break
    return str(cpus or os.cpu_count() or 1), memory


def _os_image() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def _machine_id() -> str:
    with contextlib.suppress(OSError), open("/etc/machine-id") as f:
        return f.read().strip()
    return ""


def detect_node_ip(server_url: str | None) -> str:
    """The local address used to reach the API server (no packet is sent), else 127.0.0.1."""
    host = urlsplit(server_url).hostname if server_url else None
    targets = [host] if host else []
    for target in [*targets, "192.0.2.1"]:  # TEST-NET-1: any routable address picks the default route
        try:
            family = socket.AF_INET6 if ":" in target else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))
                ip = str(s.getsockname()[0])
            if ip and not ipaddress.ip_address(ip).is_unspecified:
                return ip
        except (OSError, ValueError):
            continue
    return "127.0.0.1"


# --- the Node object --------------------------------------------------------------------------


@dataclass
class NodeConfig:
    name: str
    node_ip: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Obj] = field(default_factory=list)
    cpu: str = "4"
    memory: str = "8Gi"
    max_pods: int = 110
    ephemeral_storage: str = "100Gi"
    runtime_version: str = "fake://0.1"
    hollow: bool = False  # nodeInfo is synthesised rather than read from this machine
    heartbeat_interval: float = 2.0
    # Unchanged status is re-posted this often (kubelet's nodeStatusReportFrequency, 5 min there);
    # liveness is the Lease. Every Node write reaches every node watcher: at 1,000 nodes a 10 s
    # report meant 100 Node writes/s, each fanned out.
    status_update_interval: float = 60.0
    fencing_period: float = 20.0
    lease_duration: int = LEASE_DURATION_SECONDS
    agent_port: int = AGENT_PORT  # logs/exec endpoint; 0 = any free port (published once bound)
    agent_scheme: str = "http"  # "https" when the endpoint serves TLS (published for the API server's proxy)

    def validate(self) -> None:
        """ValueError with a one-line message for an unusable value."""
        try:
            cpu, memory = parse_quantity(self.cpu), parse_quantity(self.memory)
        except ValueError as e:
            raise ValueError(f"invalid --cpu/--memory quantity: {e}") from None
        if cpu <= 0 or memory <= 0:
            raise ValueError("--cpu and --memory must be greater than 0")
        if self.max_pods <= 0:
            raise ValueError("--max-pods must be greater than 0")
        try:
            ipaddress.ip_address(self.node_ip)
        except ValueError:
            raise ValueError(f"--node-ip {self.node_ip!r} is not an IP address") from None
        if self.heartbeat_interval <= 0 or self.fencing_period <= 0:
            raise ValueError("--heartbeat-interval and --fencing-period must be greater than 0")
        if self.fencing_period <= self.heartbeat_interval:
            raise ValueError("--fencing-period must be longer than --heartbeat-interval")
        if not 0 <= self.agent_port < 65536:
            raise ValueError(f"--agent-port {self.agent_port} is out of range (0-65535)")


def node_info(config: NodeConfig) -> Obj:
    if config.hollow:
        # Stable per name, so a restarted hollow node looks like the same machine.
        ident = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{config.name}.hollow.kubelite"))
        machine_id, boot_id, os_image, kernel = ident.replace("-", ""), ident, "kubelite hollow node", "hollow"
    else:
        machine_id, os_image, kernel = _machine_id(), _os_image(), platform.release()
        boot_id = ""
        with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    return {
        "machineID": machine_id,
        "systemUUID": machine_id,
        "bootID": boot_id,
        "kernelVersion": kernel,
        "osImage": os_image,
        "containerRuntimeVersion": config.runtime_version,
        "kubeletVersion": KUBE_VERSION,
        "kubeProxyVersion": KUBE_VERSION,
        "operatingSystem": "linux",
        "architecture": _arch(),
    }


# (type, reason when healthy, message when healthy): "pressure" conditions are False when healthy.
_PRESSURE = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelite agent has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelite agent has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelite agent has sufficient PID available"),
)


def node_conditions(ready: bool, not_ready_message: str, old: list[Obj] | None, now: str) -> list[Obj]:
    """The Node's conditions; lastTransitionTime kept from ``old`` while a status does not change."""
    previous = {c.get("type"): c for c in old or []}
    wanted: list[tuple[str, str, str, str]] = [
        (t, "False", reason, message) for t, reason, message in _PRESSURE
    ]
    if ready:
        wanted.append(("Ready", "True", "KubeletReady", "kubelite agent is posting ready status"))
    else:
        wanted.append(("Ready", "False", "KubeletNotReady", not_ready_message))
    out: list[Obj] = []
    for type_, status, reason, message in wanted:
        prev = previous.get(type_)
        transition = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
        out.append({
            "type": type_,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": transition or now,
            "reason": reason,
            "message": message,
        })
    return out


def conditions_differ(a: list[Obj], b: list[Obj]) -> bool:
    """Whether two condition lists differ in anything but their heartbeat times."""

    def key(conds: list[Obj]) -> list[tuple[Any, ...]]:
        return sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conds)

    return key(a) != key(b)


def build_node(config: NodeConfig, conditions: list[Obj]) -> Obj:
    """The whole Node object this agent registers."""
    labels = {
        "kubernetes.io/hostname": config.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _arch(),
        **config.labels,
    }
    resources = {"cpu": config.cpu, "memory": config.memory, "pods": str(config.max_pods),
                 "ephemeral-storage": config.ephemeral_storage}
    spec: Obj = {}
    if config.taints:
        spec["taints"] = [dict(t) for t in config.taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": config.name, "labels": labels,
                     "annotations": {AGENT_SCHEME_ANNOTATION: config.agent_scheme}},
        "spec": spec,
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": config.node_ip},
                {"type": "Hostname", "address": config.name},
            ],
            "nodeInfo": node_info(config),
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": config.agent_port}},
        },
    }


def build_lease(config: NodeConfig, node_uid: str | None, now: dt.datetime | None = None) -> Obj:
    meta: Obj = {"name": config.name, "namespace": NODE_LEASE_NAMESPACE}
    if node_uid:
        # Owned by the Node, so deleting the Node garbage-collects its Lease (as kubelet does).
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": config.name, "uid": node_uid}]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": config.name,
            "leaseDurationSeconds": config.lease_duration,
            "renewTime": rfc3339_micro(now),
        },
    }


# --- the heartbeat ------------------------------------------------------------------------------


class NodeHeartbeat:
    """Registers the Node, renews its Lease, posts its status, and fences when renewals fail."""

    def __init__(
        self,
        client: ApiClient,
        config: NodeConfig,
        *,
        runtime_healthy: Callable[[], Awaitable[bool]] | None = None,
        on_fence: Callable[[], Awaitable[None]] | None = None,
        on_unfence: Callable[[], Awaitable[None]] | None = None,
        on_node: Callable[[Obj], Awaitable[None]] | None = None,
        jitter: bool = False,
    ) -> None:
        self.client = client
        self.config = config
        self._runtime_healthy = runtime_healthy
        self._on_fence = on_fence
        self._on_unfence = on_unfence
        self._on_node = on_node  # told about the registered Node (e.g. a newly assigned podCIDR)
        self._jitter = jitter
        self.node: Obj | None = None
        self.lease: Obj | None = None
        self.paused = False
        self.fenced = False
        self.renewals = 0
        self._loop = asyncio.get_running_loop()
        self.last_renewed = self._loop.time()
        self._last_status_post = float("-inf")
        self._conditions: list[Obj] = []

    # --- registration ---

    async def _ready(self) -> tuple[bool, str]:
        if self.fenced:
            return False, "the agent could not renew its lease and stopped its pods (fenced)"
        if self._runtime_healthy is not None:
            try:
                if not await self._runtime_healthy():
                    return False, "container runtime is down"
            except Exception as e:  # a broken runtime is a NotReady node, not a dead heartbeat
                return False, f"container runtime status check failed: {e}"
        return True, ""

    async def register(self) -> Obj:
        """Create the Node, or bring an existing one's labels and status up to date."""
        ready, message = await self._ready()
        now = rfc3339()
        try:
            current: Obj | None = await self.client.get(NODES, self.config.name)
        except ApiError as e:
            if e.code != 404:
                raise
            current = None
        old_conditions = ((current or {}).get("status") or {}).get("conditions")
        self._conditions = node_conditions(ready, message, old_conditions, now)
        wanted = build_node(self.config, self._conditions)
        if current is None:
            try:
                created = await self.client.create(NODES, wanted)
                # Status is ignored on create (status subresource): post it separately.
                node = await self.client.patch(NODES, self.config.name, {"status": wanted["status"]}, subresource="status")
                log.info("node %s registered (uid %s)", self.config.name, created["metadata"].get("uid"))
            except ApiError as e:
                if e.code != 409:
                    raise
                return await self.register()  # someone (a previous incarnation) raced us: update instead
        else:
            # Labels are merged in; taints only set at creation (afterwards they belong to admins
            # and the node controller), as kubelet does. spec.podCIDR is the control plane's.
            await self.client.patch(NODES, self.config.name, {"metadata": {
                "labels": wanted["metadata"]["labels"], "annotations": wanted["metadata"]["annotations"]}})
            node = await self.client.patch(NODES, self.config.name, {"status": wanted["status"]}, subresource="status")
        self.node = node
        self._last_status_post = self._loop.time()
        if self._on_node is not None:
            await self._on_node(node)
        return node

    # --- lease ---

    async def renew_lease(self) -> None:
        """One renewal: compare-and-swap on the last Lease we saw, re-reading it on conflict."""
        uid = ((self.node or {}).get("metadata") or {}).get("uid")
        for _ in range(3):
            if self.lease is None:
                try:
                    self.lease = await self.client.get(LEASES, self.config.name, NODE_LEASE_NAMESPACE)
                except ApiError as e:
                    if e.code != 404:
                        raise
                    self.lease = await self.client.create(LEASES, build_lease(self.config, uid))
                    return
            wanted = build_lease(self.config, uid)
            lease = {**self.lease, "spec": {**(self.lease.get("spec") or {}), **wanted["spec"]}}
            owners = wanted["metadata"].get("ownerReferences")
            if owners and self.lease["metadata"].get("ownerReferences") != owners:  # a re-registered Node
                lease["metadata"] = {**self.lease["metadata"], "ownerReferences": wanted["metadata"]["ownerReferences"]}
            try:
                self.lease = await self.client.replace(LEASES, lease)
                return
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
                self.lease = None  # changed or deleted under us: read it again
        raise ApiError(409, "Conflict", f"lease {self.config.name} kept changing; will retry")

    # --- status ---

    async def post_status(self, force: bool = False) -> None:
        """Post conditions when they changed or the status interval passed; re-register a deleted Node."""
        ready, message = await self._ready()
        now_s = rfc3339()
        conditions = node_conditions(ready, message, self._conditions, now_s)
        due = self._loop.time() - self._last_status_post >= self.config.status_update_interval
        if not (force or due or conditions_differ(conditions, self._conditions)):
            return
        try:
            self.node = await self.client.patch(
                NODES, self.config.name, {"status": {"conditions": conditions}}, subresource="status"
            )
        except ApiError as e:
            if e.code != 404:
                raise
            log.warning("node %s was deleted; registering it again", self.config.name)
            self.lease = None
            await self.register()
            return
        self._conditions = conditions
        self._last_status_post = self._loop.time()
        if self._on_node is not None:
            await self._on_node(self.node)

    # --- the loop ---

    async def beat(self) -> None:
        """One heartbeat: renew the Lease, post status if due, fence or unfence."""
        timeout = max(1.0, min(10.0, self.config.fencing_period / 2))
        if not self.paused:
            try:
                # Fencing counts from when a successful renewal was *sent*: the server may have applied
                # it any time after that, so this is the conservative end (see docs/failover.md).
                sent = self._loop.time()
                async with asyncio.timeout(timeout):
                    if self.node is None:
                        await self.register()
                    await self.renew_lease()
                gap = sent - self.last_renewed
                self.last_renewed = sent
                self.renewals += 1
                if gap > 3 * self.config.heartbeat_interval and not self.fenced:
                    # After a silence the node controller may have marked us Unknown: say Ready now.
                    async with asyncio.timeout(timeout):
                        await self.post_status(force=True)
                if self.fenced:
                    log.warning("node %s: lease renewed again; re-syncing pods", self.config.name)
                    self.fenced = False
                    if self._on_unfence is not None:
                        await self._on_unfence()
                    await self.post_status(force=True)
                async with asyncio.timeout(timeout):
                    await self.post_status()
            except (ApiError, ApiConnectionError, TimeoutError) as e:
                log.warning("node %s: heartbeat failed: %s", self.config.name, e)
        # A paused heartbeat counts as failing renewals: it simulates a node cut off from the API.
        if not self.fenced and self._loop.time() - self.last_renewed >= self.config.fencing_period:
            log.warning(
                "node %s: lease not renewed for %.0fs; stopping all pods (fencing)",
                self.config.name, self.config.fencing_period,
            )
            self.fenced = True
            if self._on_fence is not None:
                await self._on_fence()

    async def run(self) -> None:
        interval = self.config.heartbeat_interval
        if self._jitter:
            # Hollow nodes started together would otherwise renew in lock-step bursts.
            await asyncio.sleep(random.uniform(0, interval))
        while True:
            started = self._loop.time()
            await self.beat()
            spread = random.uniform(-0.05, 0.05) * interval if self._jitter else 0.0
            await asyncio.sleep(max(0.0, interval + spread - (self._loop.time() - started)))
