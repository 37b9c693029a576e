"""The control plane on a master: settings, systemd unit, service (restarted when either changes)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from deploy.services import service_running
from deploy.templates import template


@deploy("kubelite server")
def install_server() -> None:
    data = host.data
    env = files.template(
        name="Server settings /etc/kubelite/server.env",
        src=template("config/server.env.j2"), dest="/etc/kubelite/server.env", mode="644",
        api_port=data.api_port, service_cidr=data.service_cidr, pod_cidr=data.pod_cidr, datastore_endpoint=data.get("datastore_endpoint") or "",
    )  # fmt: skip
    unit = files.template(
        name="Unit kubelite-server.service",
        src=template("systemd/kubelite-server.service.j2"), dest="/etc/systemd/system/kubelite-server.service",
        mode="644", build=data.build,
    )  # fmt: skip
    service_running("kubelite-server", unit, env)
