"""Acceptance: a pod calls the API with its mounted ServiceAccount token, and RBAC decides, live.

A real `kubelite server` (HTTPS on 0.0.0.0, so a pod's network namespace can reach it) and a real
`kubelite agent` (runc, with its Service proxy) that joined with the cluster join token. The call
is made from inside the pod the way in-cluster clients (client-go's InClusterConfig) make it:
``$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`` (the ``kubernetes`` Service's ClusterIP :443,
injected by the agent) -> the proxy's DNAT to the ``default/kubernetes`` Endpoints (the server's
advertised address and HTTPS port) -> the API server, the server verified against the mounted
``ca.crt`` and the ClusterIP in its certificate, ``Authorization: Bearer <mounted token>``.

The client is ``openssl s_client`` in the ``busybox-openssl`` image: busybox's ``wget`` cannot
be used, its built-in TLS never verifies the server and cannot complete a handshake with an
OpenSSL 3 server (see kubelite/images/build.py).

  no RoleBinding -> 403; Role + RoleBinding created -> 200 with the pod list (no restart);
  RoleBinding deleted -> 403 again; pod deleted -> its (pod-bound) token is refused with 401
  (that last call from the host: the pod is gone).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.registry import resource
from kubelite.client import ApiClient, ApiError
from kubelite.controllers.base import PODS
from tests.conftest import ServerProcess, start_server
from tests.helpers import eventually
from tests.integration.runtime_suite import Harness, guarded_pod_cidr, require_host
from tests.integration.test_node_agent_e2e import pod_exec

pytestmark = pytest.mark.slow
Obj = dict[str, Any]
NS = "default"
IMAGE = "busybox-openssl:latest"
SA = "lister"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICEACCOUNTS = resource("", "serviceaccounts")
SERVICES = resource("", "services")
ROLES = resource("rbac.authorization.k8s.io", "roles")
ROLEBINDINGS = resource("rbac.authorization.k8s.io", "rolebindings")


def kubelite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})


@dataclass
class Cluster:
    server: ServerProcess
    node: str
    cidr: str
    data_dir: Path
    agent: subprocess.Popen[bytes]
    agent_log: Path

    def log(self) -> str:
        return self.agent_log.read_text(errors="replace")[-4000:] + "\n--- server ---\n" + self.server.log()[-4000:]


def _node_ready(server: ServerProcess, node: str) -> bool:
    try:
        with urllib.request.urlopen(f"{server.url}/api/v1/nodes/{node}", timeout=2) as r:
            obj = json.loads(r.read())
    except OSError:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions") or [])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_host("runc")
    assert shutil.which("iptables-restore"), "iptables is not installed (the Service proxy needs it)"
    tmp = tmp_path_factory.mktemp("sa-pod")
    tar = tmp / "image.tar"
    r = kubelite("image", "build", "busybox-openssl", "-o", str(tar))
    assert r.returncode == 0, r.stderr
    harness = Harness("runc")
    # Both ranges guarded: a packet to a ClusterIP that the proxy did not (yet) rewrite fails here.
    with guarded_pod_cidr(100, 199) as cidr, guarded_pod_cidr(100, 199) as service_cidr:
        # 0.0.0.0: the pod reaches the server at the advertised (default-route) address; the
        # insecure port stays on loopback (set-up only).
        server = start_server(tmp / "server", extra_args=[
            "--cluster-cidr", cidr, "--service-cidr", service_cidr, "--bind-address", "0.0.0.0"])
        node, data_dir = f"sa-{uuid.uuid4().hex[:6]}", tmp / "agent"
        agent: subprocess.Popen[bytes] | None = None
        try:
            r = kubelite("image", "import", str(tar), "--data-dir", str(data_dir))
            assert r.returncode == 0, r.stderr
            log_path = tmp / "agent.log"
            with open(log_path, "ab") as log:
                # The agent joins like a real node: HTTPS + join token, its own node credential.
                agent = subprocess.Popen(
                    [sys.executable, "-m", "kubelite", "agent", "--server", server.https_url, "--token", server.token,
                     "--node-name", node, "--runtime", "runc", "--data-dir", str(data_dir), "--pod-cidr", cidr,
                     "--cluster-cidr", cidr, "--agent-port", "0", "--no-dns",
                     "--heartbeat-interval", "1"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            c = Cluster(server, node, cidr, data_dir, agent, log_path)
            deadline = time.monotonic() + 40
            while not _node_ready(server, node):
                assert agent.poll() is None, f"the agent exited:\n{c.log()}"
                assert time.monotonic() < deadline, f"node {node} not ready:\n{c.log()}"
                time.sleep(0.2)
            yield c
        finally:
            if agent is not None and agent.poll() is None:
                agent.terminate()
                try:
                    agent.wait(20)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
            server.stop()
            assert harness.reset_node(data_dir, node, cidr) == []
            # The proxy removed its rules on the way out (they live in the host's nat table).
            nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
            kubernetes_ip = ipaddress.ip_network(service_cidr)[1]
            assert f"-d {kubernetes_ip}/32 " not in nat, nat


@pytest.fixture
async def admin(cluster: Cluster) -> AsyncIterator[ApiClient]:
    async with ApiClient(cluster.server.url) as client:  # the loopback insecure port: admin, for set-up only
        yield client


async def pod_token(admin: ApiClient, cluster: Cluster, pod: str) -> str:
    """The token file as the pod's container sees it now (the agent renews it in place)."""
    code, token = await pod_exec(admin, pod, "cat", f"{MOUNT}/token")
    assert code == 0 and token.count(".") == 2, f"no token in the pod ({code}): {token}\n{cluster.log()}"
    return token


# What an in-cluster client does: the API at $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
# the server verified against the mounted CA and that IP, the mounted token as the bearer
# ($0 = the path, $1 = an extra s_client option). stderr (s_client's diagnostics) only on failure.
IN_POD_GET = f"""
printf 'GET %s HTTP/1.1\\r\\nHost: %s\\r\\nAuthorization: Bearer %s\\r\\nConnection: close\\r\\n\\r\\n' \\
    "$0" "$KUBERNETES_SERVICE_HOST" "$(cat {MOUNT}/token)" |
openssl s_client -quiet -connect "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" -CAfile {MOUNT}/ca.crt \\
    -verify_return_error -verify_ip "$KUBERNETES_SERVICE_HOST" $1 2>/tmp/s_client.err || {{ cat /tmp/s_client.err; exit 1; }}
"""


async def in_pod_get(admin: ApiClient, cluster: Cluster, pod: str, path: str, extra: str = "") -> tuple[int, str]:
    """(status, body) of ``GET path`` made by the pod itself; AssertionError if TLS fails."""
    code, out = await pod_exec(admin, pod, "sh", "-c", IN_POD_GET, path, extra)
    assert code == 0 and out.startswith("HTTP/1.1 "), f"in-pod HTTPS call failed ({code}): {out}\n{cluster.log()}"
    head, _, body = out.partition("\r\n\r\n")
    if "transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return int(head.split()[1]), body


def _dechunk(data: str) -> str:
    out, rest = "", data
    while rest:
        size_line, _, rest = rest.partition("\r\n")
        size = int(size_line.split(";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


async def list_pods_as_pod(admin: ApiClient, cluster: Cluster, pod: str) -> tuple[int, str]:
    return await in_pod_get(admin, cluster, pod, f"/api/v1/namespaces/{NS}/pods")


def https_get(cluster: Cluster, path: str, token: str) -> tuple[int, str]:
    """(status, body) of a GET from the host with a bearer token, the server verified against the CA."""
    ctx = ssl.create_default_context(cafile=str(cluster.server.tls_dir / "ca.crt"))
    req = urllib.request.Request(f"{cluster.server.https_url}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


async def test_pod_token_is_governed_by_rbac_live(admin: ApiClient, cluster: Cluster) -> None:
    await admin.create(SERVICEACCOUNTS, {"metadata": {"name": SA, "namespace": NS}})
    pod = await admin.create(PODS, {"metadata": {"name": "caller", "namespace": NS}, "spec": {
        "nodeName": cluster.node, "serviceAccountName": SA, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}})
    # The admission plugin mounted the token volume.
    assert any(v["name"].startswith("kube-api-access-") for v in pod["spec"]["volumes"])

    async def running() -> bool:
        st = (await admin.get(PODS, "caller", NS)).get("status") or {}
        return st.get("phase") == "Running"

    try:
        await eventually(running, 40, "pod caller running")
    except AssertionError:
        raise AssertionError(f"{(await admin.get(PODS, 'caller', NS)).get('status')}\n{cluster.log()}") from None

    code, files = await pod_exec(admin, "caller", "sh", "-c", f"ls {MOUNT}; cat {MOUNT}/namespace; echo; head -1 {MOUNT}/ca.crt")
    assert code == 0 and files.split() == ["ca.crt", "namespace", "token", NS, "-----BEGIN", "CERTIFICATE-----"], files

    # The agent told the container where the API is: the kubernetes Service, as kubelet does.
    kubernetes = await admin.get(SERVICES, "kubernetes", NS)
    code, env = await pod_exec(admin, "caller", "sh", "-c", "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT")
    assert code == 0 and env.strip() == f"{kubernetes['spec']['clusterIP']}:443", env

    # The client really verifies the server: a certificate not valid for the name it expects fails.
    code, out = await pod_exec(admin, "caller", "sh", "-c", IN_POD_GET, "/api", "-verify_hostname not-the-apiserver")
    assert code == 1 and "verify" in out.lower(), out

    # Authenticated as the ServiceAccount (discovery is open to every authenticated user).
    status, body = await in_pod_get(admin, cluster, "caller", "/api")
    assert status == 200 and json.loads(body)["kind"] == "APIVersions", body

    # No binding: the ServiceAccount is authenticated but may not list pods.
    status, body = await list_pods_as_pod(admin, cluster, "caller")
    assert status == 403 and "system:serviceaccount:default:lister" in body, body

    await admin.create(ROLES, {"metadata": {"name": "pod-reader", "namespace": NS}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]})
    await admin.create(ROLEBINDINGS, {
        "metadata": {"name": "lister-reads-pods", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]})  # fmt: skip

    async def allowed() -> str | None:
        status, body = await list_pods_as_pod(admin, cluster, "caller")
        return body if status == 200 else None

    body = await eventually(allowed, 15, "the RoleBinding to take effect", interval=0.5)
    listed = json.loads(body)
    assert listed["kind"] == "PodList" and "caller" in [p["metadata"]["name"] for p in listed["items"]]

    await admin.delete(ROLEBINDINGS, "lister-reads-pods", NS)

    async def denied_again() -> bool:
        return (await list_pods_as_pod(admin, cluster, "caller"))[0] == 403

    await eventually(denied_again, 15, "the RoleBinding's removal to take effect", interval=0.5)

    # The token is bound to the pod: once the pod is gone, it no longer authenticates at all
    # (checked from the host, with the token read out of the pod while it ran).
    token = await pod_token(admin, cluster, "caller")
    assert (await asyncio.to_thread(https_get, cluster, "/api", token))[0] == 200
    await admin.delete(PODS, "caller", NS, grace_period_seconds=0)

    async def gone() -> bool:
        try:
            await admin.get(PODS, "caller", NS)
        except ApiError as e:
            return e.code == 404
        return False

    await eventually(gone, 20, "pod caller deleted")
    assert (await asyncio.to_thread(https_get, cluster, "/api", token))[0] == 401
