"""End to end with hollow nodes: `kubelite server` (scheduler + controllers) and `kubelite agent --runtime fake`
processes, driven through the official Python client. The acceptance of the "Scheduler and controllers" issue."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch

from tests.conftest import ServerProcess, start_server
from tests.helpers import eventually_sync as eventually
from tests.helpers import stop_processes

# Short failure-detection settings so the failover test stays quick; the defaults are 10 s / 5 s / 30 s.
SERVER_ARGS = [
    "--node-monitor-grace-period", "4",
    "--default-toleration-seconds", "2",
    "--pod-force-delete-after", "8",
]  # fmt: skip


@dataclass
class Cluster:
    server: ServerProcess
    api: client.ApiClient
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: Path = Path(".")

    def add_agent(self, name: str, *extra: str) -> None:
        log = open(self.logs / f"agent-{name}.log", "ab")
        self.agents[name] = subprocess.Popen(
            [sys.executable, "-m", "kubelite", "agent", "--server", self.server.url, "--runtime", "fake",
             "--node-name", name, "--heartbeat-interval", "1", "--fencing-period", "6", "--agent-port", "0", *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def kill_agent(self, name: str) -> None:
        proc = self.agents.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        stop_processes(*self.agents.values())
        self.api.close()
        self.server.stop()




def ready_nodes(api: client.ApiClient) -> list[str]:
    out = []
    for n in client.CoreV1Api(api).list_node().items:
        # A node just registered may not have posted its status yet.
        conds = {c.type: c.status for c in ((n.status.conditions if n.status else None) or [])}
        if conds.get("Ready") == "True" and not n.spec.unschedulable:
            out.append(n.metadata.name)
    return sorted(out)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("e2e")
    server = start_server(tmp / "server", extra_args=SERVER_ARGS)
    c = Cluster(server, config.new_client_from_config(config_file=str(server.kubeconfig)), logs=tmp)
    try:
        for name in ("node-a", "node-b", "node-c"):
            c.add_agent(name)
        eventually(lambda: len(ready_nodes(c.api)) == 3, what="3 Ready nodes")
        yield c
    finally:
        c.stop()


@pytest.fixture
def ns(cluster: Cluster) -> str:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(cluster.api).create_namespace({"metadata": {"name": name}})
    return name


def deployment(name: str, replicas: int, image: str = "busybox:1.35", max_unavailable: int = 1, max_surge: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": max_surge}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    }


def nudge(api: client.ApiClient, ns: str) -> None:
    """One more pod event, so a watching thread that was told to stop sees it promptly."""
    pod = {"metadata": {"name": f"nudge-{uuid.uuid4().hex[:4]}"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}
    client.CoreV1Api(api).create_namespaced_pod(ns, pod)


def pods_of(api: client.ApiClient, ns: str, selector: str) -> list[client.V1Pod]:
    return [p for p in client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items if not p.metadata.deletion_timestamp]


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def available(api: client.ApiClient, ns: str, name: str, n: int) -> bool:
    d = client.AppsV1Api(api).read_namespaced_deployment(name, ns)
    s = d.status
    return bool(s and s.available_replicas == n and s.updated_replicas == n and (s.replicas or 0) == n and s.observed_generation == d.metadata.generation)


def test_deployment_spreads_scales_and_rolls(cluster: Cluster, ns: str) -> None:
    api, apps = cluster.api, client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(ns, deployment("web", 10))
    eventually(lambda: available(api, ns, "web", 10), what="10 available")
    per_node = collections.Counter(p.spec.node_name for p in pods_of(api, ns, "app=web"))
    assert sorted(per_node.values()) in ([3, 3, 4], [3, 4, 3]) or max(per_node.values()) - min(per_node.values()) <= 1, per_node
    assert len(per_node) == 3

    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 0}})
    eventually(lambda: not client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=web").items, what="scale to 0")
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
    eventually(lambda: available(api, ns, "web", 4), what="back to 4")

    # Rolling update: watch every pod change and check the ready count never drops below replicas - maxUnavailable.
    min_ready = [4]
    stop = threading.Event()
    rv = client.CoreV1Api(api).list_namespaced_pod(ns).metadata.resource_version

    def observe() -> None:
        state: dict[str, client.V1Pod] = {p.metadata.name: p for p in pods_of(api, ns, "app=web")}
        w = watch.Watch()
        for ev in w.stream(client.CoreV1Api(api).list_namespaced_pod, ns, resource_version=rv, timeout_seconds=60):
            pod = ev["object"]
            if ev["type"] == "DELETED":
                state.pop(pod.metadata.name, None)
            else:
                state[pod.metadata.name] = pod
            ready = sum(1 for p in state.values() if is_ready(p) and not p.metadata.deletion_timestamp)
            min_ready[0] = min(min_ready[0], ready)
            if stop.is_set():
                w.stop()

    t = threading.Thread(target=observe)
    t.start()
    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}}})

    def rolled() -> bool:
        pods = pods_of(api, ns, "app=web")
        return available(api, ns, "web", 4) and len(pods) == 4 and all(p.spec.containers[0].image == "busybox:1.36" for p in pods)

    eventually(rolled, timeout=60, what="rollout to busybox:1.36")
    stop.set()
    nudge(api, ns)
    t.join(70)
    assert min_ready[0] >= 4 - 1, f"ready pods fell to {min_ready[0]} during the rollout"
    rs = apps.list_namespaced_replica_set(ns).items
    assert sorted(r.spec.replicas for r in rs) == [0, 4]

    # Deleting the Deployment removes its ReplicaSets and pods (garbage collection).
    apps.delete_namespaced_deployment("web", ns)
    eventually(lambda: not apps.list_namespaced_replica_set(ns).items, what="ReplicaSets collected")
    eventually(lambda: not client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=web").items, what="pods collected")


def test_daemonset_one_per_matching_node(cluster: Cluster, ns: str) -> None:
    api, apps, v1 = cluster.api, client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "busybox:1.35"}]}},
        },
    }
    apps.create_namespaced_daemon_set(ns, ds)

    def placement() -> collections.Counter[str]:
        return collections.Counter(p.spec.node_name for p in pods_of(api, ns, "app=agent") if p.status.phase == "Running")

    eventually(lambda: placement() == collections.Counter(ready_nodes(api)), what="one pod per node")

    cluster.add_agent("node-d")
    eventually(lambda: "node-d" in ready_nodes(api), what="node-d Ready")
    eventually(lambda: placement().get("node-d") == 1, what="DaemonSet pod on the new node")

    cluster.add_agent("node-tainted", "--node-taints", "dedicated=db:NoSchedule")
    eventually(lambda: "node-tainted" in [n.metadata.name for n in v1.list_node().items], what="tainted node registered")
    time.sleep(3)
    counts = placement()
    assert "node-tainted" not in counts
    assert all(v == 1 for v in counts.values()), counts
    for name in ("node-d", "node-tainted"):
        cluster.kill_agent(name)
        v1.delete_node(name)
    eventually(lambda: "node-d" not in placement(), what="pod of the removed node gone")
    apps.delete_namespaced_daemon_set("agent", ns)


def test_statefulset_ordered_with_claims(cluster: Cluster, ns: str) -> None:
    apps, v1 = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    v1.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {"clusterIP": "None", "selector": {"app": "sts"}, "ports": [{"port": 80}]}})
    created_order: list[str] = []
    overlaps: list[str] = []
    stop = threading.Event()
    rv = v1.list_namespaced_pod(ns).metadata.resource_version

    def observe() -> None:
        alive: dict[str, set[str]] = collections.defaultdict(set)  # pod name -> uids present
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=90):
            pod = ev["object"]
            name, uid = pod.metadata.name, pod.metadata.uid
            if ev["type"] == "ADDED":
                created_order.append(name)
                alive[name].add(uid)
                if len(alive[name]) > 1:
                    overlaps.append(name)
            elif ev["type"] == "DELETED":
                alive[name].discard(uid)
            if stop.is_set():
                w.stop()

    t = threading.Thread(target=observe)
    t.start()
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "sts"}},
            "template": {
                "metadata": {"labels": {"app": "sts"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]},
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
            ],
        },
    }
    apps.create_namespaced_stateful_set(ns, sts)

    def sts_ready(n: int) -> bool:
        s = apps.read_namespaced_stateful_set("web", ns).status
        return bool(s and s.ready_replicas == n)

    eventually(lambda: sts_ready(3), timeout=60, what="3 ready")
    assert created_order[:3] == ["web-0", "web-1", "web-2"]
    claims = {c.metadata.name for c in v1.list_namespaced_persistent_volume_claim(ns).items}
    assert {"data-web-0", "data-web-1", "data-web-2"} <= claims

    old_uid = v1.read_namespaced_pod("web-1", ns).metadata.uid
    v1.delete_namespaced_pod("web-1", ns)

    def replaced() -> bool:
        p = v1.read_namespaced_pod("web-1", ns)
        return p.metadata.uid != old_uid and is_ready(p)

    eventually(replaced, timeout=60, what="web-1 back")
    vols = v1.read_namespaced_pod("web-1", ns).spec.volumes
    assert any(v.persistent_volume_claim and v.persistent_volume_claim.claim_name == "data-web-1" for v in vols)
    stop.set()
    nudge(cluster.api, ns)
    t.join(100)
    assert not overlaps, f"two pods shared an ordinal: {overlaps}"
    apps.delete_namespaced_stateful_set("web", ns)


def test_endpoints_follow_ready_pods(cluster: Cluster, ns: str) -> None:
    api, v1, apps = cluster.api, client.CoreV1Api(cluster.api), client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(ns, deployment("svcapp", 3))
    v1.create_namespaced_service(ns, {"metadata": {"name": "svcapp"}, "spec": {"selector": {"app": "svcapp"}, "ports": [{"port": 8080, "targetPort": 80}]}})
    eventually(lambda: available(api, ns, "svcapp", 3), what="3 available")

    def addresses() -> list[str]:
        ep = v1.read_namespaced_endpoints("svcapp", ns)
        return sorted(a.ip for s in (ep.subsets or []) for a in (s.addresses or []))

    pod_ips = sorted(p.status.pod_ip for p in pods_of(api, ns, "app=svcapp"))
    eventually(lambda: addresses() == pod_ips, what="endpoints = pod IPs")
    ep = v1.read_namespaced_endpoints("svcapp", ns)
    assert ep.subsets[0].ports[0].port == 80
    apps.patch_namespaced_deployment_scale("svcapp", ns, {"spec": {"replicas": 1}})
    eventually(lambda: len(addresses()) == 1, what="endpoints shrink")
    apps.delete_namespaced_deployment("svcapp", ns)


def test_dead_node_pods_replaced_exactly_once(cluster: Cluster, ns: str) -> None:
    api, apps, v1 = cluster.api, client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    cluster.add_agent("node-x")
    eventually(lambda: "node-x" in ready_nodes(api), what="node-x Ready")
    apps.create_namespaced_deployment(ns, deployment("fo", 8))
    eventually(lambda: available(api, ns, "fo", 8), what="8 available")
    victims = {p.metadata.name for p in pods_of(api, ns, "app=fo") if p.spec.node_name == "node-x"}
    assert victims, "no pod landed on node-x"

    cluster.kill_agent("node-x")
    killed = time.monotonic()

    def moved() -> bool:
        pods = pods_of(api, ns, "app=fo")
        running = [p for p in pods if p.status.phase == "Running" and p.spec.node_name != "node-x"]
        return len(running) == 8 and available(api, ns, "fo", 8)

    eventually(moved, timeout=60, what="pods replaced on live nodes")
    elapsed = time.monotonic() - killed
    # grace 4 s + toleration 2 s, plus scheduling: well under the default 20 s budget.
    assert elapsed < 30, elapsed
    node = v1.read_node("node-x")
    assert any(t.key == "node.kubernetes.io/unreachable" for t in node.spec.taints or [])
    time.sleep(2)
    live = pods_of(api, ns, "app=fo")
    assert len(live) == 8, f"replacements appeared more than once: {[p.metadata.name for p in live]}"
    # The dead node's terminating pods are force-deleted after --pod-force-delete-after.
    eventually(lambda: not [p for p in v1.list_namespaced_pod(ns).items if p.spec.node_name == "node-x"], timeout=30, what="force delete")
    v1.delete_node("node-x")
