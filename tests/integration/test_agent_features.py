"""Node agent container features with hollow nodes (fake runtime) against a real API server:
configMap/secret volumes and their updates, env from ConfigMaps, CreateContainerConfigError, local-path
claims, logs through the API server and the CLI, and tcpSocket probes against real local listeners."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.agent import HollowNodes
from kubelite.agent.httpserver import AgentHttpServer
from kubelite.agent.runtimes.fake import FakeRuntime
from kubelite.api.registry import ResourceType, by_path
from kubelite.client import ApiClient, ApiError
from kubelite.client.kubeconfig import write_kubeconfig
from tests.conftest import free_port
from tests.helpers import eventually

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

Obj = dict[str, Any]


def rt(plural: str) -> ResourceType:
    found = by_path("", "v1", plural)
    assert found is not None
    return found


NODES, PODS, CMS, SECRETS = rt("nodes"), rt("pods"), rt("configmaps"), rt("secrets")
PVCS, PVS = rt("persistentvolumeclaims"), rt("persistentvolumes")


class Cluster:
    def __init__(self, client: ApiClient, url: str, nodes: HollowNodes, server: AgentHttpServer, data: Path) -> None:
        self.client, self.url, self.nodes, self.server, self.data = client, url, nodes, server, data

    def agent_dir(self, node: str) -> Path:
        return self.data / node

    async def run_pod(self, name: str, spec: Obj, node: str = "agent-0") -> Obj:
        await self.client.create(PODS, {"metadata": {"name": name, "namespace": "default"},
                                        "spec": {"nodeName": node, **spec}})
        return await self.pod(name)

    async def pod(self, name: str) -> Obj:
        return await self.client.get(PODS, name, "default")

    def config_of(self, node: str, pod: str, container: str) -> Any:
        manager = self.nodes.agent(node).pods
        cid = manager.container_id(f"default/{pod}", container)
        assert cid is not None
        runtime = manager.runtime
        assert isinstance(runtime, FakeRuntime)
        return runtime.container_config(cid)


@pytest.fixture
async def cluster(inproc_api: Any, tmp_path: Path) -> AsyncIterator[Cluster]:
    client: ApiClient = inproc_api.client
    nodes = HollowNodes(client, "agent", 2, data_dir=tmp_path, heartbeat_interval=0.5, fencing_period=30)
    nodes.dispatcher.volume_sync_period = 0.3
    await nodes.start()
    # One endpoint serves every hollow node of the process; each Node publishes its port, as
    # `kubelite agent --agent-port` does (daemonEndpoints.kubeletEndpoint.Port).
    server = AgentHttpServer(nodes.dispatcher.managers, "127.0.0.1", 0)
    await server.start()
    for agent in nodes.agents:
        await client.patch(NODES, agent.name, {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": server.port}}}},
                           subresource="status")
    try:
        yield Cluster(client, inproc_api.url, nodes, server, tmp_path)
    finally:
        await server.stop()
        await nodes.stop()


def container_status(pod: Obj, name: str = "c") -> Obj:
    return next(s for s in (pod.get("status") or {}).get("containerStatuses") or [] if s["name"] == name)


def read_files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in d.iterdir() if not p.name.startswith("..")} if d.is_dir() else {}


async def test_configmap_and_secret_volumes_and_env(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(CMS, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"mode": "fast", "level": "1"}})
    await c.create(SECRETS, {"metadata": {"name": "sec", "namespace": "default"}, "stringData": {"pw": "hunter2"}})
    pod = await cluster.run_pod("web", {
        "containers": [{
            "name": "c", "image": "busybox", "command": ["sh", "-c", "echo $(MODE)"],
            "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "envFrom": [{"secretRef": {"name": "sec"}, "prefix": "S_"}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "sec", "mountPath": "/etc/sec"}],
        }],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "sec", "secret": {"secretName": "sec"}}],
    })
    uid = pod["metadata"]["uid"]
    vols = cluster.agent_dir("agent-0") / "pods" / uid / "volumes"

    async def running() -> bool:
        return (await cluster.pod("web")).get("status", {}).get("phase") == "Running"

    await eventually(running, 10, "pod web running")
    assert read_files(vols / "cfg") == {"mode": "fast", "level": "1"}
    assert read_files(vols / "sec") == {"pw": "hunter2"}
    config = cluster.config_of("agent-0", "web", "c")
    # kubelet's service variables come too: always for default/kubernetes
    assert {k: v for k, v in config.env.items() if not k.startswith("KUBERNETES_")} == {"S_pw": "hunter2", "MODE": "fast", "POD": "web"}
    assert config.env["KUBERNETES_SERVICE_PORT"] == "443"
    assert config.command == ["sh", "-c", "echo fast"]
    mounts = {m.container_path: (m.host_path, m.read_only) for m in config.mounts}
    sa_dir = mounts.pop(SA_MOUNT)[0]  # ServiceAccount admission added the token volume
    assert (Path(sa_dir) / "token").is_file() and (Path(sa_dir) / "namespace").read_text() == "default"
    assert mounts == {"/etc/cfg": (str(vols / "cfg"), True), "/etc/sec": (str(vols / "sec"), True)}

    await c.patch(CMS, "cfg", {"data": {"mode": "slow", "level": None}}, "default")

    async def updated() -> bool:
        return read_files(vols / "cfg") == {"mode": "slow"}

    await eventually(updated, 10, "configMap volume updated")
    await c.delete(PODS, "web", "default")

    async def cleaned() -> bool:
        return not (cluster.agent_dir("agent-0") / "pods" / uid).exists()

    await eventually(cleaned, 10, "pod volumes removed")


async def test_missing_configmap_key_is_create_container_config_error(cluster: Cluster) -> None:
    await cluster.client.create(CMS, {"metadata": {"name": "partial", "namespace": "default"}, "data": {"a": "1"}})
    await cluster.run_pod("broken", {"containers": [{"name": "c", "image": "busybox", "env": [
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "partial", "key": "b"}}}]}]})

    async def waiting() -> Obj | None:
        pod = await cluster.pod("broken")
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        w = (statuses[0].get("state") or {}).get("waiting") if statuses else None
        return w if w and w.get("reason") == "CreateContainerConfigError" else None

    w = await eventually(waiting, 10, "CreateContainerConfigError")
    assert w["message"] == "couldn't find key b in ConfigMap default/partial"
    assert (await cluster.pod("broken"))["status"]["phase"] == "Pending"


async def test_claim_is_provisioned_bound_and_outlives_the_pod(cluster: Cluster) -> None:
    c = cluster.client
    claim = await c.create(PVCS, {"metadata": {"name": "data", "namespace": "default"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    spec = {"containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
    await cluster.run_pod("db", spec, node="agent-1")
    uid = claim["metadata"]["uid"]
    storage = cluster.agent_dir("agent-1") / "storage" / "default" / f"data-{uid}"

    async def bound() -> Obj | None:
        pvc = await c.get(PVCS, "data", "default")
        return pvc if (pvc.get("status") or {}).get("phase") == "Bound" else None

    pvc = await eventually(bound, 10, "claim bound")
    assert pvc["spec"]["volumeName"] == f"pvc-{uid}" and pvc["status"]["capacity"] == {"storage": "1Gi"}
    pv = await c.get(PVS, f"pvc-{uid}")
    assert pv["spec"]["local"]["path"] == str(storage) and pv["spec"]["claimRef"]["uid"] == uid
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["agent-1"]
    assert storage.is_dir()
    config = cluster.config_of("agent-1", "db", "c")
    assert [(m.container_path, m.host_path) for m in config.mounts if m.container_path != SA_MOUNT] == [("/data", str(storage))]

    (storage / "keep.txt").write_text("survives")
    await c.delete(PODS, "db", "default")

    async def gone() -> bool:
        try:
            await cluster.pod("db")
        except ApiError as e:
            return e.code == 404
        return False

    await eventually(gone, 10, "pod db deleted")
    await cluster.run_pod("db2", spec, node="agent-1")

    async def running() -> bool:
        return (await cluster.pod("db2")).get("status", {}).get("phase") == "Running"

    await eventually(running, 10, "pod db2 running")
    assert (storage / "keep.txt").read_text() == "survives"
    # On another node the claim's volume is refused: its data lives on agent-1.
    await cluster.run_pod("elsewhere", spec, node="agent-0")

    async def refused() -> str:
        st = (await cluster.pod("elsewhere")).get("status") or {}
        waiting = ((st.get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting") or {}
        return str(waiting.get("message", "")) if "node affinity conflict" in str(waiting.get("message")) else ""

    assert "agent-1" in await eventually(refused, 10, "node affinity conflict")


async def cli(cluster: Cluster, tmp: Path, *args: str) -> tuple[int, str, str]:
    kubeconfig = tmp / "kubeconfig"
    if not kubeconfig.exists():
        write_kubeconfig(kubeconfig, cluster.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubelite", "--kubeconfig", str(kubeconfig), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_logs_through_the_api_server_and_cli(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster.client
    await cluster.run_pod("two", {"containers": [
        {"name": "a", "image": "busybox", "command": ["echo", "hello from a"]},
        {"name": "b", "image": "busybox", "args": ["--serve"]},
    ]})

    async def running() -> bool:
        return (await cluster.pod("two")).get("status", {}).get("phase") == "Running"

    await eventually(running, 10, "pod two running")
    path = "/api/v1/namespaces/default/pods/two/log"
    text = await c.request("GET", path, params={"container": "a"})
    assert text == "fake runtime: would run echo hello from a\n"
    stamped = await c.request("GET", path, params={"container": "b", "timestamps": "true"})
    ts, _, rest = stamped.partition(" ")
    assert rest == "fake runtime: would run --serve\n" and ts.endswith("Z")
    with pytest.raises(ApiError) as e:
        await c.request("GET", path)
    assert e.value.code == 400
    assert e.value.message == "a container name must be specified for pod two, choose one of: [a b]"
    with pytest.raises(ApiError) as e:
        await c.request("GET", "/api/v1/namespaces/default/pods/nope/log")
    assert e.value.code == 404
    with pytest.raises(ApiError) as e:
        await c.request("GET", path, params={"container": "a", "previous": "true"})
    assert e.value.code == 400 and "previous terminated container" in e.value.message

    code, out, err = await cli(cluster, tmp_path, "logs", "two", "-c", "a")
    assert (code, out) == (0, "fake runtime: would run echo hello from a\n"), err
    code, out, err = await cli(cluster, tmp_path, "logs", "two")
    assert code == 1 and "a container name must be specified" in err
    # exec reaches the agent, whose fake runtime cannot exec: the agent's 501 comes back as a Status.
    code, out, err = await cli(cluster, tmp_path, "exec", "two", "-c", "a", "--", "ls", "/")
    assert code == 1 and "cannot exec" in err, (out, err)

    # An agent nobody can reach is a 503.
    await c.patch(NODES, "agent-0", {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": free_port()}}}},
                  subresource="status")
    with pytest.raises(ApiError) as e:
        await c.request("GET", path, params={"container": "a"})
    assert e.value.code == 503 and "agent-0" in e.value.message


async def test_follow_streams_until_the_pod_is_deleted(cluster: Cluster) -> None:
    await cluster.run_pod("tail", {"containers": [{"name": "c", "image": "busybox", "command": ["top"]}]})

    async def running() -> bool:
        return (await cluster.pod("tail")).get("status", {}).get("phase") == "Running"

    await eventually(running, 10, "pod tail running")
    stream = cluster.client.stream("GET", "/api/v1/namespaces/default/pods/tail/log", {"follow": "true"})
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert first == "fake runtime: would run top\n"
    await cluster.client.delete(PODS, "tail", "default", grace_period_seconds=0)
    rest = [chunk async for chunk in stream]  # the stream ends once the container is stopped
    assert rest == []


async def test_readiness_and_liveness_tcp_probes(cluster: Cluster) -> None:
    port = free_port()
    dead_port = free_port()
    await cluster.run_pod("probed", {"containers": [{
        "name": "c", "image": "busybox",
        "readinessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": port}, "periodSeconds": 1, "failureThreshold": 1},
    }]})
    await cluster.run_pod("dying", {"containers": [{
        "name": "c", "image": "busybox",
        "livenessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": dead_port}, "periodSeconds": 1,
                          "failureThreshold": 1},
    }]})

    def condition(pod: Obj, type_: str) -> str:
        return next((c["status"] for c in pod.get("status", {}).get("conditions", []) if c["type"] == type_), "")

    async def running_unready() -> bool:
        pod = await cluster.pod("probed")
        return pod.get("status", {}).get("phase") == "Running" and condition(pod, "Ready") == "False"

    await eventually(running_unready, 10, "running but not ready")
    assert not container_status(await cluster.pod("probed"))["ready"]
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)

    async def ready() -> bool:
        pod = await cluster.pod("probed")
        return condition(pod, "Ready") == "True" and condition(pod, "ContainersReady") == "True"

    try:
        await eventually(ready, 10, "ready once the listener is up")
        assert container_status(await cluster.pod("probed"))["ready"]
    finally:
        server.close()
        await server.wait_closed()

    async def unready_again() -> bool:
        return condition(await cluster.pod("probed"), "Ready") == "False"

    await eventually(unready_again, 10, "unready once the listener is gone")

    async def restarted() -> Obj | None:
        st = container_status(await cluster.pod("dying"))
        return st if st["restartCount"] >= 1 else None

    st = await eventually(restarted, 15, "liveness restart")
    assert st["lastState"]["terminated"]["exitCode"] in (137, 143)
    # The killed attempt's log is the previous one now.
    text = await cluster.client.request("GET", "/api/v1/namespaces/default/pods/dying/log",
                                        params={"previous": "true"})
    assert text == "fake runtime: would run the entrypoint of busybox\n"
