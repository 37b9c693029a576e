"""Real etcd processes for tests: 1 or 3 members on free loopback ports, stopped by PID.

``etcd`` comes from the Debian package ``etcd-server`` (3.4); a missing binary fails loudly.
Timings are shortened (heartbeat 50 ms, election 500 ms) so leader failover and lease expiry
happen in about a second, which also makes etcd's minimum lease TTL 1 s.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port

ETCD_BIN = "etcd"


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    initial_cluster: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, state: str = "new") -> None:
        binary = shutil.which(ETCD_BIN)
        if binary is None:
            raise RuntimeError("etcd binary not found: install the Debian package etcd-server")
        args = [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", f"http://127.0.0.1:{self.client_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", "kubelite-test",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-outputs", "stderr",
            "--logger", "zap",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        """The member answers and the cluster has a leader (etcd's /health needs quorum)."""
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as resp:
                return b'"true"' in resp.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class EtcdCluster:
    members: list[EtcdMember] = field(default_factory=list)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    @property
    def url(self) -> str:
        return f"etcd://{self.endpoints}"

    def namespaced_url(self) -> str:
        """A URL whose keys live under a fresh prefix: an empty store on a shared cluster."""
        return f"{self.url}/t{uuid.uuid4().hex[:12]}"

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


def start_cluster(base: Path, size: int = 1) -> EtcdCluster:
    ports = [(free_port(), free_port()) for _ in range(size)]
    names = [f"m{i}" for i in range(size)]
    initial = ",".join(f"{n}=http://127.0.0.1:{peer}" for n, (_, peer) in zip(names, ports, strict=True))
    base.mkdir(parents=True, exist_ok=True)
    cluster = EtcdCluster()
    for name, (client, peer) in zip(names, ports, strict=True):
        member = EtcdMember(name, client, peer, base / name, base / f"{name}.log", initial)
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
