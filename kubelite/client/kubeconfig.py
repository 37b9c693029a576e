"""Read and write kubeconfig files the way kubectl does.

Lookup order: an explicit path (``--kubeconfig``), then ``$KUBECONFIG`` (a ``:``-separated list;
the first file that exists is used), then ``~/.kube/config``. Relative certificate and token file
paths are resolved against the kubeconfig's directory, as kubectl resolves them.

kubelite extension: a cluster entry may carry every API server's URL for client-side failover,
in an ``extensions`` item named ``kubelite.io/servers`` (kubectl ignores it and uses ``server``).
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ClientConfig", "KubeconfigError", "find_kubeconfig", "load_kubeconfig", "write_kubeconfig"]

SERVERS_EXTENSION = "kubelite.io/servers"


class KubeconfigError(Exception):
    """The kubeconfig is missing, unreadable, or lacks what the selected context needs."""


@dataclass
class ClientConfig:
    """Everything needed to reach and authenticate to an API server."""

    servers: list[str]
    namespace: str = "default"
    token: str | None = None
    ca_data: bytes | None = None  # PEM
    ca_file: str | None = None
    client_cert_data: bytes | None = None  # PEM
    client_cert_file: str | None = None
    client_key_data: bytes | None = None  # PEM
    client_key_file: str | None = None
    insecure_skip_tls_verify: bool = False
    context: str | None = None
    source: str | None = field(default=None, compare=False)  # the file it came from

    def __post_init__(self) -> None:
        if not self.servers:
            raise KubeconfigError("at least one server URL is required")
        self.servers = [s.rstrip("/") for s in self.servers]

    @property
    def server(self) -> str:
        return self.servers[0]


def find_kubeconfig(path: str | os.PathLike[str] | None = None) -> Path:
    """The kubeconfig kubectl would use; KubeconfigError when there is none."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise KubeconfigError(f"kubeconfig {str(p)!r} does not exist")
        return p
    env = os.environ.get("KUBECONFIG", "")
    candidates = [Path(c).expanduser() for c in env.split(os.pathsep) if c]
    for c in candidates:
        if c.is_file():
            return c
    default = Path("~/.kube/config").expanduser()
    if default.is_file():
        return default
    tried = [*(str(c) for c in candidates), str(default)]
    raise KubeconfigError(f"no kubeconfig found (tried {', '.join(tried)}); pass --kubeconfig or set KUBECONFIG")


def _named(items: Any, name: str, what: str, source: Path) -> dict[str, Any]:
    if not isinstance(items, list):
        items = []
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(what)
            if body is None:
                return {}
            if not isinstance(body, dict):
                raise KubeconfigError(f"{source}: {what} {name!r} must be a mapping")
            return body
    raise KubeconfigError(f"{source}: no {what} named {name!r}")


def _pem_data(value: Any, key: str, source: Path) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as e:
        raise KubeconfigError(f"{source}: {key} is not valid base64: {e}") from e


def _resolve(path: Any, base: Path) -> str | None:
    if not path:
        return None
    p = Path(str(path)).expanduser()
    return str(p if p.is_absolute() else base / p)


def load_kubeconfig(
    path: str | os.PathLike[str] | None = None, context: str | None = None
) -> ClientConfig:
    """Load the kubeconfig (see module docstring for the lookup) and select ``context``
    (default: its ``current-context``)."""
    source = find_kubeconfig(path)
    try:
        doc = yaml.safe_load(source.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise KubeconfigError(f"cannot read kubeconfig {source}: {e}") from e
    except yaml.YAMLError as e:
        raise KubeconfigError(f"kubeconfig {source} is not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {source} is not a kubeconfig (expected a mapping)")

    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeconfigError(f"{source}: no current-context set and no context given")
    ctx = _named(doc.get("contexts"), ctx_name, "context", source)
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not cluster_name:
        raise KubeconfigError(f"{source}: context {ctx_name!r} names no cluster")
    cluster = _named(doc.get("clusters"), cluster_name, "cluster", source)
    user = _named(doc.get("users"), user_name, "user", source) if user_name else {}

    servers = _servers(cluster, source)
    base = source.parent
    token = user.get("token")
    token_file = _resolve(user.get("tokenFile"), base)
    if not token and token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise KubeconfigError(f"{source}: cannot read tokenFile {token_file}: {e}") from e

    return ClientConfig(
        servers=servers,
        namespace=ctx.get("namespace") or "default",
        token=str(token) if token else None,
        ca_data=_pem_data(cluster.get("certificate-authority-data"), "certificate-authority-data", source),
        ca_file=_resolve(cluster.get("certificate-authority"), base),
        client_cert_data=_pem_data(user.get("client-certificate-data"), "client-certificate-data", source),
        client_cert_file=_resolve(user.get("client-certificate"), base),
        client_key_data=_pem_data(user.get("client-key-data"), "client-key-data", source),
        client_key_file=_resolve(user.get("client-key"), base),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        context=ctx_name,
        source=str(source),
    )


def _servers(cluster: dict[str, Any], source: Path) -> list[str]:
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{source}: cluster has no server URL")
    servers = [str(server)]
    for ext in cluster.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == SERVERS_EXTENSION:
            extra = (ext.get("extension") or {}).get("servers") or []
            servers += [str(s) for s in extra if str(s) not in servers]
    return servers


def write_kubeconfig(
    path: str | os.PathLike[str],
    server: str | Sequence[str],
    token: str | None = None,
    ca_data: bytes | None = None,
    client_cert_data: bytes | None = None,
    client_key_data: bytes | None = None,
    namespace: str | None = None,
    cluster_name: str = "kubelite",
    user_name: str = "admin",
    context_name: str = "kubelite",
    insecure_skip_tls_verify: bool = False,
) -> Path:
    """Write a kubectl-compatible kubeconfig (mode 0600: it holds credentials) and return its path.

    ``server`` may be several URLs (HA): the first is the one kubectl uses, all are recorded for
    kubelite's own client.
    """
    servers = [server] if isinstance(server, str) else list(server)
    if not servers:
        raise KubeconfigError("write_kubeconfig needs at least one server URL")
    cluster: dict[str, Any] = {"server": servers[0]}
    if ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(ca_data).decode()
    if insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    if len(servers) > 1:
        cluster["extensions"] = [{"name": SERVERS_EXTENSION, "extension": {"servers": servers}}]
    user: dict[str, Any] = {}
    if token:
        user["token"] = token
    if client_cert_data:
        user["client-certificate-data"] = base64.b64encode(client_cert_data).decode()
    if client_key_data:
        user["client-key-data"] = base64.b64encode(client_key_data).decode()
    context: dict[str, Any] = {"cluster": cluster_name, "user": user_name}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": context_name, "context": context}],
        "current-context": context_name,
    }
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write a 0600 temp file and rename it, so the credentials are never world-readable and a
    # reader never sees a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            yaml.safe_dump(doc, f, default_flow_style=False, sort_keys=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
