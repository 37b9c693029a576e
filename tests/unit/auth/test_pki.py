"""The cluster PKI: real certificates, real files, real TLS handshakes on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from kubelite.auth import AuthenticationError
from kubelite.auth.pki import (
    DEFAULT_SERVER_SANS,
    CertKey,
    ClusterPKI,
    ca_hash,
    ensure_cluster_pki,
    ensure_etcd_pki,
    identity_from_peercert,
    issue,
    make_csr,
    new_ca,
    new_key,
    rotate,
    sign_csr,
    write_private,
)
from kubelite.cli import app


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPKI:
    return ensure_cluster_pki(tmp_path / "tls", ["10.0.0.5", "master-1.example"])


def sans_of(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in ext}


def eku_of(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- certificates ---------------------------------------------------------------------------


def test_ca_extensions() -> None:
    ca = new_ca("test-ca")
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ca.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"
    ca.cert.verify_directly_issued_by(ca.cert)  # self-signed


def test_leaf_chains_to_its_ca_and_carries_the_request() -> None:
    ca = new_ca("test-ca")
    before = datetime.now(UTC)
    leaf = issue(ca, "web", ["team-a", "team-b"], sans=["10.1.2.3", "web.local", "::1"], server=True, days=30)
    leaf.cert.verify_directly_issued_by(ca.cert)
    with pytest.raises(ValueError):
        leaf.cert.verify_directly_issued_by(new_ca("other").cert)
    cn = leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in leaf.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert (cn, sorted(orgs)) == ("web", ["team-a", "team-b"])
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["web.local"]
    assert eku_of(leaf.cert) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert not leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Back-dated a minute for clock skew; valid for the days asked.
    assert leaf.cert.not_valid_before_utc <= before - timedelta(seconds=59)
    assert leaf.cert.not_valid_after_utc - before >= timedelta(days=30) - timedelta(seconds=5)
    with pytest.raises(ValueError, match="server and/or client"):
        issue(ca, "nothing")


def test_ca_hash_is_sha256_of_der() -> None:
    ca = new_ca("test-ca")
    assert (
        ca_hash(ca.cert_pem) == hashlib.sha256(ca.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    )
    assert ca_hash(ca.cert_pem) != ca_hash(new_ca("test-ca").cert_pem)


# -- CSRs ------------------------------------------------------------------------------------


def test_sign_csr_certifies_the_requesters_key() -> None:
    ca = new_ca("test-ca")
    key = new_key()
    csr = make_csr(key, "system:node:n1", ["system:nodes"], sans=["evil.example"])
    cert = x509.load_pem_x509_certificate(
        sign_csr(
            ca,
            csr,
            common_name="system:node:n1",
            organizations=["system:nodes"],
            sans=["10.0.0.9"],
            client=True,
        )
    )
    cert.verify_directly_issued_by(ca.cert)
    assert cert.public_key() == key.public_key()
    assert sans_of(cert) == {"10.0.0.9"}  # the signer's SANs, not the CSR's
    assert eku_of(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_sign_csr_refuses_another_subject() -> None:
    ca = new_ca("test-ca")
    csr = make_csr(new_key(), "system:node:other", ["system:nodes"])
    with pytest.raises(ValueError, match="differs"):
        sign_csr(ca, csr, common_name="system:node:n1", organizations=["system:nodes"], client=True)
    csr = make_csr(new_key(), "system:node:n1", ["system:masters"])
    with pytest.raises(ValueError, match="differs"):
        sign_csr(ca, csr, common_name="system:node:n1", organizations=["system:nodes"], client=True)


def test_sign_csr_refuses_a_tampered_csr() -> None:
    ca = new_ca("test-ca")
    # Same-length CN edit inside the signed body: the DER still parses, the signature no longer matches.
    good = x509.load_pem_x509_csr(make_csr(new_key(), "system:node:n1", ["system:nodes"]))
    der = good.public_bytes(serialization.Encoding.DER)
    assert der.count(b"system:node:n1") == 1
    tampered = der.replace(b"system:node:n1", b"system:node:n2")
    pem = x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="signature"):
        sign_csr(ca, pem, common_name="system:node:n2", organizations=["system:nodes"], client=True)
    with pytest.raises(ValueError, match="PEM"):
        sign_csr(ca, b"garbage", common_name="system:node:n1", client=True)


# -- the cluster PKI on disk -----------------------------------------------------------------


def test_ensure_cluster_pki_layout_and_modes(tmp_path: Path, pki: ClusterPKI) -> None:
    d = tmp_path / "tls"
    assert mode(d) == 0o700
    for key in ("ca.key", "server.key", "admin.key", "apiserver-kubelet-client.key", "service-account.key"):
        assert mode(d / key) == 0o600, key
    for crt in ("ca.crt", "server.crt", "admin.crt", "apiserver-kubelet-client.crt"):
        assert (d / crt).is_file()
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporary files left behind
    sa = serialization.load_pem_private_key((d / "service-account.key").read_bytes(), None)
    assert isinstance(sa, ec.EllipticCurvePrivateKey) and sa.curve.name == "secp256r1"
    assert pki.sa_key_pem == (d / "service-account.key").read_bytes()


def test_cluster_certificates(pki: ClusterPKI) -> None:
    for leaf in (pki.server, pki.admin, pki.kubelet_client):
        leaf.cert.verify_directly_issued_by(pki.ca.cert)
    assert sans_of(pki.server.cert) == {*DEFAULT_SERVER_SANS, "10.0.0.5", "master-1.example"}
    assert eku_of(pki.server.cert) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert pki.admin.cert.subject.rfc4514_string() == "CN=admin,O=system:masters"
    assert eku_of(pki.admin.cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert pki.kubelet_client.cert.subject.rfc4514_string() == "CN=kube-apiserver-kubelet-client"
    assert eku_of(pki.kubelet_client.cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_ensure_keeps_what_exists(tmp_path: Path, pki: ClusterPKI) -> None:
    again = ensure_cluster_pki(tmp_path / "tls", ["master-1.example"])  # a subset of the SANs: nothing to do
    assert again == pki


def test_missing_san_reissues_the_server_cert_with_the_same_ca(tmp_path: Path, pki: ClusterPKI) -> None:
    again = ensure_cluster_pki(tmp_path / "tls", ["10.0.0.6"])
    assert again.ca == pki.ca and again.admin == pki.admin and again.sa_key_pem == pki.sa_key_pem
    assert again.server != pki.server
    again.server.cert.verify_directly_issued_by(pki.ca.cert)
    # The new name is added, the old ones kept.
    assert {"10.0.0.6", "10.0.0.5", "master-1.example", "kubernetes.default.svc"} <= sans_of(
        again.server.cert
    )
    assert (tmp_path / "tls" / "server.crt").read_bytes() == again.server.cert_pem


def test_near_expiry_and_foreign_leaves_are_reissued(tmp_path: Path, pki: ClusterPKI) -> None:
    d = tmp_path / "tls"
    short = issue(pki.ca, "admin", ["system:masters"], client=True, days=10)
    write_private(d / "admin.key", short.key_pem)
    (d / "admin.crt").write_bytes(short.cert_pem)
    foreign = issue(new_ca("other"), "kube-apiserver-kubelet-client", client=True)
    write_private(d / "apiserver-kubelet-client.key", foreign.key_pem)
    (d / "apiserver-kubelet-client.crt").write_bytes(foreign.cert_pem)
    again = ensure_cluster_pki(d, [])
    assert again.admin.cert.not_valid_after_utc - datetime.now(UTC) > timedelta(days=300)
    again.kubelet_client.cert.verify_directly_issued_by(pki.ca.cert)
    assert again.server == pki.server


def test_half_a_ca_is_an_error(tmp_path: Path, pki: ClusterPKI) -> None:
    (tmp_path / "tls" / "ca.key").unlink()
    with pytest.raises(ValueError, match=r"ca\.crt/ca\.key"):
        ensure_cluster_pki(tmp_path / "tls", [])


def test_rotate_reissues_leaves_only(tmp_path: Path, pki: ClusterPKI) -> None:
    d = tmp_path / "tls"
    ensure_etcd_pki(d, "m0", ["10.0.0.5"])
    etcd_before = (d / "etcd" / "server.crt").read_bytes()
    done = rotate(d, ["extra.example"])
    assert done == [
        "server.crt",
        "admin.crt",
        "apiserver-kubelet-client.crt",
        "etcd/peer.crt",
        "etcd/server.crt",
        "etcd/client.crt",
    ]
    after = ensure_cluster_pki(d, [])
    assert after.ca == pki.ca and after.sa_key_pem == pki.sa_key_pem
    for old, new in (
        (pki.server, after.server),
        (pki.admin, after.admin),
        (pki.kubelet_client, after.kubelet_client),
    ):
        assert new.cert.serial_number != old.cert.serial_number
        assert new.key_pem != old.key_pem  # new keys too
        new.cert.verify_directly_issued_by(pki.ca.cert)
    assert {"extra.example", "10.0.0.5"} <= sans_of(after.server.cert)
    etcd_after = x509.load_pem_x509_certificate((d / "etcd" / "server.crt").read_bytes())
    assert etcd_after.serial_number != x509.load_pem_x509_certificate(etcd_before).serial_number
    assert sans_of(etcd_after) == {"10.0.0.5", "127.0.0.1", "localhost"}
    for key in d.rglob("*.key"):
        assert mode(key) == 0o600, key
    with pytest.raises(FileNotFoundError):
        rotate(tmp_path / "nothing", [])


def test_etcd_pki(tmp_path: Path, pki: ClusterPKI) -> None:
    peer, server, client = ensure_etcd_pki(tmp_path / "tls", "m0", ["10.0.0.5"])
    etcd_ca = x509.load_pem_x509_certificate((tmp_path / "tls" / "etcd" / "ca.crt").read_bytes())
    assert etcd_ca != pki.ca.cert  # a separate CA: an API credential never opens etcd
    for leaf in (peer, server, client):
        leaf.cert.verify_directly_issued_by(etcd_ca)
    assert sans_of(peer.cert) == sans_of(server.cert) == {"10.0.0.5", "127.0.0.1", "localhost"}
    assert eku_of(server.cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert client.cert.subject.rfc4514_string() == "CN=kube-apiserver-etcd-client"
    assert eku_of(client.cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert mode(tmp_path / "tls" / "etcd") == 0o700
    assert mode(tmp_path / "tls" / "etcd" / "ca.key") == 0o600
    assert ensure_etcd_pki(tmp_path / "tls", "m0", ["10.0.0.5"]) == (peer, server, client)


def test_write_private_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "new" / "secret.key"
    write_private(target, b"one")
    target.chmod(0o644)  # even a loosened file comes back private
    write_private(target, b"two")
    assert target.read_bytes() == b"two" and mode(target) == 0o600 and mode(target.parent) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["secret.key"]


# -- TLS handshakes --------------------------------------------------------------------------


class Server:
    """A TLS echo of the peer certificate: what the API server's authenticator would see."""

    def __init__(self) -> None:
        self.peercerts: list[Any] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peercerts.append(writer.get_extra_info("peercert"))
        writer.write(b"hello")
        await writer.drain()
        writer.close()


@pytest.fixture
async def tls_server(pki: ClusterPKI) -> Any:
    server = Server()
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=pki.server_ssl_context())
    port = srv.sockets[0].getsockname()[1]
    yield server, port
    srv.close()
    await srv.wait_closed()


async def exchange(
    pki: ClusterPKI, port: int, cert: CertKey | None, ctx: ssl.SSLContext | None = None
) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx or pki.client_ssl_context(cert), server_hostname="127.0.0.1"
    )
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def test_server_context_settings(pki: ClusterPKI) -> None:
    ctx = pki.server_ssl_context()
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert ctx.verify_flags & 0x200000  # X509_V_FLAG_NO_CHECK_TIME
    client = pki.client_ssl_context()
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


async def test_handshake_with_and_without_client_cert(pki: ClusterPKI, tls_server: Any) -> None:
    server, port = tls_server
    assert await exchange(pki, port, None) == b"hello"
    assert await exchange(pki, port, pki.admin) == b"hello"
    assert server.peercerts[0] is None
    cn, orgs, not_after = identity_from_peercert(server.peercerts[1])
    assert (cn, orgs) == ("admin", ("system:masters",))
    assert abs(not_after - pki.admin.cert.not_valid_after_utc) < timedelta(seconds=1)


async def test_expired_client_cert_reaches_the_server(pki: ClusterPKI, tls_server: Any) -> None:
    server, port = tls_server
    expired = issue(
        pki.ca, "old-node", ["system:nodes"], client=True, days=1, now=datetime.now(UTC) - timedelta(days=30)
    )
    assert await exchange(pki, port, expired) == b"hello"
    cn, orgs, not_after = identity_from_peercert(server.peercerts[0])
    assert (cn, orgs) == ("old-node", ("system:nodes",))
    assert not_after < datetime.now(UTC)  # the authenticator's job to turn this into a 401


@pytest.mark.parametrize("tls12", [False, True])
async def test_client_cert_from_another_ca_is_refused_at_the_handshake(
    pki: ClusterPKI, tls_server: Any, tls12: bool
) -> None:
    server, port = tls_server
    intruder = issue(new_ca("kubelite-ca"), "admin", ["system:masters"], client=True)
    ctx = pki.client_ssl_context(intruder)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the refusal is then part of the handshake itself
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await exchange(pki, port, None, ctx)
    else:
        # TLS 1.3 clients finish their side first; the server's alert arrives on the first read.
        try:
            data = await exchange(pki, port, None, ctx)
        except (ssl.SSLError, ConnectionError):
            data = b""
        assert data == b""
    assert server.peercerts == []  # the application never saw the connection


async def test_client_refuses_a_server_from_another_ca(
    tmp_path: Path, pki: ClusterPKI, tls_server: Any
) -> None:
    _, port = tls_server
    other = ensure_cluster_pki(tmp_path / "other", [])
    with pytest.raises(ssl.SSLCertVerificationError):
        await exchange(other, port, None)


async def test_client_checks_the_hostname(pki: ClusterPKI, tls_server: Any) -> None:
    _, port = tls_server
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await asyncio.open_connection(
            "127.0.0.1", port, ssl=pki.client_ssl_context(), server_hostname="elsewhere"
        )


def test_client_context_leaves_no_key_files(tmp_path: Path, pki: ClusterPKI) -> None:
    pki.client_ssl_context(pki.admin)
    pki.server_ssl_context()
    assert not [p for p in (tmp_path / "tls").iterdir() if p.name.startswith(".")]


def test_identity_from_peercert_rejects_empty() -> None:
    with pytest.raises(AuthenticationError):
        identity_from_peercert({})
    with pytest.raises(AuthenticationError):
        identity_from_peercert(
            {"subject": ((("organizationName", "x"),),), "notAfter": "Jan  1 00:00:00 2030 GMT"}
        )


# -- kubelite certs ----------------------------------------------------------------------------


def test_certs_check_without_pki_fails_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["certs", "check", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no cluster PKI in {tmp_path / 'tls'} (kubelite server creates it at first start)"
    ]


def test_certs_check_lists_every_certificate(tmp_path: Path) -> None:
    ensure_cluster_pki(tmp_path / "tls", ["10.0.0.5"])
    ensure_etcd_pki(tmp_path / "tls", "m0", ["10.0.0.5"])
    result = CliRunner().invoke(app, ["certs", "check", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {
        "admin.crt",
        "apiserver-kubelet-client.crt",
        "ca.crt",
        "server.crt",
        "etcd/ca.crt",
        "etcd/client.crt",
        "etcd/peer.crt",
        "etcd/server.crt",
    }
    assert "CN=admin,O=system:masters" in rows["admin.crt"]
    assert rows["admin.crt"].split()[5] == "364"  # days left: 365 days from a moment ago, floored
    assert "kubernetes.default.svc.cluster.local" in rows["server.crt"] and "10.0.0.5" in rows["server.crt"]


def test_certs_rotate(tmp_path: Path) -> None:
    before = ensure_cluster_pki(tmp_path / "tls", [])
    result = CliRunner().invoke(
        app, ["certs", "rotate", "--data-dir", str(tmp_path), "--tls-san", "api.example"]
    )
    assert result.exit_code == 0, result.output
    assert f"re-issued {tmp_path / 'tls' / 'server.crt'}" in result.stdout
    assert "restart kubelite server" in result.stdout
    after = ensure_cluster_pki(tmp_path / "tls", [])
    assert after.ca == before.ca and after.server != before.server
    assert "api.example" in sans_of(after.server.cert)
