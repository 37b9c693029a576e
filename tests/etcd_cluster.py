"""Real etcd processes for tests: 1 or 3 members on free loopback ports, stopped by PID.

``etcd`` comes from the Debian package ``etcd-server`` (3.4); a missing binary fails loudly.
Timings are shortened (heartbeat 50 ms, election 500 ms) so leader failover and lease expiry
happen in about a second, which also makes etcd's minimum lease TTL 1 s.
``start_cluster(..., tls=EtcdTLS.generate(dir))`` runs the members with TLS on client and peer
URLs and client-certificate authentication on both (as a production etcd runs).
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import free_port
from tests.helpers import stop_processes

ETCD_BIN = "etcd"


@dataclass(frozen=True)
class EtcdTLS:
    """One set of etcd certificates for every member (all on 127.0.0.1), from kubelite's etcd PKI."""

    cacert: Path
    server_cert: Path
    server_key: Path
    peer_cert: Path
    peer_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def generate(cls, base: Path) -> EtcdTLS:
        from kubelite.auth.pki import ensure_etcd_pki

        ensure_etcd_pki(base, "etcd", ["127.0.0.1"])
        d = base / "etcd"
        names = ("ca.crt", "server.crt", "server.key", "peer.crt", "peer.key", "client.crt", "client.key")
        return cls(*(d / name for name in names))

    def args(self) -> list[str]:
        return [
            "--cert-file", str(self.server_cert), "--key-file", str(self.server_key),
            "--trusted-ca-file", str(self.cacert), "--client-cert-auth",
            "--peer-cert-file", str(self.peer_cert), "--peer-key-file", str(self.peer_key),
            "--peer-trusted-ca-file", str(self.cacert), "--peer-client-cert-auth",
        ]  # fmt: skip

    def query(self, client_cert: bool = True) -> str:
        params = {"cacert": str(self.cacert)}
        if client_cert:
            params |= {"cert": str(self.client_cert), "key": str(self.client_key)}
        return urlencode(params)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cacert))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    initial_cluster: str
    proc: subprocess.Popen[bytes] | None = None
    tls: EtcdTLS | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def start(self, state: str = "new") -> None:
        binary = shutil.which(ETCD_BIN)
        if binary is None:
            raise RuntimeError("etcd binary not found: install the Debian package etcd-server")
        args = [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", f"{self.scheme}://127.0.0.1:{self.client_port}",
            "--advertise-client-urls", f"{self.scheme}://127.0.0.1:{self.client_port}",
            "--listen-peer-urls", f"{self.scheme}://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"{self.scheme}://127.0.0.1:{self.peer_port}",
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", "kubelite-test",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-outputs", "stderr",
            "--logger", "zap",
            *(self.tls.args() if self.tls else []),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None:
            stop_processes(self.proc, sig=sig)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        """The member answers and the cluster has a leader (etcd's /health needs quorum)."""
        try:
            context = self.tls.ssl_context() if self.tls else None
            with urllib.request.urlopen(f"{self.scheme}://{self.endpoint}/health", timeout=1, context=context) as resp:
                return b'"true"' in resp.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class EtcdCluster:
    members: list[EtcdMember] = field(default_factory=list)
    tls: EtcdTLS | None = None

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    @property
    def url(self) -> str:
        return self.url_with()

    def url_with(self, prefix: str = "", client_cert: bool = True) -> str:
        """The store URL; with TLS ``etcds://...?cacert=&cert=&key=`` (``client_cert=False`` omits cert/key)."""
        if self.tls is None:
            return f"etcd://{self.endpoints}{prefix}"
        return f"etcds://{self.endpoints}{prefix}?{self.tls.query(client_cert)}"

    def namespaced_url(self) -> str:
        """A URL whose keys live under a fresh prefix: an empty store on a shared cluster."""
        return self.url_with(f"/t{uuid.uuid4().hex[:12]}")

    def wait_healthy(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [m for m in self.members if m.running]
            if live and all(m.healthy() for m in live):
                return
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited {m.proc.returncode}:\n{m.log()[-3000:]}")
            time.sleep(0.05)
        logs = "\n".join(m.log()[-2000:] for m in self.members)
        raise RuntimeError(f"etcd cluster not healthy after {timeout}s:\n{logs}")

    def restart(self, member: EtcdMember) -> None:
        """Bring a killed member back with its data dir (it rejoins the existing cluster)."""
        member.start(state="existing")

    def stop(self) -> None:
        for m in self.members:
            m.kill(signal.SIGTERM)


def start_cluster(base: Path, size: int = 1, tls: EtcdTLS | None = None) -> EtcdCluster:
    ports = [(free_port(), free_port()) for _ in range(size)]
    names = [f"m{i}" for i in range(size)]
    scheme = "https" if tls else "http"
    initial = ",".join(f"{n}={scheme}://127.0.0.1:{peer}" for n, (_, peer) in zip(names, ports, strict=True))
    base.mkdir(parents=True, exist_ok=True)
    cluster = EtcdCluster(tls=tls)
    for name, (client, peer) in zip(names, ports, strict=True):
        member = EtcdMember(name, client, peer, base / name, base / f"{name}.log", initial, tls=tls)
        cluster.members.append(member)
        member.start()
    try:
        cluster.wait_healthy()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("etcd1"), 1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def etcd_trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("etcd3"), 3)
    try:
        yield cluster
    finally:
        cluster.stop()
