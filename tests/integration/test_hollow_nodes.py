"""Hollow nodes against a real API server: registration, leases, pod lifecycle, paused heartbeats, the CLI."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kubelite.agent import HollowNodes
from kubelite.api.registry import by_path
from kubelite.client import ApiClient, ApiError
from tests.helpers import eventually as polled
from tests.helpers import stop_processes

NODES = by_path("", "v1", "nodes")
PODS = by_path("", "v1", "pods")
LEASES = by_path("coordination.k8s.io", "v1", "leases")
assert NODES and PODS and LEASES


# A hollow node still coming up answers NotFound or fails an assertion: that is "not yet".
eventually = functools.partial(polled, interval=0.1, retry_on=(AssertionError, ApiError))


def _ready(node: dict[str, Any]) -> bool:
    conds = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
    return conds.get("Ready", {}).get("status") == "True"


@pytest.fixture
async def hollow(inproc_api: Any, tmp_path: Path) -> Any:
    nodes = HollowNodes(inproc_api.client, "hollow", 3, data_dir=tmp_path, heartbeat_interval=0.3,
                         status_update_interval=1, fencing_period=30)
    await nodes.start()
    try:
        yield nodes
    finally:
        await nodes.stop()


async def test_nodes_register_ready_with_renewed_leases(inproc_api: Any, hollow: HollowNodes) -> None:
    client: ApiClient = inproc_api.client
    nodes = (await client.list(NODES))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["hollow-0", "hollow-1", "hollow-2"]
    for node in nodes:
        assert _ready(node)
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == node["metadata"]["name"]
        assert node["status"]["capacity"] == {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "fake://0.1"
    first = await client.get(LEASES, "hollow-1", "kube-node-lease")
    assert first["spec"]["holderIdentity"] == "hollow-1"

    async def renewed() -> bool:
        lease = await client.get(LEASES, "hollow-1", "kube-node-lease")
        return bool(lease["spec"]["renewTime"] > first["spec"]["renewTime"])

    await eventually(renewed)


async def test_pod_runs_then_is_finalised_on_delete(inproc_api: Any, hollow: HollowNodes) -> None:
    client: ApiClient = inproc_api.client
    pod = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "nodeName": "hollow-2",
            "initContainers": [{"name": "setup", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}],
        },
    }
    await client.create(PODS, pod)

    async def running() -> dict[str, Any] | None:
        p = await client.get(PODS, "web", "default")
        status = p.get("status", {})
        conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
        if status.get("phase") == "Running" and conds.get("Ready") == "True":
            return p
        return None

    p = await eventually(running)
    status = p["status"]
    assert {c["type"] for c in status["conditions"]} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    assert [c["name"] for c in status["containerStatuses"]] == ["app", "side"]
    for cs in status["containerStatuses"]:
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        assert cs["containerID"].startswith("fake://")
        assert "running" in cs["state"]
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert status["podIP"] and status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] and status["startTime"]
    agent = hollow.agent("hollow-2")
    assert agent.pods.record("default/web") is not None

    # Graceful delete: the server only marks it; the agent stops it and deletes it for good.
    await client.delete(PODS, "web", "default")

    async def gone() -> bool:
        try:
            await client.get(PODS, "web", "default")
        except ApiError as e:
            return e.code == 404
        return False

    await eventually(gone)
    assert agent.pods.record("default/web") is None
    assert await agent.runtime.list_containers() == []
    assert await agent.runtime.list_pod_sandboxes() == []


async def test_status_written_only_on_change(inproc_api: Any, hollow: HollowNodes) -> None:
    client: ApiClient = inproc_api.client
    await client.create(PODS, {"metadata": {"name": "quiet", "namespace": "default"},
                               "spec": {"nodeName": "hollow-0", "containers": [{"name": "c", "image": "busybox"}]}})

    async def running() -> bool:
        p = await client.get(PODS, "quiet", "default")
        return p.get("status", {}).get("phase") == "Running"

    await eventually(running)
    agent = hollow.agent(0)
    writes = agent.pods.status_writes
    before = await client.get(PODS, "quiet", "default")
    # Make the agent sync the pod again several times: nothing changed, so nothing is written.
    for _ in range(5):
        hollow.dispatcher.enqueue(["default/quiet"])
        await asyncio.sleep(0.05)
    await client.patch(PODS, "quiet", {"metadata": {"labels": {"touched": "yes"}}}, "default")
    await asyncio.sleep(0.5)
    assert agent.pods.status_writes == writes
    after = await client.get(PODS, "quiet", "default")
    assert after["status"] == before["status"]


async def test_paused_heartbeat_stops_lease_renewal(inproc_api: Any, hollow: HollowNodes) -> None:
    client: ApiClient = inproc_api.client
    hollow.pause_heartbeat("hollow-0")
    await asyncio.sleep(0.5)  # let a renewal already in flight land
    frozen = (await client.get(LEASES, "hollow-0", "kube-node-lease"))["spec"]["renewTime"]
    other = (await client.get(LEASES, "hollow-1", "kube-node-lease"))["spec"]["renewTime"]

    async def other_renewed() -> bool:
        lease = await client.get(LEASES, "hollow-1", "kube-node-lease")
        return bool(lease["spec"]["renewTime"] > other)

    await eventually(other_renewed)
    await eventually(other_renewed)
    assert (await client.get(LEASES, "hollow-0", "kube-node-lease"))["spec"]["renewTime"] == frozen

    hollow.resume_heartbeat("hollow-0")

    async def resumed() -> bool:
        lease = await client.get(LEASES, "hollow-0", "kube-node-lease")
        return bool(lease["spec"]["renewTime"] > frozen)

    await eventually(resumed)


async def test_fencing_stops_containers_and_resync_restarts_them(inproc_api: Any, tmp_path: Path) -> None:
    client: ApiClient = inproc_api.client
    nodes = HollowNodes(client, "fence", 1, data_dir=tmp_path, heartbeat_interval=0.2, fencing_period=1)
    await nodes.start()
    try:
        await client.create(PODS, {"metadata": {"name": "db", "namespace": "default"},
                                   "spec": {"nodeName": "fence-0", "containers": [{"name": "c", "image": "busybox"}]}})

        async def restart_count(n: int) -> bool:
            p = await client.get(PODS, "db", "default")
            cs = p.get("status", {}).get("containerStatuses") or [{}]
            return bool(p["status"].get("phase") == "Running" and cs[0].get("restartCount") == n
                        and "running" in cs[0].get("state", {}))

        await eventually(lambda: restart_count(0))
        agent = nodes.agent(0)
        nodes.pause_heartbeat(0)

        async def fenced() -> bool:
            containers = await agent.runtime.list_containers()
            return agent.fenced and all(c.state == "exited" for c in containers)

        await eventually(fenced)
        nodes.resume_heartbeat(0)
        await eventually(lambda: restart_count(1))
        assert not agent.fenced
    finally:
        await nodes.stop()


async def test_deleted_node_registers_again(inproc_api: Any, hollow: HollowNodes) -> None:
    client: ApiClient = inproc_api.client
    old_uid = (await client.get(NODES, "hollow-1"))["metadata"]["uid"]
    await client.delete(NODES, "hollow-1")

    async def back() -> bool:
        node = await client.get(NODES, "hollow-1")
        return node["metadata"]["uid"] != old_uid and _ready(node)

    # Noticed at the next Node status post (every status_update_interval).
    await eventually(back)


def _cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", "agent", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "KUBECONFIG": "/nonexistent"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runtime", "containerd"], "error: unknown runtime 'containerd'"),
        (["--runtime", "fake", "--agent-port", "70000"], "error: --agent-port 70000 is out of range (0-65535)"),
        (["--runtime", "fake", "--node-taints", "dedicated=gpu"], "error: invalid taint 'dedicated=gpu'"),
        (["--runtime", "fake", "--node-labels", "bad label=x"], "error: invalid label key 'bad label'"),
    ],
)
def test_cli_bad_flags_fail_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = _cli("--server", "http://127.0.0.1:1", "--node-name", "n", "--data-dir", str(tmp_path), *args)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr


def test_cli_hollow_nodes_register(apiserver: Any, tmp_path: Path) -> None:
    log = open(tmp_path / "agent.log", "wb")  # closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubelite", "agent", "--runtime", "fake", "--hollow-count", "2",
         "--server", apiserver.url, "--node-name", "cli-hollow", "--data-dir", str(tmp_path / "agent")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        async def registered() -> list[str] | None:
            async with ApiClient(apiserver.url) as client:
                names = sorted(n["metadata"]["name"] for n in (await client.list(NODES))["items"]
                               if n["metadata"]["name"].startswith("cli-hollow-"))
                lease = await client.get(LEASES, "cli-hollow-1", "kube-node-lease")
                assert lease["spec"]["leaseDurationSeconds"] == 40
                return names if len(names) == 2 else None

        deadline = time.monotonic() + 15
        names = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                names = asyncio.run(registered())
            except (AssertionError, ApiError):
                names = None
            if names:
                break
            time.sleep(0.2)
        assert names == ["cli-hollow-0", "cli-hollow-1"], (tmp_path / "agent.log").read_text()
    finally:
        stop_processes(proc)
        log.close()
    assert proc.returncode == 0, (tmp_path / "agent.log").read_text()
