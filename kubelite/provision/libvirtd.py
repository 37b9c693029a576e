"""libvirtd for machines without an init that runs it (this project's CI and bench hosts).

:func:`libvirtd_running` uses a libvirtd that already answers on ``qemu:///system`` and leaves it
alone; otherwise it starts virtlogd and libvirtd daemonized, waits until libvirtd answers, and
stops both by their PIDs on the way out.
"""

from __future__ import annotations

import contextlib
import grp
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["libvirtd_answers", "libvirtd_running"]


def libvirtd_answers() -> bool:
    try:
        got = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return got.returncode == 0


def _start_daemon(binary: str, pidfile: Path) -> int:
    subprocess.run([binary, "-d", "-p", str(pidfile)], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not pidfile.is_file() or not pidfile.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{binary} wrote no pid file")
        time.sleep(0.05)
    return int(pidfile.read_text())


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def libvirtd_running(run_dir: Path) -> Iterator[None]:
    """libvirtd answering for the duration; pid files go to ``run_dir``."""
    if libvirtd_answers():
        yield  # someone else's libvirtd: use it, leave it running
        return
    Path("/var/log/libvirt").mkdir(parents=True, exist_ok=True)
    # With /dev/kvm mode 600 libvirt re-probes QEMU on every call (over a minute per define).
    with contextlib.suppress(KeyError, OSError):
        os.chown("/dev/kvm", -1, grp.getgrnam("kvm").gr_gid)
        os.chmod("/dev/kvm", 0o660)
    run_dir.mkdir(parents=True, exist_ok=True)
    pids = [_start_daemon("virtlogd", run_dir / "virtlogd.pid")]
    try:
        pids.append(_start_daemon("libvirtd", run_dir / "libvirtd.pid"))
        deadline = time.monotonic() + 60
        while not libvirtd_answers():
            if time.monotonic() > deadline:
                raise RuntimeError("libvirtd does not answer on qemu:///system")
            time.sleep(0.2)
        yield
    finally:
        for pid in reversed(pids):
            _stop(pid)
