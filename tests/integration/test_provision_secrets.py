"""Provisioning keeps the cluster's secrets secret (issue #10): what is checked, and the fast checks.

The checks against a real cluster run in test_cluster_nspawn.py, on the cluster that module brings
up anyway (a second bring-up would double the CI time): after two ``cluster up`` runs, neither the
join-token secret nor the admin key nor any private-key PEM appears in what ``up`` printed, in
pyinfra's logs and JSON results, in the state dir's non-secret files, in the kubelite journals or
the process list of the machines; every env file and key on the machines is 0600; kubectl works
with the fetched kubeconfig over https; an anonymous request gets 401. This module holds those
checks' helpers and tests the controlling machine's side without machines.
"""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from kubelite.provision.credentials import admin_kubeconfig, token_secret
from kubelite.provision.deployer import render_inventory
from kubelite.provision.errors import ProvisionError
from kubelite.provision.spec import ClusterSpec
from kubelite.provision.state import SECRET_FILES, ClusterState, Machine
from kubelite.provision.templates import render

PEM_MARKER = "PRIVATE KEY"  # every PEM private key (EC, RSA, PKCS#8, OpenSSH) carries it


# -- helpers for the cluster checks --------------------------------------------------------------


def secret_values(state_dir: Path) -> dict[str, str]:
    """What must never be shown, by a name for the failure message: the join-token secret and the
    admin client key (its base64 kubeconfig form and a line of its PEM body)."""
    values = {"join-token secret": (state_dir / "cluster-token").read_text().strip()}
    doc = yaml.safe_load((state_dir / "kubeconfig").read_text())
    key_b64 = doc["users"][0]["user"]["client-key-data"]
    values["admin key (kubeconfig form)"] = key_b64
    pem_lines = base64.b64decode(key_b64).decode().splitlines()
    values["admin key (PEM body)"] = next(ln for ln in pem_lines if ln and not ln.startswith("-----"))
    return values


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets ``text`` shows, and "a private key PEM" when it holds one."""
    found = [name for name, value in secrets.items() if value and value in text]
    if PEM_MARKER in text:
        found.append("a private key PEM")
    return found


def shown_files(state_dir: Path) -> list[Path]:
    """The state dir's files meant to be read by anyone (logs, inventory, spec, machines): every
    top-level file but the credentials. machines/ holds the machines' own disks and is not the state."""
    return sorted(p for p in state_dir.iterdir() if p.is_file() and p.name not in SECRET_FILES)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the controlling machine's side, without machines --------------------------------------------


def test_leak_check_finds_a_planted_secret(tmp_path: Path) -> None:
    """The scan the cluster checks rely on does see a secret and a PEM (it can fail)."""
    key_pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAbcdefGHIJ\n-----END EC PRIVATE KEY-----\n"
    (tmp_path / "cluster-token").write_text("f" * 64 + "\n")
    kubeconfig = {"users": [{"name": "a", "user": {"client-key-data": base64.b64encode(key_pem.encode()).decode()}}]}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    secrets = secret_values(tmp_path)
    assert leaks("deploy ok, nothing to see", secrets) == []
    assert leaks("KUBELITE_TOKEN=K10abc::server:" + "f" * 64, secrets) == ["join-token secret"]
    assert leaks("key: MHcCAQEEIAbcdefGHIJ", secrets) == ["admin key (PEM body)"]
    assert "a private key PEM" in leaks(key_pem, secrets)


def test_token_secret_is_made_once_kept_0600_in_a_private_dir(tmp_path: Path) -> None:
    state = ClusterState("sec", root=tmp_path)
    secret = state.token_secret()
    assert len(secret) == 64 and int(secret, 16) >= 0  # secrets.token_hex(32)
    assert mode(state.token_secret_file) == 0o600
    assert mode(state.dir) == 0o700
    assert state.token_secret() == secret  # kept, never regenerated
    other = ClusterState("sec2", root=tmp_path)
    assert other.token_secret() != secret  # one per cluster
    # Hosts already running a cluster (the ssh provider, a new state dir): their secret is adopted.
    adopted = ClusterState("sec3", root=tmp_path)
    assert adopted.token_secret(existing="abc123") == "abc123"
    assert token_secret("K10" + "a" * 64 + "::server:abc123\n") == "abc123"
    assert token_secret("abc123") == "abc123" and token_secret(" \n") is None


def test_inventory_names_the_secret_files_but_holds_no_secret(tmp_path: Path) -> None:
    state = ClusterState("sec", root=tmp_path)
    secret = state.token_secret()
    spec = ClusterSpec(name="sec", workers=1)
    machines = [Machine("sec-master-0", "master", "10.9.0.2"), Machine("sec-worker-0", "worker", "10.9.0.3")]
    text = render_inventory(spec, state, machines, tmp_path / "key", tmp_path / "known", tmp_path / "w.tar", "b1")
    assert secret not in text
    scope: dict[str, object] = {}
    exec(compile(text, "inventory.py", "exec"), scope)  # what pyinfra does with it
    masters, workers = scope["masters"], scope["workers"]
    assert isinstance(masters, list) and isinstance(workers, list)
    (master_name, master), (worker_name, worker) = masters[0], workers[0]
    assert (master_name, worker_name) == ("sec-master-0", "sec-worker-0")
    assert master["token_secret_file"] == str(state.token_secret_file)
    assert worker["join_token_file"] == str(state.join_token_file)
    assert master["tls_sans"] == ["10.9.0.2", "sec-master-0"] and "tls_sans" not in worker
    assert worker["servers"] == ["https://10.9.0.2:6443"]


def _server_kubeconfig(server: str = "https://127.0.0.1:6443", **user: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kubelite",
        "clusters": [{"name": "kubelite", "cluster": {"server": server, "certificate-authority-data": "Q0E="}}],
        "users": [{"name": "admin", "user": user or {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
        "contexts": [{"name": "kubelite", "context": {"cluster": "kubelite", "user": "admin"}}],
    })  # fmt: skip


def test_admin_kubeconfig_points_at_the_masters_and_keeps_the_credential() -> None:
    servers = ["https://10.9.0.2:6443", "https://10.9.0.4:6443"]
    doc = yaml.safe_load(admin_kubeconfig(_server_kubeconfig(), servers, "sec", "m0:kubeconfig.yaml"))
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == servers[0] and cluster["certificate-authority-data"] == "Q0E="
    assert cluster["extensions"][0]["extension"]["servers"] == servers
    assert doc["users"][0]["user"] == {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}
    assert doc["current-context"] == "sec" and doc["contexts"][0]["context"] == {"cluster": "sec", "user": "sec-admin"}


def test_admin_kubeconfig_refuses_credentials_left_on_the_master() -> None:
    with pytest.raises(ProvisionError, match="refers to files on the master"):
        admin_kubeconfig(_server_kubeconfig(**{"client-key": "/var/lib/kubelite/server/tls/admin.key"}),
                         ["https://10.9.0.2:6443"], "sec", "m0")  # fmt: skip
    no_ca = _server_kubeconfig().replace("certificate-authority-data: Q0E=", "insecure-skip-tls-verify: true")
    with pytest.raises(ProvisionError, match="no certificate-authority-data"):
        admin_kubeconfig(no_ca, ["https://10.9.0.2:6443"], "sec", "m0")


def test_settings_files_hand_the_secrets_to_the_flags() -> None:
    """The units get the token and SANs only through their EnvironmentFile (`kubelite server`/`agent`
    read KUBELITE_<FLAG>); their command lines name no secret."""
    server = render("config/server.env.j2", api_port=6443, service_cidr="10.9.128.0/20", pod_cidr="10.9.64.0/18",
                    datastore_endpoint="", tls_sans=["10.9.0.2", "m0"], token="s3cret")  # fmt: skip
    assert "KUBELITE_TOKEN=s3cret\n" in server and "KUBELITE_TLS_SAN=10.9.0.2,m0\n" in server
    agent = render("config/agent.env.j2", servers=["https://10.9.0.2:6443", "https://10.9.0.4:6443"],
                   token="K10ab::server:s3cret", node_name="w0", node_ip="10.9.0.3", runtime="runc", cpu="2",
                   memory="1Gi", labels="x=true", pod_cidr="10.9.64.0/18", registry="")  # fmt: skip
    assert "KUBELITE_SERVER=https://10.9.0.2:6443,https://10.9.0.4:6443\n" in agent
    assert "KUBELITE_TOKEN=K10ab::server:s3cret\n" in agent and "KUBELITE_KUBECONFIG" not in agent
    for unit, ctx in (("kubelite-server", {}), ("kubelite-agent", {"runtime": "runc", "is_master": False})):
        text = render(f"systemd/{unit}.service.j2", build="b1", **ctx)
        exec_lines = [ln for ln in text.splitlines() if ln.startswith("Exec")]
        assert f"EnvironmentFile=/etc/kubelite/{unit.split('-')[1]}.env" in text
        assert not [ln for ln in exec_lines if "TOKEN" in ln.upper() or "s3cret" in ln]
