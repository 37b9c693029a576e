"""A private dockerd for tests and benchmarks: its own containerd, data root, exec root and socket.

No docker0 bridge and no iptables changes (``--bridge none --iptables=false --ip-masq=false``): the
docker runtime puts pods on kubelite's own node bridge. The data root must not sit on overlayfs
(overlay2 cannot stack on it): when it would, a tmpfs is mounted there. Everything is stopped by
PID and removed at the end.

    with running_dockerd() as d:
        os.environ["DOCKER_HOST"] = d.host
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import stop_processes

__all__ = ["Dockerd", "docker_cli", "dockerd", "running_dockerd"]


@dataclass
class Dockerd:
    base: Path
    socket: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tmpfs: Path | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def log(self) -> str:
        return "".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}\n" for p in sorted(self.base.glob("*.log"))
        )


def docker_cli(d: Dockerd, *args: str) -> str:
    """Run the docker CLI against ``d`` (tests observe dockerd through it; the runtime never uses it)."""
    cli = shutil.which("docker")
    assert cli, "the docker CLI is not installed (scripts/setup.sh installs docker.io)"
    out = subprocess.run([cli, "-H", d.host, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"docker {' '.join(args)}: {out.stderr}"
    return out.stdout


def _fs_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (longest mount point prefix wins)."""
    best, fstype = "", ""
    resolved = str(path.resolve())
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mount_point = left.split()[4]
        if (resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) >= len(
            best
        ):
            best, fstype = mount_point, right.split()[0]
    return fstype


def _ping(sock: Path) -> bool:
    conn = http.client.HTTPConnection("docker", timeout=1)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(str(sock))
        conn.sock = s
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _wait_for(
    what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], d: Dockerd, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{d.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout}s:\n{d.log()}")
        time.sleep(0.02)


@contextlib.contextmanager
def running_dockerd(timeout: float = 30) -> Iterator[Dockerd]:
    for tool in ("dockerd", "containerd", "runc"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/setup.sh installs docker.io, containerd, runc)"
    assert os.geteuid() == 0, "dockerd needs root"
    # Short paths: containerd's and dockerd's sockets live below and must fit a sun_path (108 bytes).
    base = Path(tempfile.mkdtemp(prefix="kld-", dir="/tmp"))
    d = Dockerd(base=base, socket=base / "docker.sock")
    data = base / "data"
    data.mkdir()
    if _fs_type(data) in ("overlay", "aufs"):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g,mode=0711", "tmpfs", str(data)], check=True)
        d.tmpfs = data
    try:
        # Our own containerd: dockerd would otherwise share any containerd another test runs.
        with open(base / "containerd.log", "ab") as log:
            ctd = subprocess.Popen(
                ["containerd", "--address", str(base / "ctd.sock"), "--root", str(data / "containerd"),
                 "--state", str(base / "run" / "containerd"), "--config", "/dev/null"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        d.procs.append(ctd)
        _wait_for("containerd", (base / "ctd.sock").exists, ctd, d, timeout)
        with open(base / "dockerd.log", "ab") as log:
            proc = subprocess.Popen(
                ["dockerd", "--data-root", str(data / "docker"), "--exec-root", str(base / "run" / "docker"),
                 "-H", d.host, "--pidfile", str(base / "docker.pid"), "--containerd", str(base / "ctd.sock"),
                 "--bridge", "none", "--iptables=false", "--ip-masq=false", "--shutdown-timeout", "2",
                 "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        d.procs.append(proc)
        _wait_for("dockerd", lambda: _ping(d.socket), proc, d, timeout)
        yield d
    finally:
        for p in reversed(d.procs):  # one at a time: dockerd before the containerd it uses
            stop_processes(p, timeout=20)
        if d.tmpfs is not None:
            subprocess.run(["umount", "-l", str(d.tmpfs)], check=False)
        # dockerd unmounts its overlays on shutdown; anything still mounted below is left, not forced.
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False, capture_output=True)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private dockerd for the test session (per importing module: pytest keys fixtures by module)."""
    with running_dockerd() as d:
        yield d
