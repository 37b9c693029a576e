"""Per-kind table columns, like kubectl's (and the API server's ``as=Table``) printers.

Everything here is pure: ``columns(rt)`` describes the columns of a kind and ``row(rt, obj, now)``
turns one object into cells, so the CLI and the API server's Table responses print the same thing.
A column with ``priority > 0`` is shown only with ``-o wide`` (the meta.k8s.io Table convention).
The NAMESPACE column is not included: kubectl adds it client-side for ``-A``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubelite.api.registry import ResourceType

Cell = str | int
Obj = dict[str, Any]


@dataclass(frozen=True)
class ColumnDef:
    name: str
    type: str = "string"  # OpenAPI type as in meta.k8s.io/v1 TableColumnDefinition: string|integer|date
    priority: int = 0
    description: str = ""
    format: str = ""  # "name" marks the NAME column, as the real server does

    def as_table_column(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


# ---------------------------------------------------------------------------------------------
# formatting helpers


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds_f: float) -> str:
    """kubectl's duration.HumanDuration: '5s', '3m12s', '15m', '5h3m', '2d', '3y'."""
    seconds = int(seconds_f)
    # kubectl tolerates up to 2s of clock skew before calling a timestamp invalid.
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: datetime) -> str:
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return human_duration((now - t).total_seconds())


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _creation_age(obj: Obj, now: datetime) -> str:
    return age(_meta(obj).get("creationTimestamp"), now)


def format_selector(selector: dict[str, Any] | None) -> str:
    """A LabelSelector (matchLabels + matchExpressions) or a plain map, as kubectl prints it."""
    if not selector:
        return "<none>"
    if "matchLabels" in selector or "matchExpressions" in selector:
        parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
        for expr in selector.get("matchExpressions") or []:
            key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
            if op == "In":
                parts.append(f"{key} in ({','.join(values)})")
            elif op == "NotIn":
                parts.append(f"{key} notin ({','.join(values)})")
            elif op == "Exists":
                parts.append(key)
            elif op == "DoesNotExist":
                parts.append(f"!{key}")
        return ",".join(parts) or "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def format_labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _containers_images(pod_spec: Obj) -> tuple[str, str]:
    containers = pod_spec.get("containers") or []
    return (
        ",".join(c.get("name", "") for c in containers) or "<none>",
        ",".join(c.get("image", "") for c in containers) or "<none>",
    )


def _template_spec(obj: Obj) -> Obj:
    return (_spec(obj).get("template") or {}).get("spec") or {}


_ACCESS_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _access_modes(modes: list[str] | None) -> str:
    return ",".join(_ACCESS_MODES.get(m, m) for m in modes or [])


# ---------------------------------------------------------------------------------------------
# per-kind printers

_NAME = ColumnDef("Name", "string", 0, "Name must be unique within a namespace.", "name")
_AGE = ColumnDef("Age", "date", 0, "Time since the object was created (metadata.creationTimestamp).")


def _pod_status(pod: Obj) -> str:
    """kubectl's printPod reason: phase, then init-container and container waiting/terminated reasons."""
    status = _status(pod)
    # No phase yet means no component has looked at the pod: the API server's own default is Pending.
    reason: str = status.get("reason") or status.get("phase") or "Pending"
    init_statuses = status.get("initContainerStatuses") or []
    n_init = len(_spec(pod).get("initContainers") or [])
    initializing = False
    for i, cs in enumerate(init_statuses):
        state = cs.get("state") or {}
        term = state.get("terminated")
        waiting = state.get("waiting")
        if term and _int(term.get("exitCode")) == 0:
            continue
        initializing = True
        if term:
            if term.get("reason"):
                reason = f"Init:{term['reason']}"
            elif term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{term.get('exitCode')}"
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{n_init}"
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                reason = (
                    f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"
                )
            elif state.get("running") and cs.get("ready"):
                has_running = True
        if reason == "Completed" and has_running:
            ready_cond = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            reason = "Running" if ready_cond else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def _pod_restarts(pod: Obj, now: datetime) -> str:
    restarts = 0
    last: datetime | None = None
    for cs in _status(pod).get("containerStatuses") or []:
        restarts += _int(cs.get("restartCount"))
        finished = parse_time(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished and (last is None or finished > last):
            last = finished
    if restarts and last is not None:
        return f"{restarts} ({human_duration((now - last).total_seconds())} ago)"
    return str(restarts)


def _pod_row(pod: Obj, now: datetime) -> list[Cell]:
    statuses = _status(pod).get("containerStatuses") or []
    total = len(_spec(pod).get("containers") or []) or len(statuses)
    ready = sum(1 for cs in statuses if cs.get("ready"))
    gates = _spec(pod).get("readinessGates") or []
    if gates:
        true_conds = {
            c.get("type") for c in _status(pod).get("conditions") or [] if c.get("status") == "True"
        }
        gates_cell = f"{sum(1 for g in gates if g.get('conditionType') in true_conds)}/{len(gates)}"
    else:
        gates_cell = "<none>"
    return [
        _meta(pod).get("name", ""),
        f"{ready}/{total}",
        _pod_status(pod),
        _pod_restarts(pod, now),
        _creation_age(pod, now),
        _status(pod).get("podIP") or "<none>",
        _spec(pod).get("nodeName") or "<none>",
        _status(pod).get("nominatedNodeName") or "<none>",
        gates_cell,
    ]


def _deployment_row(d: Obj, now: datetime) -> list[Cell]:
    spec, st = _spec(d), _status(d)
    containers, images = _containers_images(_template_spec(d))
    return [
        _meta(d).get("name", ""),
        f"{_int(st.get('readyReplicas'))}/{_int(spec.get('replicas', 1))}",
        _int(st.get("updatedReplicas")),
        _int(st.get("availableReplicas")),
        _creation_age(d, now),
        containers,
        images,
        format_selector(spec.get("selector")),
    ]


def _replicaset_row(rs: Obj, now: datetime) -> list[Cell]:
    spec, st = _spec(rs), _status(rs)
    containers, images = _containers_images(_template_spec(rs))
    return [
        _meta(rs).get("name", ""),
        _int(spec.get("replicas", 1)),
        _int(st.get("replicas")),
        _int(st.get("readyReplicas")),
        _creation_age(rs, now),
        containers,
        images,
        format_selector(spec.get("selector")),
    ]


def _daemonset_row(ds: Obj, now: datetime) -> list[Cell]:
    spec, st = _spec(ds), _status(ds)
    containers, images = _containers_images(_template_spec(ds))
    return [
        _meta(ds).get("name", ""),
        _int(st.get("desiredNumberScheduled")),
        _int(st.get("currentNumberScheduled")),
        _int(st.get("numberReady")),
        _int(st.get("updatedNumberScheduled")),
        _int(st.get("numberAvailable")),
        format_selector(_template_spec(ds).get("nodeSelector")),
        _creation_age(ds, now),
        containers,
        images,
        format_selector(spec.get("selector")),
    ]


def _statefulset_row(sts: Obj, now: datetime) -> list[Cell]:
    spec, st = _spec(sts), _status(sts)
    containers, images = _containers_images(_template_spec(sts))
    return [
        _meta(sts).get("name", ""),
        f"{_int(st.get('readyReplicas'))}/{_int(spec.get('replicas', 1))}",
        _creation_age(sts, now),
        containers,
        images,
    ]


def format_service_ports(ports: list[Obj] | None) -> str:
    parts = []
    for p in ports or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            parts.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            parts.append(f"{p.get('port')}/{proto}")
    return ",".join(parts) or "<none>"


def _service_external_ip(svc: Obj) -> str:
    spec = _spec(svc)
    svc_type = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if svc_type == "LoadBalancer":
        ingress = (_status(svc).get("loadBalancer") or {}).get("ingress") or []
        external += [i.get("ip") or i.get("hostname") or "" for i in ingress]
        return ",".join(external) or "<pending>"
    if svc_type == "ExternalName":
        return str(spec.get("externalName") or "<none>")
    return ",".join(external) or "<none>"


def _service_row(svc: Obj, now: datetime) -> list[Cell]:
    spec = _spec(svc)
    svc_type = spec.get("type") or "ClusterIP"
    return [
        _meta(svc).get("name", ""),
        svc_type,
        spec.get("clusterIP") or ("<none>" if svc_type == "ExternalName" else ""),
        _service_external_ip(svc),
        format_service_ports(spec.get("ports")),
        _creation_age(svc, now),
        format_selector(spec.get("selector")),
    ]


def format_endpoints(ep: Obj, limit: int = 3) -> str:
    """'ip:port,ip:port,ip:port + N more...' as kubectl prints Endpoints."""
    addrs: list[str] = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or []
        for a in subset.get("addresses") or []:
            ip = a.get("ip", "")
            if ports:
                addrs += [f"{ip}:{p.get('port')}" for p in ports]
            else:
                addrs.append(ip)
    if not addrs:
        return "<none>"
    shown = ",".join(addrs[:limit])
    return shown + (f" + {len(addrs) - limit} more..." if len(addrs) > limit else "")


def _endpoints_row(ep: Obj, now: datetime) -> list[Cell]:
    return [_meta(ep).get("name", ""), format_endpoints(ep), _creation_age(ep, now)]


def node_status(node: Obj) -> str:
    ready = "Unknown"
    for cond in _status(node).get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = "Ready" if cond.get("status") == "True" else "NotReady"
    if _spec(node).get("unschedulable"):
        ready += ",SchedulingDisabled"
    return ready


def node_roles(node: Obj) -> str:
    roles = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            roles.add(key.split("/", 1)[1])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(r for r in roles if r)) or "<none>"


def _node_address(node: Obj, kind: str) -> str:
    for a in _status(node).get("addresses") or []:
        if a.get("type") == kind:
            return str(a.get("address", ""))
    return "<none>"


def _node_row(node: Obj, now: datetime) -> list[Cell]:
    info = _status(node).get("nodeInfo") or {}
    return [
        _meta(node).get("name", ""),
        node_status(node),
        node_roles(node),
        _creation_age(node, now),
        info.get("kubeletVersion") or "",
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _namespace_row(ns: Obj, now: datetime) -> list[Cell]:
    return [_meta(ns).get("name", ""), _status(ns).get("phase") or "Active", _creation_age(ns, now)]


def _configmap_row(cm: Obj, now: datetime) -> list[Cell]:
    n = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [_meta(cm).get("name", ""), n, _creation_age(cm, now)]


def _secret_row(s: Obj, now: datetime) -> list[Cell]:
    n = len(s.get("data") or {}) + len(s.get("stringData") or {})
    return [_meta(s).get("name", ""), s.get("type") or "Opaque", n, _creation_age(s, now)]


def _event_row(ev: Obj, now: datetime) -> list[Cell]:
    involved = ev.get("involvedObject") or {}
    obj = f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"
    last = ev.get("lastTimestamp") or ev.get("eventTime") or _meta(ev).get("creationTimestamp")
    first = ev.get("firstTimestamp") or ev.get("eventTime") or _meta(ev).get("creationTimestamp")
    source = ev.get("source") or {}
    src = ", ".join(x for x in (source.get("component"), source.get("host")) if x) or (
        ev.get("reportingComponent") or ""
    )
    return [
        age(last, now),
        ev.get("type") or "",
        ev.get("reason") or "",
        obj,
        (ev.get("message") or "").strip(),
        involved.get("fieldPath") or "",
        src,
        age(first, now),
        _int(ev.get("count")) or 1,
        _meta(ev).get("name", ""),
    ]


def _pvc_row(pvc: Obj, now: datetime) -> list[Cell]:
    spec, st = _spec(pvc), _status(pvc)
    phase = st.get("phase") or "Pending"
    if _meta(pvc).get("deletionTimestamp"):
        phase = "Terminating"
    capacity = (st.get("capacity") or {}).get("storage", "") if spec.get("volumeName") else ""
    return [
        _meta(pvc).get("name", ""),
        phase,
        spec.get("volumeName") or "",
        capacity,
        _access_modes(st.get("accessModes")) if spec.get("volumeName") else "",
        spec.get("storageClassName") or "<unset>",
        _creation_age(pvc, now),
        spec.get("volumeMode") or "Filesystem",
    ]


def _pv_row(pv: Obj, now: datetime) -> list[Cell]:
    spec, st = _spec(pv), _status(pv)
    claim_ref = spec.get("claimRef") or {}
    claim = f"{claim_ref.get('namespace', '')}/{claim_ref.get('name', '')}" if claim_ref else ""
    phase = st.get("phase") or "Pending"
    if _meta(pv).get("deletionTimestamp"):
        phase = "Terminating"
    return [
        _meta(pv).get("name", ""),
        (spec.get("capacity") or {}).get("storage", ""),
        _access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy") or "Retain",
        phase,
        claim,
        spec.get("storageClassName") or "",
        st.get("reason") or "",
        _creation_age(pv, now),
        spec.get("volumeMode") or "Filesystem",
    ]


def _lease_row(lease: Obj, now: datetime) -> list[Cell]:
    return [_meta(lease).get("name", ""), _spec(lease).get("holderIdentity") or "", _creation_age(lease, now)]


def _serviceaccount_row(sa: Obj, now: datetime) -> list[Cell]:
    secrets = sa.get("secrets")
    return [_meta(sa).get("name", ""), len(secrets) if isinstance(secrets, list) else 0, _creation_age(sa, now)]


def _role_row(role: Obj, now: datetime) -> list[Cell]:
    # kubectl prints roles' creation time itself (RFC 3339, UTC), not an age.
    created = parse_time(_meta(role).get("creationTimestamp"))
    return [_meta(role).get("name", ""), created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else ""]


def _binding_subjects(binding: Obj, kind: str) -> str:
    names = []
    for s in binding.get("subjects") or []:
        if isinstance(s, dict) and s.get("kind") == kind:
            ns = s.get("namespace") or ""
            names.append(f"{ns}/{s.get('name', '')}" if kind == "ServiceAccount" else str(s.get("name", "")))
    return ", ".join(names)


def _binding_row(binding: Obj, now: datetime) -> list[Cell]:
    ref = binding.get("roleRef") or {}
    return [
        _meta(binding).get("name", ""),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _creation_age(binding, now),
        _binding_subjects(binding, "User"),
        _binding_subjects(binding, "Group"),
        _binding_subjects(binding, "ServiceAccount"),
    ]


def _default_row(obj: Obj, now: datetime) -> list[Cell]:
    return [_meta(obj).get("name", ""), _creation_age(obj, now)]


def _c(name: str, description: str = "", type_: str = "string", priority: int = 0) -> ColumnDef:
    return ColumnDef(name, type_, priority, description)


_WORKLOAD_WIDE = [
    _c("Containers", "Names of each container in the template.", priority=1),
    _c("Images", "Images referenced by each container in the template.", priority=1),
    _c("Selector", "Label query over pods that should match the replicas count.", priority=1),
]

_ROLE_COLUMNS = [_NAME, _c("Created At", "Time at which the object was created (metadata.creationTimestamp).", "date")]
_BINDING_COLUMNS = [
    _NAME,
    _c("Role", "The role this binding grants (roleRef)."),
    _AGE,
    _c("Users", "Users in the binding.", priority=1),
    _c("Groups", "Groups in the binding.", priority=1),
    _c("ServiceAccounts", "ServiceAccounts in the binding.", priority=1),
]

_PRINTERS: dict[str, tuple[list[ColumnDef], Callable[[Obj, datetime], list[Cell]]]] = {
    "pods": (
        [
            _NAME,
            _c("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            _c("Status", "The aggregate status of the containers in this pod."),
            _c("Restarts", "The number of times the containers in this pod have been restarted."),
            _AGE,
            _c("IP", "IP address allocated to the pod.", priority=1),
            _c("Node", "Name of the node where the pod is scheduled.", priority=1),
            _c("Nominated Node", "Node the scheduler nominated for preemption.", priority=1),
            _c("Readiness Gates", "Pod readiness gates.", priority=1),
        ],
        _pod_row,
    ),
    "deployments": (
        [
            _NAME,
            _c("Ready", "Number of ready pods out of desired replicas."),
            _c("Up-to-date", "Total number of pods with the desired template.", "integer"),
            _c("Available", "Total number of available pods.", "integer"),
            _AGE,
            *_WORKLOAD_WIDE,
        ],
        _deployment_row,
    ),
    "replicasets": (
        [
            _NAME,
            _c("Desired", "Number of desired pods.", "integer"),
            _c("Current", "Number of actual replicas.", "integer"),
            _c("Ready", "Number of ready replicas.", "integer"),
            _AGE,
            *_WORKLOAD_WIDE,
        ],
        _replicaset_row,
    ),
    "daemonsets": (
        [
            _NAME,
            _c("Desired", "Number of nodes that should run the daemon pod.", "integer"),
            _c("Current", "Number of nodes running at least one daemon pod.", "integer"),
            _c("Ready", "Number of nodes with a ready daemon pod.", "integer"),
            _c("Up-to-date", "Number of nodes running the updated daemon pod.", "integer"),
            _c("Available", "Number of nodes with an available daemon pod.", "integer"),
            _c("Node Selector", "Node selector of the pod template."),
            _AGE,
            *_WORKLOAD_WIDE,
        ],
        _daemonset_row,
    ),
    "statefulsets": (
        [
            _NAME,
            _c("Ready", "Number of ready pods out of desired replicas."),
            _AGE,
            *_WORKLOAD_WIDE[:2],
        ],
        _statefulset_row,
    ),
    "services": (
        [
            _NAME,
            _c("Type", "The type of the service."),
            _c("Cluster-IP", "The cluster IP of the service."),
            _c("External-IP", "External IPs of the service."),
            _c("Port(s)", "Ports exposed by the service."),
            _AGE,
            _c("Selector", "Route traffic to pods with labels matching this selector.", priority=1),
        ],
        _service_row,
    ),
    "endpoints": (
        [_NAME, _c("Endpoints", "Endpoint addresses and ports."), _AGE],
        _endpoints_row,
    ),
    "nodes": (
        [
            _NAME,
            _c("Status", "The readiness of the node."),
            _c("Roles", "The roles of the node."),
            _AGE,
            _c("Version", "Kubelet version reported by the node."),
            _c("Internal-IP", "Internal IP of the node.", priority=1),
            _c("External-IP", "External IP of the node.", priority=1),
            _c("OS-Image", "OS image reported by the node.", priority=1),
            _c("Kernel-Version", "Kernel version reported by the node.", priority=1),
            _c("Container-Runtime", "Container runtime reported by the node.", priority=1),
        ],
        _node_row,
    ),
    "namespaces": ([_NAME, _c("Status", "The phase of the namespace."), _AGE], _namespace_row),
    "configmaps": ([_NAME, _c("Data", "Number of data keys.", "integer"), _AGE], _configmap_row),
    "secrets": (
        [_NAME, _c("Type", "The type of the secret."), _c("Data", "Number of data keys.", "integer"), _AGE],
        _secret_row,
    ),
    "events": (
        [
            _c("Last Seen", "Time since the event was last seen.", "date"),
            _c("Type", "Type of the event (Normal, Warning)."),
            _c("Reason", "Short reason for the event."),
            _c("Object", "The object the event is about."),
            _c("Message", "Human readable description of the event."),
            _c("Subobject", "Field path of the involved object.", priority=1),
            _c("Source", "Component reporting the event.", priority=1),
            _c("First Seen", "Time since the event was first seen.", "date", priority=1),
            _c("Count", "Number of occurrences.", "integer", priority=1),
            ColumnDef("Name", "string", 1, "Name of the event.", "name"),
        ],
        _event_row,
    ),
    "persistentvolumeclaims": (
        [
            _NAME,
            _c("Status", "Phase of the claim."),
            _c("Volume", "Bound persistent volume."),
            _c("Capacity", "Capacity of the bound volume."),
            _c("Access Modes", "Access modes of the bound volume."),
            _c("StorageClass", "Storage class of the claim."),
            _AGE,
            _c("VolumeMode", "Volume mode of the claim.", priority=1),
        ],
        _pvc_row,
    ),
    "persistentvolumes": (
        [
            _NAME,
            _c("Capacity", "Capacity of the volume."),
            _c("Access Modes", "Access modes of the volume."),
            _c("Reclaim Policy", "What happens to the volume when its claim is released."),
            _c("Status", "Phase of the volume."),
            _c("Claim", "The claim bound to the volume."),
            _c("StorageClass", "Storage class of the volume."),
            _c("Reason", "Reason for the volume's phase."),
            _AGE,
            _c("VolumeMode", "Volume mode of the volume.", priority=1),
        ],
        _pv_row,
    ),
    "leases": ([_NAME, _c("Holder", "The current holder of the lease."), _AGE], _lease_row),
    "serviceaccounts": (
        [_NAME, _c("Secrets", "Number of secrets of the service account.", "integer"), _AGE],
        _serviceaccount_row,
    ),
    "roles": (_ROLE_COLUMNS, _role_row),
    "clusterroles": (_ROLE_COLUMNS, _role_row),
    "rolebindings": (_BINDING_COLUMNS, _binding_row),
    "clusterrolebindings": (_BINDING_COLUMNS, _binding_row),
}

_DEFAULT: tuple[list[ColumnDef], Callable[[Obj, datetime], list[Cell]]] = ([_NAME, _AGE], _default_row)


def columns(rt: ResourceType) -> list[ColumnDef]:
    """The column definitions for ``rt`` (all of them; priority > 0 ones are wide-only)."""
    return list(_PRINTERS.get(rt.plural, _DEFAULT)[0])


def row(rt: ResourceType, obj: Obj, now: datetime | None = None) -> list[Cell]:
    """One object's cells, aligned with ``columns(rt)``."""
    return _PRINTERS.get(rt.plural, _DEFAULT)[1](obj, now or datetime.now(UTC))


def name_column_index(rt: ResourceType) -> int | None:
    """Index of the column holding the object's name (None for a kind, like events, without one by default)."""
    for i, col in enumerate(columns(rt)):
        if col.format == "name" and col.priority == 0:
            return i
    return None
