"""The one interface every provider implements: create, list with IPs, start/stop, destroy.

A provider owns the machines and whatever the host needs for them (an image, a bridge, routes).
Orchestration (cluster.py) never touches a machine but through this interface, and the deploy
reaches every machine the same way afterwards: SSH as ``spec.ssh_user`` with the cluster key.
"""

from __future__ import annotations

import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from kubelite.provision.errors import ProviderError
from kubelite.provision.spec import ClusterSpec
from kubelite.provision.state import ClusterState, Machine

__all__ = ["MachineStatus", "Provider", "wait_for_ssh"]


@dataclass
class MachineStatus:
    machine: Machine
    running: bool
    detail: str = ""


class Provider(ABC):
    """Machines of one cluster. Every method is idempotent: calling it twice does what it did once."""

    name: str = ""
    creates_machines = True  # False for providers that take existing hosts (ssh)

    def __init__(self, spec: ClusterSpec, state: ClusterState) -> None:
        self.spec = spec
        self.state = state

    def check(self) -> None:
        """Refuse early (before anything is created) when this machine cannot host the cluster."""
        return None

    def prepare_image(self) -> list[str]:
        """Build or find the machine image; returns what it changed."""
        return []

    def prepare(self) -> list[str]:
        """Host-side setup shared by the machines (network); returns what it changed."""
        return []

    def host_keys(self, machine: Machine) -> list[str]:
        """The machine's SSH host public keys ("type base64") when the provider made them, else []."""
        return []

    @abstractmethod
    def create(self, name: str, role: str, address: str, ssh_pubkey: Path) -> Machine:
        """Create and start a machine at ``address``."""

    @abstractmethod
    def list_machines(self) -> list[MachineStatus]:
        """Every machine of the cluster, with its address and whether it runs."""

    @abstractmethod
    def start(self, machine: Machine) -> None: ...

    @abstractmethod
    def stop(self, machine: Machine) -> None: ...

    @abstractmethod
    def destroy(self, machine: Machine) -> None:
        """Stop the machine and remove everything it had on the host."""

    def cleanup_host(self) -> list[str]:
        """Undo :meth:`prepare` once no machine is left; returns what it removed."""
        return []

    def allocate_address(self, taken: set[str]) -> str:
        raise ProviderError(f"the {self.name} provider does not create machines")


def wait_for_ssh(address: str, timeout: float, port: int = 22) -> None:
    """Until sshd answers with its banner (a bound port alone may not be sshd yet)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise ProviderError(f"{address}: SSH did not answer within {timeout:.0f} s ({last or 'no banner'})")
