"""Existing machines reached over SSH (bare metal, cloud VMs): nothing is created or destroyed.

The machines come from the spec's ``hosts`` (or its pyinfra ``inventory`` file). ``up`` deploys to
them; ``down`` runs the teardown deploy and leaves the machines themselves as they were.
"""

from __future__ import annotations

import socket
from pathlib import Path

from kubelite.provision.errors import ProviderError
from kubelite.provision.providers.base import MachineStatus, Provider
from kubelite.provision.state import Machine

__all__ = ["SshProvider"]


class SshProvider(Provider):
    name = "ssh"
    creates_machines = False

    def machines(self) -> list[Machine]:
        return [Machine(h.name, h.role, h.address) for h in self.spec.hosts]

    def create(self, name: str, role: str, address: str, ssh_pubkey: Path) -> Machine:
        raise ProviderError(f"the ssh provider does not create machines: add {name} to the spec's hosts")

    def list_machines(self) -> list[MachineStatus]:
        out = []
        for m in self.state.machines() or self.machines():
            try:
                with socket.create_connection((m.address, 22), timeout=2):
                    out.append(MachineStatus(m, True, "ssh reachable"))
            except OSError as e:
                out.append(MachineStatus(m, False, f"ssh unreachable: {e.strerror or e}"))
        return out

    def start(self, machine: Machine) -> None:
        """An existing machine is started by its owner; nothing to do here."""

    def stop(self, machine: Machine) -> None:
        """Never power off a machine kubelite did not create."""

    def destroy(self, machine: Machine) -> None:
        """The teardown deploy removed kubelite from it; the machine itself stays."""
