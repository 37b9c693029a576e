"""`kubelite cluster up` with ``runtime: docker`` on nspawn machines (1 master + 1 worker), as root.

One cluster for the module: up brings both nodes Ready with the docker runtime (a second up changes
nothing); each machine runs the dockerd the deploy configured (no docker0 bridge, cgroupfs, overlay2
under /var/lib/kubelite, ordered before the agent); a Deployment and a DaemonSet run as Docker
containers on the machines; and the testinfra suite's node and container checks (tests/infra,
failover left out: one worker) pass on it, judging each machine through ``docker ps``/``docker
inspect``. The cluster is removed at the end. The node image (cached under .cache/) is the one the
runc clusters use.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.client import ApiClient, load_kubeconfig
from kubelite.controllers.base import DAEMONSETS, DEPLOYMENTS, NODES, PODS
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
NAME = "kldocker"
SPEC: dict[str, Any] = {
    "name": NAME, "provider": "nspawn", "masters": 1, "workers": 1, "runtime": "docker",
    "resources": {"cpu": 2, "memory": "1Gi"}, "images": ["busybox"],
    "network": {"nodes": "10.233.0.0/24", "pods": "10.233.64.0/18", "services": "10.233.128.0/20"},
}  # fmt: skip
MASTER, WORKER = f"{NAME}-master-0", f"{NAME}-worker-0"
_SLEEPER = {"containers": [{"name": "c", "image": "busybox:latest", "command": ["sleep", "3600"],
                            "resources": {"limits": {"memory": "48Mi"}}}],
            "terminationGracePeriodSeconds": 1}  # fmt: skip
DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello", "namespace": "default"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "hello"}},
             "template": {"metadata": {"labels": {"app": "hello"}}, "spec": _SLEEPER}},
}  # fmt: skip
DAEMONSET = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "probe", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "probe"}},
             # Every node, the master too once the infra suite has tainted it (the suite checks this DaemonSet).
             "template": {"metadata": {"labels": {"app": "probe"}},
                          "spec": {**_SLEEPER, "tolerations": [{"operator": "Exists"}]}}},
}  # fmt: skip

# Needs root (machines, a bridge, routes): as CI runs it. Not skipped otherwise: up fails saying so.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class Cluster:
    def __init__(self, state_root: Path, spec_file: Path) -> None:
        self.spec_file = spec_file
        self.dir = state_root / NAME
        self.env = {**os.environ, "KUBELITE_STATE_DIR": str(state_root)}

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelite", "cluster", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def ok(self, *args: str, timeout: float = 400) -> str:
        proc = self.cli(*args, timeout=timeout)
        assert proc.returncode == 0, f"kubelite cluster {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def on(self, node: str, command: str) -> str:
        """``command`` run on ``node`` through `kubelite cluster ssh` (the provider's way in)."""
        return self.ok("ssh", NAME, node, command, timeout=60)

    def api(self) -> ApiClient:
        return ApiClient(load_kubeconfig(str(self.dir / "kubeconfig")), timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("docker-cluster")
    spec_file = base / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    c = Cluster(base / "state", spec_file)
    try:
        yield c
    finally:
        if (c.dir / "spec.yaml").exists():
            c.cli("down", NAME, timeout=120)


def test_up_brings_docker_nodes_ready(cluster: Cluster) -> None:
    out = cluster.ok("up", str(cluster.spec_file))
    assert f"cluster {NAME}: 2 node(s) Ready" in " ".join(out.split()), out

    async def nodes() -> dict[str, Any]:
        async with cluster.api() as client:
            return {n["metadata"]["name"]: n for n in (await client.list(NODES))["items"]}

    found = asyncio.run(nodes())
    assert sorted(found) == [MASTER, WORKER]
    for name, node in found.items():
        ready = [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready == ["True"], f"{name}: {node['status']['conditions']}"
        # The agent reports the engine it runs pods with: dockerd's version, not runc's.
        runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"]
        assert runtime.startswith("docker://"), f"{name} runs pods with {runtime}"


def test_second_up_changes_nothing(cluster: Cluster) -> None:
    # The docker deploy converges too: a restart of dockerd for unchanged settings would be a change.
    out = cluster.ok("up", str(cluster.spec_file))
    assert f"cluster {NAME}: 2 node(s) Ready, no changes" in " ".join(out.split()), out


@pytest.mark.parametrize("machine", [MASTER, WORKER])
def test_dockerd_configured_for_kubelite(cluster: Cluster, machine: str) -> None:
    fmt = "{{.Driver}} {{.CgroupDriver}} {{.DockerRootDir}} {{.DefaultRuntime}}"
    out = cluster.on(machine, f"systemctl is-active docker containerd; systemctl is-enabled docker; "
                              f"docker info --format '{fmt}'; ip -o link show docker0 >/dev/null 2>&1 && echo docker0; "
                              "systemctl show -p Requires -p After kubelite-agent")  # fmt: skip
    lines = out.splitlines()
    assert lines[:3] == ["active", "active", "enabled"], f"{machine}: docker/containerd units: {out}"
    # overlay2: /var/lib/kubelite is a real host directory bound into the machine (not its overlay root);
    # the wrapper runtime adds runc's --no-new-keyring (nspawn denies keyctl).
    assert lines[3] == "overlay2 cgroupfs /var/lib/kubelite/docker kubelite-runc", f"{machine}: docker info: {lines[3]}"
    assert "docker0" not in lines, f"{machine}: dockerd made its docker0 bridge (kubelite does the pod network)"
    unit = dict(line.split("=", 1) for line in lines[4:] if "=" in line)
    assert "docker.service" in unit["Requires"].split() and "docker.service" in unit["After"].split(), unit


def test_deployment_and_daemonset_run_as_docker_containers(cluster: Cluster) -> None:
    async def apply_and_wait() -> list[dict[str, Any]]:
        async with cluster.api() as client:
            await client.create(DEPLOYMENTS, DEPLOYMENT, namespace="default")
            await client.create(DAEMONSETS, DAEMONSET, namespace="default")

            async def running() -> list[dict[str, Any]] | None:
                pods = (await client.list(PODS, namespace="default"))["items"]
                up = [p for p in pods if p["status"].get("phase") == "Running"
                      and p["metadata"]["labels"].get("app") in ("hello", "probe")]  # fmt: skip
                hello = [p for p in up if p["metadata"]["labels"]["app"] == "hello"]
                probe_nodes = sorted(p["spec"]["nodeName"] for p in up if p["metadata"]["labels"]["app"] == "probe")
                return up if len(hello) == 2 and probe_nodes == [MASTER, WORKER] else None

            pods: list[dict[str, Any]] = await eventually(running, timeout=120, what="2 hello pods and a probe pod "
                                                          "per node Running", interval=1)  # fmt: skip
            return pods

    pods = asyncio.run(apply_and_wait())
    for pod in pods:
        name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
        cid = pod["status"]["containerStatuses"][0]["containerID"]
        assert cid.startswith("docker://"), f"{name}: containerID {cid}"
        # The machine's own dockerd runs it, with the pod's memory limit, under kubelite's cgroup parent.
        fmt = "{{.State.Running}} {{.HostConfig.Memory}} {{.HostConfig.CgroupParent}}"
        seen = cluster.on(node, f"docker inspect --format '{fmt}' {cid.removeprefix('docker://')}").split()
        assert seen[:2] == ["true", str(48 * 2**20)], f"{name} on {node}: {seen}"
        assert seen[2].startswith(f"/kubelite/{node}/"), f"{name} on {node}: cgroup parent {seen[2]}"


def test_infra_suite_node_and_container_checks_pass(cluster: Cluster) -> None:
    # One worker: failover (a worker powered off) has nowhere to move the pods; no node is added.
    proc = cluster.cli("test", NAME, "--no-add-node", "-k", "not failover", timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the infra suite failed on the docker cluster:\n{out[-6000:]}"
    summary = (cluster.dir / "infra-report.txt").read_text()
    for machine in (MASTER, WORKER):
        for check in ("test_nodes.py::test_agent_unit_active_and_enabled", "test_nodes.py::test_pod_bridge_and_routes",
                      "test_containers.py::test_api_pods_run_on_their_machine",
                      "test_containers.py::test_containers_isolated_and_limited",
                      "test_containers.py::test_no_container_without_a_pod_bound_here"):  # fmt: skip
            assert f"PASS  {check}[{machine}]" in summary, f"{check}[{machine}] did not pass:\n{summary}"
    assert "FAIL  " not in summary, summary
    machines = json.loads((cluster.dir / "machines.json").read_text())
    assert sorted(m["name"] for m in machines) == [MASTER, WORKER]
