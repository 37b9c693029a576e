"""Cluster networking end to end (issue 5): three nodes on this machine, each its own network namespace.

Layout (all of it created here, removed on teardown):

* an "underlay" bridge on the host, 10.238.0.1/24; node ``i`` is a network namespace with a veth on it
  (10.238.0.1x). ``kubelite server`` listens on 0.0.0.0, so the nodes reach it at 10.238.0.1.
* Each node's mount namespace is held by a sleeping process started with ``ip netns exec`` (which
  remounts /sys for the netns): the v1 cgroup controllers are re-mounted there for runc, and the
  pods' netns bind mounts live there, so a restarted agent (``nsenter`` into it) finds them again.
* Pod CIDRs come from ``--cluster-cidr 10.236.0.0/16`` (nodeipam), Services from 10.237.0.0/16.
  While the module runs, ``unreachable`` routes cover the three ranges on the host and in every node
  (metric 4242, overridden by real routes), so no test packet can leave through a default route.

Pods are busybox: servers answer with their hostname (= the pod name); a client pod on node A
runs ``wget`` loops, one ``runc exec`` per batch.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kubelite.agent.runtime import LABEL_POD_NAME, LABEL_POD_NAMESPACE
from tests.conftest import ServerProcess, start_server
from tests.helpers import eventually_sync, stop_processes

pytestmark = pytest.mark.slow
T = TypeVar("T")

UNDERLAY = "10.238.0.0/24"
GATEWAY = "10.238.0.1"
CLUSTER_CIDR = "10.236.0.0/16"
SERVICE_CIDR = "10.237.0.0/16"
GUARD_METRIC = "4242"
NODES = {"net-a": "10.238.0.11", "net-b": "10.238.0.12", "net-c": "10.238.0.13"}
IMAGE = "busybox:nettest"
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")
# Serves its hostname; on SIGTERM keeps serving for 2 s (a graceful drain) before exiting.
SERVE = ("mkdir -p /www && hostname > /www/index.html && httpd -f -p 8080 -h /www & "
         "trap 'sleep 2; exit 0' TERM; wait; wait")


def sh(*argv: str, check: bool = True, input_: str | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input_, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def eventually(fn: Callable[[], T | None], timeout: float = 30, what: str = "condition") -> T:
    # The kubernetes client raises ApiException for a transient answer (a pod not created yet).
    return eventually_sync(fn, timeout, what, retry_on=(AssertionError, ApiException))


@dataclass
class Node:
    name: str
    ip: str
    netns: str
    data_dir: Path
    holder: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None

    def run(self, *argv: str, check: bool = True, input_: str | None = None, timeout: float = 60) -> str:
        """A command inside this node (its network and mount namespace)."""
        assert self.holder is not None
        return sh("nsenter", "-t", str(self.holder.pid), "-m", "-n", *argv, check=check, input_=input_,
                  timeout=timeout)


@dataclass
class Cluster:
    server: ServerProcess
    api: client.ApiClient
    nodes: dict[str, Node]
    tmp: Path
    agent_args: list[str] = field(default_factory=list)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def start_agent(self, node: Node) -> None:
        assert node.holder is not None
        log = open(self.tmp / f"agent-{node.name}.log", "ab")
        node.agent = subprocess.Popen(
            ["nsenter", "-t", str(node.holder.pid), "-m", "-n", sys.executable, "-m", "kubelite", "agent",
             # The real join: HTTPS to the node-reachable address, the token, a node credential back.
             "--server", f"https://{GATEWAY}:{self.server.https_port}", "--node-name", node.name, "--node-ip", node.ip,
             "--data-dir", str(node.data_dir), "--cluster-cidr", CLUSTER_CIDR, "--agent-port", "0",
             "--heartbeat-interval", "1", "--network-sync-period", "2", *self.agent_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "KUBELITE_TOKEN": self.server.token},
        )  # fmt: skip

    def stop_agent(self, node: Node, sig: int = signal.SIGTERM) -> None:
        if node.agent is not None:
            stop_processes(node.agent, sig=sig, timeout=20)
        node.agent = None

    def container_id(self, node: Node, ns: str, pod: str) -> str:
        for meta_file in (node.data_dir / "containers").glob("*/meta.json"):
            labels = json.loads(meta_file.read_text()).get("labels") or {}
            if labels.get(LABEL_POD_NAME) == pod and labels.get(LABEL_POD_NAMESPACE) == ns:
                if not (meta_file.parent / "exit.json").exists():
                    return meta_file.parent.name
        raise AssertionError(f"no running container of {ns}/{pod} on {node.name}")

    def exec(self, node: Node, ns: str, pod: str, script: str, timeout: float = 120) -> str:
        cid = self.container_id(node, ns, pod)
        return node.run("runc", "--root", str(node.data_dir / "runc"), "exec", cid, "sh", "-c", script,
                        timeout=timeout)

    def fetch(self, url: str, count: int = 1, ns: str = "nettest", client_pod: str = "client") -> list[str]:
        """``count`` wget requests from the client pod on node A; each answer or FAIL, in order."""
        script = (f"i=0; while [ $i -lt {count} ]; do i=$((i+1)); "
                  f"timeout 5 wget -qO- {url} 2>/dev/null || echo FAIL; done")
        return self.exec(self.nodes["net-a"], ns, client_pod, script).split()


def _require_host() -> None:
    # The real thing or nothing: a missing tool is a broken setup (scripts/setup.sh installs them), not a skip.
    assert os.geteuid() == 0, "the networking test needs root"
    for tool in ("runc", "ip", "iptables", "iptables-restore", "nsenter", "unshare"):
        assert shutil.which(tool), f"{tool} is not installed"
    assert Path("/bin/busybox").is_file(), "busybox-static is not installed"


def _guard_routes(add: bool, ns: str | None = None) -> None:
    prefix = ["ip", "-n", ns] if ns else ["ip"]
    for cidr in (UNDERLAY, CLUSTER_CIDR, SERVICE_CIDR) if ns is None else (CLUSTER_CIDR, SERVICE_CIDR):
        sh(*prefix, "route", "add" if add else "del", "unreachable", cidr, "metric", GUARD_METRIC, check=add)


def _mount_script() -> str:
    mounts = " && ".join(
        f"mkdir -p /sys/fs/cgroup/{c} && mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{c}" for c in CGROUP_CONTROLLERS
    )
    return f"mount -t tmpfs cgroup /sys/fs/cgroup && {mounts} && touch {{ready}} && exec sleep infinity"


def _start_holder(node: Node, tmp: Path) -> None:
    ready = tmp / f"holder-{node.name}.ready"
    node.holder = subprocess.Popen(["ip", "netns", "exec", node.netns, "sh", "-c", _mount_script().format(ready=ready)],
                                   start_new_session=True)
    eventually(ready.exists, timeout=10, what=f"{node.name} mount namespace")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _require_host()
    for cidr in (UNDERLAY, CLUSTER_CIDR, SERVICE_CIDR):
        assert not sh("ip", "route", "show", "match", cidr.split("/")[0]).count(cidr), f"{cidr} is in use here"
    tmp = tmp_path_factory.mktemp("net")
    sfx = uuid.uuid4().hex[:5]
    bridge = f"klnb{sfx}"
    nodes = {name: Node(name, ip, f"kl-{name}-{sfx}", tmp / name) for name, ip in NODES.items()}
    _guard_routes(True)
    server: ServerProcess | None = None
    c: Cluster | None = None
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{GATEWAY}/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i, node in enumerate(nodes.values()):
            host_end = f"klu{sfx}{i}"
            sh("ip", "netns", "add", node.netns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
            sh("ip", "link", "set", host_end, "master", bridge, "up")
            sh("ip", "-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
            sh("ip", "-n", node.netns, "link", "set", "eth0", "up")
            sh("ip", "-n", node.netns, "link", "set", "lo", "up")
            _guard_routes(True, node.netns)
            _start_holder(node, tmp)
        image_tar = tmp / "busybox.tar"
        sh(sys.executable, "-m", "kubelite", "image", "build", "busybox", "-t", IMAGE, "-o", str(image_tar))
        for node in nodes.values():
            sh(sys.executable, "-m", "kubelite", "image", "import", str(image_tar), "--data-dir", str(node.data_dir))
        server = start_server(tmp / "server", extra_args=[
            "--bind-address", "0.0.0.0", "--tls-san", GATEWAY, "--cluster-cidr", CLUSTER_CIDR, "--service-cidr", SERVICE_CIDR,
        ])  # fmt: skip
        c = Cluster(server, config.new_client_from_config(config_file=str(server.kubeconfig)), nodes, tmp)
        for node in nodes.values():
            c.start_agent(node)

        def ready_with_cidrs() -> bool:
            items = c.core.list_node().items
            ok = [n for n in items if n.spec and n.spec.pod_cidr and any(
                cond.type == "Ready" and cond.status == "True" for cond in (n.status and n.status.conditions) or [])]
            return len(ok) == 3

        eventually(ready_with_cidrs, timeout=40, what="3 Ready nodes with a podCIDR")
        c.core.create_namespace({"metadata": {"name": "nettest"}})
        yield c
    finally:
        _teardown(c, server, nodes, bridge)


def _teardown(c: Cluster | None, server: ServerProcess | None, nodes: dict[str, Node], bridge: str) -> None:
    if c is not None:
        with contextlib.suppress(Exception):
            c.core.delete_namespace("nettest")
        for node in nodes.values():
            c.stop_agent(node)
        c.api.close()
    if server is not None:
        server.stop()
    for node in nodes.values():
        if node.holder is not None and node.holder.poll() is None:
            # Whatever pods are left: removed by the runtime itself, inside the node.
            node.run(sys.executable, "-c", (
                "import asyncio; from pathlib import Path; from kubelite.agent.runtime import RuntimeOptions; "
                "from kubelite.agent.runtimes.runc import RuncRuntime; "
                f"asyncio.run(RuncRuntime(RuntimeOptions(node_name={node.name!r}, "
                f"data_dir=Path({str(node.data_dir)!r}))).reset())"
            ), check=False, timeout=120)
            node.holder.kill()
            node.holder.wait()
        sh("ip", "netns", "del", node.netns, check=False)
    sh("ip", "link", "del", bridge, check=False)
    _guard_routes(False)


# --- helpers for objects ------------------------------------------------------------------------


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "terminationGracePeriodSeconds": 10,
                "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", SERVE], "ports": [{"containerPort": 8080, "name": "http"}]}],
            }},
        },
    }  # fmt: skip


def pinned_pod(name: str, node: str, command: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", command]}]},
    }  # fmt: skip


def service(name: str, selector: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec}}


def running_pods(c: Cluster, selector: str) -> list[Any]:
    pods = c.core.list_namespaced_pod("nettest", label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and p.status.pod_ip and not p.metadata.deletion_timestamp
            and any(cond.type == "Ready" and cond.status == "True" for cond in p.status.conditions or [])]


def endpoint_ips(c: Cluster, name: str) -> set[str]:
    eps = c.core.read_namespaced_endpoints(name, "nettest")
    return {a.ip for s in eps.subsets or [] for a in s.addresses or []}


@pytest.fixture(scope="module")
def web(cluster: Cluster) -> dict[str, Any]:
    """Deployment ``web`` (3 replicas), Service ``web`` (ClusterIP), a client pod on node A."""
    c = cluster
    client.AppsV1Api(c.api).create_namespaced_deployment("nettest", deployment("web", 3))
    c.core.create_namespaced_service("nettest", service("web", {"app": "web"}))
    c.core.create_namespaced_pod("nettest", pinned_pod("client", "net-a", "exec sleep 3600"))
    c.core.create_namespaced_pod("nettest", pinned_pod("target", "net-c", SERVE, {"role": "target"}))
    pods = eventually(lambda: (lambda p: p if len(p) == 3 else None)(running_pods(c, "app=web")), timeout=60,
                      what="3 web pods Running")
    eventually(lambda: running_pods(c, "role=target"), timeout=30, what="target pod")
    eventually(lambda: c.core.read_namespaced_pod("client", "nettest").status.phase == "Running", timeout=30)
    eventually(lambda: endpoint_ips(c, "web") == {p.status.pod_ip for p in pods}, what="web endpoints")
    svc = c.core.read_namespaced_service("web", "nettest")
    return {"cluster_ip": svc.spec.cluster_ip, "pods": {p.metadata.name: p for p in pods}}


# --- tests --------------------------------------------------------------------------------------


def test_nodes_get_distinct_pod_cidrs_from_the_cluster_cidr(cluster: Cluster) -> None:
    cidrs = {n.metadata.name: n.spec.pod_cidr for n in cluster.core.list_node().items}
    assert len(set(cidrs.values())) == 3
    assert all(c.startswith("10.236.") and c.endswith("/24") for c in cidrs.values()), cidrs
    for name, node in cluster.nodes.items():  # every node routes to the two others' pod CIDRs, via their IPs
        wanted = {f"{cidr} via {NODES[other]}" for other, cidr in cidrs.items() if other != name}
        eventually(lambda node=node, wanted=wanted: all(  # type: ignore[misc]
            w in node.run("ip", "-4", "route", "show", "proto", "201") for w in wanted), timeout=10,
            what=f"routes on {name}")


def test_pod_to_pod_across_nodes_by_ip_service_and_dns(cluster: Cluster, web: dict[str, Any]) -> None:
    target = cluster.core.read_namespaced_pod("target", "nettest")
    assert cluster.fetch(f"http://{target.status.pod_ip}:8080/") == ["target"]  # node A -> node C, by pod IP
    assert cluster.fetch(f"http://{web['cluster_ip']}/")[0] in web["pods"]
    assert cluster.fetch("http://web.nettest.svc.cluster.local/")[0] in web["pods"]
    assert cluster.fetch("http://web/")[0] in web["pods"]  # the search path of the pod's resolv.conf
    resolv = cluster.exec(cluster.nodes["net-a"], "nettest", "client", "cat /etc/resolv.conf")
    assert "search nettest.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv


def test_every_ready_endpoint_answers_some_of_100_requests(cluster: Cluster, web: dict[str, Any]) -> None:
    answers = collections.Counter(cluster.fetch(f"http://{web['cluster_ip']}/", count=100))
    assert set(answers) == set(web["pods"]), answers


def test_dns_headless_and_statefulset_style_names(cluster: Cluster, web: dict[str, Any]) -> None:
    c = cluster
    c.core.create_namespaced_service("nettest", service("web-headless", {"app": "web"}, clusterIP="None"))
    pod = pinned_pod("db-0", "net-b", SERVE, {"role": "db"})
    pod["spec"].update({"hostname": "db-0", "subdomain": "db"})
    c.core.create_namespaced_pod("nettest", pod)
    c.core.create_namespaced_service("nettest", service("db", {"role": "db"}, clusterIP="None"))
    db = eventually(lambda: running_pods(c, "role=db"), timeout=30, what="db-0 Running")[0]
    eventually(lambda: endpoint_ips(c, "db") == {db.status.pod_ip}, what="db endpoints")
    pod_ips = {p.status.pod_ip for p in web["pods"].values()}
    out = c.exec(c.nodes["net-a"], "nettest", "client", "nslookup web-headless.nettest.svc.cluster.local")
    assert pod_ips <= set(out.split()) and web["cluster_ip"] not in out, out
    assert c.fetch("http://db-0.db.nettest.svc.cluster.local:8080/") == ["db-0"]
    missing = c.exec(c.nodes["net-a"], "nettest", "client",
                     "nslookup nope.nettest.svc.cluster.local 2>&1; echo rc=$?")
    assert "NXDOMAIN" in missing or "can't find" in missing, missing


def test_session_affinity_client_ip_sticks(cluster: Cluster, web: dict[str, Any]) -> None:
    cluster.core.create_namespaced_service("nettest", service("sticky", {"app": "web"}, sessionAffinity="ClientIP"))
    ip = cluster.core.read_namespaced_service("sticky", "nettest").spec.cluster_ip
    eventually(lambda: len(endpoint_ips(cluster, "sticky")) == 3, what="sticky endpoints")
    answers = eventually(lambda: (lambda a: a if "FAIL" not in a else None)(
        cluster.fetch(f"http://{ip}/", count=30)), timeout=10, what="sticky service answering")
    assert len(set(answers)) == 1, collections.Counter(answers)


def test_node_port_on_every_node_ip(cluster: Cluster, web: dict[str, Any]) -> None:
    cluster.core.create_namespaced_service("nettest", service("web-np", {"app": "web"}, type="NodePort"))
    port = cluster.core.read_namespaced_service("web-np", "nettest").spec.ports[0].node_port
    assert 30000 <= port <= 32767
    eventually(lambda: len(endpoint_ips(cluster, "web-np")) == 3, what="web-np endpoints")
    for ip in NODES.values():
        # From the host (outside the cluster) and from the client pod, to each node's address.
        def get(ip: str = ip) -> str | None:
            try:
                with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=5) as resp:
                    return str(resp.read().decode().strip())
            except OSError:
                return None  # not programmed yet

        assert eventually(get, timeout=10, what=f"NodePort on {ip}") in web["pods"]
        assert cluster.fetch(f"http://{ip}:{port}/")[0] in web["pods"]


def test_resync_repairs_rules_deleted_by_hand(cluster: Cluster, web: dict[str, Any]) -> None:
    node = cluster.nodes["net-a"]
    node.run("iptables", "-t", "nat", "-D", "OUTPUT", "-m", "comment", "--comment", "kubelite service portals",
             "-j", "KUBELITE-SERVICES")
    node.run("iptables", "-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment", "kubelite service portals",
             "-j", "KUBELITE-SERVICES")
    node.run("iptables", "-t", "nat", "-F", "KUBELITE-SERVICES")
    gone = node.run("iptables-save", "-t", "nat")
    assert "-j KUBELITE-SERVICES" not in gone and "-A KUBELITE-SERVICES " not in gone

    def repaired() -> bool:
        rules = node.run("iptables-save", "-t", "nat")
        entry = f"-A KUBELITE-SERVICES -d {web['cluster_ip']}/32"
        return rules.count("-j KUBELITE-SERVICES") == 2 and entry in rules

    eventually(repaired, timeout=10, what="rules repaired by the resync")
    assert cluster.fetch(f"http://{web['cluster_ip']}/")[0] in web["pods"]


def test_scale_down_drains_quickly_and_loses_under_one_percent(cluster: Cluster, web: dict[str, Any]) -> None:
    c = cluster
    apps = client.AppsV1Api(c.api)
    url = f"http://{web['cluster_ip']}/"
    assert "FAIL" not in c.fetch(url, count=20)
    # 1,000 requests from the client pod, with the scale-down 3 -> 1 landing early in the run.
    loop = subprocess.Popen(
        ["nsenter", "-t", str(c.nodes["net-a"].holder.pid), "-m", "-n", "runc",  # type: ignore[union-attr]
         "--root", str(c.nodes["net-a"].data_dir / "runc"), "exec", c.container_id(c.nodes["net-a"], "nettest", "client"),
         "sh", "-c", f"i=0; while [ $i -lt 1000 ]; do i=$((i+1)); timeout 5 wget -qO- {url} 2>/dev/null || echo FAIL; done"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)
    apps.patch_namespaced_deployment_scale("web", "nettest", {"spec": {"replicas": 1}})
    scaled_at = time.monotonic()
    survivors = eventually(lambda: (lambda p: p if len(p) == 1 else None)(running_pods(c, "app=web")), timeout=20)
    removed = set(web["pods"]) - {survivors[0].metadata.name}
    assert len(removed) == 2
    out, _ = loop.communicate(timeout=120)
    answers = out.split()
    failures = answers.count("FAIL")
    print(f"\nscale-down 3->1 under load: {failures} of {len(answers)} requests failed")  # reported
    assert len(answers) == 1000
    assert failures < 10, f"{failures}/1000 failed"
    # From 2 s after the scale-down on, no request reaches a removed pod.
    time.sleep(max(0.0, 2.0 - (time.monotonic() - scaled_at)))
    after = c.fetch(url, count=50)
    assert set(after) == {survivors[0].metadata.name}, collections.Counter(after)
    apps.patch_namespaced_deployment_scale("web", "nettest", {"spec": {"replicas": 3}})


def test_a_node_that_leaves_takes_its_routes_with_it(cluster: Cluster) -> None:
    c = cluster
    c.core.create_node({"metadata": {"name": "net-ghost"}})
    c.core.patch_node_status("net-ghost", {"status": {"addresses": [{"type": "InternalIP", "address": "10.238.0.99"}]}})
    cidr = eventually(lambda: (c.core.read_node("net-ghost").spec or client.V1NodeSpec()).pod_cidr, what="ghost podCIDR")
    assert cidr not in {n.spec.pod_cidr for n in c.core.list_node().items if n.metadata.name != "net-ghost"}
    for node in c.nodes.values():
        eventually(lambda node=node: f"{cidr} via 10.238.0.99" in node.run("ip", "-4", "route", "show", "proto", "201"),
                   timeout=10, what=f"route to the ghost on {node.name}")
    c.core.delete_node("net-ghost")
    for node in c.nodes.values():
        eventually(lambda node=node: cidr not in node.run("ip", "-4", "route", "show", "proto", "201"),
                   timeout=10, what=f"ghost route removed on {node.name}")


def test_agent_restart_keeps_pods_reachable_with_the_same_ips(cluster: Cluster, web: dict[str, Any]) -> None:
    c = cluster
    node = c.nodes["net-c"]
    target = c.core.read_namespaced_pod("target", "nettest")
    cid = c.container_id(node, "nettest", "target")
    c.stop_agent(node, signal.SIGKILL)  # a crash: nothing is cleaned up
    assert "KUBELITE-SERVICES" in node.run("iptables-save", "-t", "nat")
    assert c.fetch(f"http://{target.status.pod_ip}:8080/") == ["target"]  # the data plane outlives the agent
    c.start_agent(node)
    eventually(lambda: "KUBELITE-SERVICES" in (node.run("ss", "-lun") + node.run("iptables-save", "-t", "nat"))
               and ":53 " in node.run("ss", "-lun"), timeout=20, what="restarted agent serving DNS")
    after = c.core.read_namespaced_pod("target", "nettest")
    assert after.status.pod_ip == target.status.pod_ip
    assert c.container_id(node, "nettest", "target") == cid  # re-adopted, not recreated
    assert c.fetch(f"http://{target.status.pod_ip}:8080/") == ["target"]
    assert "FAIL" not in c.fetch(f"http://{web['cluster_ip']}/", count=10)
    ns_rules = node.run("iptables-save", "-t", "nat")
    assert ns_rules.count("-j KUBELITE-SERVICES") == 2  # PREROUTING + OUTPUT, not duplicated by the restart


def test_graceful_stop_removes_only_our_rules(cluster: Cluster) -> None:
    c = cluster
    node = c.nodes["net-b"]
    node.run("iptables", "-t", "nat", "-N", "FOREIGN-TEST")
    node.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-d", "10.236.255.1", "-j", "FOREIGN-TEST")
    before = node.run("iptables-save", "-t", "nat")
    assert "KUBELITE-SEP-" in before
    c.stop_agent(node)  # SIGTERM
    after = node.run("iptables-save", "-t", "nat")
    assert "KUBELITE" not in after, after
    assert ":FOREIGN-TEST" in after and "-A POSTROUTING -d 10.236.255.1/32 -j FOREIGN-TEST" in after


@pytest.mark.parametrize(
    ("spec", "what"),
    [
        ({"ports": [{"port": 70000}]}, "port out of range"),
        ({"clusterIP": "10.99.0.5", "ports": [{"port": 80}]}, "ClusterIP outside the range"),
    ],
)
def test_bad_services_are_rejected(cluster: Cluster, spec: dict[str, Any], what: str) -> None:
    name = f"bad-{random.randint(0, 99999)}"
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_service("nettest", {"metadata": {"name": name}, "spec": spec})
    assert err.value.status == 422, what


def test_two_services_cannot_share_a_node_port(cluster: Cluster) -> None:
    body = {"type": "NodePort", "ports": [{"port": 80, "nodePort": 31999}]}
    cluster.core.create_namespaced_service("nettest", {"metadata": {"name": "np-first"}, "spec": body})
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_service("nettest", {"metadata": {"name": "np-second"}, "spec": body})
    assert err.value.status == 422
