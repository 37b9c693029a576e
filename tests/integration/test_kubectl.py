"""The real kubectl against a real kubelite server with controllers and two hollow nodes.

kubectl binaries: Debian's 1.20 (extracted by scripts/fetch-kubectl.sh into .cache/kubectl/) and
the newest kubectl on this machine (the `kubectl` on PATH, or its newest versioned sibling such as
kubectl.1.33 next to a dispatcher). A missing binary skips its tests with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ServerProcess, start_server
from tests.helpers import eventually_sync as eventually
from tests.helpers import stop_processes

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_KUBECTL = ROOT / ".cache" / "kubectl" / "kubectl-1.20"


def _version(binary: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([binary, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=20)
        info = json.loads(out.stdout)["clientVersion"]
        return int(info["major"]), int(re.sub(r"\D.*", "", info["minor"]))
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return None


def _newest_kubectl() -> tuple[str, tuple[int, int]] | None:
    on_path = shutil.which("kubectl")
    if on_path is None:
        return None
    # A dispatcher (e.g. Google Cloud SDK's) picks a sibling matching the server; name one directly.
    siblings = sorted(
        Path(os.path.realpath(on_path)).parent.glob("kubectl.1.*"),
        key=lambda p: tuple(int(x) for x in p.name.split(".")[1:] if x.isdigit()),
    )
    for candidate in [*(str(p) for p in reversed(siblings)), on_path]:
        v = _version(candidate)
        if v is not None:
            return candidate, v
    return None


def _kubectl_params() -> list[Any]:
    params = []
    if DEBIAN_KUBECTL.exists():
        params.append(pytest.param((str(DEBIAN_KUBECTL), (1, 20)), id="kubectl-1.20"))
    else:
        params.append(pytest.param(None, id="kubectl-1.20", marks=pytest.mark.skip(
            reason=f"{DEBIAN_KUBECTL} is missing: run scripts/fetch-kubectl.sh")))
    newest = _newest_kubectl()
    if newest is None:
        params.append(pytest.param(None, id="kubectl-newest", marks=pytest.mark.skip(reason="no kubectl on PATH")))
    else:
        params.append(pytest.param(newest, id=f"kubectl-{newest[1][0]}.{newest[1][1]}"))
    return params


@dataclass
class Cluster:
    server: ServerProcess
    home: Path

    def http(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server.url + path, data=data, method=method, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A server with its controllers (the default), plus `kubelite agent` running two hollow nodes."""
    tmp = tmp_path_factory.mktemp("kubectl")
    server = start_server(tmp / "server")
    agent_log = open(tmp / "agent.log", "wb")  # closed in the finally below, once the agent exits
    agent = subprocess.Popen(
        [sys.executable, "-m", "kubelite", "agent", "--runtime", "fake", "--hollow-count", "2",
         "--node-name", "hollow", "--server", server.url, "--data-dir", str(tmp / "agent")],
        stdout=agent_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    c = Cluster(server, tmp / "home")
    c.home.mkdir()
    try:

        def ready_nodes() -> int:
            _code, nodes = c.http("GET", "/api/v1/nodes")
            return sum(
                any(cond["type"] == "Ready" and cond["status"] == "True" for cond in (n.get("status") or {}).get("conditions", []))
                for n in nodes["items"]
            )

        eventually(lambda: ready_nodes() == 2, 30, "two Ready hollow nodes")
        yield c
    finally:
        stop_processes(agent)
        agent_log.close()
        server.stop()


@dataclass
class Kubectl:
    binary: str
    version: tuple[int, int]
    cluster: Cluster
    namespace: str

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60,
            namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.server.kubeconfig), "HOME": str(self.cluster.home)}
        cmd = [self.binary, "-n", namespace or self.namespace, *args]
        out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out

    def json(self, *args: str, namespace: str | None = None) -> Any:
        return json.loads(self.run("get", *args, "-o", "json", namespace=namespace).stdout)

    def popen(self, output: Path, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.server.kubeconfig), "HOME": str(self.cluster.home)}
        with open(output, "wb") as out:
            return subprocess.Popen([self.binary, "-n", self.namespace, *args], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _namespace(cluster: Cluster, name: str) -> str:
    code, body = cluster.http("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert code in (201, 409), body
    return name


@pytest.fixture(params=_kubectl_params())
def kubectl(request: pytest.FixtureRequest, cluster: Cluster) -> Kubectl:
    binary, version = request.param
    test = request.node.name.split("[")[0].removeprefix("test_")[:20].replace("_", "-").strip("-")
    ns = _namespace(cluster, f"k{version[0]}-{version[1]}-{test}")
    return Kubectl(binary, version, cluster, ns)


def manifests(image: str = "busybox:1.36", env: dict[str, str] | None = None, ports: tuple[int, ...] = (8080,),
              name: str = "web") -> str:
    env = {"MODE": "blue"} if env is None else env
    container: dict[str, Any] = {
        "name": "httpd",
        "image": image,
        "command": ["httpd", "-f", "-p", "8080"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"containerPort": p, "name": f"p{p}"} for p in ports],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        "volumeMounts": [{"name": "content", "mountPath": "/www"}],
    }
    docs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-content"}, "data": {"index.html": "hi"}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [container],
                        "volumes": [{"name": "content", "configMap": {"name": f"{name}-content"}}],
                        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    ]
    return yaml.safe_dump_all(docs)


def _comparable_service(svc: dict[str, Any]) -> dict[str, Any]:
    spec = dict(svc["spec"])
    for allocated in ("clusterIP", "clusterIPs"):
        spec.pop(allocated, None)
    return spec


def test_apply_reapply_and_remove_port(kubectl: Kubectl) -> None:
    assert "created" in kubectl.run("apply", "-f", "-", stdin=manifests()).stdout
    edited = manifests(image="busybox:1.37", env={"MODE": "green", "LEVEL": "3"}, ports=(8080, 9090))
    out = kubectl.run("apply", "-f", "-", stdin=edited).stdout
    assert "deployment.apps/web configured" in out
    # The applied-twice objects equal a fresh create of the edited manifests (nothing lost, nothing stale).
    fresh = _namespace(kubectl.cluster, kubectl.namespace + "-fresh")
    kubectl.run("create", "-f", "-", stdin=edited, namespace=fresh)
    applied, created = kubectl.json("deployment", "web"), kubectl.json("deployment", "web", namespace=fresh)
    assert applied["spec"] == created["spec"]
    (container,) = applied["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "busybox:1.37"
    assert container["env"] == [{"name": "MODE", "value": "green"}, {"name": "LEVEL", "value": "3"}]
    assert _comparable_service(kubectl.json("service", "web")) == _comparable_service(
        kubectl.json("service", "web", namespace=fresh)
    )
    assert kubectl.json("configmap", "web-content")["data"] == {"index.html": "hi"}

    kubectl.run("apply", "-f", "-", stdin=manifests(image="busybox:1.37", env={"MODE": "green", "LEVEL": "3"}))
    (container,) = kubectl.json("deployment", "web")["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [8080]


def test_get_describe_scale_rollout_watch_delete(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl.run("apply", "-f", "-", stdin=manifests())
    kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")
    wide = kubectl.run("get", "pods", "-o", "wide").stdout
    header = wide.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "IP" in header and "NODE" in header
    assert wide.count("Running") == 2 and "hollow-" in wide
    deploy_table = kubectl.run("get", "deployments").stdout.splitlines()
    assert deploy_table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploy_table[1].split()[:4] == ["web", "2/2", "2", "2"]
    as_yaml = yaml.safe_load(kubectl.run("get", "deployment", "web", "-o", "yaml").stdout)
    assert as_yaml["kind"] == "Deployment" and as_yaml["spec"]["replicas"] == 2
    described = kubectl.run("describe", "deployment", "web").stdout
    assert re.search(r"Replicas:\s+2 desired", described) and "ScalingReplicaSet" in described

    watch_log = tmp_path / "watch.log"
    watcher = kubectl.popen(watch_log, "get", "pods", "-w")
    try:
        kubectl.run("scale", "deployment/web", "--replicas=5")
        out = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s").stdout
        assert "successfully rolled out" in out
        assert kubectl.json("deployment", "web")["status"]["readyReplicas"] == 5
        pods = {p["metadata"]["name"] for p in kubectl.json("pods")["items"]}
        assert len(pods) == 5
        # The watch printed the new pods, and saw them reach Running.
        eventually(lambda: all(re.search(rf"^{name}\s+1/1\s+Running", watch_log.read_text(), re.M) for name in pods),
                   30, "the watch to show every pod Running")
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(10)

    kubectl.run("delete", "deployment", "web", timeout=60)  # waits until the object is gone
    assert kubectl.cluster.http("GET", f"/apis/apps/v1/namespaces/{kubectl.namespace}/deployments/web")[0] == 404
    assert "No resources found" in kubectl.run("get", "deployments").stderr


def test_api_resources_list_short_names(kubectl: Kubectl) -> None:
    rows = {line.split()[0]: line.split() for line in kubectl.run("api-resources").stdout.splitlines()[1:]}
    for plural, short in (("pods", "po"), ("deployments", "deploy"), ("daemonsets", "ds"), ("statefulsets", "sts"),
                          ("services", "svc"), ("configmaps", "cm"), ("nodes", "no"), ("namespaces", "ns"),
                          ("endpoints", "ep"), ("replicasets", "rs"), ("persistentvolumeclaims", "pvc"),
                          ("persistentvolumes", "pv")):
        assert short in rows[plural][1].split(","), rows[plural]
    # The `all` category: `kubectl get all` covers pods, services, deployments.
    kubectl.run("apply", "-f", "-", stdin=manifests(name="cat"))
    everything = kubectl.run("get", "all").stdout
    assert "deployment.apps/cat" in everything and "service/cat" in everything


def test_logs(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=manifests(name="logs"))
    kubectl.run("rollout", "status", "deployment/logs", "--timeout=60s")
    out = kubectl.run("logs", "deployment/logs", check=False)
    assert out.returncode == 0, out.stderr
    assert "fake runtime: would run httpd -f -p 8080" in out.stdout


def test_server_side_apply(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "--server-side", "-f", "-", stdin=manifests(name="ssa")).stdout
    assert "deployment.apps/ssa serverside-applied" in out
    kubectl.run("apply", "--server-side", "-f", "-", stdin=manifests(name="ssa", image="busybox:1.37", ports=()))
    # kubectl >= 1.21 hides managedFields unless asked.
    show = ["--show-managed-fields"] if kubectl.version >= (1, 21) else []
    obj = json.loads(kubectl.run("get", "deployment", "ssa", "-o", "json", *show).stdout)
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "busybox:1.37" and "ports" not in container
    managers = {(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


def test_bad_input(kubectl: Kubectl) -> None:
    bad = manifests(name="bad").replace("replicas: 2", "replicas: 2\n  replicaz: 3")
    if kubectl.version >= (1, 27):
        out = kubectl.run("apply", "--validate=strict", "-f", "-", stdin=bad, check=False)
        assert out.returncode != 0 and 'unknown field "spec.replicaz"' in out.stderr, out.stderr
    kubectl.run("apply", "-f", "-", stdin=manifests(name="typed"))
    out = kubectl.run("patch", "deployment", "typed", "--type=merge", "-p", '{"spec":{"replicas":"five"}}', check=False)
    assert out.returncode != 0 and "is invalid" in out.stderr and "spec.replicas" in out.stderr, out.stderr
    code, status = kubectl.cluster.http(
        "PATCH", f"/apis/apps/v1/namespaces/{kubectl.namespace}/deployments/typed", {"spec": {"replicas": "five"}},
        "application/merge-patch+json",
    )
    assert code == 422 and status["reason"] == "Invalid"


def test_unsupported_content_type(cluster: Cluster) -> None:
    code, status = cluster.http("POST", "/api/v1/namespaces/default/configmaps", b"\x00", "application/x-protobuf")
    assert code == 415 and "application/json" in status["message"] and "application/yaml" in status["message"]
    code, status = cluster.http("PATCH", "/api/v1/namespaces/default/configmaps/x", b"{}", "text/csv")
    assert code == 415 and "application/strategic-merge-patch+json" in status["message"]


def test_protobuf_create_commands(kubectl: Kubectl) -> None:
    """kubectl >= 1.32 sends `create configmap|secret|namespace|deployment` bodies as protobuf,
    unconditionally (client-go's typed clients; no discovery or negotiation is consulted first).
    kubelite does not decode protobuf, so those commands fail with our 415; `apply`/`create -f`
    send JSON and work, which gives a working spelling of the same command."""
    out = kubectl.run("create", "configmap", "literal", "--from-literal=a=b", check=False)
    if kubectl.version < (1, 32):
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode != 0
        assert "application/vnd.kubernetes.protobuf" in out.stderr and "application/json" in out.stderr
        generated = kubectl.run("create", "configmap", "literal", "--from-literal=a=b", "--dry-run=client", "-o", "yaml")
        kubectl.run("apply", "-f", "-", stdin=generated.stdout)
    assert kubectl.json("configmap", "literal")["data"] == {"a": "b"}


def test_openapi_and_explain(kubectl: Kubectl) -> None:
    code, doc = kubectl.cluster.http("GET", "/openapi/v2")
    assert code == 200 and doc["swagger"] == "2.0"
    props = doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert props["x-kubernetes-patch-merge-key"] == "name"
    out = kubectl.run("explain", "deployment.spec.replicas", check=False)
    if kubectl.version >= (1, 27):  # reads /openapi/v3 as JSON
        assert out.returncode == 0 and "replicas" in out.stdout and "integer" in out.stdout, out.stderr
    else:  # reads /openapi/v2 as protobuf only, which kubelite serves empty
        assert out.returncode != 0


def test_lightkube_server_side_apply(cluster: Cluster) -> None:
    from lightkube import Client, KubeConfig
    from lightkube.resources.apps_v1 import Deployment

    ns = _namespace(cluster, "lightkube")
    client = Client(KubeConfig.from_file(str(cluster.server.kubeconfig)), field_manager="lightkube-test")
    docs = list(yaml.safe_load_all(manifests(name="lk")))
    created = client.apply(Deployment.from_dict(docs[1]), namespace=ns)
    assert created.metadata is not None and created.metadata.uid
    docs[1]["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.37"
    docs[1]["spec"]["replicas"] = 3
    updated = client.apply(Deployment.from_dict(docs[1]), namespace=ns)
    assert updated.metadata is not None and updated.metadata.uid == created.metadata.uid
    assert updated.spec is not None and updated.spec.replicas == 3
    assert updated.spec.template.spec is not None
    assert updated.spec.template.spec.containers[0].image == "busybox:1.37"
    managers = {(e.manager, e.operation) for e in updated.metadata.managedFields or []}
    assert ("lightkube-test", "Apply") in managers
