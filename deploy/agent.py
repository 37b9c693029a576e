"""The node agent on every node (masters too, as in k3s): kubeconfig, settings, unit, service."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from deploy.services import service_running
from deploy.templates import template


@deploy("kubelite agent")
def install_agent() -> None:
    data = host.data
    is_master = data.role == "master"
    role_label = "node-role.kubernetes.io/control-plane" if is_master else "node-role.kubernetes.io/worker"
    kubeconfig = files.template(
        name="Agent kubeconfig /etc/kubelite/kubeconfig",
        src=template("kubeconfig.j2"), dest="/etc/kubelite/kubeconfig", mode="600",
        context="kubelite", server_url=data.server_url, servers=data.servers,
    )  # fmt: skip
    env = files.template(
        name="Agent settings /etc/kubelite/agent.env",
        src=template("config/agent.env.j2"), dest="/etc/kubelite/agent.env", mode="644",
        node_name=data.node_name, node_ip=data.node_ip, runtime=data.runtime, cpu=data.cpu, memory=data.memory,
        labels=f"{role_label}=true", pod_cidr=data.pod_cidr, registry=data.get("registry_address") or "",
    )  # fmt: skip
    unit = files.template(
        name="Unit kubelite-agent.service",
        src=template("systemd/kubelite-agent.service.j2"), dest="/etc/systemd/system/kubelite-agent.service",
        mode="644", build=data.build, runtime=data.runtime, is_master=is_master,
    )  # fmt: skip
    service_running("kubelite-agent", unit, kubeconfig, env)
