"""The cluster's PKI: a CA, the API server's serving and client certificates, etcd's certificates.

Built on ``cryptography``'s x509 builders with EC P-256 keys and SHA-256 signatures (what k3s
uses: small keys, fast to generate). Layout under ``<data_dir>/tls/`` (``ServerConfig.tls_path``)::

    ca.crt ca.key                      the cluster CA (10 years)
    server.crt server.key              the API server's serving certificate
    admin.crt admin.key                CN=admin O=system:masters, the admin kubeconfig's credential
    apiserver-kubelet-client.crt/.key  the API server's client certificate towards agents
    service-account.key                the key ServiceAccount tokens are signed with
    etcd/ca.crt etcd/ca.key            a separate CA for etcd (peer, server, client below it)
    etcd/peer.* etcd/server.* etcd/client.*

Private keys are written atomically with mode 0600, the directories are 0700.

Lifecycle: :func:`ensure_cluster_pki` runs at every ``kubelite server`` start. It creates what is
missing and keeps what exists, but re-issues (with the same CA) a leaf that does not chain to the
CA, lacks a requested SAN or expires within 30 days, so a server restarted regularly never serves
an expired certificate. SANs are only ever added: a re-issued serving certificate keeps the names
it had. :func:`rotate` (``kubelite certs rotate``) re-issues every leaf on demand. The server
reads its certificates at start only, so it must be restarted to serve the new ones. The CA and
the ServiceAccount key are never rotated here: replacing them invalidates every issued credential.
For several masters, copy ``ca.crt``/``ca.key``/``service-account.key`` (and ``etcd/ca.*``) to
each before its first start; each then issues its own leaves from the shared CA.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.auth import ADMIN_USER, KUBELET_CLIENT_USER, MASTERS, AuthenticationError

__all__ = [
    "DEFAULT_SERVER_SANS",
    "ETCD_CLIENT_USER",
    "RENEW_BEFORE",
    "CertKey",
    "ClusterPKI",
    "ca_hash",
    "client_ssl_context",
    "ensure_cluster_pki",
    "ensure_etcd_pki",
    "identity_from_peercert",
    "issue",
    "make_csr",
    "new_ca",
    "new_key",
    "rotate",
    "server_sans",
    "sign_csr",
    "write_private",
]

# Every name a client inside or next to the cluster may use for the API server.
DEFAULT_SERVER_SANS = (
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
ETCD_CLIENT_USER = "kube-apiserver-etcd-client"
RENEW_BEFORE = timedelta(days=30)  # a leaf this close to expiry is re-issued at start
CLOCK_SKEW = timedelta(minutes=1)  # not_before is back-dated so a slightly slow peer accepts a fresh cert
# X509_V_FLAG_NO_CHECK_TIME: OpenSSL >= 1.1.0; Python's ssl module has no name for it.
_NO_CHECK_TIME = 0x200000

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER, ADMIN, KUBELET_CLIENT = "server", "admin", "apiserver-kubelet-client"
SA_KEY = "service-account.key"
ETCD_DIR = "etcd"
ETCD_PEER, ETCD_SERVER, ETCD_CLIENT = "peer", "server", "client"


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate and its PEM (unencrypted PKCS#8) private key."""

    cert_pem: bytes
    key_pem: bytes

    @cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @cached_property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"unsupported private key type {type(key).__name__}")
        return key


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_names(sans: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for san in dict.fromkeys(sans):  # de-duplicated, order kept
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    return names


def new_ca(common_name: str, days: int = 3650) -> CertKey:
    key = new_key()
    now = datetime.now(UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        # path_length=0: this CA signs leaves only, never an intermediate.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(_cert_pem(cert), _key_pem(key))


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,  # EC keys agree (ECDHE), they never encipher a key
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf(
    ca: CertKey,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    *,
    sans: Sequence[str],
    server: bool,
    client: bool,
    days: int,
    now: datetime | None,
) -> x509.Certificate:
    if not (server or client):
        raise ValueError("a leaf certificate must be for server and/or client authentication")
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    start = now or datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def issue(
    ca: CertKey,
    common_name: str,
    organizations: Sequence[str] = (),
    *,
    sans: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = 365,
    key: ec.EllipticCurvePrivateKey | None = None,
    now: datetime | None = None,
) -> CertKey:
    """A leaf signed by ``ca`` (a fresh P-256 key unless ``key``); ``now`` back-dates it (tests)."""
    key = key or new_key()
    subject = _name(common_name, organizations)
    cert = _leaf(ca, subject, key.public_key(), sans=sans, server=server, client=client, days=days, now=now)
    return CertKey(_cert_pem(cert), _key_pem(key))


def make_csr(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    organizations: Sequence[str] = (),
    sans: Sequence[str] = (),
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name, organizations))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _subject_of(name: x509.Name) -> tuple[str, tuple[str, ...]]:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cns[0].value) if cns else ""), tuple(str(o.value) for o in orgs)


def sign_csr(
    ca: CertKey,
    csr_pem: bytes,
    *,
    common_name: str,
    organizations: Sequence[str] = (),
    sans: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = 365,
) -> bytes:
    """Certify the CSR's key for the identity the *signer* decided on; the CSR must ask for exactly it.

    The CSR proves possession of the key (its signature) and must name the same CN and
    organizations, so a node can't obtain a certificate for someone else by editing its request.
    The SANs are the signer's ``sans``, not whatever the CSR lists. ValueError otherwise.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise ValueError(f"not a PEM certificate signing request: {e}") from None
    if not csr.is_signature_valid:
        raise ValueError("certificate signing request signature is invalid")
    cn, orgs = _subject_of(csr.subject)
    if cn != common_name or sorted(orgs) != sorted(organizations):
        raise ValueError(
            f"certificate signing request subject CN={cn!r} O={list(orgs)} differs from the expected "
            f"CN={common_name!r} O={list(organizations)}"
        )
    subject = _name(common_name, organizations)
    cert = _leaf(ca, subject, csr.public_key(), sans=sans, server=server, client=client, days=days, now=None)
    return _cert_pem(cert)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file in the same directory and rename: readers see old or new, never half."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Atomic, mode 0600 from the first byte on (parent directory created 0700)."""
    _write(path, data, 0o600)


def ca_hash(ca_cert_pem: bytes) -> str:
    """sha256 hex of the CA certificate's DER: the CA pin in a join token."""
    der = x509.load_pem_x509_certificate(ca_cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _sans_of(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in ext if isinstance(n, x509.IPAddress | x509.DNSName)]


def _canonical(san: str) -> str:
    """One spelling per name: '::1' and '0:0::1' are the same IP SAN."""
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san.lower()


def _eku_of(cert: x509.Certificate) -> tuple[bool, bool]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False, False
    return ExtendedKeyUsageOID.SERVER_AUTH in ext, ExtendedKeyUsageOID.CLIENT_AUTH in ext


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def server_sans(sans: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*DEFAULT_SERVER_SANS, *sans]))


# -- files -----------------------------------------------------------------------------------


def _load(directory: Path, name: str) -> CertKey | None:
    """``<name>.crt`` + ``<name>.key`` if both exist; a half pair is treated as missing."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    if not (crt.exists() and key.exists()):
        return None
    return CertKey(crt.read_bytes(), key.read_bytes())


def _store(directory: Path, name: str, pair: CertKey) -> None:
    # Key first: a crash in between leaves a new key with an old cert, which _usable() rejects.
    write_private(directory / f"{name}.key", pair.key_pem)
    _write(directory / f"{name}.crt", pair.cert_pem, 0o644)


def _private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)


def _ensure_ca(directory: Path, common_name: str) -> CertKey:
    _private_dir(directory)
    crt, key = directory / CA_CERT, directory / CA_KEY
    if crt.exists() and key.exists():
        return CertKey(crt.read_bytes(), key.read_bytes())
    if crt.exists() or key.exists():
        # Never silently replace half a CA: every credential issued from it would stop working.
        raise ValueError(f"{directory} has only one of {CA_CERT}/{CA_KEY}; restore the other or remove both")
    ca = new_ca(common_name)
    write_private(key, ca.key_pem)
    _write(crt, ca.cert_pem, 0o644)
    return ca


def _usable(
    pair: CertKey | None,
    ca: CertKey,
    common_name: str,
    organizations: Sequence[str],
    sans: Sequence[str],
    server: bool,
    client: bool,
) -> bool:
    """The existing pair can stay: it chains to ``ca``, matches its key, names what is asked, and is not about to expire."""
    if pair is None:
        return False
    try:
        cert, key = pair.cert, pair.key
    except ValueError:
        return False  # unreadable: re-issue rather than fail the start
    have_cn, have_orgs = _subject_of(cert.subject)
    have_server, have_client = _eku_of(cert)
    have_sans = {_canonical(s) for s in _sans_of(cert)}
    return (
        _signed_by(cert, ca.cert)
        and cert.public_key() == key.public_key()
        and (have_cn, sorted(have_orgs)) == (common_name, sorted(organizations))
        and (have_server or not server)
        and (have_client or not client)
        and all(_canonical(s) in have_sans for s in sans)
        and cert.not_valid_after_utc - RENEW_BEFORE > datetime.now(UTC)
    )


@dataclass(frozen=True)
class _LeafSpec:
    name: str  # file stem
    common_name: str
    organizations: tuple[str, ...] = ()
    sans: tuple[str, ...] = ()
    server: bool = False
    client: bool = False


def _ensure_leaf(
    directory: Path, ca: CertKey, spec: _LeafSpec, *, force: bool = False
) -> tuple[CertKey, bool]:
    """The leaf ``spec`` describes, kept if usable; returns (pair, re-issued)."""
    existing = _load(directory, spec.name)
    args = (spec.common_name, spec.organizations, spec.sans, spec.server, spec.client)
    if existing is not None and not force and _usable(existing, ca, *args):
        return existing, False
    sans = list(spec.sans)
    if existing is not None:
        # Names are only ever added: a re-issue must not break a client using an older name.
        with contextlib.suppress(ValueError):
            sans += _sans_of(existing.cert)
    pair = issue(
        ca,
        spec.common_name,
        spec.organizations,
        sans=list(dict.fromkeys(_canonical(s) for s in sans)),
        server=spec.server,
        client=spec.client,
    )
    _store(directory, spec.name, pair)
    return pair, True


def _cluster_leaves(sans: Sequence[str]) -> list[_LeafSpec]:
    return [
        _LeafSpec(SERVER, "kube-apiserver", sans=tuple(server_sans(sans)), server=True),
        _LeafSpec(ADMIN, ADMIN_USER, (MASTERS,), client=True),
        _LeafSpec(KUBELET_CLIENT, KUBELET_CLIENT_USER, client=True),
    ]


def _etcd_leaves(member_name: str, ips: Sequence[str]) -> list[_LeafSpec]:
    member_sans = tuple(dict.fromkeys([*ips, "127.0.0.1", "localhost"]))
    return [
        _LeafSpec(ETCD_PEER, member_name, sans=member_sans, server=True, client=True),
        # clientAuth too: etcd's JSON gateway dials its own gRPC port with the server certificate.
        _LeafSpec(ETCD_SERVER, member_name, sans=member_sans, server=True, client=True),
        _LeafSpec(ETCD_CLIENT, ETCD_CLIENT_USER, client=True),
    ]


# -- the cluster PKI -------------------------------------------------------------------------


@contextlib.contextmanager
def _pem_files(pair: CertKey, near: Path) -> Iterator[tuple[str, str]]:
    """The pair as files for ``load_cert_chain`` (which reads only files), in a 0700 directory
    removed afterwards; next to the PKI when it exists, so key material stays where it lives."""
    base = near if near.is_dir() else None
    with tempfile.TemporaryDirectory(dir=base, prefix=".load-") as tmp:  # mkdtemp: mode 0700
        crt, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        write_private(key, pair.key_pem)
        _write(crt, pair.cert_pem, 0o600)
        yield str(crt), str(key)


@dataclass
class ClusterPKI:
    dir: Path
    ca: CertKey
    server: CertKey
    admin: CertKey
    kubelet_client: CertKey
    sa_key_pem: bytes

    def _load_chain(self, ctx: ssl.SSLContext, pair: CertKey) -> None:
        with _pem_files(pair, self.dir) as (crt, key):
            ctx.load_cert_chain(crt, key)

    def server_ssl_context(self) -> ssl.SSLContext:
        """Serving context: a client certificate is optional (bearer tokens need none), and when one
        is sent it must chain to the cluster CA, or the handshake fails (a cert from another CA never
        reaches the authenticator). Its validity period is NOT checked here: an expired client
        certificate completes the handshake so the authenticator can answer 401 with a reason
        instead of a bare TLS alert; the authenticator must check ``notAfter`` itself
        (:func:`identity_from_peercert`)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_chain(ctx, self.server)
        ctx.load_verify_locations(cadata=self.ca.cert_pem.decode("ascii"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags |= _NO_CHECK_TIME
        return ctx

    def client_ssl_context(self, cert: CertKey | None = None) -> ssl.SSLContext:
        """Trusts only the cluster CA (hostname checked); presents ``cert`` if given."""
        return client_ssl_context(self.ca.cert_pem, cert, self.dir)


def client_ssl_context(
    ca_pem: bytes, cert: CertKey | None = None, near: Path | None = None
) -> ssl.SSLContext:
    """A client context trusting only ``ca_pem`` (hostname checked), presenting ``cert`` if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    if cert is not None:
        with _pem_files(cert, near or Path(tempfile.gettempdir())) as (crt, key):
            ctx.load_cert_chain(crt, key)
    return ctx


def ensure_cluster_pki(dir: Path, sans: Sequence[str]) -> ClusterPKI:  # the design's name
    """Create what is missing under ``dir``, keep what exists; re-issue unusable leaves (see module doc)."""
    ca = _ensure_ca(dir, "kubelite-ca")
    server, admin, kubelet_client = (_ensure_leaf(dir, ca, spec)[0] for spec in _cluster_leaves(sans))
    sa_path = dir / SA_KEY
    if not sa_path.exists():
        write_private(sa_path, _key_pem(new_key()))
    return ClusterPKI(dir, ca, server, admin, kubelet_client, sa_path.read_bytes())


def _load_ca(directory: Path) -> CertKey:
    pair = _load(directory, "ca")
    if pair is None:
        raise FileNotFoundError(f"no CA in {directory} ({CA_CERT} and {CA_KEY})")
    return pair


def rotate(dir: Path, sans: Sequence[str]) -> list[str]:
    """Re-issue every leaf (new keys) with the existing CAs; returns the certificate files re-issued.

    The etcd leaves are re-issued too when an etcd CA exists, each keeping its subject and SANs.
    """
    ca = _load_ca(dir)
    done = []
    for spec in _cluster_leaves(sans):
        _ensure_leaf(dir, ca, spec, force=True)
        done.append(f"{spec.name}.crt")
    etcd_dir = dir / ETCD_DIR
    if (etcd_dir / CA_CERT).exists():
        etcd_ca = _load_ca(etcd_dir)
        for name in (ETCD_PEER, ETCD_SERVER, ETCD_CLIENT):
            old = _load(etcd_dir, name)
            if old is None:
                continue
            cn, orgs = _subject_of(old.cert.subject)
            server, client = _eku_of(old.cert)
            spec = _LeafSpec(name, cn, orgs, tuple(_sans_of(old.cert)), server, client)
            _ensure_leaf(etcd_dir, etcd_ca, spec, force=True)
            done.append(f"{ETCD_DIR}/{name}.crt")
    return done


def ensure_etcd_pki(dir: Path, member_name: str, ips: Sequence[str]) -> tuple[CertKey, CertKey, CertKey]:
    """etcd's peer, server and client pairs under ``<dir>/etcd/``, from a separate etcd CA.

    A separate CA so an API client certificate can never authenticate to etcd (which would bypass
    every authorization rule). Same keep/re-issue rules as :func:`ensure_cluster_pki`.
    """
    etcd_dir = dir / ETCD_DIR
    _private_dir(dir)
    ca = _ensure_ca(etcd_dir, "kubelite-etcd-ca")
    peer, server, client = (_ensure_leaf(etcd_dir, ca, spec)[0] for spec in _etcd_leaves(member_name, ips))
    return peer, server, client


def identity_from_peercert(peercert: Mapping[str, Any] | None) -> tuple[str, tuple[str, ...], datetime]:
    """(CN, organizations, notAfter) from ``SSLSocket.getpeercert()``; AuthenticationError without a CN.

    ``getpeercert()`` returns a dict only for a certificate that chained to the CA, so this is
    called on verified certificates; the caller still compares notAfter with the clock.
    """
    if not peercert:
        raise AuthenticationError("no verified client certificate")
    cn = ""
    orgs: list[str] = []
    for rdn in peercert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                cn = value
            elif attr == "organizationName":
                orgs.append(value)
    if not cn:
        raise AuthenticationError("client certificate has no common name")
    try:
        not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(peercert["notAfter"]), UTC)
    except (KeyError, ValueError):
        raise AuthenticationError("client certificate has no readable notAfter") from None
    return cn, tuple(orgs), not_after
