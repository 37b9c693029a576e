"""The node agent's acceptance: a real `kubelite server` and a real `kubelite agent` process, per runtime.

One server and one agent per runtime (runc, then docker against a private dockerd) are shared by
the module's tests; busybox comes from `kubelite image build busybox` + `kubelite image import`.
The node's pod CIDR is a free 10.244.N.0/24 with an ``unreachable`` guard route under it, so pod
traffic goes to the node bridge or nowhere. At the end the node is reset and nothing of it may be
left on the host.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from kubelite.client import ApiClient, ApiError
from kubelite.controllers.base import CONFIGMAPS, PODS, STATEFULSETS
from tests.conftest import ServerProcess, start_server
from tests.dockerd import docker_cli, dockerd  # noqa: F401 - dockerd: the session fixture of the docker agent
from tests.helpers import eventually, stop_processes
from tests.integration.runtime_suite import (
    Harness,
    cgroup_of,
    cgroup_value,
    guarded_pod_cidr,
    http_get,
    require_host,
)

pytestmark = pytest.mark.slow
Obj = dict[str, Any]
NS = "default"
IMAGE = "busybox:latest"  # what `kubelite image build busybox` names it


def kubelite(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tar = tmp_path_factory.mktemp("image") / "busybox.tar"
    r = kubelite("image", "build", "busybox", "-o", str(tar))
    assert r.returncode == 0, r.stderr
    return tar


@dataclass
class Cluster:
    harness: Harness
    server: ServerProcess
    cidr: str
    node: str
    data_dir: Path
    tmp: Path
    agent: subprocess.Popen[bytes] | None = None
    agent_starts: list[float] = field(default_factory=list)

    @property
    def runtime(self) -> str:
        return self.harness.name

    def start_agent(self) -> None:
        args = [sys.executable, "-m", "kubelite", "agent", "--server", self.server.url, "--node-name", self.node,
                "--runtime", self.runtime, "--data-dir", str(self.data_dir), "--pod-cidr", self.cidr,
                "--cluster-cidr", self.cidr, "--agent-port", "0", "--no-proxy", "--no-dns",
                "--heartbeat-interval", "1"]
        with open(self.tmp / "agent.log", "ab") as log:
            self.agent = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                          env={**os.environ, **self.harness.env})
        self.agent_starts.append(time.time())
        self.wait_node_ready()

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        if self.agent is not None:
            stop_processes(self.agent, sig=sig, timeout=20)
        self.agent = None

    def log(self) -> str:
        return (self.tmp / "agent.log").read_text(errors="replace")[-4000:]

    def _get(self, path: str) -> Obj:
        with urllib.request.urlopen(f"{self.server.url}{path}", timeout=5) as r:
            data: Obj = json.loads(r.read())
            return data

    def wait_node_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        since = self.agent_starts[-1] - 1
        while time.monotonic() < deadline:
            assert self.agent is not None and self.agent.poll() is None, f"the agent exited:\n{self.log()}"
            try:
                node = self._get(f"/api/v1/nodes/{self.node}")
                lease = self._get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}")
            except OSError:
                node, lease = {}, {}
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in (node.get("status") or {}).get("conditions") or [])
            renewed = str((lease.get("spec") or {}).get("renewTime") or "")
            if ready and renewed and _epoch(renewed) >= since:
                return
            time.sleep(0.1)
        raise AssertionError(f"node {self.node} not ready after {timeout}s:\n{self.log()}")

    # --- the runtime's own view of the node, not the agent's ---

    def runtime_view(self) -> dict[str, str]:
        """id -> state of every container (docker: sandboxes too) the runtime holds for this node."""
        if self.harness.dockerd is not None:
            out = docker_cli(self.harness.dockerd, "ps", "-a", "--no-trunc", "--filter",
                             f"label=io.kubelite.node={self.node}", "--format", "{{.ID}} {{.State}}")
            return dict(line.split(" ", 1) for line in out.splitlines())
        out = subprocess.run(["runc", "--root", str(self.data_dir / "runc"), "list", "--format", "json"],
                             capture_output=True, text=True, check=True).stdout
        view = {c["id"]: c["status"] for c in json.loads(out or "null") or []}
        view |= {f"sandbox-{d.name}": "ready" for d in (self.data_dir / "sandboxes").iterdir()}
        return view

    def host_pid(self, container_id: str) -> int:
        cid = container_id.split("://", 1)[-1]
        if self.harness.dockerd is not None:
            return int(docker_cli(self.harness.dockerd, "inspect", "-f", "{{.State.Pid}}", cid).strip())
        return int((self.data_dir / "containers" / cid / "init.pid").read_text())


def _epoch(rfc3339: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module", params=["runc", "docker"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, image_tar: Path) -> Iterator[
        Cluster]:
    name = request.param
    require_host(name)
    harness = Harness(name, request.getfixturevalue("dockerd") if name == "docker" else None)
    tmp = tmp_path_factory.mktemp(f"e2e-{name}")
    with guarded_pod_cidr(100, 199) as cidr:
        server = start_server(tmp / "server", extra_args=["--cluster-cidr", cidr])
        c = Cluster(harness, server, cidr, f"e2e-{name}-{uuid.uuid4().hex[:6]}", tmp / "agent", tmp)
        try:
            r = kubelite("image", "import", str(image_tar), "--data-dir", str(c.data_dir))
            assert r.returncode == 0, r.stderr
            c.start_agent()
            yield c
        finally:
            c.stop_agent()
            server.stop()
            assert harness.reset_node(c.data_dir, c.node, cidr) == []


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[ApiClient]:
    async with ApiClient(cluster.server.url) as client:
        yield client


# --- helpers --------------------------------------------------------------------------------------


async def run_pod(api: ApiClient, cluster: Cluster, name: str, spec: Obj, labels: dict[str, str] | None = None) -> Obj:
    spec = {"nodeName": cluster.node, "terminationGracePeriodSeconds": 1, **spec}
    return await api.create(PODS, {"metadata": {"name": name, "namespace": NS, "labels": labels or {}}, "spec": spec})


async def get_pod(api: ApiClient, name: str) -> Obj:
    try:
        return await api.get(PODS, name, NS)
    except ApiError as e:
        if e.code == 404:
            return {}
        raise


def status_of(pod: Obj, container: str | None = None) -> Obj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if container is None or s["name"] == container), {})


def condition(pod: Obj, type_: str) -> str:
    return next((c["status"] for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == type_), "")


async def running(api: ApiClient, cluster: Cluster, name: str, timeout: float = 30) -> Obj:
    async def check() -> Obj | None:
        pod = await get_pod(api, name)
        st = pod.get("status") or {}
        return pod if st.get("phase") == "Running" and st.get("podIP") else None

    try:
        result: Obj = await eventually(check, timeout, f"pod {name} running")
    except AssertionError:
        raise AssertionError(f"pod {name}: {(await get_pod(api, name)).get('status')}\n{cluster.log()}") from None
    return result


async def pod_log(api: ApiClient, name: str, container: str | None = None) -> str:
    params = {"container": container} if container else None
    text = await api.request("GET", f"/api/v1/namespaces/{NS}/pods/{name}/log", params=params)
    return str(text)


async def pod_exec(api: ApiClient, name: str, *command: str) -> tuple[int, str]:
    """Run ``command`` in the pod through the API server and the agent; (exit code, stdout)."""
    query = urlencode([("command", c) for c in command])
    # JSON lines (kubelite's exec protocol, see kubelite.cli.exec); plain aiohttp, as the CLI does.
    async with aiohttp.ClientSession() as http, http.post(
        f"{api.server}/api/v1/namespaces/{NS}/pods/{name}/exec?{query}", timeout=aiohttp.ClientTimeout(total=30)
    ) as resp:
        text = (await resp.read()).decode()
        if resp.status != 200:
            return -resp.status, text
    code, out = -1, ""
    for line in text.splitlines():
        msg = json.loads(line)
        if "exit" in msg:
            code = int(msg["exit"])
        elif msg.get("stream") == "stdout":
            out += str(msg.get("data", ""))
    return code, out


async def delete_and_wait(api: ApiClient, name: str, timeout: float = 20) -> None:
    """Delete the pod and wait until it is gone (a controller may create a new one of that name)."""
    uid = (await get_pod(api, name)).get("metadata", {}).get("uid")
    try:
        await api.delete(PODS, name, NS)
    except ApiError as e:
        if e.code != 404:
            raise

    async def gone() -> bool:
        return (await get_pod(api, name)).get("metadata", {}).get("uid") != uid

    await eventually(gone, timeout, f"pod {name} deleted")


# --- scenarios ------------------------------------------------------------------------------------

HTTPD = "mkdir -p /www && echo hello-from-`hostname` > /www/index.html && exec httpd -f -p 80 -h /www"


async def test_httpd_pod_runs_isolated_limited_and_answers_on_its_ip(api: ApiClient, cluster: Cluster) -> None:
    await run_pod(api, cluster, "web", {"containers": [{
        "name": "httpd", "image": IMAGE, "command": ["sh", "-c", HTTPD],
        "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
    }]})
    pod = await running(api, cluster, "web")
    ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(cluster.cidr)
    assert status_of(pod)["containerID"].startswith(f"{cluster.runtime}://")
    assert (await http_get(f"http://{ip}:80/")).strip() == b"hello-from-web"

    pid = cluster.host_pid(status_of(pod)["containerID"])
    for ns in ("pid", "mnt", "uts", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), f"shares the host's {ns}"
    cg = cgroup_of(pid)
    assert cg.startswith(f"/kubelite/{cluster.node}/{pod['metadata']['uid']}/"), cg
    assert cgroup_value(cg, "memory", "memory.limit_in_bytes", "memory.max") == str(64 * 1024 * 1024)


async def test_memory_limit_is_enforced_as_oomkilled_137(api: ApiClient, cluster: Cluster) -> None:
    await run_pod(api, cluster, "hog", {"restartPolicy": "Never", "containers": [{
        "name": "hog", "image": IMAGE, "command": ["sh", "-c", "x=a; while true; do x=$x$x; done"],
        "resources": {"limits": {"memory": "16Mi"}},
    }]})

    async def killed() -> Obj | None:
        st = status_of(await get_pod(api, "hog"))
        return st if "terminated" in (st.get("state") or {}) else None

    term = (await eventually(killed, 30, "hog terminated"))["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)
    assert (await get_pod(api, "hog"))["status"]["phase"] == "Failed"


async def test_probes_restart_on_liveness_failure_and_unready_on_readiness_failure(
    api: ApiClient, cluster: Cluster
) -> None:
    fast = {"periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 2}
    await run_pod(api, cluster, "unready", {"containers": [{
        "name": "c", "image": IMAGE, "command": ["sleep", "100000"],
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, **fast},
    }]})
    await run_pod(api, cluster, "unlive", {"containers": [{
        "name": "c", "image": IMAGE, "command": ["sh", "-c", "echo started; sleep 100000"],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, **fast},
    }]})

    await running(api, cluster, "unready")

    async def not_ready() -> bool:
        pod = await get_pod(api, "unready")
        return condition(pod, "Ready") == "False" and condition(pod, "ContainersReady") == "False"

    await eventually(not_ready, 15, "readiness failure makes the pod not Ready")
    assert status_of(await get_pod(api, "unready")).get("ready") is False
    code, _ = await pod_exec(api, "unready", "touch", "/tmp/ready")
    assert code == 0

    async def ready() -> bool:
        return condition(await get_pod(api, "unready"), "Ready") == "True"

    await eventually(ready, 15, "Ready once the readiness probe passes")

    async def restarted() -> Obj | None:
        st = status_of(await get_pod(api, "unlive"))
        return st if st.get("restartCount", 0) >= 1 and "terminated" in (st.get("lastState") or {}) else None

    st = await eventually(restarted, 30, "liveness failure restarts the container")
    assert st["lastState"]["terminated"]["exitCode"] in (137, 143)


async def test_crash_loop_backs_off(api: ApiClient, cluster: Cluster) -> None:
    await run_pod(api, cluster, "crash", {"restartPolicy": "Always", "containers": [{
        "name": "c", "image": IMAGE, "command": ["sh", "-c", "echo crashing; exit 1"],
    }]})
    seen: list[tuple[int, str]] = []

    async def backing_off_then_restarted() -> bool:
        st = status_of(await get_pod(api, "crash"))
        waiting = (st.get("state") or {}).get("waiting") or {}
        seen.append((int(st.get("restartCount") or 0), str(waiting.get("reason", ""))))
        backed_off = any(n >= 1 and reason == "CrashLoopBackOff" for n, reason in seen)
        return backed_off and seen[-1][0] >= 2

    await eventually(backing_off_then_restarted, 40, "CrashLoopBackOff and a second restart", interval=0.2)
    st = status_of(await get_pod(api, "crash"))
    assert st["lastState"]["terminated"]["exitCode"] == 1
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)  # restartCount only grows
    await delete_and_wait(api, "crash")


async def test_configmap_as_env_args_and_updated_files(api: ApiClient, cluster: Cluster) -> None:
    await api.create(CONFIGMAPS, {"metadata": {"name": "app-config", "namespace": NS},
                                  "data": {"greeting": "hello", "file.txt": "v1"}})
    script = "echo env=$GREETING arg=$1; while true; do echo file=`cat /cfg/file.txt`; sleep 0.3; done"
    await run_pod(api, cluster, "cm", {
        "containers": [{
            "name": "c", "image": IMAGE, "command": ["sh", "-c", script, "sh"], "args": ["$(GREETING)"],
            "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
        }],
        "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}}],
    })
    await running(api, cluster, "cm")

    async def logged(text: str) -> str:
        log = await pod_log(api, "cm")
        return log if text in log else ""

    log = await eventually(lambda: logged("file=v1"), 15, "the configMap file in the log")
    assert log.splitlines()[0] == "env=hello arg=hello"  # env, and $(GREETING) expanded in args
    await api.patch(CONFIGMAPS, "app-config", {"data": {"file.txt": "v2"}}, NS)
    await eventually(lambda: logged("file=v2"), 30, "the updated configMap file in the log")
    assert await pod_exec(api, "cm", "cat", "/cfg/file.txt") == (0, "v2")


async def test_statefulset_data_survives_pod_recreation_and_agent_restart(api: ApiClient, cluster: Cluster) -> None:
    labels = {"app": "db"}
    await api.create(STATEFULSETS, {"metadata": {"name": "db", "namespace": NS}, "spec": {
        "serviceName": "db", "replicas": 1, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "db", "image": IMAGE, "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "command": ["sh", "-c", "cat /proc/sys/kernel/random/uuid >> /data/starts; "
                                                    "exec sleep 100000"]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}}],
    }})

    async def starts(expected: int) -> list[str]:
        async def check() -> list[str] | None:
            pod = await get_pod(api, "db-0")
            if (pod.get("status") or {}).get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
                return None
            code, out = await pod_exec(api, "db-0", "cat", "/data/starts")
            lines = out.split()
            return lines if code == 0 and len(lines) == expected else None

        try:
            result: list[str] = await eventually(check, 40, f"db-0 running with {expected} recorded start(s)")
        except AssertionError:
            raise AssertionError(f"{await get_pod(api, 'db-0')}\n{cluster.log()}") from None
        return result

    first = await starts(1)
    await delete_and_wait(api, "db-0")  # the StatefulSet recreates it: same claim, same data
    second = await starts(2)
    assert second[:1] == first
    cluster.stop_agent()
    cluster.start_agent()
    assert await starts(2) == second  # the running pod was re-adopted, not restarted
    await delete_and_wait(api, "db-0")
    third = await starts(3)
    assert third[:2] == second
    await api.delete(STATEFULSETS, "db", NS)


async def test_sigkilled_agent_restarts_with_exactly_the_same_containers(api: ApiClient, cluster: Cluster) -> None:
    # A clean slate: what earlier tests left would churn (crash loops, probes) during the comparison.
    for p in (await api.list(PODS, NS))["items"]:
        await api.delete(PODS, p["metadata"]["name"], NS, grace_period_seconds=0)

    async def empty() -> bool:
        return not (await api.list(PODS, NS))["items"] and not cluster.runtime_view()

    await eventually(empty, 60, "every pod and container gone")
    for name in ("steady-a", "steady-b"):
        await run_pod(api, cluster, name, {"containers": [
            {"name": "one", "image": IMAGE, "command": ["sleep", "100000"]},
            {"name": "two", "image": IMAGE, "command": ["sleep", "100000"]},
        ]})
    pods = {name: await running(api, cluster, name) for name in ("steady-a", "steady-b")}

    async def all_started() -> bool:
        current = [await get_pod(api, n) for n in pods]
        return all(s.get("started") for p in current for s in p["status"]["containerStatuses"])

    await eventually(all_started, 15, "every container started")
    before = cluster.runtime_view()
    assert len(before) == 4 + 2 and set(before.values()) <= {"running", "ready"}, before

    assert cluster.agent is not None
    cluster.agent.send_signal(signal.SIGKILL)
    cluster.agent.wait()
    assert cluster.runtime_view() == before  # containers outlive the agent
    cluster.start_agent()
    # Proof the restarted agent syncs: a new pod runs; then a few relist periods for mistakes to show.
    await run_pod(api, cluster, "after-restart", {"containers": [{"name": "c", "image": IMAGE,
                                                                   "command": ["sleep", "100000"]}]})
    await running(api, cluster, "after-restart")
    await asyncio.sleep(3)
    newcomer = status_of(await get_pod(api, "after-restart"))["containerID"].split("://")[-1]
    after = {k: v for k, v in cluster.runtime_view().items() if k != newcomer}
    assert len(after) == len(before) + 1  # the newcomer's sandbox
    assert {k: v for k, v in after.items() if k in before} == before  # the same containers, still running
    for name, old in pods.items():
        pod = await get_pod(api, name)
        assert [(s["containerID"], s["restartCount"]) for s in pod["status"]["containerStatuses"]] == [
            (s["containerID"], 0) for s in old["status"]["containerStatuses"]]


async def test_deleting_a_pod_stops_its_containers_within_the_grace_period(api: ApiClient, cluster: Cluster) -> None:
    await run_pod(api, cluster, "polite", {"terminationGracePeriodSeconds": 60, "containers": [{
        "name": "c", "image": IMAGE, "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]}]})
    await run_pod(api, cluster, "stubborn", {"terminationGracePeriodSeconds": 2, "containers": [{
        "name": "c", "image": IMAGE, "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]}]})
    ids = {}
    for name in ("polite", "stubborn"):
        pod = await running(api, cluster, name)
        ids[name] = status_of(pod)["containerID"].split("://")[-1]
        await asyncio.sleep(0.3)  # the shell has set its trap
    assert all(cluster.runtime_view().get(i) == "running" for i in ids.values())
    # polite stops on SIGTERM long before its 60 s; stubborn ignores it and is killed after 2 s.
    await asyncio.gather(delete_and_wait(api, "polite", 20), delete_and_wait(api, "stubborn", 2 + 10))
    view = cluster.runtime_view()
    assert all(view.get(i) != "running" for i in ids.values()), view


async def test_missing_image_reports_a_pull_error(api: ApiClient, cluster: Cluster) -> None:
    await run_pod(api, cluster, "noimage", {"containers": [{"name": "c", "image": "no-such-image:1"}]})

    async def pull_error() -> Obj | None:
        waiting = (status_of(await get_pod(api, "noimage")).get("state") or {}).get("waiting") or {}
        return waiting if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    waiting = await eventually(pull_error, 20, "ErrImagePull")
    assert "no-such-image" in waiting["message"]
    assert (await get_pod(api, "noimage"))["status"]["phase"] == "Pending"


# --- bad input, without a cluster -------------------------------------------------------------------


def _error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr.strip()


def test_unknown_runtime_is_a_clear_startup_error(tmp_path: Path) -> None:
    r = kubelite("agent", "--server", "http://127.0.0.1:9", "--node-name", "x", "--runtime", "bogus",
                 "--data-dir", str(tmp_path))
    assert _error_line(r) == "error: unknown runtime 'bogus' (expected one of: fake, runc, docker)"


def test_unreachable_dockerd_is_a_clear_startup_error(tmp_path: Path) -> None:
    r = kubelite("agent", "--server", "http://127.0.0.1:9", "--node-name", "x", "--runtime", "docker",
                 "--data-dir", str(tmp_path), env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    line = _error_line(r)
    assert line.startswith("error: dockerd is not reachable at") and "no-docker.sock" in line, line


def test_corrupt_image_tarball_is_rejected_naming_the_digest(image_tar: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.tar"
    victim = ""
    with tarfile.open(image_tar) as src, tarfile.open(corrupt, "w") as dst:
        members = src.getmembers()
        largest = max((m for m in members if m.isfile()), key=lambda m: m.size)
        for m in members:
            data = src.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if m is largest and data is not None:
                victim = "sha256:" + m.name.rsplit("/", 1)[-1]
                data = data[:-100] + bytes(b ^ 0xFF for b in data[-100:])  # same size, other bytes
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    store = tmp_path / "node"
    r = kubelite("image", "import", str(corrupt), "--data-dir", str(store))
    line = _error_line(r)
    assert "digest mismatch" in line and victim in line, line
    # Nothing half-imported: no tag, no unpacked layer, no blob, no staging left.
    listed = kubelite("image", "list", "--data-dir", str(store))
    assert "busybox" not in listed.stdout
    for sub in ("layers", "tmp", "blobs/sha256"):
        assert not list((store / "images" / sub).iterdir()), sub
