"""The testinfra suite (tests/infra) itself, against a real nspawn cluster of 1 master + 2 workers, as root.

One cluster for the module: ``kubelite cluster up``, then ``kubelite cluster test`` must pass with
failover exercised for real (a worker machine is powered off and comes back), and a deliberately
broken node (its agent unit stopped) must make the suite fail with a message that names the machine
and the check. The suite runs as a subprocess, as a user runs it; its output is what is judged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

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
