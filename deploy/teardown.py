"""Remove kubelite from a node, leaving the machine as it was before (ssh hosts on down, remove-node).

Order matters: stop the services, then the pods' runc containers (the agent runs with
KillMode=process so an agent restart keeps them), then unmount what the pods mounted, and only
then delete the files. Each step runs only when a fact shows there is something to do.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd

DATA = "/var/lib/kubelite"
RUNC = f"runc --root {DATA}/agent/runc"


@deploy("Remove kubelite")
def remove_kubelite() -> None:
    units = ["kubelite-agent", "kubelite-server", "kubelite-etcd"]
    if host.data.get("registry"):
        units.append("docker-registry")
    for unit in units:
        if unit == "docker-registry" or host.get_fact(File, path=f"/etc/systemd/system/{unit}.service"):
            systemd.service(name=f"Stop and disable {unit}", service=unit, running=False, enabled=False)

    if host.get_fact(File, path=DOCKER_DROPIN):
        _remove_docker_setup()

    leftovers = host.get_fact(
        Command,
        f"{{ {RUNC} list -q 2>/dev/null; awk '$5 ~ \"^{DATA}/\" {{print $5}}' /proc/self/mountinfo; }} | head -1",
    )  # fmt: skip
    if leftovers:
        server.shell(
            name="Remove the pods' containers and unmount their filesystems",
            commands=[
                f'for c in $({RUNC} list -q 2>/dev/null); do {RUNC} delete --force "$c"; done',
                f"awk '$5 ~ \"^{DATA}/\" {{print $5}}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l",
            ],
        )

    removed = [
        files.file(name=f"Remove /etc/systemd/system/{unit}.service", path=f"/etc/systemd/system/{unit}.service",
                   present=False)
        for unit in units[:3]
    ]  # fmt: skip
    systemd.daemon_reload(name="Reload systemd units", _if=lambda: any(op.did_change() for op in removed))
    for path in ("/etc/kubelite", "/opt/kubelite", "/var/lib/etcd/kubelite"):
        files.directory(name=f"Remove {path}", path=path, present=False)
    # /var/lib/kubelite may be a mount point (an nspawn machine binds it): empty it, remove it if possible.
    if host.get_fact(
        Command,
        f'[ -d {DATA} ] && {{ [ -n "$(ls -A {DATA})" ] || ! mountpoint -q {DATA}; }} && echo yes || true',
    ):
        server.shell(
            name=f"Remove {DATA}",
            commands=[f"find {DATA} -mindepth 1 -delete", f"mountpoint -q {DATA} || rmdir {DATA}"],
        )
    files.file(name="Remove kubelite sysctls", path="/etc/sysctl.d/90-kubelite.conf", present=False)


DOCKER_DROPIN = "/etc/systemd/system/docker.service.d/kubelite.conf"


def _remove_docker_setup() -> None:
    """A docker-runtime node: its pods' containers, then dockerd as kubelite configured it."""
    server.shell(
        name="Remove the pods' Docker containers",
        commands=["docker ps -aq --filter label=io.kubelite.node | xargs -r docker rm -f >/dev/null"],
    )
    for unit in ("docker", "docker.socket", "containerd"):
        systemd.service(name=f"Stop and disable {unit}", service=unit, running=False, enabled=False)
    removed = [
        files.file(name=f"Remove {path}", path=path, present=False)
        for path in ("/etc/docker/daemon.json", DOCKER_DROPIN, "/usr/local/lib/kubelite/runc-no-keyring")
    ]
    systemd.daemon_reload(
        name="Reload systemd units (docker)", _if=lambda: any(op.did_change() for op in removed)
    )
