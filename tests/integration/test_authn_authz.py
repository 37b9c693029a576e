"""Issue #10's acceptance on a real `kubelite server` over TLS: who gets 401, who gets 403.

Credentials are minted the way the cluster mints them: client certificates from the cluster CA
in the server's tls dir, ServiceAccount JWTs signed with its service-account key.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubelite.auth.pki import CertKey, issue, new_ca
from kubelite.auth.serviceaccount import ServiceAccountTokens
from tests.conftest import ServerProcess, free_port, start_server
from tests.helpers import stop_processes


@pytest.fixture(scope="module")
def server(apiserver: ServerProcess) -> ServerProcess:
    return apiserver  # conftest's: a real server with no controllers


def _ca(server: ServerProcess) -> CertKey:
    return CertKey((server.tls_dir / "ca.crt").read_bytes(), (server.tls_dir / "ca.key").read_bytes())


def _client(
    server: ServerProcess, tmp: Path, cert: CertKey | None = None, token: str | None = None
) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(server.tls_dir / "ca.crt"))
    if cert is not None:
        crt, key = tmp / f"c{id(cert)}.crt", tmp / f"c{id(cert)}.key"
        crt.write_bytes(cert.cert_pem)
        key.write_bytes(cert.key_pem)
        key.chmod(0o600)
        ctx.load_cert_chain(str(crt), str(key))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.https_url, verify=ctx, headers=headers, timeout=10)


def _admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10)  # the loopback dev port: no authentication


def _status(resp: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()
    assert body["kind"] == "Status" and body["code"] == resp.status_code, body
    return body


@pytest.fixture(scope="module")
def seeded(server: ServerProcess) -> None:
    with _admin(server) as admin:
        for path, obj in (
            ("/api/v1/namespaces", {"metadata": {"name": "team"}}),
            ("/api/v1/namespaces/team/secrets", {"metadata": {"name": "unrelated"}, "stringData": {"k": "v"}}),
            ("/api/v1/namespaces/team/secrets", {"metadata": {"name": "mounted"}, "stringData": {"k": "v"}}),
            ("/api/v1/nodes", {"metadata": {"name": "n1"}}),
            ("/api/v1/nodes", {"metadata": {"name": "n2"}}),
            ("/api/v1/namespaces/team/pods", {
                "metadata": {"name": "uses-secret"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
                         "volumes": [{"name": "s", "secret": {"secretName": "mounted"}}]},
            }),
            ("/apis/apps/v1/namespaces/team/deployments", {
                "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            }),
        ):  # fmt: skip
            resp = admin.post(path, json=obj)
            assert resp.status_code == 201, resp.text


# ---- 401 ----------------------------------------------------------------------------------------


def test_missing_wrong_and_expired_credentials_get_401(
    server: ServerProcess, seeded: None, tmp_path: Path
) -> None:
    ca = _ca(server)
    now = dt.datetime.now(dt.UTC)
    expired_cert = issue(ca, "carol", ("devs",), client=True, days=1, now=now - dt.timedelta(days=3))
    sa_key = (server.tls_dir / "service-account.key").read_bytes()
    with _admin(server) as admin:
        sa = admin.get("/api/v1/namespaces/team/serviceaccounts/default").json()
    signer = ServiceAccountTokens(sa_key, "https://kubernetes.default.svc.cluster.local", None)  # type: ignore[arg-type]
    expired_token, _ = signer.issue("team", "default", sa["metadata"]["uid"], expiration_seconds=600,
                                    now=now - dt.timedelta(hours=2))  # fmt: skip
    foreign_key = new_ca("someone-else").key_pem  # right shape, wrong signer
    forged, _ = ServiceAccountTokens(foreign_key, "https://kubernetes.default.svc.cluster.local", None).issue(  # type: ignore[arg-type]
        "team", "default", sa["metadata"]["uid"]
    )
    cases = {
        "no credentials": _client(server, tmp_path),
        "garbage token": _client(server, tmp_path, token="not-a-token"),
        "forged service account token": _client(server, tmp_path, token=forged),
        "expired service account token": _client(server, tmp_path, token=expired_token),
        "expired client certificate": _client(server, tmp_path, cert=expired_cert),
    }
    for what, client in cases.items():
        with client:
            resp = client.get("/api/v1/namespaces/team/pods")
            assert resp.status_code == 401, (what, resp.text)
            assert _status(resp)["reason"] == "Unauthorized"
    with _client(server, tmp_path, cert=expired_cert) as client:
        assert "expired" in client.get("/api/v1/pods").json()["message"]
    with _client(server, tmp_path, token="Basic") as client:
        client.headers["Authorization"] = "Basic YWRtaW46YWRtaW4="
        assert client.get("/api/v1/pods").status_code == 401


def test_public_health_endpoints_need_no_credentials(server: ServerProcess, tmp_path: Path) -> None:
    with _client(server, tmp_path) as anonymous:
        for path in ("/healthz", "/livez", "/readyz", "/version"):
            assert anonymous.get(path).status_code == 200, path
        for path in ("/api", "/apis", "/openapi/v2", "/metrics", "/api/v1/namespaces"):
            assert anonymous.get(path).status_code == 401, path


def test_certificate_from_another_ca_is_refused_at_the_handshake(
    server: ServerProcess, tmp_path: Path
) -> None:
    other = issue(new_ca("not-our-ca"), "mallory", ("system:masters",), client=True)
    with (
        _client(server, tmp_path, cert=other) as client,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        client.get("/api/v1/pods")


# ---- 403 for a valid node credential --------------------------------------------------------------


def test_node_credential_is_limited_to_its_own_node(
    server: ServerProcess, seeded: None, tmp_path: Path
) -> None:
    node = issue(_ca(server), "system:node:n1", ("system:nodes",), client=True)
    with _client(server, tmp_path, cert=node) as n1:
        # What it needs: its own Node, the secret its pod mounts, the pods bound to it.
        assert n1.get("/api/v1/nodes/n1").status_code == 200
        patched = n1.patch("/api/v1/nodes/n1/status", json={"status": {"phase": "Running"}},
                           headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
        assert patched.status_code == 200, patched.text
        assert n1.get("/api/v1/namespaces/team/secrets/mounted").status_code == 200
        assert n1.get("/api/v1/pods", params={"fieldSelector": "spec.nodeName=n1"}).status_code == 200
        # What it must not do: each one a 403 with Kubernetes' wording.
        forbidden = {
            "modify another node": n1.patch("/api/v1/nodes/n2", json={"metadata": {"labels": {"x": "y"}}},
                                            headers={"Content-Type": "application/merge-patch+json"}),
            "register as another node": n1.post("/api/v1/nodes", json={"metadata": {"name": "n3"}}),
            "read an unrelated secret": n1.get("/api/v1/namespaces/team/secrets/unrelated"),
            "list secrets": n1.get("/api/v1/secrets"),
            "delete a deployment": n1.delete("/apis/apps/v1/namespaces/team/deployments/web"),
        }  # fmt: skip
        for what, resp in forbidden.items():
            assert resp.status_code == 403, (what, resp.text)
            body = _status(resp)
            assert body["reason"] == "Forbidden" and 'User "system:node:n1"' in body["message"], (what, body)
    with _admin(server) as admin:  # and nothing changed
        assert admin.get("/apis/apps/v1/namespaces/team/deployments/web").status_code == 200
        assert "x" not in (admin.get("/api/v1/nodes/n2").json()["metadata"].get("labels") or {})
        assert admin.get("/api/v1/nodes/n3").status_code == 404


def test_user_without_bindings_gets_403_and_discovery_only(server: ServerProcess, tmp_path: Path) -> None:
    bob = issue(_ca(server), "bob", ("devs",), client=True)
    with _client(server, tmp_path, cert=bob) as client:
        assert client.get("/api").status_code == 200  # system:discovery for every authenticated user
        resp = client.get("/api/v1/namespaces/team/pods")
        assert resp.status_code == 403
        assert _status(resp)["message"] == (
            'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "team"'
        )
        assert client.get("/metrics").status_code == 403


# ---- plain HTTP only where asked, and only on loopback ---------------------------------------------


def test_no_plain_http_without_insecure_port_and_insecure_port_is_loopback_only(tmp_path: Path) -> None:
    https_port, insecure_port = free_port(), free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite", "server", "--data-dir", str(tmp_path / "d"), "--datastore-endpoint",
             "memory://", "--controllers", "", "--port", str(https_port), "--bind-address", "0.0.0.0"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=20)
        while dt.datetime.now() < deadline:
            try:
                with httpx.Client(
                    verify=ssl.create_default_context(cafile=tmp_path / "d" / "tls" / "ca.crt"), timeout=2
                ) as c:
                    if c.get(f"https://127.0.0.1:{https_port}/readyz").status_code == 200:
                        break
            except (httpx.TransportError, OSError):  # not listening yet, or no CA written yet
                time.sleep(0.1)
        else:
            pytest.fail(f"server not ready: {log.read_text()}")
        with httpx.Client(timeout=2) as plain, pytest.raises(httpx.TransportError):
            plain.get(f"http://127.0.0.1:{https_port}/api/v1/pods")  # plain HTTP to the TLS port: not served
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", insecure_port)) != 0
    finally:
        stop_processes(proc)
    server = start_server(tmp_path / "loop", extra_args=["--controllers", "", "--bind-address", "0.0.0.0"])
    try:
        listening = subprocess.run(
            ["ss", "-Hltn", f"sport = :{server.port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert listening[3] == f"127.0.0.1:{server.port}" and len(listening) == 5, (
            listening
        )  # one socket, loopback
    finally:
        server.stop()
