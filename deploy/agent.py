"""The node agent on every node (masters too, as in k3s): settings, unit, service.

The agent joins with the cluster's join token (from its 0600 settings file): at its first start it
checks the server's CA against the token's pin and gets its own node credential, kept 0600 in its
data dir (/var/lib/kubelite/agent). It needs no kubeconfig from the deploy.

With ``runtime: docker`` the node's dockerd is configured and running before the agent starts:
no docker0 bridge and no iptables rules (kubelite does the pod network), cgroupfs driver (the agent
puts pods under /kubelite/<node>), data root /var/lib/kubelite/docker, overlay2 where that directory
is not itself on overlayfs (an nspawn machine binds a real host directory there for this reason), vfs
where it is. The node image has docker.io and containerd, disabled until this enables them.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.server import Command, Which
from pyinfra.operations import files, systemd

from deploy.common import in_container
from deploy.secrets import private_file, read_secret
from deploy.services import service_running
from deploy.templates import template


def join_token() -> str:
    """The full token K10<ca-hash>::server:<secret> that `cluster up` fetched from the first master.

    A deploy run by hand in one go (no phase) renders this before any master has started: then the
    bare secret, which the server accepts too (the agent then trusts the CA it is first shown).
    """
    full = Path(host.data.join_token_file)
    return read_secret(str(full)) if full.is_file() else read_secret(host.data.token_secret_file)


DOCKER_DATA_ROOT = "/var/lib/kubelite/docker"
RUNC_WRAPPER = "/usr/local/lib/kubelite/runc-no-keyring"


@deploy("Docker engine")
def install_docker() -> None:
    missing = [c for c in ("dockerd", "containerd", "runc") if not host.get_fact(Which, command=c)]
    if missing:
        raise DeployError(
            f"{host.name}: runtime docker needs {', '.join(missing)} on the node (apt-get install docker.io "
            "containerd runc; kubelite's node images have them)"
        )
    # overlay2 cannot put its layers on an overlayfs; everything else kubelite runs on takes it.
    backing = (host.get_fact(Command, "stat -f -c %T /var/lib/kubelite") or "").strip()
    contained = in_container()
    files.directory(name="Directory /etc/docker", path="/etc/docker", mode="755", present=True)
    settings = files.template(
        name="dockerd settings /etc/docker/daemon.json",
        src=template("docker/daemon.json.j2"), dest="/etc/docker/daemon.json", mode="644",
        data_root=DOCKER_DATA_ROOT, storage_driver="vfs" if backing in ("overlayfs", "aufs") else "overlay2",
        no_new_keyring=contained, runc_wrapper=RUNC_WRAPPER,
    )  # fmt: skip
    changed = [settings]
    if contained:
        files.directory(name="Directory /usr/local/lib/kubelite", path="/usr/local/lib/kubelite", present=True)
        changed.append(files.put(
            name=f"runc without a new session keyring {RUNC_WRAPPER} (nspawn denies keyctl)",
            src=template("docker/runc-no-keyring"), dest=RUNC_WRAPPER, mode="755",
        ))  # fmt: skip
    files.directory(name="Directory docker.service.d", path="/etc/systemd/system/docker.service.d", present=True)
    dropin = files.template(
        name="dockerd unit settings docker.service.d/kubelite.conf",
        src=template("docker/docker.service.conf.j2"), dest="/etc/systemd/system/docker.service.d/kubelite.conf",
        mode="644", data_root=DOCKER_DATA_ROOT,
    )  # fmt: skip
    systemd.service(name="containerd enabled and running", service="containerd", running=True, enabled=True)
    # live-restore keeps the pods running when a changed setting restarts dockerd.
    service_running("docker", dropin, *changed)


@deploy("kubelite agent")
def install_agent() -> None:
    data = host.data
    if data.runtime == "docker":
        install_docker()
    is_master = data.role == "master"
    role_label = "node-role.kubernetes.io/control-plane" if is_master else "node-role.kubernetes.io/worker"
    # Before join tokens the deploy wrote an (unauthenticated) kubeconfig for the agent.
    files.file(name="No old agent kubeconfig /etc/kubelite/kubeconfig", path="/etc/kubelite/kubeconfig", present=False)
    env = private_file(
        "Agent settings /etc/kubelite/agent.env (0600: holds the join token)",
        "config/agent.env.j2", "/etc/kubelite/agent.env",
        servers=data.servers, token=join_token(),
        node_name=data.node_name, node_ip=data.node_ip, runtime=data.runtime, cpu=data.cpu, memory=data.memory,
        labels=f"{role_label}=true", pod_cidr=data.pod_cidr, registry=data.get("registry_address") or "",
    )  # fmt: skip
    unit = files.template(
        name="Unit kubelite-agent.service",
        src=template("systemd/kubelite-agent.service.j2"), dest="/etc/systemd/system/kubelite-agent.service",
        mode="644", build=data.build, runtime=data.runtime, is_master=is_master,
    )  # fmt: skip
    service_running("kubelite-agent", unit, env)
