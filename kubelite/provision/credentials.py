"""The cluster's credentials on the controlling machine: the join token and the admin kubeconfig.

The join-token secret is made here (once per cluster, kept 0600 in the state dir) and handed to the
masters in their 0600 settings file. At its first start the first master makes the cluster CA and
writes ``/var/lib/kubelite/server/token`` (``K10<ca-hash>::server:<secret>``) and its admin
kubeconfig; ``cluster up`` reads both over SSH (``cat`` of a path: the content never appears on a
command line or in a log) into the state dir, with the kubeconfig's server URL rewritten from the
master's loopback address to the masters' node addresses (which the serving certificate names).

With datastore etcd (several masters) the masters must share the cluster CA, the ServiceAccount key
and the token secret, so the CA cannot be left to the first server start: :func:`ensure_shared_pki`
makes it here once (state dir ``pki/``, 0600 keys), with the etcd CA and each member's etcd
certificates; the deploy pushes them 0600 before the servers' first start and each server then
issues its own serving certificate from the shared CA (docs/security.md, "Several masters").
"""

from __future__ import annotations

from typing import Any

import yaml

from kubelite.auth.pki import ensure_cluster_pki, ensure_etcd_pki, new_ca, write_private
from kubelite.client.kubeconfig import SERVERS_EXTENSION
from kubelite.provision.errors import ProvisionError
from kubelite.provision.state import ClusterState, Machine

__all__ = ["ETCD_TLS", "SERVER_DIR", "SERVER_TLS", "admin_kubeconfig", "ensure_shared_pki", "token_secret"]

SERVER_DIR = "/var/lib/kubelite/server"
TOKEN_PATH = f"{SERVER_DIR}/token"
KUBECONFIG_PATH = f"{SERVER_DIR}/kubeconfig.yaml"
SERVER_TLS = f"{SERVER_DIR}/tls"  # `kubelite server`'s <data-dir>/tls
ETCD_TLS = f"{SERVER_TLS}/etcd"  # the member's etcd certificates (kubelite.auth.pki's layout)


def ensure_shared_pki(state: ClusterState, masters: list[Machine]) -> list[str]:
    """The cluster CA + ServiceAccount key and every member's etcd certificates in the state dir;
    kept once made (a re-run changes nothing), returns what it made."""
    made: list[str] = []
    if not (state.cluster_pki_dir / "ca.crt").exists():
        made.append("cluster CA")
    # Its leaves in the state dir go unused: each server issues its own from this CA.
    ensure_cluster_pki(state.cluster_pki_dir, [])
    ca_crt, ca_key = state.etcd_ca_dir / "ca.crt", state.etcd_ca_dir / "ca.key"
    if not (ca_crt.exists() and ca_key.exists()):
        ca = new_ca("kubelite-etcd-ca")
        write_private(ca_key, ca.key_pem)
        write_private(ca_crt, ca.cert_pem)
        made.append("etcd CA")
    for m in masters:
        member = state.etcd_member_dir(m.name)
        # ensure_etcd_pki takes the CA it finds under <member>/etcd: give it the shared one.
        for src in (ca_crt, ca_key):
            dest = member / "etcd" / src.name
            if not dest.exists():
                write_private(dest, src.read_bytes())
        if not (member / "etcd" / "peer.crt").exists():
            made.append(f"etcd certificates of {m.name}")
        ensure_etcd_pki(member, m.name, [m.address])
    return made


def token_secret(token: str) -> str | None:
    """The secret of a join token ``K10<ca-hash>::server:<secret>`` (a bare secret is its own)."""
    token = token.strip()
    if not token:
        return None
    return token.split("::server:", 1)[1] if "::server:" in token else token


def _named(entries: Any, name: str, kind: str, source: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(kind), dict):
            found: dict[str, Any] = entry[kind]
            return found
    raise ProvisionError(f"{source}: no {kind} named {name!r}")


def admin_kubeconfig(raw: str, servers: list[str], name: str, source: str) -> str:
    """The master's admin kubeconfig for use from this machine: the same CA and credential, the
    cluster's server URLs, entries named after the cluster (so kubeconfigs of clusters merge)."""
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ProvisionError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or not doc.get("current-context"):
        raise ProvisionError(f"{source}: not a kubeconfig with a current-context")
    context = _named(doc.get("contexts"), str(doc["current-context"]), "context", source)
    cluster = _named(doc.get("clusters"), str(context.get("cluster")), "cluster", source)
    user = _named(doc.get("users"), str(context.get("user")), "user", source)
    # Paths would name files on the master: only inline credentials travel.
    if not cluster.get("certificate-authority-data"):
        raise ProvisionError(f"{source}: the cluster entry has no certificate-authority-data")
    if any(k in user for k in ("client-certificate", "client-key", "tokenFile")):
        raise ProvisionError(f"{source}: the user entry refers to files on the master instead of holding its credential")
    entry: dict[str, Any] = {"server": servers[0], "certificate-authority-data": cluster["certificate-authority-data"]}
    if len(servers) > 1:
        entry["extensions"] = [{"name": SERVERS_EXTENSION, "extension": {"servers": servers}}]
    out = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": entry}],
        "users": [{"name": f"{name}-admin", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }  # fmt: skip
    return "# kubeconfig of kubelite cluster " + name + " (admin): written by `kubelite cluster up`\n" + yaml.safe_dump(
        out, default_flow_style=False, sort_keys=False
    )
