"""The cluster under test, as the suite sees it: its machines (from the state dir), SSH, API, power.

``kubelite cluster up`` leaves everything needed in the cluster's state dir: the spec, the machines
with their roles and addresses, the SSH key, the pyinfra inventory (with the deployed build) and the
kubeconfig. From it the suite writes an ssh-config (one ``Host <node>`` per machine) so that
testinfra hosts are named by node: a failure reads ``test_x[<node>]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paramiko
import testinfra
from testinfra.host import Host

from kubelite.api.registry import ResourceType
from kubelite.client import ApiClient, load_kubeconfig
from kubelite.controllers.base import NODES, PODS
from kubelite.provision.spec import ClusterSpec
from kubelite.provision.state import ClusterState, Machine

__all__ = ["Api", "InfraCluster", "is_terminating", "next_worker_name", "node_ready", "retry"]

T = TypeVar("T")
Obj = dict[str, Any]
CHECKOUT = Path(__file__).resolve().parents[2]  # the checkout whose `kubelite` runs add-node and remove-node
ADD_NODE_TIMEOUT = 600.0  # a new machine: create, boot, packages, agent, Ready (a TCG VM boots slowly)


def is_terminating(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def node_ready(node: Obj) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def next_worker_name(state: ClusterState) -> str:
    """The name ``kubelite cluster add-node`` gives a new worker: the lowest free index."""
    names = {m.name for m in state.machines()}
    index = 0
    while f"{state.name}-worker-{index}" in names:
        index += 1
    return f"{state.name}-worker-{index}"


def retry(check: Callable[[], list[str]], timeout: float, interval: float = 1.0) -> list[str]:
    """Run ``check`` (it returns the problems it found) until it finds none or ``timeout`` passes.

    Machines converge: a listener binds a little after its unit starts, a route follows a Node
    change. The last problems are returned so the assertion names what was still wrong.
    """
    deadline = time.monotonic() + timeout
    while True:
        problems = check()
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(interval)


class Api:
    """A synchronous face of kubelite's async ApiClient (testinfra checks are plain functions)."""

    def __init__(self, kubeconfig: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self.client = ApiClient(load_kubeconfig(str(kubeconfig)), timeout=10)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def call(self, fn: Callable[[ApiClient], Coroutine[Any, Any, T]]) -> T:
        return self.run(fn(self.client))

    def objects(self, rt: ResourceType, namespace: str | None = None, **kw: Any) -> list[Obj]:
        items: list[Obj] = self.run(self.client.list(rt, namespace, **kw)).get("items") or []
        return items

    def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> Obj:
        return self.run(self.client.get(rt, name, namespace))

    def pods_on(self, node: str) -> list[Obj]:
        return [p for p in self.objects(PODS) if p.get("spec", {}).get("nodeName") == node]

    def nodes(self) -> dict[str, Obj]:
        return {n["metadata"]["name"]: n for n in self.objects(NODES)}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.client.close())
        self._loop.close()


@dataclass
class InfraCluster:
    name: str
    state: ClusterState
    spec: ClusterSpec
    machines: list[Machine]
    ssh_config: Path
    _hosts: dict[str, Host] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str) -> InfraCluster:
        """The cluster ``name`` from its state dir (raises ProvisionError naming the dir if there is none)."""
        state = ClusterState(name)
        spec = state.load_spec()
        machines = state.machines()
        key = state.ssh_key(spec)
        # The machines' host keys were recorded by `up`; paramiko does not read a per-host known_hosts
        # option, so the ssh-config only maps node names to addresses, user and key.
        lines = []
        for m in machines:
            lines += [f"Host {m.name}", f"  HostName {m.address}", f"  User {spec.ssh_user}", f"  IdentityFile {key}", ""]
        ssh_config = Path(tempfile.mkdtemp(prefix=f"kubelite-infra-{name}-")) / "ssh_config"
        ssh_config.write_text("\n".join(lines))
        return cls(name, state, spec, machines, ssh_config)

    # -- machines --------------------------------------------------------------------------------

    def machine(self, name: str) -> Machine:
        return next(m for m in self.machines if m.name == name)

    def names(self, role: str | None = None) -> list[str]:
        return [m.name for m in self.machines if role is None or m.role == role]

    def host(self, name: str) -> Host:
        """The testinfra host of a machine (connects on first use)."""
        if name not in self._hosts:
            self._hosts[name] = testinfra.get_host(f"paramiko://{name}", ssh_config=str(self.ssh_config))
        return self._hosts[name]

    def connect(self, name: str) -> Host:
        """The host with an SSH connection whose host key is checked against the cluster's known_hosts.

        testinfra's paramiko backend accepts any host key (with a warning); the key `up` recorded is
        better, so the connection is made here and handed to the backend (its cached ``client``).
        """
        host = self.host(name)
        if "client" in host.backend.__dict__:
            return host
        machine = self.machine(name)
        client = paramiko.SSHClient()
        known = self.state.dir / "known_hosts"
        if known.is_file():
            client.load_host_keys(str(known))
        # An ssh host that `up` reached before known_hosts existed has no entry: accept it as testinfra would.
        pinned = client.get_host_keys().lookup(machine.address) is not None
        client.set_missing_host_key_policy(paramiko.RejectPolicy() if pinned else paramiko.WarningPolicy())
        client.connect(machine.address, username=self.spec.ssh_user, key_filename=str(self.state.ssh_key(self.spec)),
                       timeout=10, allow_agent=False, look_for_keys=False)  # fmt: skip
        host.backend.__dict__["client"] = client
        return host

    def reconnect(self, name: str) -> None:
        """Drop the cached SSH connection of a machine that rebooted (its transport is dead)."""
        backend = self.host(name).backend
        client = backend.__dict__.pop("client", None)
        if client is not None:
            client.close()

    @property
    def build(self) -> str:
        """The kubelite build deployed by `up` (the wheelhouse id in the generated inventory)."""
        found = re.search(r"'build': '([0-9a-f]+)'", self.state.inventory.read_text())
        if found is None:
            raise AssertionError(f"no build id in {self.state.inventory}")
        return found.group(1)

    def close(self) -> None:
        """Close the SSH connections and remove the generated ssh-config."""
        for name in list(self._hosts):
            self.reconnect(name)
        shutil.rmtree(self.ssh_config.parent, ignore_errors=True)

    # -- nodes added and removed during the run -------------------------------------------------

    def cli(self, *args: str, timeout: float = ADD_NODE_TIMEOUT) -> str:
        """``kubelite cluster ARGS`` as a user runs it; its output, or an AssertionError quoting it."""
        proc = subprocess.run([sys.executable, "-m", "kubelite", "cluster", *args], cwd=CHECKOUT, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
        out = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            raise AssertionError(f"`kubelite cluster {' '.join(args)}` failed ({proc.returncode}): {out[-1500:]}")
        return out

    def add_worker(self) -> str:
        """Add a worker with ``kubelite cluster add-node`` (the provider creates it, the deploy joins it)."""
        expected = next_worker_name(self.state)
        self.cli("add-node", self.name, "--role", "worker")
        self.machines = self.state.machines()
        if expected not in self.names("worker"):
            raise AssertionError(f"add-node did not add {expected} (workers now: {', '.join(self.names('worker'))})")
        return expected

    def remove_worker(self, name: str) -> None:
        """``kubelite cluster remove-node``: drained, its machine gone, its Node deleted."""
        self.reconnect(name)
        self.cli("remove-node", self.name, name, timeout=300)
        self._hosts.pop(name, None)
        self.machines = self.state.machines()

    # -- power -----------------------------------------------------------------------------------

    @property
    def powers_machines(self) -> bool:
        """True when kubelite created the machines (nspawn, VMs) and may power them off."""
        return self.spec.provider != "ssh"

    def power_off(self, name: str) -> None:
        """A machine kubelite created is powered off; an ssh host only loses its agent (never its power)."""
        if not self.powers_machines:
            self.host(name).run("systemctl stop kubelite-agent")
            return
        from kubelite.provision.providers.nspawn import NspawnProvider

        provider, machine = self._provider_machine(name)
        if isinstance(provider, NspawnProvider):
            # Pull the plug, as a power cut does: the whole machine, pods included, dies at once.
            provider.power_off(machine)
        else:
            provider.stop(machine)
        self._save(machine)

    def power_on(self, name: str) -> None:
        if not self.powers_machines:
            self.host(name).run("systemctl start kubelite-agent")
            return
        provider, machine = self._provider_machine(name)
        provider.start(machine)
        self._save(machine)  # the new process id: `down` must find the machine it has to stop
        self.reconnect(name)

    def _provider_machine(self, name: str) -> tuple[Any, Machine]:
        from kubelite.provision.cluster import make_provider

        machine = next(m for m in self.state.machines() if m.name == name)
        return make_provider(self.spec, self.state), machine

    def _save(self, machine: Machine) -> None:
        current = self.state.machines()
        self.state.save_machines([machine if m.name == machine.name else m for m in current])
        self.machines = self.state.machines()
