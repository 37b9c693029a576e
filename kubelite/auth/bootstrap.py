"""The cluster join token and node credential bootstrap, server side (k3s' model).

The join token is ``K10<ca_hash>::server:<secret>``: the CA pin lets a new agent trust the
certificate it fetches from ``GET /cacerts`` over an unverified connection, the secret proves the
agent may join. ``POST /kubelite/v1/node-credentials`` (``Authorization: Bearer <secret>``)
trades the secret plus a node password for the node's own certificates, signed from CSRs so the
private keys never leave the node:

- a client certificate ``CN=system:node:<name>, O=system:nodes`` (the node authorizer's identity);
- a serving certificate for the agent's logs/exec endpoint, with the node's addresses as SANs.

The node password stops one node from taking over another's name: its salted hash is kept in
Secret ``kube-system/<node>.node-password.kubelite`` at first registration, and a later request
for that name must present the same password (403 otherwise). Delete the Secret to let a
re-installed machine join under an old name. Neither handler logs a secret, password or key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import secrets
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kubelite import auth
from kubelite.api.registry import by_path
from kubelite.api.validation import is_dns1123_subdomain
from kubelite.apiserver import errors
from kubelite.apiserver.objects import ObjectStore
from kubelite.auth.pki import ClusterPKI, sign_csr, write_private
from kubelite.auth.token import format_token, parse_token

__all__ = [
    "NODE_PASSWORD_SECRET_TYPE",
    "NodeBootstrap",
    "format_token",
    "hash_password",
    "load_or_create_token",
    "node_password_secret_name",
    "parse_token",
    "verify_password",
]

log = logging.getLogger(__name__)

NODE_PASSWORD_SECRET_TYPE = "kubelite.io/node-password"
NODE_PASSWORD_SUFFIX = ".node-password.kubelite"
NODE_CERT_DAYS = 365
MAX_ADDRESSES = 32
MAX_PASSWORD = 1024
# scrypt at n=2**14, r=8, p=1: ~16 MiB and some tens of ms per check, once per node registration.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

_SECRETS = by_path("", "v1", "secrets")
assert _SECRETS is not None
SECRETS = _SECRETS


# -- the join token ----------------------------------------------------------------------------


def load_or_create_token(data_dir: Path, ca_pem: bytes, secret: str = "") -> str:
    """The full join token, kept in ``<data_dir>/token`` (0600).

    A given ``secret`` replaces the stored one (``--token``: every master of an HA cluster the same);
    otherwise the stored secret is kept, or a random one is made. The CA pin is always recomputed.
    """
    path = data_dir / "token"
    if not secret and path.exists():
        _pin, secret = parse_token(path.read_text())
    secret = secret or secrets.token_hex(32)
    token = format_token(ca_pem, secret)
    if not path.exists() or path.read_text().strip() != token:
        write_private(path, (token + "\n").encode())
    return token


# -- node passwords ----------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (False for an unreadable one)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def node_password_secret_name(node: str) -> str:
    return f"{node}{NODE_PASSWORD_SUFFIX}"


# -- the handlers ------------------------------------------------------------------------------


def _status(err: errors.StatusError) -> web.Response:
    return web.Response(body=orjson.dumps(err.to_status()), status=err.code, content_type="application/json")


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, str | list) and not value):
        what = "a non-empty string" if kind is str else "a non-empty list"
        raise errors.bad_request(f"{name}: Required value: must be {what}")
    return value


def _check_address(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise errors.bad_request("addresses: each address must be a non-empty string")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    problems = is_dns1123_subdomain(value)
    if problems:
        raise errors.bad_request(f"addresses: {value!r} is neither an IP address nor a DNS name: {problems[0]}")
    return value


class NodeBootstrap:
    """``GET /cacerts`` and ``POST /kubelite/v1/node-credentials`` (mounted by the API server).

    Both are reached without API authentication: the second checks the join token's secret itself.
    """

    def __init__(self, objects: ObjectStore, pki: ClusterPKI, secret: str) -> None:
        if not secret:
            raise ValueError("the join token secret must not be empty")
        self.objects = objects
        self.pki = pki
        self._secret = secret.encode()
        self._lock = asyncio.Lock()  # one password check-and-store at a time

    async def cacerts(self, request: web.Request) -> web.Response:
        return web.Response(body=self.pki.ca.cert_pem, content_type="application/x-pem-file")

    async def node_credentials(self, request: web.Request) -> web.Response:
        try:
            return await self._node_credentials(request)
        except errors.StatusError as e:
            return _status(e)

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        secret = b""
        if scheme.lower() == "bearer" and presented.strip():
            try:
                secret = parse_token(presented)[1].encode()  # the full token works too
            except ValueError:
                pass
        # compare_digest even for an empty secret, so timing tells nothing about why it failed.
        if not hmac.compare_digest(secret, self._secret) or not secret:
            raise errors.StatusError(401, "Unauthorized", "a valid cluster join token is required")

    async def _node_credentials(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as e:
            raise errors.bad_request(f"the request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        name = _field(body, "nodeName", str)
        problems = is_dns1123_subdomain(name)
        if problems:
            raise errors.bad_request(f"nodeName: Invalid value: {name!r}: {problems[0]}")
        if len(node_password_secret_name(name)) > 253:
            raise errors.bad_request(f"nodeName: Invalid value: must be no more than {253 - len(NODE_PASSWORD_SUFFIX)} characters")
        password = _field(body, "password", str)
        if len(password) > MAX_PASSWORD:
            raise errors.bad_request(f"password: must be no more than {MAX_PASSWORD} characters")
        client_csr = _field(body, "clientCSR", str)
        serving_csr = _field(body, "servingCSR", str)
        raw_addresses = body.get("addresses", [])
        if not isinstance(raw_addresses, list) or len(raw_addresses) > MAX_ADDRESSES:
            raise errors.bad_request(f"addresses: must be a list of at most {MAX_ADDRESSES} IPs or DNS names")
        addresses = [_check_address(a) for a in raw_addresses]

        user = f"{auth.NODE_USER_PREFIX}{name}"
        try:
            client_pem = sign_csr(self.pki.ca, client_csr.encode(), common_name=user,
                                  organizations=[auth.NODES_GROUP], client=True, days=NODE_CERT_DAYS)
        except ValueError as e:
            raise errors.bad_request(f"clientCSR: {e}") from None
        try:
            serving_pem = sign_csr(self.pki.ca, serving_csr.encode(), common_name=user,
                                   organizations=[auth.NODES_GROUP], sans=[*addresses, name], server=True,
                                   days=NODE_CERT_DAYS)
        except ValueError as e:
            raise errors.bad_request(f"servingCSR: {e}") from None
        # Last: a request refused for any other reason must not leave a node-password Secret behind.
        await self._check_password(name, password)
        log.info("issued node credentials for %s (serving SANs: %s)", name, ", ".join([*addresses, name]))
        return web.Response(
            body=orjson.dumps({
                "clientCertificate": client_pem.decode(),
                "servingCertificate": serving_pem.decode(),
                "ca": self.pki.ca.cert_pem.decode(),
            }),
            content_type="application/json",
        )

    async def _check_password(self, node: str, password: str) -> None:
        """Store the password's hash at first registration; 403 when a later one differs."""
        secret_name = node_password_secret_name(node)
        async with self._lock:
            try:
                stored: dict[str, Any] | None = await self.objects.get(SECRETS, "kube-system", secret_name)
            except errors.StatusError as e:
                if e.code != 404:
                    raise
                stored = None
            if stored is None:
                hashed = await asyncio.to_thread(hash_password, password)
                secret_obj = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": secret_name, "namespace": "kube-system"},
                    "type": NODE_PASSWORD_SECRET_TYPE,
                    "data": {"hash": base64.b64encode(hashed.encode()).decode()},
                }
                try:
                    await self.objects.create(SECRETS, "kube-system", secret_obj)
                    return
                except errors.StatusError as e:
                    if e.code != 409:  # another API server (HA) stored one just now: check against it
                        raise
                    stored = await self.objects.get(SECRETS, "kube-system", secret_name)
        try:
            hashed = base64.b64decode(str((stored.get("data") or {}).get("hash", ""))).decode()
        except (binascii.Error, UnicodeDecodeError):
            hashed = ""
        if not await asyncio.to_thread(verify_password, password, hashed):
            raise errors.StatusError(403, "Forbidden", f"node {node} is already registered with another password")
