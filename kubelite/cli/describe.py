"""``kubelite describe``: one object as readable sections, followed by its events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from kubelite.api import printers
from kubelite.api.registry import ResourceType, lookup
from kubelite.cli.common import (
    CliError,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    Session,
    connection_options,
    open_session,
    resolve_kind,
    run,
)
from kubelite.cli.get import dump

app = typer.Typer()

Obj = dict[str, Any]


@dataclass
class _Field:
    indent: int
    key: str
    value_lines: list[str]
    min_width: int


class Writer:
    """Collects describe output: 'Key:  value' fields and plain lines.

    Values of consecutive fields at the same indent are aligned at render time, like kubectl's
    tabwriter, so a long key ('CreationTimestamp') moves its whole block instead of breaking it.
    """

    def __init__(self) -> None:
        self.lines: list[str | _Field] = []

    def kv(self, key: str, value: Any, indent: int = 0, width: int = 0) -> None:
        text = "<none>" if value is None or value == "" else str(value)
        self.lines.append(_Field(indent, key, text.splitlines() or [""], width))

    def map(self, key: str, mapping: dict[str, Any] | None, indent: int = 0) -> None:
        """Labels / Annotations / selectors: one 'k=v' per line, '<none>' when empty."""
        items = [f"{k}={v}" for k, v in sorted((mapping or {}).items())]
        self.kv(key, "\n".join(items) if items else "<none>", indent)

    def line(self, text: str = "", indent: int = 0) -> None:
        self.lines.append(f"{' ' * indent}{text}".rstrip())

    def table(self, header: list[str], rows: list[list[str]], indent: int = 2, dashes: bool = False) -> None:
        all_rows = [header, *([["-" * len(h) for h in header]] if dashes else []), *rows]
        widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
        for r in all_rows:
            cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)] + [r[-1]]
            self.line("  ".join(cells), indent)

    def text(self) -> str:
        out: list[str] = []
        i = 0
        while i < len(self.lines):
            item = self.lines[i]
            if isinstance(item, str):
                out.append(item)
                i += 1
                continue
            run: list[_Field] = []
            while i < len(self.lines):
                nxt = self.lines[i]
                if not isinstance(nxt, _Field) or nxt.indent != item.indent:
                    break
                run.append(nxt)
                i += 1
            width = max(max(len(f.key) + 3, f.min_width) for f in run)
            for f in run:
                label = f"{f.key}:".ljust(width)
                first, *rest = f.value_lines
                out.append(f"{' ' * f.indent}{label}{first}".rstrip())
                out += [f"{' ' * (f.indent + width)}{line}".rstrip() for line in rest]
        return "\n".join(out)


def _fmt_time(ts: str | None) -> str:
    t = printers.parse_time(ts)
    return t.strftime("%a, %d %b %Y %H:%M:%S %z") if t else "<unset>"


def _describe_meta(w: Writer, obj: Obj) -> None:
    meta = obj.get("metadata") or {}
    w.kv("Name", meta.get("name"))
    if "namespace" in meta:
        w.kv("Namespace", meta.get("namespace"))
    w.kv("CreationTimestamp", _fmt_time(meta.get("creationTimestamp")))
    w.map("Labels", meta.get("labels"))
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items()
        # kubectl hides the (long) last-applied copy of the manifest.
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    w.map("Annotations", annotations)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            w.kv("Controlled By", f"{ref.get('kind')}/{ref.get('name')}")
    if meta.get("deletionTimestamp"):
        w.kv("Terminating", f"since {_fmt_time(meta['deletionTimestamp'])}")


def _conditions(w: Writer, conditions: list[Obj] | None, with_reason: bool = False) -> None:
    w.line("Conditions:")
    if not conditions:
        w.line("<none>", 2)
        return
    header = ["Type", "Status", *(["Reason"] if with_reason else [])]
    rows = [
        [str(c.get("type", "")), str(c.get("status", "")), *([str(c.get("reason", ""))] if with_reason else [])]
        for c in conditions
    ]
    w.table(header, rows, dashes=with_reason)


def _container_state(state: Obj | None) -> tuple[str, list[tuple[str, str]]]:
    state = state or {}
    if "running" in state:
        return "Running", [("Started", _fmt_time((state["running"] or {}).get("startedAt")))]
    if "terminated" in state:
        t = state["terminated"] or {}
        return "Terminated", [
            ("Reason", str(t.get("reason", ""))),
            ("Exit Code", str(t.get("exitCode", ""))),
            ("Started", _fmt_time(t.get("startedAt"))),
            ("Finished", _fmt_time(t.get("finishedAt"))),
        ]
    if "waiting" in state:
        return "Waiting", [("Reason", str((state["waiting"] or {}).get("reason", "")))]
    return "<unknown>", []


def _container_ports(c: Obj) -> str:
    ports = [f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}" for p in c.get("ports") or []]
    return ", ".join(ports) or "<none>"


def _containers(w: Writer, containers: list[Obj], statuses: list[Obj] | None, indent: int = 0) -> None:
    by_name = {s.get("name"): s for s in statuses or []}
    for c in containers:
        w.line(f"{c.get('name')}:", indent + 2)
        sub = indent + 4
        w.kv("Image", c.get("image"), sub)
        w.kv("Port", _container_ports(c), sub)
        if c.get("command"):
            w.kv("Command", "\n".join(str(x) for x in c["command"]), sub)
        if c.get("args"):
            w.kv("Args", "\n".join(str(x) for x in c["args"]), sub)
        status = by_name.get(c.get("name"))
        if status is not None:
            state, details = _container_state(status.get("state"))
            w.kv("State", state, sub)
            for key, value in details:
                w.kv(key, value, sub + 2)
            last, last_details = _container_state(status.get("lastState"))
            if status.get("lastState"):
                w.kv("Last State", last, sub)
                for key, value in last_details:
                    w.kv(key, value, sub + 2)
            w.kv("Ready", str(bool(status.get("ready"))), sub)
            w.kv("Restart Count", str(status.get("restartCount", 0)), sub)
        env = c.get("env") or []
        if env:
            w.kv(
                "Environment",
                "\n".join(
                    f"{e.get('name')}:  {e['value']}" if "value" in e else f"{e.get('name')}:  <set from source>"
                    for e in env
                ),
                sub,
            )
        else:
            w.kv("Environment", "<none>", sub)
        mounts = c.get("volumeMounts") or []
        w.kv(
            "Mounts",
            "\n".join(f"{m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})"
                      for m in mounts) or "<none>",
            sub,
        )


def _describe_pod(w: Writer, pod: Obj, now: datetime) -> None:
    spec, st = pod.get("spec") or {}, pod.get("status") or {}
    node = spec.get("nodeName")
    w.kv("Node", f"{node}/{st['hostIP']}" if node and st.get("hostIP") else (node or "<none>"))
    w.kv("Start Time", _fmt_time(st.get("startTime")) if st.get("startTime") else "<unset>")
    w.kv("Status", printers._pod_status(pod))
    w.kv("IP", st.get("podIP") or "")
    ips = [i.get("ip") for i in st.get("podIPs") or [] if i.get("ip")]
    if ips:
        w.line("IPs:")
        for ip in ips:
            w.kv("IP", ip, 2)
    if spec.get("initContainers"):
        w.line("Init Containers:")
        _containers(w, spec["initContainers"], st.get("initContainerStatuses"))
    w.line("Containers:")
    _containers(w, spec.get("containers") or [], st.get("containerStatuses"))
    _conditions(w, st.get("conditions"))
    volumes = spec.get("volumes") or []
    w.line("Volumes:" if volumes else "Volumes:  <none>")
    for v in volumes:
        kind = next((k for k in v if k != "name"), "unknown")
        w.line(f"{v.get('name')}:", 2)
        w.kv("Type", kind, 4)
    w.map("Node-Selectors", spec.get("nodeSelector"))
    tolerations = [
        f"{t.get('key', '')}{':' + t['effect'] if t.get('effect') else ''} op={t.get('operator', 'Equal')}"
        for t in spec.get("tolerations") or []
    ]
    w.kv("Tolerations", "\n".join(tolerations) or "<none>")


def _pod_template(w: Writer, template: Obj) -> None:
    w.line("Pod Template:")
    meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    w.map("Labels", meta.get("labels"), 2)
    w.line("Containers:", 2)
    _containers(w, spec.get("containers") or [], None, indent=2)
    volumes = spec.get("volumes") or []
    w.kv("Volumes", ", ".join(str(v.get("name")) for v in volumes) or "<none>", 2)
    if spec.get("nodeSelector"):
        w.map("Node-Selectors", spec.get("nodeSelector"), 2)


def _describe_deployment(w: Writer, d: Obj, now: datetime) -> None:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    w.kv("Selector", printers.format_selector(spec.get("selector")))
    desired = spec.get("replicas", 1)
    w.kv(
        "Replicas",
        f"{desired} desired | {st.get('updatedReplicas', 0)} updated | {st.get('replicas', 0)} total | "
        f"{st.get('availableReplicas', 0)} available | {st.get('unavailableReplicas', 0)} unavailable",
    )
    strategy = spec.get("strategy") or {}
    w.kv("StrategyType", strategy.get("type") or "RollingUpdate")
    w.kv("MinReadySeconds", str(spec.get("minReadySeconds", 0)))
    if (strategy.get("type") or "RollingUpdate") == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        w.kv(
            "RollingUpdateStrategy",
            f"{ru.get('maxUnavailable', '25%')} max unavailable, {ru.get('maxSurge', '25%')} max surge",
        )
    _pod_template(w, spec.get("template") or {})
    _conditions(w, st.get("conditions"), with_reason=True)


def _describe_workload(w: Writer, obj: Obj, now: datetime) -> None:
    """ReplicaSets, StatefulSets, DaemonSets: selector, counts, template."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    w.kv("Selector", printers.format_selector(spec.get("selector")))
    if obj.get("kind") == "DaemonSet":
        w.map("Node-Selector", ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector"))
        w.kv("Desired Number of Nodes Scheduled", str(st.get("desiredNumberScheduled", 0)))
        w.kv("Current Number of Nodes Scheduled", str(st.get("currentNumberScheduled", 0)))
        w.kv("Number of Nodes Scheduled with Up-to-date Pods", str(st.get("updatedNumberScheduled", 0)))
        w.kv("Number of Nodes Scheduled with Available Pods", str(st.get("numberAvailable", 0)))
        w.kv("Number of Nodes Misscheduled", str(st.get("numberMisscheduled", 0)))
    else:
        w.kv("Replicas", f"{st.get('replicas', 0)} current / {spec.get('replicas', 1)} desired")
        w.kv("Pods Status", f"{st.get('readyReplicas', 0)} Ready / {st.get('availableReplicas', 0)} Available")
    if obj.get("kind") == "StatefulSet":
        w.kv("Service Name", spec.get("serviceName"))
        claims = [str((t.get("metadata") or {}).get("name")) for t in spec.get("volumeClaimTemplates") or []]
        w.kv("Volume Claims", ", ".join(claims) or "<none>")
    _pod_template(w, spec.get("template") or {})


async def _describe_service(w: Writer, svc: Obj, session: Session) -> None:
    from kubelite.client import ApiError

    spec = svc.get("spec") or {}
    w.map("Selector", spec.get("selector"))
    w.kv("Type", spec.get("type") or "ClusterIP")
    w.kv("IP Family Policy", spec.get("ipFamilyPolicy") or "SingleStack")
    w.kv("IP", spec.get("clusterIP") or "<none>")
    w.kv("IPs", ",".join(spec.get("clusterIPs") or []) or spec.get("clusterIP") or "<none>")
    endpoints = "<none>"
    ep_rt = lookup("endpoints")
    meta = svc.get("metadata") or {}
    try:
        ep = await session.client.get(ep_rt, meta.get("name", ""), namespace=meta.get("namespace"))
        endpoints = printers.format_endpoints(ep, limit=10**6)
    except ApiError as exc:
        if exc.code != 404:
            raise
    for p in spec.get("ports") or []:
        name = p.get("name") or "<unset>"
        proto = p.get("protocol") or "TCP"
        w.kv("Port", f"{name}  {p.get('port')}/{proto}")
        w.kv("TargetPort", f"{p.get('targetPort', p.get('port'))}/{proto}")
        if p.get("nodePort"):
            w.kv("NodePort", f"{name}  {p['nodePort']}/{proto}")
        w.kv("Endpoints", endpoints)
    if not spec.get("ports"):
        w.kv("Endpoints", endpoints)
    w.kv("Session Affinity", spec.get("sessionAffinity") or "None")


def _describe_node(w: Writer, node: Obj, now: datetime) -> None:
    spec, st = node.get("spec") or {}, node.get("status") or {}
    w.kv("Roles", printers.node_roles(node))
    w.kv("Unschedulable", str(bool(spec.get("unschedulable"))).lower())
    taints = [f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in spec.get("taints") or []]
    w.kv("Taints", "\n".join(taints) or "<none>")
    w.line("Conditions:")
    rows = [[str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")),
             str(c.get("message", ""))] for c in st.get("conditions") or []]
    if rows:
        w.table(["Type", "Status", "Reason", "Message"], rows, dashes=True)
    else:
        w.line("<none>", 2)
    w.line("Addresses:")
    for a in st.get("addresses") or []:
        w.kv(str(a.get("type")), a.get("address"), 2)
    for section in ("capacity", "allocatable"):
        w.line(f"{section.capitalize()}:")
        for k, v in sorted((st.get(section) or {}).items()):
            w.kv(k, v, 2)
    info = st.get("nodeInfo") or {}
    if info:
        w.line("System Info:")
        for k in ("machineID", "kernelVersion", "osImage", "containerRuntimeVersion", "kubeletVersion",
                  "operatingSystem", "architecture"):
            if k in info:
                w.kv(k[0].upper() + k[1:], info[k], 2)
    w.kv("PodCIDR", spec.get("podCIDR"))


def _describe_generic(w: Writer, obj: Obj, now: datetime) -> None:
    """Every other kind: its remaining top-level fields as indented YAML."""
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata") or value in (None, {}, []):
            continue
        w.line(f"{key[0].upper()}{key[1:]}:")
        if isinstance(value, dict | list):
            for line in dump(value, "yaml").splitlines():
                w.line(line, 2)
        else:
            w.line(str(value), 2)


def format_events(events: list[Obj], now: datetime) -> list[str]:
    """The Events section: kubectl's Type/Reason/Age/From/Message table, oldest first."""
    if not events:
        return ["Events:  <none>"]

    def last_seen(ev: Obj) -> str:
        return str(ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get(
            "creationTimestamp") or "")

    rows = []
    for ev in sorted(events, key=last_seen):
        count = int(ev.get("count") or 1)
        age = printers.age(last_seen(ev), now)
        if count > 1:
            first = ev.get("firstTimestamp") or ev.get("eventTime")
            age = f"{age} (x{count} over {printers.age(first, now)})"
        source = ev.get("source") or {}
        rows.append([
            str(ev.get("type") or ""),
            str(ev.get("reason") or ""),
            age,
            str(source.get("component") or ev.get("reportingComponent") or ""),
            " ".join(str(ev.get("message") or "").split()),
        ])
    w = Writer()
    w.line("Events:")
    w.table(["Type", "Reason", "Age", "From", "Message"], rows, dashes=True)
    return w.text().splitlines()


async def describe_object(session: Session, rt: ResourceType, obj: Obj) -> str:
    now = datetime.now(UTC)
    obj = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
    w = Writer()
    _describe_meta(w, obj)
    if rt.plural == "pods":
        _describe_pod(w, obj, now)
    elif rt.plural == "deployments":
        _describe_deployment(w, obj, now)
    elif rt.plural in ("replicasets", "statefulsets", "daemonsets"):
        _describe_workload(w, obj, now)
    elif rt.plural == "services":
        await _describe_service(w, obj, session)
    elif rt.plural == "nodes":
        _describe_node(w, obj, now)
    else:
        _describe_generic(w, obj, now)
    meta = obj.get("metadata") or {}
    # Events of cluster-scoped objects (nodes) live in the default namespace.
    events_ns = meta.get("namespace") or "default"
    selector = ",".join(
        f"involvedObject.{k}={v}"
        for k, v in (("name", meta.get("name")), ("namespace", events_ns), ("uid", meta.get("uid")))
        if v
    )
    events = await session.client.list(lookup("events"), namespace=events_ns, field_selector=selector)
    w.lines += format_events(list(events.get("items") or []), now)
    return w.text()


@app.command("describe")
def describe(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="The kind (pods, deploy, svc, ...), or KIND/NAME.")],
    names: Annotated[list[str] | None, typer.Argument(help="Names of the objects.")] = None,
    selector: Annotated[str | None, typer.Option("--selector", "-l", help="Describe objects matching.")] = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Show details of a resource and its recent events (like kubectl describe)."""
    opts = connection_options(ctx, kubeconfig, context, namespace)

    async def body() -> int:
        if "/" in kind:
            kind_part, _, name = kind.partition("/")
            rt, wanted = resolve_kind(kind_part), [name, *(names or [])]
        else:
            rt, wanted = resolve_kind(kind), list(names or [])
        async with open_session(opts) as session:
            ns = session.namespace if rt.namespaced else None
            if wanted:
                objs = [await session.client.get(rt, n, namespace=ns) for n in wanted]
            else:
                listed = await session.client.list(rt, namespace=ns, label_selector=selector)
                objs = list(listed.get("items") or [])
                if not objs:
                    raise CliError(f"No resources found in {ns} namespace." if ns else "No resources found.")
            texts = [await describe_object(session, rt, o) for o in objs]
        typer.echo("\n\n\n".join(texts))
        return 0

    run(body)
