"""The scheduler's in-memory view of the cluster: per-node capacity and what is already placed there.

Kept current by the pod and node informers (``add_node``/``update_pod``/...), and by the scheduler
itself: a pod is *assumed* onto its chosen node before the binding call returns, so the next pod of
a burst already sees that node's resources taken; ``forget`` undoes it when the bind fails, and the
informer's bound-pod event *confirms* it. Scheduling one pod never reads the API server.

Everything scheduling needs is parsed once per object event (quantities to ints, taints to tuples)
into ``PodInfo``/``NodeInfo``, so Filter and Score plugins only compare numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kubelite.api.quantity import QuantityError, cpu_millis, to_int

__all__ = ["NodeInfo", "PodInfo", "Snapshot", "Taint", "node_ready_status", "pod_info"]

Obj = dict[str, Any]
# (key, value, effect)
Taint = tuple[str, str, str]
# (protocol, hostPort, hostIP); hostIP "0.0.0.0" means every address.
HostPort = tuple[str, int, str]

# Scoring treats a container without requests as if it asked for this much (k8s DefaultMilliCPURequest
# and DefaultMemoryRequest), so best-effort pods still spread instead of piling onto one node.
DEFAULT_NONZERO_CPU = 100
DEFAULT_NONZERO_MEMORY = 200 * 1024 * 1024
TERMINAL_PHASES = ("Succeeded", "Failed")
_BASE_RESOURCES = ("cpu", "memory")


def _cpu(value: Any) -> int:
    try:
        return cpu_millis(value)
    except QuantityError:
        return 0  # validation rejects bad quantities; a stray one must not crash scheduling


def _int(value: Any) -> int:
    try:
        return to_int(value)
    except QuantityError:
        return 0


def _amount(name: str, value: Any) -> int:
    return _cpu(value) if name == "cpu" else _int(value)


@dataclass(slots=True)
class PodInfo:
    """What scheduling needs from one pod, parsed once."""

    key: str
    uid: str
    namespace: str
    name: str
    cpu: int  # millicores requested
    memory: int  # bytes requested
    scalar: dict[str, int]  # other requested resources (ephemeral-storage, extended resources)
    nonzero_cpu: int
    nonzero_memory: int
    host_ports: tuple[HostPort, ...]
    owner_uid: str | None  # the controller ownerReference's uid
    node_name: str
    pod: Obj = field(repr=False)


def _requests(container: Obj) -> dict[str, Any]:
    res = container.get("resources") or {}
    req = res.get("requests")
    return req if isinstance(req, dict) else {}


def _add(total: dict[str, int], requests: dict[str, Any]) -> None:
    for name, qty in requests.items():
        total[name] = total.get(name, 0) + _amount(name, qty)


def pod_requests(spec: Obj) -> dict[str, int]:
    """Effective requests, as kube-scheduler computes them (resource.PodRequests).

    Regular containers and sidecars (restartable init containers) run together; each ordinary init
    container runs alone, alongside the sidecars started before it. The pod needs the larger of the
    two phases, plus its declared overhead.
    """
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        _add(total, _requests(c))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        if c.get("restartPolicy") == "Always":
            _add(sidecars, _requests(c))
            continue
        phase = dict(sidecars)
        _add(phase, _requests(c))
        for name, v in phase.items():
            init_peak[name] = max(init_peak.get(name, 0), v)
    for name, v in sidecars.items():
        total[name] = total.get(name, 0) + v
    for name, v in init_peak.items():
        total[name] = max(total.get(name, 0), v)
    overhead = spec.get("overhead")
    if isinstance(overhead, dict):
        _add(total, overhead)
    return total


def _nonzero(spec: Obj) -> tuple[int, int]:
    cpu = mem = 0
    for c in spec.get("containers") or []:
        req = _requests(c)
        cpu += _cpu(req["cpu"]) if "cpu" in req else DEFAULT_NONZERO_CPU
        mem += _int(req["memory"]) if "memory" in req else DEFAULT_NONZERO_MEMORY
    return cpu, mem


def _host_ports(spec: Obj) -> tuple[HostPort, ...]:
    host_network = bool(spec.get("hostNetwork"))
    out: list[HostPort] = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            port = p.get("hostPort") or (p.get("containerPort") if host_network else None)
            if isinstance(port, int) and port > 0:
                out.append((p.get("protocol") or "TCP", port, p.get("hostIP") or "0.0.0.0"))
    return tuple(out)


def pod_info(pod: Obj) -> PodInfo:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    req = pod_requests(spec)
    cpu, mem = req.pop("cpu", 0), req.pop("memory", 0)
    nz_cpu, nz_mem = _nonzero(spec)
    owner = None
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            owner = ref.get("uid")
            break
    return PodInfo(
        key=f"{ns}/{name}" if ns else name,
        uid=str(meta.get("uid") or ""),
        namespace=ns,
        name=name,
        cpu=cpu,
        memory=mem,
        scalar={k: v for k, v in req.items() if v},
        nonzero_cpu=max(nz_cpu, cpu),
        nonzero_memory=max(nz_mem, mem),
        host_ports=_host_ports(spec),
        owner_uid=owner,
        node_name=spec.get("nodeName") or "",
        pod=pod,
    )


def node_ready_status(node: Obj) -> str:
    """The Ready condition's status ("True"/"False"/"Unknown"), "" when the node reports none."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status") or "Unknown")
    return ""


@dataclass(slots=True)
class NodeInfo:
    """One node: its parsed attributes, and the sum of what pods placed on it request."""

    name: str
    node: Obj | None = None  # None while only pods bound to a node we have not seen yet exist
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: str = ""
    alloc_cpu: int = 0
    alloc_memory: int = 0
    alloc_pods: int = 0
    alloc_scalar: dict[str, int] = field(default_factory=dict)
    req_cpu: int = 0
    req_memory: int = 0
    req_scalar: Counter[str] = field(default_factory=Counter)
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    host_ports: Counter[HostPort] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)
    pods: dict[str, PodInfo] = field(default_factory=dict)

    @property
    def pod_count(self) -> int:
        return len(self.pods)

    def set_node(self, node: Obj) -> bool:
        """Take the node's attributes; True when something scheduling looks at changed."""
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        taints = tuple(
            (str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
            for t in spec.get("taints") or []
        )
        before = self._signature()
        self.node = node
        self.labels = dict(meta.get("labels") or {})
        self.taints = taints
        self.unschedulable = bool(spec.get("unschedulable"))
        self.ready = node_ready_status(node)
        self.alloc_cpu = _cpu(alloc.get("cpu", 0))
        self.alloc_memory = _int(alloc.get("memory", 0))
        self.alloc_pods = _int(alloc.get("pods", 0))
        self.alloc_scalar = {k: _int(v) for k, v in alloc.items() if k not in ("cpu", "memory", "pods")}
        return self._signature() != before

    def _signature(self) -> tuple[Any, ...]:
        return (
            self.node is not None, self.labels, self.taints, self.unschedulable, self.ready,
            self.alloc_cpu, self.alloc_memory, self.alloc_pods, self.alloc_scalar,
        )  # fmt: skip

    def add_pod(self, p: PodInfo) -> None:
        self.pods[p.key] = p
        self.req_cpu += p.cpu
        self.req_memory += p.memory
        self.nonzero_cpu += p.nonzero_cpu
        self.nonzero_memory += p.nonzero_memory
        if p.scalar:
            self.req_scalar.update(p.scalar)
        if p.host_ports:
            self.host_ports.update(p.host_ports)
        if p.owner_uid:
            self.owners[p.owner_uid] += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        self.req_cpu -= p.cpu
        self.req_memory -= p.memory
        self.nonzero_cpu -= p.nonzero_cpu
        self.nonzero_memory -= p.nonzero_memory
        if p.scalar:
            self.req_scalar.subtract(p.scalar)
            self.req_scalar += Counter()  # drop zero entries
        if p.host_ports:
            self.host_ports.subtract(p.host_ports)
            self.host_ports += Counter()
        if p.owner_uid:
            self.owners[p.owner_uid] -= 1
            if self.owners[p.owner_uid] <= 0:
                del self.owners[p.owner_uid]
        return p


def _counts(pod: Obj) -> bool:
    """Does this pod hold resources on a node? Bound and not finished (terminating pods still run)."""
    return (
        bool((pod.get("spec") or {}).get("nodeName"))
        and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES
    )


class Snapshot:
    """Nodes by name with their placed pods, plus the scheduler's assumed (bind in flight) pods."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._placed: dict[str, str] = {}  # pod key -> node name it is accounted on
        self.assumed: dict[str, str] = {}  # pod key -> node name, until the informer confirms
        self._node_list: list[NodeInfo] | None = None

    # --- nodes ---------------------------------------------------------------------------------

    def node_list(self) -> list[NodeInfo]:
        """Nodes that exist (have a Node object), in a stable order."""
        if self._node_list is None:
            self._node_list = [n for _, n in sorted(self.nodes.items()) if n.node is not None]
        return self._node_list

    def _info(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        return info

    def add_node(self, node: Obj) -> bool:
        """Add or update a node; True when its scheduling-relevant attributes changed."""
        name = (node.get("metadata") or {}).get("name") or ""
        info = self._info(name)
        if info.node is None:
            self._node_list = None
        return info.set_node(node)

    def remove_node(self, node: Obj) -> None:
        name = (node.get("metadata") or {}).get("name") or ""
        info = self.nodes.get(name)
        if info is None:
            return
        self._node_list = None
        if info.pods:
            # Pods still bound to it keep their accounting until they are deleted too; without a
            # Node object it is left out of node_list(), so nothing new lands there.
            info.node = None
        else:
            del self.nodes[name]

    # --- pods ----------------------------------------------------------------------------------

    def update_pod(self, pod: Obj) -> bool:
        """Account a pod event (add or update); True when it freed resources on some node."""
        key = _key(pod)
        if not _counts(pod):
            if key in self.assumed:
                return False  # our bind is in flight; the pod's own pending events change nothing
            return self._unplace(key)
        node_name = pod["spec"]["nodeName"]
        self.assumed.pop(key, None)  # confirmed (or bound elsewhere: this is the truth now)
        freed = False
        prev = self._placed.get(key)
        if prev is not None:
            self.nodes[prev].remove_pod(key)
            freed = prev != node_name
        self._info(node_name).add_pod(pod_info(pod))
        self._placed[key] = node_name
        return freed

    def remove_pod(self, pod: Obj) -> bool:
        key = _key(pod)
        self.assumed.pop(key, None)
        return self._unplace(key)

    def _unplace(self, key: str) -> bool:
        node_name = self._placed.pop(key, None)
        if node_name is None:
            return False
        info = self.nodes.get(node_name)
        if info is not None:
            info.remove_pod(key)
            if info.node is None and not info.pods:
                del self.nodes[node_name]
        return True

    def assume(self, p: PodInfo, node_name: str) -> None:
        """Account ``p`` on ``node_name`` now, before the bind is acknowledged."""
        self._unplace(p.key)
        p.node_name = node_name
        self._info(node_name).add_pod(p)
        self._placed[p.key] = node_name
        self.assumed[p.key] = node_name

    def forget(self, key: str) -> None:
        """Undo ``assume`` (the bind failed); a no-op once the informer has confirmed the pod."""
        if self.assumed.pop(key, None) is not None:
            self._unplace(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed


def _key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name") or ""
    return f"{ns}/{name}" if ns else str(name)
