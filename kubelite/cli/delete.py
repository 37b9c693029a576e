"""``kubelite delete``: by kind and name, by manifest, by selector or --all; waits until gone."""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum
from typing import Annotated, Any

import typer

from kubelite.api.registry import ResourceType
from kubelite.cli.apply import load_manifests, resource_type_for
from kubelite.cli.common import (
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
    resolve_kinds,
    run,
)

app = typer.Typer()


class Cascade(StrEnum):
    background = "background"
    foreground = "foreground"
    orphan = "orphan"


_POLL_SECONDS = 0.25


def parse_delete_targets(args: list[str]) -> list[tuple[ResourceType, str | None]]:
    """``KIND NAME...`` / ``KIND/NAME...`` -> (kind, name); a bare ``KIND`` -> (kind, None) for --all/-l."""
    if not args:
        return []
    if "/" in args[0]:
        out: list[tuple[ResourceType, str | None]] = []
        for arg in args:
            kind, sep, name = arg.partition("/")
            if not sep or not kind or not name:
                raise CliError(f"arguments in resource/name form must have a single resource and name: {arg!r}")
            out += [(rt, name) for rt in resolve_kinds(kind)]
        return out
    kinds = resolve_kinds(args[0])
    if len(args) == 1:
        return [(rt, None) for rt in kinds]
    return [(rt, name) for rt in kinds for name in args[1:]]


async def wait_gone(
    session: Session, gone: list[tuple[ResourceType, str, str | None, str]], wait_seconds: float
) -> None:
    """Poll GET until every (kind, name, namespace, uid) is 404, or comes back as a new object."""
    from kubelite.client import ApiError

    # A deadline checked between polls (not asyncio.timeout) so the error names what is left.
    deadline = time.monotonic() + wait_seconds
    pending = list(gone)
    while pending:
        still: list[tuple[ResourceType, str, str | None, str]] = []
        for rt, name, ns, uid in pending:
            try:
                obj = await session.client.get(rt, name, namespace=ns)
            except ApiError as exc:
                if exc.code == 404:
                    continue
                raise
            # A controller may already have recreated it under the same name (StatefulSet pods).
            if uid and (obj.get("metadata") or {}).get("uid") not in (None, uid):
                continue
            still.append((rt, name, ns, uid))
        pending = still
        if not pending:
            return
        if time.monotonic() >= deadline:
            rt, name, _ns, _uid = pending[0]
            raise CliError(f"timed out waiting for the deletion of {kind_ref(rt)}/{name}")
        await asyncio.sleep(_POLL_SECONDS)


@app.command("delete")
def delete(
    ctx: typer.Context,
    resources: Annotated[
        list[str] | None, typer.Argument(help="KIND NAME... or KIND/NAME... (or -f FILE)")
    ] = None,
    filename: Annotated[
        list[str] | None, typer.Option("--filename", "-f", help="Delete what these manifests name.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Delete every object of the kind in the namespace.")] = False,
    selector: Annotated[str | None, typer.Option("--selector", "-l", help="Delete objects matching.")] = None,
    cascade: Annotated[
        Cascade, typer.Option("--cascade", help="What happens to dependents: background|foreground|orphan.")
    ] = Cascade.background,
    grace_period: Annotated[
        int, typer.Option("--grace-period", help="Seconds the object gets to stop; -1: its own default.")
    ] = -1,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the objects are gone.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for deletion.")] = 60.0,
    ignore_not_found: Annotated[
        bool, typer.Option("--ignore-not-found", help="Treat a missing object as deleted.")
    ] = False,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Delete resources by name, manifest, label selector, or --all (like kubectl delete)."""
    opts = connection_options(ctx, kubeconfig, context, namespace)

    async def body() -> int:
        from kubelite.client import ApiError

        if filename and resources:
            raise CliError("cannot pass both -f and resource names")
        targets: list[tuple[ResourceType, str | None, str | None]] = []  # (kind, name, manifest namespace)
        if filename:
            for m in load_manifests(filename):
                meta = m.obj.get("metadata") or {}
                targets.append((resource_type_for(m), m.name, meta.get("namespace")))
        else:
            targets = [(rt, name, None) for rt, name in parse_delete_targets(resources or [])]
        if not targets:
            raise CliError("you must provide one or more resources by argument or filename")
        if any(name is None for _, name, _ in targets) and not (all_ or selector):
            raise CliError("resource(s) were provided, but no name was specified (use --all or -l to delete many)")
        if (all_ or selector) and any(name is not None for _, name, _ in targets):
            raise CliError("name cannot be provided when a selector or --all is specified")

        failed = 0
        async with open_session(opts) as session:
            expanded: list[tuple[ResourceType, str, str | None]] = []
            for rt, name, manifest_ns in targets:
                ns = (manifest_ns or session.namespace) if rt.namespaced else None
                if name is not None:
                    expanded.append((rt, name, ns))
                    continue
                listed = await session.client.list(rt, namespace=ns, label_selector=selector)
                expanded += [
                    (rt, str((o.get("metadata") or {}).get("name")), ns) for o in listed.get("items") or []
                ]
            if not expanded and (all_ or selector):
                typer.echo("No resources found", err=True)
            gone: list[tuple[ResourceType, str, str | None, str]] = []
            for rt, name, ns in expanded:
                try:
                    result: Any = await session.client.delete(
                        rt, name, namespace=ns,
                        propagation_policy=cascade.value.capitalize(),
                        grace_period_seconds=grace_period if grace_period >= 0 else None,
                    )
                except ApiError as exc:
                    if exc.code == 404 and ignore_not_found:
                        continue
                    error_line(format_error(exc))
                    failed += 1
                    continue
                typer.echo(f'{kind_ref(rt)} "{name}" deleted')
                uid = ""
                if isinstance(result, dict) and result.get("kind") != "Status":
                    uid = str((result.get("metadata") or {}).get("uid") or "")
                gone.append((rt, name, ns, uid))
            if wait and gone:
                await wait_gone(session, gone, timeout)
        return 1 if failed else 0

    run(body)
