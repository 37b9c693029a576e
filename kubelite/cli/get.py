"""``kubelite get``: tables like kubectl's, or the objects as YAML/JSON/names, optionally watched."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
import yaml

from kubelite.api import printers
from kubelite.api.registry import ResourceType
from kubelite.cli.common import (
    AllNamespacesOpt,
    CliError,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    Session,
    connection_options,
    error_line,
    format_error,
    kind_ref,
    open_session,
    resolve_kind,
    resolve_kinds,
    run,
    stdout_is_tty,
)

OUTPUT_FORMATS = ("json", "name", "wide", "yaml")
# kubectl's tabwriter puts three spaces between columns.
_COLUMN_GAP = 3

app = typer.Typer()


# ---------------------------------------------------------------------------------------------
# rendering


def render_table(header: list[str], rows: list[list[str]], tty: bool | None = None) -> str:
    """A borderless, left-aligned table like kubectl's; colour only on a terminal."""
    # Imported here: rich (~2 MB) is for printing only; long-lived processes (agent, server) never need it.
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    tty = stdout_is_tty() if tty is None else tty
    table = Table(
        box=None,
        show_edge=False,
        pad_edge=False,
        padding=(0, _COLUMN_GAP, 0, 0),
        header_style="bold" if tty else "",
        expand=False,
    )
    for name in header:
        table.add_column(name, no_wrap=True, overflow="ignore")
    for cells in rows:
        # Text() so a '[' in a message is never read as rich markup.
        table.add_row(*(Text(c) for c in cells))
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=100_000,  # never wrap or truncate: pipes get whole lines, as with kubectl
        force_terminal=tty,
        color_system="auto" if tty else None,
        no_color=not tty,
        highlight=False,
        soft_wrap=True,
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


def align_row(cells: list[str], widths: list[int]) -> str:
    """One row padded to the widths of an already printed table (used for watch events)."""
    parts = [c.ljust(w + _COLUMN_GAP) for c, w in zip(cells[:-1], widths, strict=False)]
    return ("".join(parts) + (cells[-1] if cells else "")).rstrip()


@dataclass
class TableSpec:
    rt: ResourceType
    wide: bool
    with_namespace: bool
    with_kind: bool  # prefix names with 'kind.group/' when several kinds are printed
    show_labels: bool = False
    indices: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.indices = [i for i, c in enumerate(printers.columns(self.rt)) if self.wide or c.priority == 0]

    def header(self) -> list[str]:
        cols = printers.columns(self.rt)
        out = [cols[i].name.upper() for i in self.indices]
        if self.with_namespace and self.rt.namespaced:
            out.insert(0, "NAMESPACE")
        if self.show_labels:
            out.append("LABELS")
        return out

    def cells(self, obj: dict[str, Any], now: datetime) -> list[str]:
        full = printers.row(self.rt, obj, now)
        name_at = printers.name_column_index(self.rt)
        if self.with_kind and name_at is not None:
            full[name_at] = f"{kind_ref(self.rt)}/{full[name_at]}"
        out = [str(full[i]) for i in self.indices]
        meta = obj.get("metadata") or {}
        if self.with_namespace and self.rt.namespaced:
            out.insert(0, str(meta.get("namespace", "")))
        if self.show_labels:
            out.append(printers.format_labels(meta.get("labels")))
        return out


def _with_type(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    # List items come without kind/apiVersion from a real API server; printed objects need them.
    return {"apiVersion": rt.api_version, "kind": rt.kind, **obj}


class _YamlDumper(yaml.SafeDumper):
    """kubectl-looking YAML: multi-line strings as '|' blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Block style is impossible for text with trailing spaces on a line; PyYAML would fall back anyway.
    if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_YamlDumper.add_representer(str, _str_representer)


def dump(doc: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=4)
    # A huge width: long values stay on one line, as kubectl prints them.
    text = yaml.dump(doc, Dumper=_YamlDumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True, width=1 << 30)
    return text.rstrip("\n")


def as_list(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": objs, "kind": "List", "metadata": {"resourceVersion": ""}}


# ---------------------------------------------------------------------------------------------
# the command


@dataclass
class Request:
    targets: list[tuple[ResourceType, list[str]]]  # kind -> names (empty: list them all)
    by_name: bool


def parse_targets(args: list[str]) -> Request:
    """``KIND[,KIND] [NAME...]`` or ``KIND/NAME [KIND/NAME...]``."""
    if not args:
        raise CliError("you must specify the type of resource to get")
    if "/" in args[0]:
        targets: list[tuple[ResourceType, list[str]]] = []
        for arg in args:
            kind, sep, name = arg.partition("/")
            if not sep or not kind or not name:
                raise CliError(f"there is no need to specify a resource type as a separate argument when "
                               f"passing arguments in resource/name form (got {arg!r})")
            rt = resolve_kind(kind)
            for existing_rt, names in targets:
                if existing_rt == rt:
                    names.append(name)
                    break
            else:
                targets.append((rt, [name]))
        return Request(targets, True)
    kinds = resolve_kinds(args[0])
    return Request([(rt, list(args[1:])) for rt in kinds], len(args) > 1)


async def _fetch(
    session: Session, rt: ResourceType, names: list[str], namespace: str | None,
    label_selector: str | None, field_selector: str | None,
) -> tuple[list[dict[str, Any]], str, int]:
    """(objects, list resourceVersion, number of names not found)."""
    from kubelite.client import ApiError

    ns = namespace if rt.namespaced else None
    if names:
        objs: list[dict[str, Any]] = []
        missing = 0
        for name in names:
            try:
                objs.append(await session.client.get(rt, name, namespace=ns))
            except ApiError as exc:
                if exc.code != 404:
                    raise
                error_line(format_error(exc))
                missing += 1
        return objs, "", missing
    listed = await session.client.list(
        rt, namespace=ns, label_selector=label_selector, field_selector=field_selector
    )
    rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
    return list(listed.get("items") or []), rv, 0


@app.command("get")
def get(
    ctx: typer.Context,
    resources: Annotated[list[str], typer.Argument(help="KIND[,KIND...] [NAME...] or KIND/NAME...")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output format: wide, yaml, json or name.")
    ] = None,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Label selector, e.g. app=web,tier!=db.")
    ] = None,
    field_selector: Annotated[
        str | None, typer.Option("--field-selector", help="Field selector, e.g. status.phase=Running.")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="After listing, watch for changes.")] = False,
    show_labels: Annotated[bool, typer.Option("--show-labels", help="Add a LABELS column.")] = False,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Display one or many resources (like kubectl get)."""
    opts = connection_options(ctx, kubeconfig, context, namespace)

    async def body() -> int:
        fmt = (output or "").lower()
        if fmt and fmt not in OUTPUT_FORMATS:
            raise CliError(
                f'unable to match a printer suitable for the output format "{output}", '
                f"allowed formats are: {','.join(OUTPUT_FORMATS)}"
            )
        req = parse_targets(resources)
        if all_namespaces and req.by_name:
            raise CliError("a resource cannot be retrieved by name across all namespaces")
        if watch and len(req.targets) != 1:
            raise CliError("you may only specify a single resource type when watching")
        async with open_session(opts) as session:
            ns = None if all_namespaces else session.namespace
            fetched = []
            missing = 0
            for rt, names in req.targets:
                objs, rv, miss = await _fetch(session, rt, names, ns, selector, field_selector)
                missing += miss
                fetched.append((rt, objs, rv))
            widths = _print(fetched, fmt, req, bool(all_namespaces), show_labels, ns)
            if watch:
                rt, _objs, rv = fetched[0]
                names = req.targets[0][1]
                await _watch(session, rt, ns, rv, names, selector, field_selector, fmt,
                             bool(all_namespaces), show_labels, widths)
        return 1 if missing else 0

    run(body)


def _print(
    fetched: list[tuple[ResourceType, list[dict[str, Any]], str]], fmt: str, req: Request,
    all_namespaces: bool, show_labels: bool, namespace: str | None,
) -> list[int]:
    """Print what was fetched; returns the table's column widths (for watch rows to line up)."""
    all_objs = [_with_type(rt, o) for rt, objs, _ in fetched for o in objs]
    if fmt in ("yaml", "json"):
        single = req.by_name and len(all_objs) == 1 and sum(len(n) for _, n in req.targets) == 1
        if all_objs or req.by_name:
            if single or all_objs:
                typer.echo(dump(all_objs[0] if single else as_list(all_objs), fmt))
        else:
            typer.echo(dump(as_list([]), fmt))
        return []
    if fmt == "name":
        for rt, objs, _ in fetched:
            for o in objs:
                typer.echo(f"{kind_ref(rt)}/{(o.get('metadata') or {}).get('name', '')}")
        return []
    now = datetime.now(UTC)
    several = len(fetched) > 1
    blocks: list[str] = []
    widths: list[int] = []
    for rt, objs, _ in fetched:
        if not objs:
            continue
        spec = TableSpec(rt, fmt == "wide", all_namespaces, several, show_labels)
        header = spec.header()
        rows = [spec.cells(o, now) for o in objs]
        blocks.append(render_table(header, rows))
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    if blocks:
        typer.echo("\n\n".join(blocks))
    elif not req.by_name:
        where = "" if all_namespaces or not any(rt.namespaced for rt, _, _ in fetched) else (
            f" in {namespace} namespace"
        )
        typer.echo(f"No resources found{where}.", err=True)
    return widths


async def _watch(
    session: Session, rt: ResourceType, namespace: str | None, resource_version: str, names: list[str],
    label_selector: str | None, field_selector: str | None, fmt: str, all_namespaces: bool,
    show_labels: bool, widths: list[int],
) -> None:
    """Print each change until interrupted; reconnects from the last seen resourceVersion."""
    from kubelite.client import ApiError

    if len(names) > 1:
        raise CliError("watch is only supported on a single resource name")
    if names:
        field_selector = f"metadata.name={names[0]}"
    spec = TableSpec(rt, fmt == "wide", all_namespaces, False, show_labels)
    if not widths:
        header = spec.header()
        if fmt not in ("yaml", "json", "name"):
            typer.echo(render_table(header, []))
        widths = [len(h) for h in header]
    rv = resource_version or None
    ns = namespace if rt.namespaced else None
    while True:
        async for event in session.client.watch(
            rt, namespace=ns, resource_version=rv, label_selector=label_selector,
            field_selector=field_selector,
        ):
            if event.type == "BOOKMARK":
                rv = (event.object.get("metadata") or {}).get("resourceVersion") or rv
                continue
            if event.type == "ERROR":
                status = event.object
                raise ApiError(int(status.get("code") or 500), status.get("reason") or "",
                               status.get("message") or "watch failed")
            obj = _with_type(rt, event.object)
            rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            if fmt in ("yaml", "json"):
                typer.echo(dump(obj, fmt) + ("\n---" if fmt == "yaml" else ""))
            elif fmt == "name":
                typer.echo(f"{kind_ref(rt)}/{(obj.get('metadata') or {}).get('name', '')}")
            else:
                typer.echo(align_row(spec.cells(obj, datetime.now(UTC)), widths))
