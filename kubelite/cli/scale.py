"""``kubelite scale``: set the replicas of a Deployment, ReplicaSet or StatefulSet via ``/scale``.

Like kubectl, it writes only the Scale subresource, never the whole object, so it cannot undo
someone else's concurrent spec change; ``--current-replicas`` makes it conditional.
"""

from __future__ import annotations

from typing import Annotated

import typer

from kubelite.api.registry import ResourceType
from kubelite.cli.common import (
    CliError,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    connection_options,
    kind_ref,
    open_session,
    resolve_kind,
    run,
)

app = typer.Typer()


def parse_scale_targets(args: list[str]) -> list[tuple[ResourceType, str]]:
    """``KIND/NAME...`` or ``KIND NAME...`` -> (kind, name) pairs; the kind must have /scale."""
    if not args:
        raise CliError("you must specify the resource to scale, e.g. deployment/web")
    pairs: list[tuple[str, str]] = []
    if "/" in args[0]:
        for arg in args:
            kind, sep, name = arg.partition("/")
            if not sep or not kind or not name:
                raise CliError(f"arguments in resource/name form must have a single resource and name: {arg!r}")
            pairs.append((kind, name))
    else:
        if len(args) < 2:
            raise CliError(f"you must specify the name of the {args[0]} to scale")
        pairs = [(args[0], name) for name in args[1:]]
    out: list[tuple[ResourceType, str]] = []
    for kind, name in pairs:
        rt = resolve_kind(kind)
        if "scale" not in rt.subresources:
            raise CliError(f"{kind_ref(rt)} cannot be scaled (it has no scale subresource)")
        out.append((rt, name))
    return out


@app.command("scale")
def scale(
    ctx: typer.Context,
    resources: Annotated[list[str], typer.Argument(help="KIND/NAME... or KIND NAME...")],
    replicas: Annotated[int, typer.Option("--replicas", help="The new number of replicas (>= 0).")],
    current_replicas: Annotated[
        int, typer.Option("--current-replicas", help="Only scale if the current replicas are this many.")
    ] = -1,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Set a new size for a Deployment, ReplicaSet or StatefulSet (like kubectl scale)."""
    opts = connection_options(ctx, kubeconfig, context, namespace)

    async def body() -> int:
        if replicas < 0:
            raise CliError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
        targets = parse_scale_targets(resources)
        async with open_session(opts) as session:
            client = session.client
            for rt, name in targets:
                ns = session.namespace
                if current_replicas >= 0:
                    current = await client.request("GET", _scale_path(rt, ns, name))
                    have = (current.get("spec") or {}).get("replicas", 0)
                    if have != current_replicas:
                        raise CliError(f"Expected replicas to be {current_replicas}, was {have}")
                    # PUT with the resourceVersion just read: a change in between is a conflict.
                    current["spec"] = {"replicas": replicas}
                    await client.request("PUT", _scale_path(rt, ns, name), json=current)
                else:
                    await client.patch(
                        rt, name, {"spec": {"replicas": replicas}}, namespace=ns, patch_type="merge", subresource="scale"
                    )
                typer.echo(f"{kind_ref(rt)}/{name} scaled")
        return 0

    run(body)


def _scale_path(rt: ResourceType, namespace: str, name: str) -> str:
    from kubelite.client.rest import resource_path  # lazily, like every command: aiohttp is slow to import

    return resource_path(rt, namespace if rt.namespaced else None, name, "scale")
