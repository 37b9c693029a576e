"""Node preparation shared by every role: directories, sysctls, kernel modules, kubelite itself.

OS packages are baked into the node image (or present on an ssh host); kubelite and its Python
dependencies arrive as a wheelhouse tarball built on the controlling machine and are installed into
/opt/kubelite/venv with ``pip --no-index``: the node needs no network.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

VENV = "/opt/kubelite/venv"
WHEELHOUSE_TAR = "/opt/kubelite/wheelhouse.tar"


def in_container() -> bool:
    """A container (an nspawn machine) shares the host kernel: modules are the host's business."""
    out = host.get_fact(Command, "systemd-detect-virt --container 2>/dev/null || true")
    return bool(out and out.strip() not in ("", "none"))


@deploy("Prepare node")
def prepare_node() -> None:
    for path in ("/etc/kubelite", "/var/lib/kubelite", "/opt/kubelite"):
        files.directory(name=f"Directory {path}", path=path, mode="755", present=True)

    server.sysctl(
        name="Enable IPv4 forwarding (pod traffic crosses nodes)",
        key="net.ipv4.ip_forward", value=1, persist=True, persist_file="/etc/sysctl.d/90-kubelite.conf",
    )  # fmt: skip
    if not in_container():
        for module in ("overlay", "br_netfilter"):
            server.modprobe(name=f"Load kernel module {module}", module=module)
        files.line(
            name="Load kernel modules at boot", path="/etc/modules-load.d/kubelite.conf", line="br_netfilter",
        )  # fmt: skip
    # Present only where br_netfilter is loaded (by the host, for a container).
    if host.get_fact(File, path="/proc/sys/net/bridge/bridge-nf-call-iptables"):
        server.sysctl(
            name="Bridged pod traffic passes iptables",
            key="net.bridge.bridge-nf-call-iptables", value=1, persist=True,
            persist_file="/etc/sysctl.d/90-kubelite.conf",
        )  # fmt: skip

    install_kubelite()


@deploy("Install kubelite")
def install_kubelite() -> None:
    tar = host.data.get("wheelhouse_tar")
    build = host.data.get("build")
    files.put(name="Upload the kubelite wheelhouse", src=tar, dest=WHEELHOUSE_TAR, mode="644")
    marker = f"{VENV}/.kubelite-build-{build}"
    if not host.get_fact(File, path=marker):
        server.shell(
            name=f"Install kubelite build {build} into {VENV} (offline)",
            commands=[
                "rm -rf /opt/kubelite/wheelhouse && mkdir -p /opt/kubelite/wheelhouse",
                f"tar -xf {WHEELHOUSE_TAR} -C /opt/kubelite/wheelhouse",
                f"test -x {VENV}/bin/python || python3 -m venv {VENV}",
                # Every wheel of the wheelhouse: a dependency added since the last install comes along
                # (naming only kubelite would find it "already satisfied" at the same version).
                f"{VENV}/bin/pip install -q --disable-pip-version-check --no-index --no-compile "
                "--find-links /opt/kubelite/wheelhouse /opt/kubelite/wheelhouse/*.whl",
                # Same version number, new code: the checkout's wheel always replaces the installed one.
                f"{VENV}/bin/pip install -q --disable-pip-version-check --no-index --no-compile --no-deps --force-reinstall "
                "/opt/kubelite/wheelhouse/kubelite-*.whl",
                f"rm -f {VENV}/.kubelite-build-* && touch {marker}",
            ],
        )
