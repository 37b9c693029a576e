"""The testinfra suite (tests/infra) itself, against a real nspawn cluster of 1 master + 2 workers, as root.

One cluster for the module: ``kubelite cluster up``, then ``kubelite cluster test`` must pass with
failover exercised for real (a worker machine is powered off and comes back) and a worker added
during the run (add-node: it gets its DaemonSet pod; remove-node: the cluster is as before), and a
deliberately broken node (its agent unit stopped) must make the suite fail with a message that
names the machine and the check. The suite runs as a subprocess, as a user runs it; its output is
what is judged.

The container checks on the Docker runtime also run against a real ``kubelite agent --runtime docker``
on this machine (a private dockerd, a real API server), where a container can be broken on purpose:
they must pass on its pods, and fail, naming the machine, for a memory limit changed and a container
started behind the agent's back. (A provisioned docker-runtime cluster: test_cluster_docker.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml

from kubelite.controllers.base import PODS
from tests.conftest import start_server
from tests.dockerd import Dockerd, docker_cli, dockerd  # noqa: F401 - dockerd: the session fixture
from tests.helpers import eventually_sync, stop_processes
from tests.infra.cluster import Api, node_ready
from tests.infra.containers import isolation_problems, missing_container_problems, stray_container_problems
from tests.integration.runtime_suite import Harness, guarded_pod_cidr, require_host

ROOT = Path(__file__).resolve().parents[2]
NAME = "klinfra"
SPEC: dict[str, Any] = {
    "name": NAME, "provider": "nspawn", "masters": 1, "workers": 2, "runtime": "runc",
    "resources": {"cpu": 2, "memory": "1Gi"}, "images": ["busybox"],
    "network": {"nodes": "10.248.0.0/24", "pods": "10.248.64.0/18", "services": "10.248.128.0/20"},
}  # fmt: skip
FAILOVER_CHECKS = (
    "test_power_off_moves_deployment_pods", "test_service_keeps_answering",
    "test_statefulset_pod_follows_the_safety_rule", "test_machine_rejoins_ready",
    "test_statefulset_pod_back_with_its_data", "test_nothing_runs_twice",
)  # fmt: skip

# Needs root (machines, a bridge, routes), as CI runs it; not skipped otherwise: up fails saying so.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class Cluster:
    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root
        self.env = {**os.environ, "KUBELITE_STATE_DIR": str(state_root)}

    @property
    def dir(self) -> Path:
        return self.state_root / NAME

    def run(self, *argv: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *argv], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "kubelite", "cluster", *args, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("infra")
    spec_file = base / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    c = Cluster(base / "state")
    try:
        up = c.cli("up", str(spec_file))
        assert up.returncode == 0, f"kubelite cluster up failed:\n{up.stdout}\n{up.stderr}"
        yield c
    finally:
        if (c.dir / "spec.yaml").exists():
            c.cli("down", NAME, timeout=120)


def test_suite_passes_with_a_worker_powered_off(cluster: Cluster) -> None:
    proc = cluster.cli("test", NAME, timeout=300)
    out = proc.stdout + proc.stderr
    print(out[out.find("kubelite infrastructure report: cluster"):])  # the summary and figures, for the CI log
    assert proc.returncode == 0, f"the suite failed on a healthy cluster:\n{out[-6000:]}"
    summary = (cluster.dir / "infra-report.txt").read_text()
    for check in FAILOVER_CHECKS:
        assert f"PASS  test_failover.py::{check}" in summary, f"{check} did not pass:\n{summary}"
    for machine in (f"{NAME}-master-0", f"{NAME}-worker-0", f"{NAME}-worker-1"):
        assert f"PASS  test_nodes.py::test_agent_unit_active_and_enabled[{machine}]" in summary
        assert f"PASS  test_containers.py::test_api_pods_run_on_their_machine[{machine}]" in summary
        assert f"PASS  test_daemonsets.py::test_one_pod_of_each_daemonset_per_matching_machine[{machine}]" in summary
    # A worker was added during the run, got its DaemonSet pod, and was removed again.
    assert f"PASS  test_daemonsets.py::test_added_node_gets_one_pod_of_each_daemonset[{NAME}-worker-2]" in summary
    machines = json.loads((cluster.dir / "machines.json").read_text())
    assert sorted(m["name"] for m in machines) == [f"{NAME}-master-0", f"{NAME}-worker-0", f"{NAME}-worker-1"]
    assert yaml.safe_load((cluster.dir / "spec.yaml").read_text())["workers"] == 2
    assert "failover_seconds:" in summary and "service_errors_during_move:" in summary

    suite = ET.parse(cluster.dir / "infra-report.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")
    assert int(suite.get("tests") or 0) >= 30
    properties = {p.get("name") for p in suite.iter("property")}
    assert {"failover_seconds", "service_errors_during_move", "rejoin_seconds"} <= properties


def test_broken_node_fails_the_suite_naming_machine_and_check(cluster: Cluster) -> None:
    broken = f"{NAME}-worker-1"
    stop = cluster.cli("ssh", NAME, broken, "systemctl", "stop", "kubelite-agent", timeout=60)
    assert stop.returncode == 0, stop.stderr
    proc = cluster.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/infra/test_nodes.py", f"--cluster={NAME}",
                       "--infra-report", str(cluster.dir / "broken-report.txt"), timeout=120)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"the suite passed with the agent of {broken} stopped:\n{out[-4000:]}"
    # pytest's own line and the summary both name the check and the machine, and say what is wrong.
    assert f"FAILED tests/infra/test_nodes.py::test_agent_unit_active_and_enabled[{broken}]" in out, out[-4000:]
    assert f"{broken}: kubelite-agent.service is not running" in out, out[-4000:]
    summary = (cluster.dir / "broken-report.txt").read_text()
    assert f"FAIL  test_nodes.py::test_agent_unit_active_and_enabled[{broken}]" in summary
    # Only the broken machine fails that check.
    for healthy in (f"{NAME}-master-0", f"{NAME}-worker-0"):
        assert f"PASS  test_nodes.py::test_agent_unit_active_and_enabled[{healthy}]" in summary


# -- the container checks on the Docker runtime ------------------------------------------------------


class DockerNode:
    """A real agent with the docker runtime on this machine, and the settings file the suite reads."""

    def __init__(self, tmp: Path, d: Dockerd, cidr: str) -> None:
        self.node = f"infra-docker-{uuid.uuid4().hex[:6]}"
        self.data_dir = tmp / "agent"
        self.env_file = tmp / "agent.env"
        self.env_file.write_text(f"KUBELITE_RUNTIME=docker\nKUBELITE_DATA_DIR={self.data_dir}\n"
                                 f"KUBELITE_NODE_NAME={self.node}\nDOCKER_HOST={d.host}\n")  # fmt: skip
        self.server = start_server(tmp / "server", extra_args=["--cluster-cidr", cidr])
        self.log = tmp / "agent.log"
        self.agent: subprocess.Popen[bytes] | None = None
        self.cidr = cidr
        self.dockerd = d

    def start(self) -> None:
        tar = self.data_dir.parent / "busybox.tar"
        for args in (["image", "build", "busybox", "-o", str(tar)], ["image", "import", str(tar), "--data-dir", str(self.data_dir)]):
            r = subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        argv = [sys.executable, "-m", "kubelite", "agent", "--server", self.server.url, "--node-name", self.node,
                "--runtime", "docker", "--data-dir", str(self.data_dir), "--pod-cidr", self.cidr, "--cluster-cidr",
                self.cidr, "--agent-port", "0", "--no-proxy", "--no-dns", "--heartbeat-interval", "1"]  # fmt: skip
        with open(self.log, "ab") as log:
            self.agent = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                          env={**os.environ, "DOCKER_HOST": self.dockerd.host})  # fmt: skip

    def stop(self) -> None:
        if self.agent is not None:
            stop_processes(self.agent, timeout=20)
        self.server.stop()


@pytest.fixture(scope="module")
def docker_node(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerNode]:  # noqa: F811
    require_host("docker")
    with guarded_pod_cidr(100, 199) as cidr:
        node = DockerNode(tmp_path_factory.mktemp("infra-docker"), dockerd, cidr)
        try:
            node.start()
            yield node
        finally:
            node.stop()
            # A stopped agent leaves its pods running (as kubelet does): the node's reset removes
            # containers, sandboxes with their network namespaces, the bridge and cgroups.
            assert Harness("docker", dockerd).reset_node(node.data_dir, node.node, cidr) == []


def test_container_checks_judge_docker_pods_from_the_machine(docker_node: DockerNode) -> None:
    api = Api(docker_node.server.kubeconfig)
    host = testinfra.get_host("local://")
    node, env = docker_node.node, str(docker_node.env_file)
    try:
        # Bound to a registered node only: the pod GC deletes pods bound to a node that does not exist.
        eventually_sync(lambda: node_ready(api.nodes().get(node) or {}), timeout=30, what=f"Node {node} Ready")
        pod = {"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:latest", "command": ["sleep", "100000"],
                            "resources": {"limits": {"memory": "64Mi"}}}]}}  # fmt: skip
        api.run(api.client.create(PODS, pod, "default"))

        def running() -> dict[str, Any] | None:
            p = api.get(PODS, "web", "default")
            return p if p.get("status", {}).get("phase") == "Running" else None

        p = eventually_sync(running, timeout=60, what=f"pod web Running on {node} (agent log: {docker_node.log})")
        cid = p["status"]["containerStatuses"][0]["containerID"]
        assert cid.startswith("docker://"), cid
        # Healthy: the suite's checks find the pod's container (and its sandbox) as the API says.
        assert missing_container_problems(host, node, api, env) == []
        assert isolation_problems(host, node, api, env) == []
        assert stray_container_problems(host, node, api, env) == []

        # A memory limit changed behind the agent's back.
        docker_cli(docker_node.dockerd, "update", "--memory", "96m", "--memory-swap", "96m", cid.split("://", 1)[1])
        problems = isolation_problems(host, node, api, env)
        assert problems == [f"container c of default/web: cgroup memory limit {96 * 2**20}, pod asks 64Mi"]

        # A container the agent did not start, labelled as a pod's on this node: no such pod in the API.
        image = docker_cli(docker_node.dockerd, "inspect", "-f", "{{.Image}}", cid.split("://", 1)[1]).strip()
        ghost = docker_cli(docker_node.dockerd, "run", "-d", "--network", "none", "--label", f"io.kubelite.node={node}",
                   "--label", "io.kubernetes.pod.uid=no-such-uid", "--label", "io.kubernetes.pod.namespace=default",
                   "--label", "io.kubernetes.pod.name=ghost", "--label", "io.kubernetes.container.name=c",
                   image, "sleep", "100000").strip()  # fmt: skip
        problems = stray_container_problems(host, node, api, env)
        assert len(problems) == 1 and f"of pod default/ghost runs on {node}: no such pod in the API" in problems[0], problems
        docker_cli(docker_node.dockerd, "rm", "-f", ghost)  # ours, not the agent's: the node's reset would not know it
    finally:
        api.close()
