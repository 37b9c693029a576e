"""The ``kubelite`` command line: kubectl-like commands plus ``server``.

Each command group is its own ``Typer`` (one module each) joined here with ``add_typer``.
Connection options given before the command (``kubelite -n kube-system get pods``) are stored by
the callback and used by every command unless it is given its own.
"""

from __future__ import annotations

import importlib

import typer

from kubelite import KUBE_VERSION, __version__
from kubelite.cli import apply, delete, describe, get
from kubelite.cli.common import ContextOpt, GlobalOptions, KubeconfigOpt, NamespaceOpt, run

app = typer.Typer(
    name="kubelite",
    help="kubelite: a small, real Kubernetes. kubectl-like commands, and the server itself.",
    no_args_is_help=True,
    add_completion=False,
    # A user must never see a traceback; commands map errors to one line themselves.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    ctx.obj = GlobalOptions(kubeconfig=kubeconfig, context=context, namespace=namespace)


for _group in (apply.app, get.app, describe.app, delete.app):
    app.add_typer(_group)
app.add_typer(importlib.import_module("kubelite.cli.scale").app)
app.add_typer(importlib.import_module("kubelite.cli.logs").app)
app.add_typer(importlib.import_module("kubelite.cli.exec").app)
app.add_typer(importlib.import_module("kubelite.cli.image").app)
app.add_typer(importlib.import_module("kubelite.cli.datastore").app)
app.add_typer(importlib.import_module("kubelite.cli.cluster").app)
app.add_typer(importlib.import_module("kubelite.cli.certs").app)


@app.command("version")
def version(
    ctx: typer.Context,
    client_only: bool = typer.Option(False, "--client", help="Print only the client version."),
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Print the client and server versions."""
    typer.echo(f"Client Version: {__version__} (Kubernetes {KUBE_VERSION})")
    if client_only:
        return
    from kubelite.cli.common import connection_options, open_session

    opts = connection_options(ctx, kubeconfig, context, None)

    async def body() -> int:
        async with open_session(opts) as session:
            info = await session.client.request("GET", "/version")
        git = info.get("gitVersion", "?") if isinstance(info, dict) else str(info)
        typer.echo(f"Server Version: {git}")
        return 0

    run(body)


app.command("server")(importlib.import_module("kubelite.cli.server").server)
app.command("agent")(importlib.import_module("kubelite.cli.agent").agent)
app.command("bench")(importlib.import_module("kubelite.cli.bench").bench)


def main() -> None:
    app()


__all__ = ["app", "main"]
