"""`kubelite cluster up` with the vagrant provider: `vagrant up` in vagrant/ plus the deploy, one master VM Ready.

Vagrant (vagrant-libvirt) creates the VM from the box kubelite builds out of its cached guest image;
libvirtd is started the way the libvirt test starts it. Under TCG on 2 cores the module takes about
4.5 minutes (guest image cached), within CI's budget, so it runs with the suite; KUBELITE_VAGRANT_TEST=0
leaves it out, and alone it runs as

    .venv/bin/pytest tests/integration/test_cluster_vagrant.py

`down` must leave no VM, network, VM disk, Vagrant machine, route or state behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.client import ApiClient, load_kubeconfig
from kubelite.controllers.base import NODES
from kubelite.provision.providers.vagrant import POOL, vagrant_home
from tests.integration.test_cluster_libvirt import Cluster, _virsh, libvirtd  # noqa: F401 - a fixture

NAME = "klvag"
NODE_NET, POD_NET, SVC_NET = "10.243.0.0/24", "10.243.64.0/18", "10.243.128.0/20"
SPEC: dict[str, Any] = {
    "name": NAME, "provider": "vagrant", "masters": 1, "workers": 0, "runtime": "runc",
    "resources": {"cpu": 1, "memory": "1Gi"}, "images": [],
    "network": {"nodes": NODE_NET, "pods": POD_NET, "services": SVC_NET},
}  # fmt: skip


class VagrantCluster(Cluster):
    """The libvirt test's CLI runner, reaching the VM the way Vagrant says to (its ssh-config)."""

    @property
    def dir(self) -> Path:
        return self.state_root / NAME

    def machines(self) -> list[dict[str, Any]]:
        machines: list[dict[str, Any]] = json.loads((self.dir / "machines.json").read_text())
        return machines

    def ssh(self, node: str, command: str) -> str:
        config = self.dir / "machines" / node / "ssh-config"
        proc = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", node, command],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def api(self) -> ApiClient:
        return ApiClient(load_kubeconfig(str(self.dir / "kubeconfig")), timeout=10)


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        os.environ.get("KUBELITE_VAGRANT_TEST") == "0", reason="KUBELITE_VAGRANT_TEST=0 leaves the Vagrant VM out"
    ),
]


@pytest.fixture(scope="module")
def cluster(libvirtd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VagrantCluster]:  # noqa: F811
    base = tmp_path_factory.mktemp("vagrant")
    spec_file = base / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    c = VagrantCluster(base / "state", spec_file)
    try:
        yield c
    finally:
        if (c.state_root / NAME / "spec.yaml").exists():  # a failed test must not leave VMs behind
            c.cli("down", NAME, timeout=300)


def _vagrant(env_file: Path, *args: str) -> str:
    """vagrant with the environment kubelite wrote for the cluster (as the README tells a user to)."""
    cmd = f"set -a; . {shlex.quote(str(env_file))}; set +a; exec vagrant {shlex.join(args)}"
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _leftovers(state_root: Path) -> list[str]:
    found = [f"domain {d}" for d in _virsh("list", "--all", "--name").stdout.split() if d.startswith(f"{NAME}-")]
    found += [f"network {n}" for n in _virsh("net-list", "--all", "--name").stdout.split() if n == f"kubelite-{NAME}"]
    found += [f"volume {v}" for v in _virsh("vol-list", POOL).stdout.split() if v.startswith(f"{NAME}-")]
    if subprocess.run(["ip", "link", "show", f"klc-{NAME}"], capture_output=True).returncode == 0:
        found.append(f"bridge klc-{NAME}")
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    found += [f"route {line}" for line in routes.splitlines() if "10.243." in line]
    found += [f"process {p}" for p in subprocess.run(["pgrep", "-f", f"guest={NAME}-"], capture_output=True,
                                                     text=True).stdout.split()]  # fmt: skip
    status = subprocess.run(["vagrant", "global-status"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "VAGRANT_HOME": str(vagrant_home()), "VAGRANT_CHECKPOINT_DISABLE": "1"})  # fmt: skip
    found += [f"vagrant machine {line.split()[1]}" for line in status.stdout.splitlines() if f" {NAME}-" in line]
    if (state_root / NAME).exists():
        found.append(f"state dir {state_root / NAME}")
    return found


def test_vagrant_up_and_deploy_bring_the_master_ready(cluster: VagrantCluster) -> None:
    out = cluster.ok("up", str(cluster.spec_file))
    for phase in ("image", "machines", "packages", "control plane", "agents", "Ready"):
        assert f"✓ {phase}" in out
    (master,) = cluster.machines()
    name, address = master["name"], master["address"]
    # Vagrant made and runs it: its own status says so, and its ssh-config is where the deploy went.
    status = _vagrant(cluster.dir / "vagrant.env", "status", "--machine-readable")
    assert f",{name},state,running" in status
    assert f"HostName {address}" in (cluster.dir / "machines" / name / "ssh-config").read_text()
    assert _virsh("domstate", name).stdout.strip() == "running"
    # A VM with its own kernel booted from the box, at the spec's address, reached with Vagrant's ssh-config.
    assert cluster.ssh(name, "uname -r") != os.uname().release
    assert cluster.ssh(name, "systemd-detect-virt --vm") in ("qemu", "kvm")
    assert address in cluster.ssh(name, "ip -4 -o addr show dev eth0")

    async def ready_nodes() -> list[str]:
        async with cluster.api() as client:
            nodes = (await client.list(NODES))["items"]
        return sorted(n["metadata"]["name"] for n in nodes
                      if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]))  # fmt: skip

    assert asyncio.run(ready_nodes()) == [name]


def test_down_leaves_nothing_behind(cluster: VagrantCluster) -> None:
    assert _leftovers(cluster.state_root)  # the check sees the running cluster
    cluster.ok("down", NAME)
    assert _leftovers(cluster.state_root) == []
