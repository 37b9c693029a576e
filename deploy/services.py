"""A kubelite service: its unit running and enabled, restarted when its unit or settings changed."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed


def service_running(service: str, unit: OperationMeta, *settings: OperationMeta) -> None:
    # Read before anything runs: a service this deploy starts already reads the new files, only one
    # that was running must be restarted for them.
    was_running = host.get_fact(SystemdStatus, services=[f"{service}.service"]).get(f"{service}.service", False)
    systemd.service(
        name=f"{service} enabled and running",
        service=service, running=True, enabled=True, daemon_reload=unit.changed,
    )  # fmt: skip
    if was_running:
        systemd.service(
            name=f"Restart {service} for its new settings",
            service=service, restarted=True, _if=any_changed(unit, *settings),
        )  # fmt: skip
