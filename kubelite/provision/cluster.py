"""Cluster lifecycle: up, down, status, add-node, remove-node.

``up`` runs six phases, each shown with its own progress line: image, machines, packages, control
plane, agents, Ready. Every phase converges (creates only what is missing, the deploys change only
what differs), so a second ``up`` reports "no changes", and after a failure (which names the
machine and the step) ``up`` again continues where it stopped: the state directory is written
after every machine that was created.

Security: the API is HTTPS only. The join-token secret is made here once per cluster (state dir,
0600), reaches the nodes only in 0600 settings files, and is never printed; after the control plane
phase the first master's join token and admin kubeconfig are read into the state dir (0600), the
kubeconfig pointed at the masters' addresses (see credentials.py).

HA (datastore etcd, an odd number of masters): the machines phase also makes the CA, ServiceAccount
key and etcd certificates every master shares (credentials.ensure_shared_pki); the control plane
phase runs etcd on every master as a static cluster before the servers (deploy/etcd.py). The masters
are then fixed: adding or removing one is an etcd membership change, refused with a message saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from kubelite.client import load_kubeconfig
from kubelite.client.rest import build_ssl_context
from kubelite.provision import nodes
from kubelite.provision.credentials import (
    KUBECONFIG_PATH,
    TOKEN_PATH,
    admin_kubeconfig,
    ensure_shared_pki,
    token_secret,
)
from kubelite.provision.deployer import PHASES, registry_addresses, render_inventory, run_phase, server_urls
from kubelite.provision.errors import ProviderError, ProvisionError, SpecError, StepError
from kubelite.provision.preload import preload_images
from kubelite.provision.providers.base import Provider, wait_for_ssh
from kubelite.provision.spec import ClusterSpec
from kubelite.provision.state import ClusterState, Machine, write_private
from kubelite.provision.wheelhouse import ensure_wheelhouse

__all__ = ["ClusterOps", "UpResult", "make_provider", "ssh_read", "ssh_run"]

SSH_TIMEOUT = 60.0
# The etcd members are a static cluster (initial-cluster from the inventory): changing them is an
# etcd membership change (etcdctl member add/remove, in step with the kubelite servers), not done here.
_ETCD_MEMBERSHIP = (
    "cluster {name} runs etcd on its {have} master(s) as a static cluster: adding or removing a master "
    "is an etcd membership change that `kubelite cluster` does not make; keep masters: {have}, "
    "or create a new cluster with the masters it needs"
)
API_TIMEOUT = 90.0
READY_TIMEOUT = 120.0


def make_provider(spec: ClusterSpec, state: ClusterState) -> Provider:
    if spec.provider == "nspawn":
        from kubelite.provision.providers.nspawn import NspawnProvider

        return NspawnProvider(spec, state)
    if spec.provider == "ssh":
        from kubelite.provision.providers.ssh import SshProvider

        return SshProvider(spec, state)
    if spec.provider == "libvirt":
        from kubelite.provision.providers.libvirt import LibvirtProvider

        return LibvirtProvider(spec, state)
    if spec.provider == "vagrant":
        from kubelite.provision.providers.vagrant import VagrantProvider

        return VagrantProvider(spec, state)
    # Accepted by the spec so a file written for them validates; refused here before anything exists.
    raise SpecError("provider", f"the {spec.provider} provider is not built yet (use nspawn, libvirt or ssh)")


def _ssh_argv(spec: ClusterSpec, state: ClusterState, machine: Machine, command: str) -> list[str]:
    return ["ssh", "-i", str(state.ssh_key(spec)), "-o", f"UserKnownHostsFile={state.dir / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            f"{spec.ssh_user}@{machine.address}", command]  # fmt: skip


def ssh_read(spec: ClusterSpec, state: ClusterState, machine: Machine, path: str, timeout: float = 20) -> str | None:
    """The content of the file ``path`` on ``machine`` (None when it cannot be read). Only the path is on
    the command line; the content comes back on stdout and goes nowhere else."""
    try:
        proc = subprocess.run(_ssh_argv(spec, state, machine, f"cat -- {path}"), capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout if proc.returncode == 0 else None


def ssh_run(spec: ClusterSpec, state: ClusterState, machine: Machine, command: str, timeout: float = 20) -> str:
    """Run ``command`` on ``machine`` as the cluster's SSH user; stdout and stderr together."""
    argv = _ssh_argv(spec, state, machine, command)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"ssh {machine.address}: no answer within {timeout:.0f} s"
    return proc.stdout + proc.stderr


@dataclass
class UpResult:
    changes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> duration

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class ClusterOps:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    @contextlib.contextmanager
    def _phase(self, title: str, result: UpResult) -> Iterator[list[str]]:
        """One progress line per phase: a spinner while it runs, then what it changed and how long it took."""
        changes: list[str] = []
        start = time.monotonic()
        try:
            with self.console.status(f"[bold]{title}[/bold] ..."):
                yield changes
        except Exception:
            self.console.print(f"[red]✗[/red] {title}  failed after {time.monotonic() - start:.1f} s")
            raise
        took = time.monotonic() - start
        result.seconds[title] = took
        result.changes += [f"{title}: {c}" for c in changes]
        summary = ", ".join(changes[:4]) + (f" (+{len(changes) - 4} more)" if len(changes) > 4 else "")
        self.console.print(f"[green]✓[/green] {title:<14} {summary or 'no changes'}  [dim]{took:.1f} s[/dim]")

    # -- up --------------------------------------------------------------------------------------

    def up(self, spec: ClusterSpec, deploy_limit: list[str] | None = None) -> UpResult:
        state = ClusterState(spec.name)
        spec = self._reconcile_spec(spec, state)
        provider = make_provider(spec, state)
        provider.check()  # nothing exists yet if this refuses
        result = UpResult()
        key = state.ssh_key(spec)
        state.save_spec(spec)

        with self._phase("image", result) as changes:
            changes += provider.prepare_image()
            wheelhouse = ensure_wheelhouse()
            if wheelhouse.built:
                changes.append(f"wheelhouse {wheelhouse.build}")

        with self._phase("machines", result) as changes:
            changes += provider.prepare()
            machines = self._converge_machines(spec, state, provider, Path(str(key) + ".pub"), changes)
            for m in machines:
                try:
                    # A VM boots a kernel (under TCG, slowly): its provider says how long that may take.
                    wait_for_ssh(m.address, getattr(provider, "boot_timeout", SSH_TIMEOUT))
                except ProviderError as e:
                    raise ProviderError(f"{m.name}: step 'wait for SSH' failed: {e}") from None
            self._write_access_files(spec, state, provider, machines, key, wheelhouse.tar, wheelhouse.build)
            if not state.token_secret_file.is_file():
                state.token_secret(existing=self._running_secret(spec, state, machines))
            if spec.datastore == "etcd":
                changes += ensure_shared_pki(state, [m for m in machines if m.role == "master"])

        for phase, title in zip(PHASES, ("packages", "control plane", "agents"), strict=True):
            with self._phase(title, result) as changes:
                if phase == "agents":
                    tls = build_ssl_context(load_kubeconfig(str(state.kubeconfig)))
                    for url in server_urls(machines):
                        nodes.wait_api(url, API_TIMEOUT, tls)
                deployed = run_phase(state, phase, limit=deploy_limit)
                changes += [f"{node}: {len(ops)} changed" for node, ops in sorted(deployed.changed.items())]
                if phase == "control-plane":
                    self._fetch_credentials(spec, state, machines)
                    for registry in registry_addresses(spec, machines):
                        changes += [f"pushed {i} to {registry}" for i in preload_images(spec.images, registry)]

        with self._phase("Ready", result):
            try:
                asyncio.run(nodes.wait_ready(state.kubeconfig, [m.name for m in machines], READY_TIMEOUT))
            except nodes.NotReadyError as e:
                first = next(m for m in machines if m.name in e.missing)
                others = f" (also not Ready: {', '.join(e.missing[1:])})" if len(e.missing) > 1 else ""
                raise StepError("wait for Ready", first.name, self._agent_diagnosis(spec, state, first) + others) from None
        verdict = "no changes" if not result.changed else f"{len(result.changes)} change(s)"
        self.console.print(
            f"cluster [bold]{spec.name}[/bold]: {len(machines)} node(s) Ready, {verdict}. "
            f"kubeconfig: {state.kubeconfig}"
        )
        return result

    def _reconcile_spec(self, spec: ClusterSpec, state: ClusterState) -> ClusterSpec:
        """A running cluster keeps its provider and networks; ``up`` may only grow it."""
        if not state.exists:
            return spec
        old = state.load_spec()
        for fld, what in (("provider", "provider"), ("datastore", "datastore"), ("node_cidr", "network.nodes"),
                          ("pod_cidr", "network.pods"), ("service_cidr", "network.services")):  # fmt: skip
            if getattr(old, fld) != getattr(spec, fld):
                raise SpecError(what, f"cluster {spec.name} exists with {getattr(old, fld)}; "
                                      f"run `kubelite cluster down {spec.name}` to change it")  # fmt: skip
        if old.datastore == "etcd" and spec.masters != old.masters:
            raise SpecError("masters", _ETCD_MEMBERSHIP.format(name=spec.name, have=old.masters))
        if spec.provider != "ssh":
            # Nodes added with add-node stay: up never removes a node (remove-node does).
            spec.masters, spec.workers = max(spec.masters, old.masters), max(spec.workers, old.workers)
        return spec

    def _converge_machines(
        self, spec: ClusterSpec, state: ClusterState, provider: Provider, pubkey: Path, changes: list[str]
    ) -> list[Machine]:
        machines = state.machines()
        if not provider.creates_machines:
            from kubelite.provision.providers.ssh import SshProvider

            assert isinstance(provider, SshProvider)
            machines = provider.machines()
            state.save_machines(machines)
            return machines
        for status in provider.list_machines():
            if not status.running:
                provider.start(status.machine)
                changes.append(f"started {status.machine.name}")
                state.save_machines(machines := [status.machine if m.name == status.machine.name else m
                                                  for m in machines])  # fmt: skip
        for role, want in (("master", spec.masters), ("worker", spec.workers)):
            have = [m for m in machines if m.role == role]
            index = 0
            for _ in range(want - len(have)):
                names = {m.name for m in machines}
                while f"{spec.name}-{role}-{index}" in names:
                    index += 1
                name = f"{spec.name}-{role}-{index}"
                address = provider.allocate_address({m.address for m in machines})
                try:
                    machine = provider.create(name, role, address, pubkey)
                except ProvisionError as e:
                    raise ProviderError(f"{name}: step 'create machine' failed: {e}") from None
                machines.append(machine)
                state.save_machines(machines)  # a failure later on finds this machine and keeps it
                changes.append(f"created {name}")
        return machines

    def _write_access_files(
        self, spec: ClusterSpec, state: ClusterState, provider: Provider, machines: list[Machine],
        key: Path, wheelhouse_tar: Path, build: str,
    ) -> None:  # fmt: skip
        known = state.dir / "known_hosts"
        lines = [f"{m.address} {k}" for m in machines for k in provider.host_keys(m)]
        if lines or not known.exists():
            known.write_text("\n".join(lines) + "\n" if lines else "")
        inventory = render_inventory(spec, state, machines, key, known, wheelhouse_tar, build)
        if not state.inventory.is_file() or state.inventory.read_text() != inventory:
            state.inventory.write_text(inventory)

    @staticmethod
    def _first_master(machines: list[Machine]) -> Machine:
        return next(m for m in machines if m.role == "master")

    def _running_secret(self, spec: ClusterSpec, state: ClusterState, machines: list[Machine]) -> str | None:
        """The join-token secret of a kubelite already serving on the first master: hosts taken over
        by a new state dir (the ssh provider) keep their cluster, and their nodes' credentials."""
        token = ssh_read(spec, state, self._first_master(machines), TOKEN_PATH)
        return token_secret(token) if token else None

    def _fetch_credentials(self, spec: ClusterSpec, state: ClusterState, machines: list[Machine]) -> None:
        """The first master's join token and admin kubeconfig into the state dir (both 0600).

        Both appear at the server's first start; a server restarted for a new secret rewrites its
        token, so the one that carries the cluster's secret is waited for.
        """
        master = self._first_master(machines)
        secret = state.token_secret()
        deadline = time.monotonic() + API_TIMEOUT
        while True:
            token, raw = ssh_read(spec, state, master, TOKEN_PATH), ssh_read(spec, state, master, KUBECONFIG_PATH)
            if token and raw and token_secret(token) == secret:
                break
            if time.monotonic() > deadline:
                what = "join token" if not token else "admin kubeconfig" if not raw else "join token with the cluster's secret"
                raise StepError("fetch the cluster credentials", master.name,
                                f"no {what} in {TOKEN_PATH if what != 'admin kubeconfig' else KUBECONFIG_PATH} "
                                f"within {API_TIMEOUT:.0f} s (journalctl -u kubelite-server)")  # fmt: skip
            time.sleep(0.5)
        token = token.strip() + "\n"
        if not state.join_token_file.is_file() or state.join_token_file.read_text() != token:
            write_private(state.join_token_file, token.encode())
        kubeconfig = admin_kubeconfig(raw, server_urls(machines), spec.name, f"{master.name}:{KUBECONFIG_PATH}")
        if not state.kubeconfig.is_file() or state.kubeconfig.read_text() != kubeconfig:
            write_private(state.kubeconfig, kubeconfig.encode())

    def _agent_diagnosis(self, spec: ClusterSpec, state: ClusterState, machine: Machine) -> str:
        """What the node's agent says about itself: its unit state and last log lines."""
        out = ssh_run(spec, state, machine,
                      "systemctl is-active kubelite-agent; journalctl -u kubelite-agent -n 3 -o cat --no-pager")  # fmt: skip
        return "kubelite-agent: " + " | ".join(ln.strip() for ln in out.splitlines() if ln.strip())[-600:]

    # -- node management -------------------------------------------------------------------------

    def add_node(self, name: str, role: str) -> tuple[UpResult, str]:
        state = ClusterState(name)
        spec = state.load_spec()
        if spec.provider == "ssh":
            raise SpecError("hosts", "the ssh provider adds a node by listing it under hosts and running up")
        before = {m.name for m in state.machines()}
        if role == "master":
            if spec.datastore == "sqlite":
                raise SpecError("masters", "a second master needs datastore: etcd (sqlite serves one master)")
            raise SpecError("masters", _ETCD_MEMBERSHIP.format(name=name, have=spec.masters))
        else:
            spec.workers += 1
        state.save_spec(spec)
        # Only the new node needs the deploy when a worker is added; a master changes every agent's servers.
        result = self.up(spec, deploy_limit=None if role == "master" else self._new_names(spec, state, before))
        added = sorted({m.name for m in state.machines()} - before)
        return result, ", ".join(added)

    @staticmethod
    def _new_names(spec: ClusterSpec, state: ClusterState, before: set[str]) -> list[str]:
        """The worker names ``up`` will create (it picks the lowest free index, as here)."""
        machines = state.machines()
        have = sum(m.role == "worker" for m in machines)
        names, index, out = set(before), 0, []
        for _ in range(spec.workers - have):
            while f"{spec.name}-worker-{index}" in names:
                index += 1
            names.add(f"{spec.name}-worker-{index}")
            out.append(f"{spec.name}-worker-{index}")
        return out

    def remove_node(self, name: str, node: str) -> int:
        state = ClusterState(name)
        spec = state.load_spec()
        machines = state.machines()
        machine = next((m for m in machines if m.name == node), None)
        if machine is None:
            raise ProvisionError(f"cluster {name} has no node {node!r} (nodes: {', '.join(m.name for m in machines)})")
        if machine.role == "master" and sum(m.role == "master" for m in machines) <= 1:
            raise ProvisionError(f"{node} is the only master: use `kubelite cluster down {name}` instead")
        if machine.role == "master" and spec.datastore == "etcd":
            raise SpecError("masters", _ETCD_MEMBERSHIP.format(name=name, have=spec.masters))
        provider = make_provider(spec, state)
        with self.console.status(f"draining {node}"):
            evicted = asyncio.run(nodes.drain(state.kubeconfig, node, timeout=60))
        self.console.print(f"[green]✓[/green] drained {node} ({evicted} pod(s) evicted)")
        with self.console.status(f"removing {node}"):
            if provider.creates_machines:
                provider.destroy(machine)
            else:
                run_phase(state, "teardown", limit=[node])
            asyncio.run(nodes.delete_node(state.kubeconfig, node))
        remaining = [m for m in machines if m.name != node]
        state.save_machines(remaining)
        if machine.role == "master":
            spec.masters -= 1
        else:
            spec.workers -= 1
        if spec.provider == "ssh":
            spec.hosts = [h for h in spec.hosts if h.name != node]
        state.save_spec(spec)
        self.console.print(f"[green]✓[/green] removed {node} from cluster {name}")
        return evicted

    # -- down / status ---------------------------------------------------------------------------

    def down(self, name: str) -> list[str]:
        state = ClusterState(name)
        spec = state.load_spec()
        provider = make_provider(spec, state)
        removed: list[str] = []
        errors: list[str] = []
        with self.console.status(f"removing cluster {name}"):
            if not provider.creates_machines and state.inventory.is_file():
                try:
                    run_phase(state, "teardown")
                    removed.append("kubelite removed from the hosts")
                except ProvisionError as e:
                    errors.append(str(e))
            for m in state.machines():
                try:
                    provider.destroy(m)
                    if provider.creates_machines:
                        removed.append(f"machine {m.name}")
                except ProvisionError as e:
                    errors.append(f"{m.name}: {e}")
            removed += provider.cleanup_host()
        if errors:
            # Keep the state: `down` again retries what is left.
            raise ProvisionError(f"down {name}: " + "; ".join(errors))
        state.remove()
        self.console.print(f"[green]✓[/green] cluster {name} removed: {', '.join(removed) or 'nothing was left'}")
        return removed

    def status(self, name: str) -> tuple[list[tuple[Machine, bool, str]], dict[str, dict[str, str]]]:
        """Machines with whether they run, and the API's view of every node (Ready, version)."""
        state = ClusterState(name)
        spec = state.load_spec()
        provider = make_provider(spec, state)
        machines = [(s.machine, s.running, s.detail) for s in provider.list_machines()]
        api: dict[str, dict[str, str]] = {}
        try:
            for n in asyncio.run(nodes.list_nodes(state.kubeconfig)):
                info = n.get("status", {}).get("nodeInfo") or {}
                api[n["metadata"]["name"]] = {
                    "ready": "Ready" if nodes.node_ready(n) else "NotReady",
                    "version": str(info.get("kubeletVersion", "?")),
                    "unschedulable": "yes" if n.get("spec", {}).get("unschedulable") else "",
                }
        except Exception as e:  # status must show the machines even when the API is down
            api["<api>"] = {"ready": f"unreachable: {e}", "version": "", "unschedulable": ""}
        return machines, api
