"""``kubelite logs``: print a container's log (``GET pods/{name}/log``, proxied to the node's agent)."""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer

from kubelite.cli.common import (
    CliError,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    connection_options,
    open_session,
    run,
)

app = typer.Typer()

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def pod_name(arg: str) -> str:
    """``NAME`` or ``pod/NAME`` (as kubectl takes it)."""
    return arg.split("/", 1)[1] if arg.startswith(("pod/", "pods/", "po/")) else arg


def pod_path(namespace: str, name: str, subresource: str) -> str:
    from kubelite.api.registry import by_path
    from kubelite.client.rest import resource_path  # lazily, like every command: aiohttp is slow to import

    pods = by_path("", "v1", "pods")
    assert pods is not None
    return resource_path(pods, namespace, name, subresource)


def parse_duration(text: str) -> int:
    """``1h30m``, ``5m``, ``10s`` -> seconds (kubectl's --since); CliError when invalid."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise CliError(f"invalid duration {text!r} (use e.g. 10s, 5m, 1h)")
    h, mi, s = (int(g or 0) for g in m.groups())
    return max(1, h * 3600 + mi * 60 + s)


def log_params(
    container: str | None, follow: bool, tail: int, previous: bool, timestamps: bool, since: str | None,
    limit_bytes: int,
) -> dict[str, str]:
    params: dict[str, str] = {}
    if container:
        params["container"] = container
    if follow:
        params["follow"] = "true"
    if previous:
        params["previous"] = "true"
    if timestamps:
        params["timestamps"] = "true"
    if tail >= 0:
        params["tailLines"] = str(tail)
    if since:
        params["sinceSeconds"] = str(parse_duration(since))
    if limit_bytes > 0:
        params["limitBytes"] = str(limit_bytes)
    return params


@app.command("logs")
def logs(
    ctx: typer.Context,
    pod: Annotated[str, typer.Argument(help="The pod name (or pod/NAME).")],
    container: Annotated[str | None, typer.Option("--container", "-c", help="The container (needed if several).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until the container stops.")] = False,
    tail: Annotated[int, typer.Option("--tail", help="Only the last N lines (-1: all).")] = -1,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="The previous (restarted) attempt's log.")] = False,
    timestamps: Annotated[bool, typer.Option("--timestamps", help="Prefix each line with its RFC 3339 time.")] = False,
    since: Annotated[str | None, typer.Option("--since", help="Only lines newer than this (10s, 5m, 1h).")] = None,
    limit_bytes: Annotated[int, typer.Option("--limit-bytes", help="Stop after this many bytes.")] = 0,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Print the log of a container in a pod (like kubectl logs)."""
    opts = connection_options(ctx, kubeconfig, context, namespace)
    name = pod_name(pod)

    async def body() -> int:
        params = log_params(container, follow, tail, previous, timestamps, since, limit_bytes)
        from kubelite.api.registry import by_path

        pods = by_path("", "v1", "pods")
        assert pods is not None
        async with open_session(opts) as session:
            path = pod_path(session.namespace, name, "log")
            stream = session.client.stream("GET", path, params)
            try:
                async for text in stream:
                    sys.stdout.write(text)
                    sys.stdout.flush()
            finally:
                await stream.aclose()
        return 0

    run(body)
