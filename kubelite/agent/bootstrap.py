"""Node credential bootstrap, agent side: a join token becomes this node's own kubeconfig (k3s' model).

First start (or when the stored client certificate expires within a day):

1. ``GET /cacerts`` without verification, then check the CA against the token's pin (sha256 of its
   DER), so a man in the middle cannot hand out its own CA. A bare-secret token has no pin: the
   CA is then trusted on first use, as k3s does, with a warning.
2. Make a node password (kept in ``<data_dir>/node-password``), keys and CSRs, and
   ``POST /kubelite/v1/node-credentials`` over TLS verified against that CA.
3. Check both certificates chain to the CA and certify our keys; store them under
   ``<data_dir>/tls/`` and write ``<data_dir>/kubeconfig``. Every file is 0600.

Later starts reuse the kubeconfig. Errors are :class:`BootstrapError` with a one-line message.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from kubelite import auth
from kubelite.auth.pki import ca_hash, make_csr, new_key, write_private
from kubelite.auth.token import parse_token
from kubelite.client.kubeconfig import ClientConfig, KubeconfigError, load_kubeconfig, write_kubeconfig

__all__ = ["BootstrapError", "NodeTLSFiles", "ensure_node_credentials", "node_tls_files"]

log = logging.getLogger(__name__)

RENEW_WITHIN = timedelta(hours=24)
_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)


class BootstrapError(Exception):
    """The node could not obtain its credentials (one-line message for the operator)."""


@dataclass(frozen=True)
class NodeTLSFiles:
    """Where the bootstrap stores the node's credentials."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "serving.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "serving.key"

    def has_serving(self) -> bool:
        return self.ca.exists() and self.serving_cert.exists() and self.serving_key.exists()


def node_tls_files(data_dir: Path) -> NodeTLSFiles:
    return NodeTLSFiles(data_dir / "tls")


def _reusable(config: ClientConfig, node_name: str, pin: str | None, files: NodeTLSFiles) -> bool:
    """The stored kubeconfig is this node's, from the token's CA, and valid for more than a day."""
    if not (config.client_cert_data and config.ca_data and files.has_serving()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(config.client_cert_data)
        if pin is not None and ca_hash(config.ca_data) != pin:
            return False  # the cluster was re-created (new CA): join it again
    except ValueError:
        return False
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return (
        bool(cns) and cns[0].value == f"{auth.NODE_USER_PREFIX}{node_name}"
        and cert.not_valid_after_utc - RENEW_WITHIN > datetime.now(UTC)
    )


async def ensure_node_credentials(
    data_dir: Path, servers: list[str], token: str, node_name: str, addresses: list[str]
) -> ClientConfig:
    """This node's ClientConfig (https ``servers``, its client certificate), bootstrapping if needed."""
    if not servers:
        raise BootstrapError("no API server URL to join")
    try:
        pin, secret = parse_token(token)
    except ValueError as e:
        raise BootstrapError(str(e)) from None
    kubeconfig = data_dir / "kubeconfig"
    files = node_tls_files(data_dir)
    if kubeconfig.exists():
        try:
            stored = load_kubeconfig(kubeconfig)
        except KubeconfigError:
            stored = None  # unreadable: replace it
        if stored is not None and _reusable(stored, node_name, pin, files):
            return replace(stored, servers=list(servers))  # the flags say where the servers are now
    ca_pem = await _fetch_ca(servers)
    if pin is None:
        log.warning("the join token has no CA hash: trusting the CA the server sent (use the full K10... token)")
    elif ca_hash(ca_pem) != pin:
        raise BootstrapError("the server's CA does not match the token (wrong token, or someone in between)")
    password = _node_password(data_dir)
    client_key, serving_key = new_key(), new_key()
    user = f"{auth.NODE_USER_PREFIX}{node_name}"
    sans = list(dict.fromkeys([*addresses, node_name]))
    request = {
        "nodeName": node_name,
        "password": password,
        "clientCSR": make_csr(client_key, user, [auth.NODES_GROUP]).decode(),
        "servingCSR": make_csr(serving_key, user, [auth.NODES_GROUP], sans).decode(),
        "addresses": addresses,
    }
    answer = await _request_credentials(servers, ca_pem, secret, request)
    client_pem = _checked_cert(answer, "clientCertificate", ca_pem, client_key.public_key())
    serving_pem = _checked_cert(answer, "servingCertificate", ca_pem, serving_key.public_key())
    client_key_pem, serving_key_pem = (
        k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        for k in (client_key, serving_key)
    )
    # Keys before certificates, the kubeconfig last: it is what marks the bootstrap as done.
    write_private(files.client_key, client_key_pem)
    write_private(files.serving_key, serving_key_pem)
    write_private(files.client_cert, client_pem)
    write_private(files.serving_cert, serving_pem)
    write_private(files.ca, ca_pem)
    write_kubeconfig(kubeconfig, list(servers), ca_data=ca_pem, client_cert_data=client_pem,
                     client_key_data=client_key_pem, user_name=user)
    log.info("node %s joined the cluster: credentials stored in %s", node_name, data_dir)
    return load_kubeconfig(kubeconfig)


def _node_password(data_dir: Path) -> str:
    path = data_dir / "node-password"
    if path.exists():
        password = path.read_text().strip()
        if password:
            return password
    password = secrets.token_hex(16)
    write_private(path, (password + "\n").encode())
    return password


async def _fetch_ca(servers: list[str]) -> bytes:
    """The first CA any server hands out (unverified: the caller checks the pin)."""
    problems = []
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
        for server in servers:
            try:
                async with session.get(f"{server}/cacerts", ssl=False) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        x509.load_pem_x509_certificate(body)  # ValueError: not a certificate
                        return body
                    problems.append(f"{server}: HTTP {resp.status}")
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                problems.append(f"{server}: {e or type(e).__name__}")
            except ValueError:
                problems.append(f"{server}: /cacerts is not a PEM certificate")
    raise BootstrapError(f"cannot fetch the cluster CA: {'; '.join(problems)}")


async def _request_credentials(servers: list[str], ca_pem: bytes, secret: str, body: dict[str, Any]) -> Any:
    ctx = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    problems = []
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
        for server in servers:
            try:
                async with session.post(f"{server}/kubelite/v1/node-credentials", data=orjson.dumps(body),
                                        headers=headers, ssl=ctx) as resp:
                    raw = await resp.read()
                    if resp.status == 200:
                        return orjson.loads(raw)
                    message = _status_message(raw) or f"HTTP {resp.status}"
                    if resp.status == 401:
                        raise BootstrapError(f"the server refused the join token: {message}")
                    if resp.status in (400, 403):
                        raise BootstrapError(f"the server refused to register this node: {message}")
                    problems.append(f"{server}: {message}")
            except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError) as e:
                problems.append(f"{server}: {e or type(e).__name__}")
    raise BootstrapError(f"cannot obtain node credentials: {'; '.join(problems)}")


def _status_message(raw: bytes) -> str:
    try:
        status = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()[:200]
    return str(status.get("message", "")) if isinstance(status, dict) else ""


def _checked_cert(answer: Any, field: str, ca_pem: bytes, public_key: Any) -> bytes:
    """The PEM in ``answer[field]``, if it is signed by the CA and certifies ``public_key``."""
    pem = answer.get(field) if isinstance(answer, dict) else None
    if not isinstance(pem, str):
        raise BootstrapError(f"the server's answer has no {field}")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except (ValueError, TypeError, InvalidSignature):
        raise BootstrapError(f"the server's {field} is not signed by the cluster CA") from None
    if cert.public_key() != public_key:
        raise BootstrapError(f"the server's {field} is not for this node's key")
    return pem.encode()
