"""`kubelite cluster up` with the libvirt provider: 1 master + 1 worker as real VMs (TCG on this machine).

The module starts its own virtlogd and libvirtd (this machine has no init that would) unless a
libvirtd already answers, and stops the ones it started by their PIDs. It checks the smoke test of
the nspawn provider on VMs: both nodes Ready, a pod Running on the worker, each node running its own
kernel; then the testinfra suite's node, container and DaemonSet checks pass on the VMs
(``kubelite cluster test``; failover needs a second worker and adding a TCG VM costs minutes, so
both are left out: see tests/infra/README.md); then `down` leaves no domain, network, bridge, route
or state behind. The guest image is cached under .cache/images (first build ~3 min, not part of the
figures).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.client import ApiClient, load_kubeconfig
from kubelite.controllers.base import NODES, PODS
from kubelite.provision.libvirtd import libvirtd_running
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
NAME = "klvirt"
NODE_NET, POD_NET, SVC_NET = "10.246.0.0/24", "10.246.64.0/18", "10.246.128.0/20"
SPEC: dict[str, Any] = {
    "name": NAME, "provider": "libvirt", "masters": 1, "workers": 1, "runtime": "runc",
    # One vCPU each: under TCG a vCPU is a host thread, and this machine has two cores for both VMs.
    "resources": {"cpu": 1, "memory": "1Gi"}, "images": ["busybox"],
    "network": {"nodes": NODE_NET, "pods": POD_NET, "services": SVC_NET},
}  # fmt: skip
SOCKET = Path("/run/libvirt/libvirt-sock")

# Needs root, libvirtd and QEMU (scripts/setup.sh installs them). Not skipped otherwise: up fails saying so.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """libvirtd and virtlogd started here (by hand, as this machine needs), stopped by PID at the end."""
    with libvirtd_running(tmp_path_factory.mktemp("libvirt")):
        yield


class Cluster:
    def __init__(self, state_root: Path, spec_file: Path) -> None:
        self.state_root = state_root
        self.spec_file = spec_file
        self.env = {**os.environ, "KUBELITE_STATE_DIR": str(state_root)}

    def cli(self, *args: str, timeout: float = 700) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelite", "cluster", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def ok(self, *args: str) -> str:
        proc = self.cli(*args)
        assert proc.returncode == 0, f"kubelite cluster {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def machines(self) -> list[dict[str, Any]]:
        machines: list[dict[str, Any]] = json.loads((self.state_root / NAME / "machines.json").read_text())
        return machines

    def ssh(self, address: str, command: str) -> str:
        d = self.state_root / NAME
        proc = subprocess.run(["ssh", "-i", str(d / "id_ed25519"), "-o", f"UserKnownHostsFile={d / 'known_hosts'}",
                               "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes",
                               f"root@{address}", command], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def api(self) -> ApiClient:
        return ApiClient(load_kubeconfig(str(self.state_root / NAME / "kubeconfig")), timeout=10)


@pytest.fixture(scope="module")
def cluster(libvirtd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("vcluster")
    spec_file = base / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    c = Cluster(base / "state", spec_file)
    try:
        yield c
    finally:
        if (c.state_root / NAME / "spec.yaml").exists():  # a failed test must not leave VMs behind
            c.cli("down", NAME, timeout=180)


def _leftovers(state_root: Path) -> list[str]:
    found = [f"domain {d}" for d in _virsh("list", "--all", "--name").stdout.split() if d.startswith(f"{NAME}-")]
    found += [f"network {n}" for n in _virsh("net-list", "--all", "--name").stdout.split() if n == f"kubelite-{NAME}"]
    if subprocess.run(["ip", "link", "show", f"klc-{NAME}"], capture_output=True).returncode == 0:
        found.append(f"bridge klc-{NAME}")
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    found += [f"route {line}" for line in routes.splitlines() if "10.246." in line]
    found += [f"process {p}" for p in subprocess.run(["pgrep", "-f", f"guest={NAME}-"], capture_output=True,
                                                     text=True).stdout.split()]  # fmt: skip
    if (state_root / NAME).exists():
        found.append(f"state dir {state_root / NAME}")
    return found


def test_up_vms_ready_and_a_pod_runs_on_the_worker(cluster: Cluster) -> None:
    out = cluster.ok("up", str(cluster.spec_file))
    for phase in ("image", "machines", "packages", "control plane", "agents", "Ready"):
        assert f"✓ {phase}" in out
    machines = {m["role"]: m for m in cluster.machines()}
    assert sorted(machines) == ["master", "worker"]
    # Real VMs: a libvirt domain each, running a kernel of its own (the guest image's, not this host's).
    for m in machines.values():
        assert _virsh("domstate", m["name"]).stdout.strip() == "running"
        assert cluster.ssh(m["address"], "uname -r") != os.uname().release
        assert cluster.ssh(m["address"], "systemd-detect-virt --vm") in ("qemu", "kvm")
    worker = machines["worker"]["name"]

    async def body() -> None:
        async with cluster.api() as client:
            nodes = (await client.list(NODES))["items"]
            ready = sorted(n["metadata"]["name"] for n in nodes
                           if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]))  # fmt: skip
            assert ready == sorted(m["name"] for m in machines.values())
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smoke", "namespace": "default"},
                   "spec": {"nodeSelector": {"kubernetes.io/hostname": worker}, "terminationGracePeriodSeconds": 1,
                            "containers": [{"name": "c", "image": "busybox:latest", "command": ["sleep", "3600"]}]}}  # fmt: skip
            await client.create(PODS, pod, "default")

            async def running_on_worker() -> bool:
                p = await client.get(PODS, "smoke", "default")
                return bool(p["spec"].get("nodeName") == worker and p["status"].get("phase") == "Running")

            await eventually(running_on_worker, timeout=180, what=f"the pod Running on {worker}", interval=2)

    asyncio.run(body())


def test_infra_suite_node_and_container_checks_pass_on_the_vms(cluster: Cluster) -> None:
    proc = cluster.cli("test", NAME, "--no-add-node", timeout=600)
    out = proc.stdout + proc.stderr
    print(out[out.find("kubelite infrastructure report: cluster"):])  # the summary, for the CI log
    assert proc.returncode == 0, f"the suite failed on the VMs:\n{out[-6000:]}"
    summary = (cluster.state_root / NAME / "infra-report.txt").read_text()
    for m in cluster.machines():
        for check in ("test_nodes.py::test_agent_unit_active_and_enabled", "test_nodes.py::test_sysctls",
                      "test_nodes.py::test_kernel_modules", "test_nodes.py::test_pod_bridge_and_routes",
                      "test_nodes.py::test_kubelite_version_is_the_deployed_one",
                      "test_containers.py::test_api_pods_run_on_their_machine",
                      "test_containers.py::test_containers_isolated_and_limited",
                      "test_containers.py::test_no_container_without_a_pod_bound_here",
                      "test_daemonsets.py::test_one_pod_of_each_daemonset_per_matching_machine"):  # fmt: skip
            # A VM loads its own kernel modules: the check that an nspawn machine skips runs here.
            assert f"PASS  {check}[{m['name']}]" in summary, f"{check}[{m['name']}] did not pass:\n{summary}"
    assert "SKIP  test_failover.py::test_power_off_moves_deployment_pods" in summary  # one worker: nowhere to move
    suite = ET.parse(cluster.state_root / NAME / "infra-report.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("errors")) == ("0", "0")


def test_down_leaves_nothing_behind(cluster: Cluster) -> None:
    assert _leftovers(cluster.state_root)  # the check sees the running cluster
    cluster.ok("down", NAME)
    assert _leftovers(cluster.state_root) == []
