"""Joining a node with the cluster join token against a real `kubelite server` (k3s' model), and
the agent's HTTPS endpoint: only the API server's kubelet-client certificate is served.

One server process for the module (conftest's ``apiserver``); every test joins under its own node name.
"""

from __future__ import annotations

import asyncio
import ssl
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubelite.agent.agent import Agent
from kubelite.agent.bootstrap import BootstrapError, ensure_node_credentials, node_tls_files
from kubelite.agent.httpserver import AgentHttpServer, agent_ssl_context
from kubelite.agent.node import AGENT_SCHEME_ANNOTATION, NodeConfig
from kubelite.agent.runtime import RuntimeOptions
from kubelite.agent.runtimes import create_runtime
from kubelite.api.registry import ResourceType, by_path
from kubelite.auth.bootstrap import NODE_PASSWORD_SUFFIX, format_token, parse_token
from kubelite.auth.pki import CertKey, client_ssl_context, new_ca
from kubelite.client import ApiClient, ApiError, load_kubeconfig
from tests.conftest import ServerProcess
from tests.helpers import eventually, running_controllers


def _rt(plural: str) -> ResourceType:
    found = by_path("", "v1", plural)
    assert found is not None
    return found


NODES, PODS, SECRETS = _rt("nodes"), _rt("pods"), _rt("secrets")


def _name() -> str:
    return f"join-{uuid.uuid4().hex[:8]}"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_join_gives_a_private_node_kubeconfig_that_works_over_tls(apiserver: ServerProcess, tmp_path: Path) -> None:
    name = _name()
    config = await ensure_node_credentials(tmp_path, [apiserver.https_url], apiserver.token, name, ["127.0.0.1"])
    assert config.servers == [apiserver.https_url] and config.ca_data and config.client_cert_data
    async with ApiClient(config) as client:
        with pytest.raises(ApiError) as err:
            await client.get(NODES, name)  # authenticated as system:node:<name>: its own Node is not there yet
        assert err.value.code == 404
        created = await client.create(NODES, {"metadata": {"name": name}})  # a node may register itself
        assert (await client.get(NODES, name))["metadata"]["uid"] == created["metadata"]["uid"]
    files = node_tls_files(tmp_path)
    for path in (tmp_path / "kubeconfig", tmp_path / "node-password", files.client_key, files.serving_key):
        assert _mode(path) == 0o600, path
    assert load_kubeconfig(tmp_path / "kubeconfig").client_cert_data == config.client_cert_data

    # A restart reuses the stored credential (no new certificate while it is valid).
    again = await ensure_node_credentials(tmp_path, [apiserver.https_url], apiserver.token, name, ["127.0.0.1"])
    assert again.client_cert_data == config.client_cert_data


async def test_wrong_secret_is_refused_with_401(apiserver: ServerProcess, tmp_path: Path) -> None:
    pin, _ = parse_token(apiserver.token)
    with pytest.raises(BootstrapError, match="refused the join token"):
        await ensure_node_credentials(tmp_path, [apiserver.https_url], f"K10{pin}::server:wrong", _name(), [])
    assert not (tmp_path / "kubeconfig").exists()
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{apiserver.https_url}/kubelite/v1/node-credentials", json={},
                                  headers={"Authorization": "Bearer wrong"}, ssl=False)
        assert resp.status == 401
        assert (await resp.json())["kind"] == "Status"


async def test_wrong_ca_pin_is_a_clear_error(apiserver: ServerProcess, tmp_path: Path) -> None:
    _, secret = parse_token(apiserver.token)
    other_ca = new_ca("someone-else").cert_pem
    with pytest.raises(BootstrapError, match=r"^the server's CA does not match the token"):
        await ensure_node_credentials(tmp_path, [apiserver.https_url], format_token(other_ca, secret), _name(), [])
    assert not (tmp_path / "kubeconfig").exists()


async def test_same_name_with_another_password_is_403(apiserver: ServerProcess, tmp_path: Path) -> None:
    name = _name()
    await ensure_node_credentials(tmp_path / "first", [apiserver.https_url], apiserver.token, name, [])
    with pytest.raises(BootstrapError, match=f"node {name} is already registered with another password"):
        await ensure_node_credentials(tmp_path / "impostor", [apiserver.https_url], apiserver.token, name, [])
    assert not (tmp_path / "impostor" / "kubeconfig").exists()


async def test_deleting_the_node_frees_its_name(apiserver: ServerProcess, tmp_path: Path) -> None:
    # k3s' rule: the password binds a name to a machine only while its Node exists.
    name = _name()
    secret_name = f"{name}{NODE_PASSWORD_SUFFIX}"
    async with (
        ApiClient(load_kubeconfig(apiserver.kubeconfig)) as admin,
        running_controllers(admin, ["nodepassword", "garbagecollector"]),
    ):
        config = await ensure_node_credentials(
            tmp_path / "first", [apiserver.https_url], apiserver.token, name, []
        )
        # Not registered yet: the stored password still guards the name.
        with pytest.raises(BootstrapError, match="already registered with another password"):
            await ensure_node_credentials(
                tmp_path / "other", [apiserver.https_url], apiserver.token, name, []
            )
        async with ApiClient(config) as node_client:
            node = await node_client.create(NODES, {"metadata": {"name": name}})

        async def owned() -> bool:
            secret = await admin.get(SECRETS, secret_name, "kube-system")
            return [r["uid"] for r in secret["metadata"].get("ownerReferences", [])] == [
                node["metadata"]["uid"]
            ]

        await eventually(owned, timeout=10, what="the node-password Secret owned by its Node")
        await admin.delete(NODES, name)

        async def gone() -> bool:
            try:
                await admin.get(SECRETS, secret_name, "kube-system")
            except ApiError as e:
                return e.code == 404
            return False

        await eventually(gone, timeout=10, what="the node-password Secret deleted with its Node")
        # A new machine may now join under the name.
        again = await ensure_node_credentials(
            tmp_path / "other", [apiserver.https_url], apiserver.token, name, []
        )
        assert again.client_cert_data and again.client_cert_data != config.client_cert_data


def _agent_cli(apiserver: ServerProcess, tmp_path: Path, *args: str) -> str:
    """Run `kubelite agent` expecting it to fail: its one stderr line."""
    r = subprocess.run(
        [sys.executable, "-m", "kubelite", "agent", "--server", apiserver.https_url, "--runtime", "fake",
         "--node-name", "x", "--data-dir", str(tmp_path), *args],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_cli_https_server_without_token_is_a_one_line_error(apiserver: ServerProcess, tmp_path: Path) -> None:
    line = _agent_cli(apiserver, tmp_path)
    assert "--token" in line and "https" in line


def test_cli_joins_with_the_token_file_and_checks_the_pin(apiserver: ServerProcess, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(format_token(new_ca("someone-else").cert_pem, parse_token(apiserver.token)[1]))
    line = _agent_cli(apiserver, tmp_path, "--token-file", str(token_file))
    assert line == "error: the server's CA does not match the token (wrong token, or someone in between)"


# -- the agent's HTTPS endpoint ------------------------------------------------------------------


def _pair(tls_dir: Path, stem: str) -> CertKey:
    return CertKey((tls_dir / f"{stem}.crt").read_bytes(), (tls_dir / f"{stem}.key").read_bytes())


async def _get(url: str, ctx: ssl.SSLContext) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx) as resp:
        return resp.status


async def test_agent_endpoint_serves_only_the_apiserver(apiserver: ServerProcess, tmp_path: Path) -> None:
    name = _name()
    await ensure_node_credentials(tmp_path, [apiserver.https_url], apiserver.token, name, ["127.0.0.1"])
    files = node_tls_files(tmp_path)
    endpoint = AgentHttpServer({}, "127.0.0.1", 0,
                               ssl_context=agent_ssl_context(files.serving_cert, files.serving_key, files.ca))
    await endpoint.start()
    try:
        assert endpoint.scheme == "https"
        url = f"https://127.0.0.1:{endpoint.port}/healthz"
        ca = files.ca.read_bytes()
        apiserver_client = _pair(apiserver.tls_dir, "apiserver-kubelet-client")
        assert await _get(url, client_ssl_context(ca, apiserver_client)) == 200
        # A valid certificate from the same CA, but a node's (or the admin's): not the API server.
        node_client = CertKey(files.client_cert.read_bytes(), files.client_key.read_bytes())
        assert await _get(url, client_ssl_context(ca, node_client)) == 403
        assert await _get(url, client_ssl_context(ca, _pair(apiserver.tls_dir, "admin"))) == 403
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await _get(url, client_ssl_context(ca))  # no client certificate: the handshake is refused
    finally:
        await endpoint.stop()


async def test_joined_agent_serves_logs_to_the_apiserver_over_https(apiserver: ServerProcess, tmp_path: Path) -> None:
    """End to end: join, register as the node, run a pod; the API server fetches its log over TLS."""
    name = _name()
    config = await ensure_node_credentials(tmp_path, [apiserver.https_url], apiserver.token, name, ["127.0.0.1"])
    files = node_tls_files(tmp_path)
    runtime = create_runtime("fake", RuntimeOptions(node_name=name, data_dir=tmp_path / "runtime"))
    node_config = NodeConfig(name=name, node_ip="127.0.0.1", hollow=True, agent_port=0)
    admin = ApiClient(load_kubeconfig(apiserver.kubeconfig))
    async with ApiClient(config) as node_client, admin:
        agent = Agent(node_client, node_config, runtime,
                      agent_tls=agent_ssl_context(files.serving_cert, files.serving_key, files.ca))
        await agent.start()
        try:
            node = await admin.get(NODES, name)
            assert node["metadata"]["annotations"][AGENT_SCHEME_ANNOTATION] == "https"
            await admin.create(PODS, {"metadata": {"name": name, "namespace": "default"},
                                      "spec": {"nodeName": name,
                                               "containers": [{"name": "c", "image": "busybox"}]}})

            async def running() -> bool:
                pod: dict[str, Any] = await admin.get(PODS, name, "default")
                return (pod.get("status") or {}).get("phase") == "Running"

            await eventually(running, 15, f"pod {name} running")
            text = await admin.request("GET", f"/api/v1/namespaces/default/pods/{name}/log")
            assert isinstance(text, str) and text.strip(), text
        finally:
            await agent.stop()
            await asyncio.sleep(0)
