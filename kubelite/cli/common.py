"""What every command shares: the connection options, the client, and one-line errors.

Every user error ends as ``error: <one line>`` on stderr and exit code 1, never a traceback:
commands run their async body through :func:`run`, which maps every known failure to a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import yaml

from kubelite.api.registry import RESOURCES, ResourceType, UnknownResourceError, lookup

if TYPE_CHECKING:
    from kubelite.client import ApiClient


class CliError(Exception):
    """A user error whose message is already the one line to print."""


# Options accepted both before the command (``kubelite -n x get pods``, stored by the app callback)
# and after it (``kubelite get pods -n x``), as kubectl does; the command's own value wins.
KubeconfigOpt = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."),
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="The kubeconfig context to use.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="The namespace (default: the context's).")
]
AllNamespacesOpt = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
]


@dataclass
class GlobalOptions:
    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None


def connection_options(
    ctx: typer.Context,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
) -> GlobalOptions:
    """Merge a command's own connection options over the ones given before the command."""
    parent = ctx.find_object(GlobalOptions) or GlobalOptions()
    return GlobalOptions(
        kubeconfig=kubeconfig or parent.kubeconfig,
        context=context or parent.context,
        namespace=namespace or parent.namespace,
    )


# The server the current command talks to, so a connection error can name it.
_server_url: str | None = None


@dataclass
class Session:
    client: ApiClient
    namespace: str  # the namespace to use when none is given: -n, else the context's, else "default"
    explicit_namespace: bool  # True when -n was given (apply refuses a conflicting manifest namespace)
    server: str


@contextlib.asynccontextmanager
async def open_session(opts: GlobalOptions) -> AsyncIterator[Session]:
    from kubelite.client import ApiClient, load_kubeconfig

    global _server_url
    path = str(opts.kubeconfig) if opts.kubeconfig else None
    config = load_kubeconfig(path=path, context=opts.context)
    server = config.server
    _server_url = server or None
    namespace = opts.namespace or config.namespace or "default"
    async with ApiClient(config) as client:
        yield Session(client, namespace, opts.namespace is not None, server)


# ---------------------------------------------------------------------------------------------
# errors


def _connection_reason(exc: BaseException) -> str:
    """The low-level reason for a failed connection, kubectl style ('connection refused')."""
    text = str(exc)
    # aiohttp puts the OS reason last in brackets: "Cannot connect to host h:p ssl:default [reason]".
    bracket = text.rfind("[")
    detail = text[bracket + 1 :].split("]", 1)[0] if bracket >= 0 else text
    lowered = detail.lower()
    if "refused" in lowered or "connect call failed" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "no such host"
    return detail[0].lower() + detail[1:] if detail else type(exc).__name__


def format_error(exc: BaseException) -> str:
    """One line describing ``exc`` for a user."""
    from kubelite.client import ApiError
    from kubelite.client.kubeconfig import KubeconfigError

    if isinstance(exc, CliError | KubeconfigError):
        return str(exc)
    if isinstance(exc, ApiError):
        message = getattr(exc, "message", "") or ""
        if message:
            return str(message)
        return f"the server responded with {getattr(exc, 'reason', '') or 'an error'} ({exc.code})"
    if isinstance(exc, UnknownResourceError):
        return str(exc.args[0]) if exc.args else str(exc)
    if isinstance(exc, ConnectionError | TimeoutError):  # the client's ApiConnectionError is one
        where = _server_url or "the API server"
        return f"cannot connect to {where}: {_connection_reason(exc)}"
    if isinstance(exc, yaml.YAMLError):
        return f"invalid YAML: {' '.join(str(exc).split())}"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f'the path "{exc.filename}" does not exist'
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    # Anything else is a bug, but the user still gets one line rather than a traceback.
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_line(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def fail(message: str) -> NoReturn:
    error_line(message)
    raise typer.Exit(1)


def run(body: Callable[[], Awaitable[int | None]]) -> None:
    """Run a command's async body; map every failure to one stderr line and exit 1."""
    try:
        code = asyncio.run(_call(body))
    except KeyboardInterrupt:
        # Ctrl-C (e.g. ending ``get -w``) is a normal way out; 130 is the shell convention.
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:
        error_line(format_error(exc))
        raise typer.Exit(1) from None
    if code:
        raise typer.Exit(code)


async def _call(body: Callable[[], Awaitable[int | None]]) -> int | None:
    return await body()


# ---------------------------------------------------------------------------------------------
# kinds


def resolve_kind(name: str) -> ResourceType:
    try:
        return lookup(name)
    except UnknownResourceError as exc:
        raise CliError(str(exc.args[0]) if exc.args else str(exc)) from None


def resolve_kinds(spec: str) -> list[ResourceType]:
    """'deploy,svc' or 'all' (the kinds in the 'all' category) -> resource types, in order."""
    out: list[ResourceType] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        found = [r for r in RESOURCES if "all" in r.categories] if part == "all" else [resolve_kind(part)]
        out += [r for r in found if r not in out]
    if not out:
        raise CliError("you must specify the type of resource to get")
    return out


def kind_ref(rt: ResourceType) -> str:
    """'deployment.apps' / 'pod': how kubectl names a kind in 'kind/name' and messages."""
    return f"{rt.singular}.{rt.group}" if rt.group else rt.singular


def resource_ref(rt: ResourceType) -> str:
    """'deployments.apps' / 'pods': how the API server names a resource in error messages."""
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def obj_namespace(rt: ResourceType, obj: dict[str, Any], default: str) -> str | None:
    if not rt.namespaced:
        return None
    return str((obj.get("metadata") or {}).get("namespace") or default)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def pin_mmap_threshold() -> None:
    """Pin glibc's mmap threshold at its 128 KiB default for a long-lived process (server, agent).

    glibc raises the threshold (up to 32 MiB) each time a large mmapped block is freed, so later
    large, short-lived buffers (image tars, LIST responses, the docker sandbox image build) land in
    the heap and their freed space stays resident for the process' whole life (~5 MB of an idle
    docker agent). Pinned, they are mmapped and returned to the kernel when freed.
    MALLOC_MMAP_THRESHOLD_ in the environment wins; a libc without mallopt is left alone.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # -3: M_MMAP_THRESHOLD
