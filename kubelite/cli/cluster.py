"""`kubelite cluster ...`: provision a whole cluster (machines, packages, control plane, agents) from a spec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubelite.cli.common import fail

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="cluster",
    help="Provision clusters: nspawn machines on this host, or existing hosts over SSH.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The cluster name (from its spec).")]


def _console(stderr: bool = False) -> Console:
    # rich is imported on use: every `kubelite` process (the agent too) imports this module.
    from rich.console import Console

    return Console(stderr=stderr)


@app.command("up")
def up(spec: Annotated[Path, typer.Argument(help="Cluster spec (YAML), e.g. examples/clusters/local.yaml")]) -> None:
    """Create or converge the cluster: image, machines, packages, control plane, agents, Ready."""
    from kubelite.provision.cluster import ClusterOps
    from kubelite.provision.errors import ProvisionError
    from kubelite.provision.spec import load_spec

    try:
        parsed = load_spec(spec)
        ClusterOps(_console(stderr=True)).up(parsed)
    except ProvisionError as e:
        fail(f"{e}\n(fix it and run `kubelite cluster up {spec}` again: it continues where it stopped)")


@app.command("down")
def down(name: NameArg) -> None:
    """Remove the cluster: machines, bridge, routes, firewall rules, state (ssh hosts: kubelite only)."""
    from kubelite.provision.cluster import ClusterOps
    from kubelite.provision.errors import ProvisionError

    try:
        ClusterOps(_console(stderr=True)).down(name)
    except ProvisionError as e:
        fail(str(e))


@app.command("status")
def status(name: NameArg) -> None:
    """Machines, nodes, versions and health."""
    from kubelite.provision.cluster import ClusterOps
    from kubelite.provision.errors import ProvisionError

    try:
        machines, api = ClusterOps(_console(stderr=True)).status(name)
    except ProvisionError as e:
        fail(str(e))
    from rich.table import Table

    table = Table(title=f"cluster {name}")
    for col in ("NODE", "ROLE", "ADDRESS", "MACHINE", "STATUS", "VERSION"):
        table.add_column(col)
    for m, running, detail in machines:
        node = api.get(m.name, {})
        state = node.get("ready", "not registered") + (",SchedulingDisabled" if node.get("unschedulable") else "")
        table.add_row(m.name, m.role, m.address, "running" if running else detail, state, node.get("version", ""))
    _console().print(table)
    if "<api>" in api:
        fail(f"API server {api['<api>']['ready']}")


@app.command("add-node")
def add_node(
    name: NameArg,
    role: Annotated[str, typer.Option("--role", help="worker or master")] = "worker",
) -> None:
    """Add a machine to the cluster and wait until its node is Ready."""
    from kubelite.provision.cluster import ClusterOps
    from kubelite.provision.errors import ProvisionError

    if role not in ("worker", "master"):
        fail(f"--role must be worker or master, not {role!r}")
    try:
        _, added = ClusterOps(_console(stderr=True)).add_node(name, role)
    except ProvisionError as e:
        fail(str(e))
    typer.echo(f"added {added or 'nothing (the cluster already had it)'}")


@app.command("remove-node")
def remove_node(name: NameArg, node: Annotated[str, typer.Argument(help="The node to remove.")]) -> None:
    """Drain the node (DaemonSet pods stay), remove its machine, delete the Node."""
    from kubelite.provision.cluster import ClusterOps
    from kubelite.provision.errors import ProvisionError

    try:
        ClusterOps(_console(stderr=True)).remove_node(name, node)
    except ProvisionError as e:
        fail(str(e))


def _machine(name: str, node: str) -> tuple[str, str, Path, Path]:
    from kubelite.provision.errors import ProvisionError
    from kubelite.provision.state import ClusterState

    state = ClusterState(name)
    try:
        spec = state.load_spec()
    except ProvisionError as e:
        fail(str(e))
    m = next((m for m in state.machines() if m.name == node), None)
    if m is None:
        fail(f"cluster {name} has no node {node!r}")
    return m.address, spec.ssh_user, state.ssh_key(spec), state.dir / "known_hosts"


@app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(ctx: typer.Context, name: NameArg, node: Annotated[str, typer.Argument(help="The node.")]) -> None:
    """Open a shell on a node (anything after NODE is run as a command instead)."""
    address, user, key, known = _machine(name, node)
    argv = ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "LogLevel=ERROR", f"{user}@{address}", *ctx.args]  # fmt: skip
    os.execvp("ssh", argv)


@app.command("kubeconfig")
def kubeconfig(
    name: NameArg,
    path: Annotated[bool, typer.Option("--path", help="Print the file's path instead of its content.")] = False,
) -> None:
    """Print the cluster's admin kubeconfig (https; it holds the admin client key: keep it private)."""
    from kubelite.provision.state import ClusterState

    state = ClusterState(name)
    if not state.kubeconfig.is_file():
        fail(f"no kubeconfig for cluster {name!r} (looked for {state.kubeconfig})")
    typer.echo(str(state.kubeconfig) if path else state.kubeconfig.read_text(), nl=path)


@app.command("test", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def test(ctx: typer.Context, name: NameArg) -> None:
    """Run the testinfra suite (tests/infra) against the cluster's machines (extra arguments go to pytest).

    The suite adds a worker during the run (add-node, then remove-node); on an ssh cluster, whose
    provider cannot create machines, that step is left out (--no-add-node). Writes a readable summary
    to <state dir>/infra-report.txt and JUnit XML to <state dir>/infra-report.xml.
    """
    from kubelite.provision.errors import ProvisionError
    from kubelite.provision.state import ClusterState
    from kubelite.provision.templates import checkout_dir

    state = ClusterState(name)
    if not state.exists:
        fail(f"no cluster named {name!r}")
    try:
        provider = state.load_spec().provider
    except ProvisionError as e:
        fail(str(e))
    suite = checkout_dir() / "tests" / "infra"
    if not any(suite.glob("test_*.py")):
        fail(f"no testinfra tests in {suite}")
    # The suite reads machines, roles, key and kubeconfig from the state dir itself (tests/infra/conftest.py).
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--cluster={name}",
            f"--junitxml={state.dir / 'infra-report.xml'}", *ctx.args]  # fmt: skip
    if provider == "ssh" and "--no-add-node" not in ctx.args:
        typer.echo("ssh hosts: no node is added during the run (--no-add-node)", err=True)
        argv.append("--no-add-node")
    if not any("tests/infra" in a for a in ctx.args):  # a selection of the suite's files, else all of it
        argv.append(str(suite))
    env = {**os.environ, "KUBECONFIG": str(state.kubeconfig)}
    rc = subprocess.call(argv, env=env, cwd=checkout_dir())
    raise typer.Exit(rc)
