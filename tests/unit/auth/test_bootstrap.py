"""The join token and the server's node-credential handlers (kubelite.auth.bootstrap)."""

from __future__ import annotations

import base64
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.api.registry import by_path
from kubelite.auth.bootstrap import (
    NODE_PASSWORD_SECRET_TYPE,
    NodeBootstrap,
    format_token,
    hash_password,
    load_or_create_token,
    parse_token,
    verify_password,
)
from kubelite.auth.pki import ClusterPKI, ca_hash, ensure_cluster_pki, make_csr, new_ca, new_key

SECRETS = by_path("", "v1", "secrets")
SECRET = "s3cret-join"


def test_token_round_trip() -> None:
    ca = new_ca("test-ca").cert_pem
    token = format_token(ca, SECRET)
    assert token == f"K10{ca_hash(ca)}::server:{SECRET}"
    assert parse_token(token) == (ca_hash(ca), SECRET)
    assert parse_token(f"  {token}\n") == (ca_hash(ca), SECRET)


def test_bare_secret_has_no_pin() -> None:
    assert parse_token("just-a-secret") == (None, "just-a-secret")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "K10abc::server:x",
        "K10" + "a" * 64 + "::server:",
        "K10" + "a" * 64,
        "K10" + "g" * 64 + "::server:x",
    ],
)
def test_malformed_tokens_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_token(bad)


def test_token_file_is_private_and_stable(tmp_path: Path) -> None:
    ca = new_ca("test-ca").cert_pem
    first = load_or_create_token(tmp_path, ca)
    pin, secret = parse_token(first)
    assert pin == ca_hash(ca) and len(secret) == 64 and int(secret, 16) >= 0
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert load_or_create_token(tmp_path, ca) == first  # kept across restarts
    fixed = load_or_create_token(tmp_path, ca, "given")
    assert parse_token(fixed)[1] == "given"
    assert load_or_create_token(tmp_path, ca) == fixed  # the given secret replaced the stored one


def test_password_hash_checks() -> None:
    stored = hash_password("pw-1")
    assert "pw-1" not in stored
    assert verify_password("pw-1", stored)
    assert not verify_password("pw-2", stored)
    assert hash_password("pw-1") != stored  # salted
    assert not verify_password("pw-1", "")
    assert not verify_password("pw-1", "md5$x$y$z$00$00")


# -- the handlers, on a real in-process API server's ObjectStore ---------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPKI:
    return ensure_cluster_pki(tmp_path_factory.mktemp("tls"), [])


@pytest.fixture
async def bootstrap_client(
    inproc_api: Any, pki: ClusterPKI
) -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    handlers = NodeBootstrap(inproc_api.api.objects, pki, SECRET)
    app = web.Application()
    app.router.add_get("/cacerts", handlers.cacerts)
    app.router.add_post("/kubelite/v1/node-credentials", handlers.node_credentials)
    async with TestClient(TestServer(app)) as client:
        yield client, inproc_api


def _request(
    name: str, password: str = "pw", addresses: tuple[str, ...] = ("10.0.0.7",), cn: str | None = None
) -> dict[str, Any]:
    user = cn or f"system:node:{name}"
    return {
        "nodeName": name,
        "password": password,
        "clientCSR": make_csr(new_key(), user, ["system:nodes"]).decode(),
        "servingCSR": make_csr(new_key(), user, ["system:nodes"]).decode(),
        "addresses": list(addresses),
    }


def _auth(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_cacerts_serves_the_ca(bootstrap_client: Any, pki: ClusterPKI) -> None:
    client, _ = bootstrap_client
    resp = await client.get("/cacerts")
    assert resp.status == 200
    assert await resp.read() == pki.ca.cert_pem


@pytest.mark.parametrize(
    "headers", [{}, _auth("wrong"), {"Authorization": f"Basic {SECRET}"}, {"Authorization": "Bearer "}]
)
async def test_missing_or_wrong_secret_is_401(bootstrap_client: Any, headers: dict[str, str]) -> None:
    client, _ = bootstrap_client
    resp = await client.post("/kubelite/v1/node-credentials", json=_request("n1"), headers=headers)
    assert resp.status == 401
    status = await resp.json()
    assert status["kind"] == "Status" and status["code"] == 401 and status["reason"] == "Unauthorized"


async def test_issues_node_credentials_and_stores_password_hash(
    bootstrap_client: Any, pki: ClusterPKI
) -> None:
    client, inproc = bootstrap_client
    resp = await client.post(
        "/kubelite/v1/node-credentials", json=_request("node-a", "pw-a"), headers=_auth()
    )
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["ca"].encode() == pki.ca.cert_pem
    ca = pki.ca.cert
    client_cert = x509.load_pem_x509_certificate(answer["clientCertificate"].encode())
    client_cert.verify_directly_issued_by(ca)
    assert client_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:node-a"
    assert [a.value for a in client_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:nodes"
    ]
    assert list(client_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    serving = x509.load_pem_x509_certificate(answer["servingCertificate"].encode())
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(v) for v in sans.get_values_for_type(x509.IPAddress)} == {"10.0.0.7"}
    assert sans.get_values_for_type(x509.DNSName) == ["node-a"]
    assert list(serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]

    secret = await inproc.api.objects.get(SECRETS, "kube-system", "node-a.node-password.kubelite")
    assert secret["type"] == NODE_PASSWORD_SECRET_TYPE
    stored = base64.b64decode(secret["data"]["hash"]).decode()
    assert "pw-a" not in stored and verify_password("pw-a", stored)


async def test_same_name_other_password_is_403(bootstrap_client: Any) -> None:
    client, _ = bootstrap_client
    first = await client.post(
        "/kubelite/v1/node-credentials", json=_request("node-b", "pw-b"), headers=_auth()
    )
    assert first.status == 200
    again = await client.post(
        "/kubelite/v1/node-credentials", json=_request("node-b", "pw-b"), headers=_auth()
    )
    assert again.status == 200  # the same machine re-joining (e.g. renewing) is fine
    other = await client.post(
        "/kubelite/v1/node-credentials", json=_request("node-b", "evil"), headers=_auth()
    )
    assert other.status == 403
    assert (await other.json())["message"] == "node node-b is already registered with another password"


async def test_full_token_works_as_bearer(bootstrap_client: Any, pki: ClusterPKI) -> None:
    client, _ = bootstrap_client
    token = format_token(pki.ca.cert_pem, SECRET)
    resp = await client.post("/kubelite/v1/node-credentials", json=_request("node-c"), headers=_auth(token))
    assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**_request("x"), "nodeName": "Bad_Name"}, "nodeName"),
        ({**_request("x"), "nodeName": ""}, "nodeName"),
        ({**_request("x"), "password": 5}, "password"),
        ({**_request("x"), "addresses": ["not a name!"]}, "addresses"),
        ({**_request("x"), "servingCSR": "garbage"}, "servingCSR"),
        (_request("x", cn="system:node:someone-else"), "clientCSR"),  # a CSR for another identity
    ],
)
async def test_invalid_requests_are_400_naming_the_field(
    bootstrap_client: Any, body: dict[str, Any], field: str
) -> None:
    client, _ = bootstrap_client
    resp = await client.post("/kubelite/v1/node-credentials", json=body, headers=_auth())
    assert resp.status == 400
    status = await resp.json()
    assert status["kind"] == "Status" and status["message"].startswith(field), status


async def test_not_json_is_400(bootstrap_client: Any) -> None:
    client, _ = bootstrap_client
    resp = await client.post("/kubelite/v1/node-credentials", data=b"{nope", headers=_auth())
    assert resp.status == 400
