"""RBAC objects through the real kubectl, and RBAC deciding real HTTPS requests.

kubectl (the newest on PATH, as tests/integration/test_kubectl.py finds it) talks to the
server's plain-HTTP loopback port as the admin; a user with a client certificate issued by the
cluster CA talks to the HTTPS port and is authorized by RBAC alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from kubelite.auth.pki import CertKey, client_ssl_context, issue
from tests.conftest import ServerProcess

NS = "rbac-demo"

MANIFESTS = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-reader, namespace: {NS}}}
rules:
- apiGroups: [""]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: read-pods, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}
subjects:
- {{kind: User, apiGroup: rbac.authorization.k8s.io, name: jane}}
- {{kind: ServiceAccount, name: default, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: view-all, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}
subjects:
- {{kind: Group, apiGroup: rbac.authorization.k8s.io, name: auditors}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "demo:node-reader"}}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "demo:node-reader"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "demo:node-reader"}}
subjects:
- {{kind: Group, apiGroup: rbac.authorization.k8s.io, name: auditors}}
"""


def kubectl_binary() -> str:
    on_path = shutil.which("kubectl")
    assert on_path is not None, "kubectl is not on PATH (scripts/setup.sh installs it)"
    # A dispatcher (e.g. Google Cloud SDK's) picks a sibling matching the server; name one directly.
    siblings = sorted(
        Path(os.path.realpath(on_path)).parent.glob("kubectl.1.*"),
        key=lambda p: tuple(int(x) for x in p.name.split(".")[1:] if x.isdigit()),
    )
    return str(siblings[-1]) if siblings else on_path


def write_kubeconfig(path: Path, server: str, user: dict[str, str] | None = None, ca: Path | None = None) -> Path:
    cluster: dict[str, str] = {"server": server}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def kubectl(server: ServerProcess, *args: str, stdin: str | None = None, kubeconfig: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    home = server.data_dir / "home"
    home.mkdir(exist_ok=True)
    config = kubeconfig or write_kubeconfig(server.data_dir / "insecure-kubeconfig.yaml", server.url)
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(home)}
    cmd = [kubectl_binary(), *args]
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=60)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def table(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def create_namespace(server: ServerProcess, name: str) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).encode()
    req = urllib.request.Request(f"{server.url}/api/v1/namespaces", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201


def test_kubectl_creates_and_prints_rbac_objects(apiserver: ServerProcess) -> None:
    server = apiserver
    create_namespace(server, NS)
    out = kubectl(server, "apply", "-f", "-", stdin=MANIFESTS).stdout
    assert "role.rbac.authorization.k8s.io/pod-reader created" in out
    assert 'clusterrolebinding.rbac.authorization.k8s.io/demo:node-reader created' in out

    printed = kubectl(server, "-n", NS, "get", "roles,rolebindings").stdout
    roles_part, bindings_part = printed.strip().split("\n\n")
    roles = table(roles_part)
    assert roles[0] == ["NAME", "CREATED AT"]
    assert roles[1][0] == "role.rbac.authorization.k8s.io/pod-reader"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", roles[1][1]), roles
    bindings = table(bindings_part)
    assert bindings[0] == ["NAME", "ROLE", "AGE"]
    assert [row[:2] for row in bindings[1:]] == [
        ["rolebinding.rbac.authorization.k8s.io/read-pods", "Role/pod-reader"],
        ["rolebinding.rbac.authorization.k8s.io/view-all", "ClusterRole/view"],
    ]

    wide = table(kubectl(server, "-n", NS, "get", "rolebinding", "read-pods", "-o", "wide").stdout)
    assert wide[0] == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert wide[1][0:2] == ["read-pods", "Role/pod-reader"] and wide[1][3:] == ["jane", f"{NS}/default"]

    crb = table(kubectl(server, "get", "clusterrolebinding", "demo:node-reader").stdout)
    assert crb[0] == ["NAME", "ROLE", "AGE"] and crb[1][:2] == ["demo:node-reader", "ClusterRole/demo:node-reader"]
    cr = table(kubectl(server, "get", "clusterroles", "cluster-admin", "demo:node-reader").stdout)
    assert cr[0] == ["NAME", "CREATED AT"] and [r[0] for r in cr[1:]] == ["cluster-admin", "demo:node-reader"]

    role = json.loads(kubectl(server, "-n", NS, "get", "role", "pod-reader", "-o", "json").stdout)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]
    # rules and subjects are atomic lists (no patchMergeKey in rbac/v1): a re-apply replaces them.
    edited = MANIFESTS.replace("resources: [pods, pods/log]\n  verbs: [get, list, watch]",
                               "resources: [configmaps]\n  verbs: [get]")
    edited = edited.replace(f"- {{kind: ServiceAccount, name: default, namespace: {NS}}}\n", "")
    assert edited.count("configmaps") == 1 and "ServiceAccount" not in edited
    kubectl(server, "apply", "-f", "-", stdin=edited)
    role = json.loads(kubectl(server, "-n", NS, "get", "role", "pod-reader", "-o", "json").stdout)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    rb = json.loads(kubectl(server, "-n", NS, "get", "rolebinding", "read-pods", "-o", "json").stdout)
    assert rb["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"}]

    # Validation answers as kube-apiserver does.
    bad = kubectl(server, "-n", NS, "create", "-f", "-", check=False, stdin=(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: bad}\n"
        "rules: [{nonResourceURLs: [/metrics], verbs: [get]}]\n"))
    assert bad.returncode != 0 and "namespaced rules cannot apply to non-resource URLs" in bad.stderr


POD_LISTER = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-lister}
rules: [{apiGroups: [""], resources: [pods], verbs: [list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: pat-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-lister}
subjects: [{kind: Group, apiGroup: rbac.authorization.k8s.io, name: developers}]
"""


def https_status(server: ServerProcess, path: str, ctx: ssl.SSLContext) -> int:
    try:
        with urllib.request.urlopen(server.https_url + path, context=ctx, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def await_status(server: ServerProcess, path: str, ctx: ssl.SSLContext, wanted: int, timeout: float = 10) -> int:
    """Poll until ``path`` answers ``wanted`` (RBAC changes apply when the watch delivers them)."""
    deadline = time.monotonic() + timeout
    while (code := https_status(server, path, ctx)) != wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    return code


def test_client_certificate_user_is_authorized_by_rbac(apiserver: ServerProcess, tmp_path: Path) -> None:
    server = apiserver
    ca = CertKey((server.tls_dir / "ca.crt").read_bytes(), (server.tls_dir / "ca.key").read_bytes())
    pat = issue(ca, "pat", ["developers"], client=True)
    ctx = client_ssl_context(ca.cert_pem, pat, tmp_path)
    ns = "rbac-cert"
    create_namespace(server, ns)
    pods = f"/api/v1/namespaces/{ns}/pods"

    assert https_status(server, pods, ctx) == 403
    assert https_status(server, "/apis", ctx) == 200  # system:discovery for every authenticated user

    kubectl(server, "-n", ns, "apply", "-f", "-", stdin=POD_LISTER)
    assert await_status(server, pods, ctx, 200) == 200  # once the authorizer's cache has the binding
    assert https_status(server, f"/api/v1/namespaces/{ns}/secrets", ctx) == 403
    assert https_status(server, "/api/v1/pods", ctx) == 403  # the RoleBinding grants one namespace

    # kubectl as that user over TLS shows the server's Forbidden message.
    (tmp_path / "pat.crt").write_bytes(pat.cert_pem)
    (tmp_path / "pat.key").write_bytes(pat.key_pem)
    config = write_kubeconfig(tmp_path / "pat.yaml", server.https_url, {
        "client-certificate": str(tmp_path / "pat.crt"), "client-key": str(tmp_path / "pat.key")},
        ca=server.tls_dir / "ca.crt")
    assert kubectl(server, "-n", ns, "get", "pods", kubeconfig=config).returncode == 0
    denied = kubectl(server, "-n", ns, "get", "secrets", kubeconfig=config, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr

    kubectl(server, "-n", ns, "delete", "rolebinding", "pat-pods")
    assert await_status(server, pods, ctx, 403) == 403
