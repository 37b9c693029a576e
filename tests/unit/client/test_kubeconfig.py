"""Kubeconfig lookup, parsing and writing, with real files (and the official client as a reader)."""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from kubelite.client.kubeconfig import ClientConfig, KubeconfigError, load_kubeconfig, write_kubeconfig
from kubelite.client.rest import build_ssl_context

CA_PEM = b"-----BEGIN CERTIFICATE-----\nnot-a-real-ca\n-----END CERTIFICATE-----\n"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never read the developer's real ~/.kube/config or KUBECONFIG.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc.yaml", "https://127.0.0.1:6443/", token="s3cret", ca_data=CA_PEM, namespace="apps")
    cfg = load_kubeconfig(path)
    assert cfg.servers == ["https://127.0.0.1:6443"]
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.token == "s3cret"
    assert cfg.ca_data == CA_PEM
    assert cfg.namespace == "apps"
    assert cfg.context == "kubelite"
    assert cfg.source == str(path)


def test_written_file_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kc.yaml"
    write_kubeconfig(path, "http://a:1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    write_kubeconfig(path, "http://b:2", token="t")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kubeconfig(path).servers == ["http://b:2"]
    assert [p.name for p in path.parent.iterdir()] == ["kc.yaml"]  # no temp files left


def test_written_file_is_readable_by_the_official_client(tmp_path: Path) -> None:
    from kubernetes import client, config

    path = write_kubeconfig(tmp_path / "kc.yaml", "http://127.0.0.1:6443", token="abc")
    conf = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=conf)
    assert conf.host == "http://127.0.0.1:6443"
    assert "Bearer abc" in conf.api_key.values()


def test_several_servers_kept_for_failover_but_kubectl_sees_first(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc.yaml", ["http://a:1", "http://b:2", "http://c:3"])
    doc = yaml.safe_load(path.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == "http://a:1"
    assert load_kubeconfig(path).servers == ["http://a:1", "http://b:2", "http://c:3"]


def test_explicit_path_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write_kubeconfig(tmp_path / "env.yaml", "http://env:1")
    arg_file = write_kubeconfig(tmp_path / "arg.yaml", "http://arg:1")
    monkeypatch.setenv("KUBECONFIG", str(env_file))
    assert load_kubeconfig(arg_file).server == "http://arg:1"
    assert load_kubeconfig().server == "http://env:1"


def test_kubeconfig_env_first_existing_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    second = write_kubeconfig(tmp_path / "second.yaml", "http://second:1")
    third = write_kubeconfig(tmp_path / "third.yaml", "http://third:1")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "missing.yaml"), str(second), str(third)]))
    assert load_kubeconfig().server == "http://second:1"


def test_falls_back_to_home_kube_config(tmp_path: Path) -> None:
    write_kubeconfig(tmp_path / "home" / ".kube" / "config", "http://home:1")
    assert load_kubeconfig().server == "http://home:1"


def test_nothing_found_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(KubeconfigError, match=r"no kubeconfig found.*nope\.yaml"):
        load_kubeconfig()
    with pytest.raises(KubeconfigError, match="does not exist"):
        load_kubeconfig(tmp_path / "also-missing.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("clusters: [", "not valid YAML"),
        ("- just a list", "expected a mapping"),
        ("apiVersion: v1\nkind: Config\n", "no current-context"),
        ("current-context: x\ncontexts: []\n", "no context named 'x'"),
        ("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: []\n", "no cluster named 'c'"),
        (
            "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {}}]\n",
            "no server URL",
        ),
        (
            "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
            "clusters: [{name: c, cluster: {server: 'http://a', certificate-authority-data: '%%%'}}]\n",
            "not valid base64",
        ),
    ],
)
def test_invalid_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(KubeconfigError, match=message):
        load_kubeconfig(path)


MULTI = """
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster: {server: "https://dev:6443", certificate-authority: certs/ca.pem}
- name: prod-cluster
  cluster: {server: "https://prod:6443", insecure-skip-tls-verify: true}
users:
- name: dev-user
  user: {tokenFile: token.txt}
- name: prod-user
  user: {client-certificate: /abs/cert.pem, client-key: key.pem, token: direct}
contexts:
- name: dev
  context: {cluster: dev-cluster, user: dev-user}
- name: prod
  context: {cluster: prod-cluster, user: prod-user, namespace: web}
"""


def test_contexts_relative_paths_and_token_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config"
    path.parent.mkdir()
    path.write_text(MULTI)
    (path.parent / "token.txt").write_text("from-file\n")
    dev = load_kubeconfig(path)
    assert dev.context == "dev"
    assert dev.server == "https://dev:6443"
    assert dev.ca_file == str(path.parent / "certs" / "ca.pem")  # relative to the kubeconfig
    assert dev.token == "from-file"
    assert dev.namespace == "default"
    prod = load_kubeconfig(path, context="prod")
    assert prod.insecure_skip_tls_verify
    assert prod.namespace == "web"
    assert prod.token == "direct"
    assert prod.client_cert_file == "/abs/cert.pem"
    assert prod.client_key_file == str(path.parent / "key.pem")
    with pytest.raises(KubeconfigError, match="no context named 'staging'"):
        load_kubeconfig(path, context="staging")


def test_client_config_needs_a_server() -> None:
    with pytest.raises(KubeconfigError):
        ClientConfig(servers=[])


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[bytes, bytes]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=kubelite-test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert.read_bytes(), key.read_bytes()


def test_ssl_context_from_kubeconfig_data(tmp_path: Path, self_signed: tuple[bytes, bytes]) -> None:
    cert, key = self_signed
    path = write_kubeconfig(
        tmp_path / "kc.yaml", "https://127.0.0.1:6443", ca_data=cert, client_cert_data=cert, client_key_data=key
    )
    cfg = load_kubeconfig(path)
    assert cfg.client_key_data == key
    ctx = build_ssl_context(cfg)
    assert any("kubelite-test" in str(c.get("subject")) for c in ctx.get_ca_certs())
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_ssl_context_rejects_mismatched_key(self_signed: tuple[bytes, bytes]) -> None:
    cert, _ = self_signed
    other_key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ssl.SSLError):
        build_ssl_context(ClientConfig(servers=["https://x"], client_cert_data=cert, client_key_data=other_key))


def test_ssl_context_insecure() -> None:
    ctx = build_ssl_context(ClientConfig(servers=["https://x"], insecure_skip_tls_verify=True))
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
