"""``kubelite exec POD [-c C] -- CMD...``: run a command in a container, through the API server.

It POSTs ``pods/{name}/exec?command=..`` and prints the agent's JSON-lines answer (stdout to
stdout, stderr to stderr), exiting with the command's exit code. No stdin and no TTY: kubectl's
SPDY/WebSocket exec protocol is not supported by kubelite, so ``kubectl exec`` does not work.
"""

from __future__ import annotations

import sys
from typing import Annotated
from urllib.parse import urlencode

import orjson
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
from kubelite.cli.logs import pod_name, pod_path

app = typer.Typer()


def exec_query(command: list[str], container: str | None, timeout: float | None) -> str:
    pairs = [("command", c) for c in command]
    if container:
        pairs.append(("container", container))
    if timeout:
        pairs.append(("timeout", f"{timeout:g}"))
    return urlencode(pairs)


def handle_line(line: str) -> int | None:
    """Print one JSON line of the exec protocol; returns the exit code once it arrives."""
    msg = orjson.loads(line)
    if "exit" in msg:
        return int(msg["exit"])
    out = sys.stderr if msg.get("stream") == "stderr" else sys.stdout
    out.write(str(msg.get("data", "")))
    out.flush()
    return None


@app.command("exec")
def exec_(
    ctx: typer.Context,
    pod: Annotated[str, typer.Argument(help="The pod name (or pod/NAME).")],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after --.")],
    container: Annotated[str | None, typer.Option("--container", "-c", help="The container (needed if several).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Kill the command after this many seconds (0: no limit).")] = 0,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Run a command in a container (like kubectl exec, without stdin or a TTY)."""
    opts = connection_options(ctx, kubeconfig, context, namespace)
    name = pod_name(pod)

    async def body() -> int:
        if not command:
            raise CliError("you must specify at least one command for the container")
        from kubelite.api.registry import by_path

        pods = by_path("", "v1", "pods")
        assert pods is not None
        async with open_session(opts) as session:
            path = pod_path(session.namespace, name, "exec") + "?" + exec_query(command, container, timeout)
            stream = session.client.stream("POST", path)
            buf, code = "", None
            try:
                async for text in stream:
                    buf += text
                    *lines, buf = buf.split("\n")
                    for line in lines:
                        if line.strip():
                            code = handle_line(line) if code is None else code
            finally:
                await stream.aclose()
        if code is None:
            raise CliError("the exec stream ended without an exit code")
        return code

    run(body)
