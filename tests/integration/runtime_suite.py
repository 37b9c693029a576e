"""What the runtime conformance suite needs to drive and observe each real runtime.

``test_runtime_conformance.py`` is written once against :class:`~kubelite.agent.runtime.Runtime`;
a :class:`Harness` per runtime supplies only what the protocol does not say: how to build one,
the host pid of a container (to compare namespaces), and what of it may be left on the host
after ``reset()``, observed independently of the runtime's own listing (the docker CLI, the
runc state dirs, the kernel's links, mounts and cgroups).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from kubelite.agent import cgroups
from kubelite.agent.netns import NETNS_DIR, bridge_name
from kubelite.agent.runtime import ContainerConfig, ContainerState, ContainerStatus, Runtime, RuntimeOptions
from kubelite.agent.runtimes import create_runtime
from kubelite.agent.runtimes.common import config_from_spec
from tests.dockerd import Dockerd, docker_cli

__all__ = [
    "GUARD_METRIC",
    "Harness",
    "config",
    "guarded_pod_cidr",
    "http_get",
    "ip",
    "pod",
    "run",
    "wait_exited",
    "wait_log",
]

Obj = dict[str, Any]
GUARD_METRIC = "4242"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@contextmanager
def guarded_pod_cidr(low: int = 200, high: int = 254) -> Iterator[str]:
    """A free 10.244.N.0/24 with an ``unreachable`` route under it for as long as it is used.

    The node bridge's own route overrides the guard; anything the bridge does not serve fails
    locally instead of leaving the machine (host-facts: Traffic).
    """
    for _ in range(100):
        cidr = f"10.244.{random.randint(low, high)}.0/24"
        if not ip("route", "show", cidr).stdout.strip():
            break
    else:
        raise AssertionError(f"no free test pod CIDR in 10.244.{low}-{high}.0/24")
    ip("route", "add", "unreachable", cidr, "metric", GUARD_METRIC)
    try:
        yield cidr
    finally:
        ip("route", "del", "unreachable", cidr, "metric", GUARD_METRIC, check=False)


class Harness:
    """One runtime under test."""

    def __init__(self, name: str, dockerd: Dockerd | None = None) -> None:
        self.name = name
        self.dockerd = dockerd

    @property
    def env(self) -> dict[str, str]:
        """Environment a process building this runtime needs (DOCKER_HOST for docker)."""
        return {"DOCKER_HOST": self.dockerd.host} if self.dockerd is not None else {}

    def make(self, data_dir: Path, node: str, cidr: str) -> Runtime:
        os.environ.update(self.env)
        return create_runtime(self.name, RuntimeOptions(node_name=node, data_dir=data_dir, pod_cidr=cidr))

    async def pid(self, rt: Runtime, cid: str) -> int:
        """The host pid of a running container's main process."""
        pid = rt.init_pid(cid)  # type: ignore[attr-defined]
        if asyncio.iscoroutine(pid):
            pid = await pid
        assert isinstance(pid, int), f"container {cid} has no running process"
        return pid

    def leftovers(self, rt: Runtime, data_dir: Path, node: str, cidr: str) -> list[str]:
        """What of ``node`` is still on the host, as seen by the kernel and the runtime's engine."""
        left: list[str] = []
        if ip("link", "show", bridge_name(node), check=False).returncode == 0:
            left.append(f"bridge {bridge_name(node)}")
        ipam = data_dir / "net" / "ipam" / cidr.replace("/", "_")
        if ipam.is_dir() and any(ipam.iterdir()):
            left.append(f"IP allocations {sorted(p.name for p in ipam.iterdir())}")
        layout = cgroups.detect_layout()
        left += [f"cgroup {m / 'kubelite' / node}" for m in layout.mounts if (m / "kubelite" / node).exists()]
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        left += [f"mount {m}" for m in mounts if m.startswith(str(data_dir.resolve()))]
        if self.name == "runc":
            for sub in ("containers", "sandboxes"):
                left += [f"runc {sub}/{p.name}" for p in (data_dir / sub).iterdir()]
        if self.dockerd is not None:
            ids = docker_cli(self.dockerd, "ps", "-aq", "--filter", f"label=io.kubelite.node={node}").split()
            left += [f"docker container {i}" for i in ids]
        return left + netns_in(cidr)

    def reset_node(self, data_dir: Path, node: str, cidr: str) -> list[str]:
        """Reset a node whose agent has stopped (it leaves its pods running, as kubelet does): remove its
        containers, sandboxes and their network, bridge and cgroups; returns :meth:`leftovers`."""
        rt = self.make(data_dir, node, cidr)

        async def reset() -> None:
            await rt.reset()  # type: ignore[attr-defined]
            await rt.close()

        asyncio.run(reset())
        return self.leftovers(rt, data_dir, node, cidr)

    def netns_names(self) -> set[str]:
        return {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def netns_in(cidr: str) -> list[str]:
    """The pod network namespaces on this host with an address in ``cidr`` (one node's pods)."""
    net = ipaddress.ip_network(cidr)
    names = sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith("kl-")) if NETNS_DIR.is_dir() else []
    left = []
    for name in names:
        out = ip("netns", "exec", name, "ip", "-o", "-4", "addr", "show", check=False).stdout
        addresses = [word.split("/")[0] for line in out.splitlines() for word in line.split()[3:4]]
        if any(ipaddress.ip_address(a) in net for a in addresses):
            left.append(f"netns {name}")
    return left


def require_host(name: str) -> None:
    # These tests exist to exercise the real thing: a missing tool is a broken setup, not a skip.
    assert os.geteuid() == 0, "the runtime conformance suite needs root"
    tools = ["runc", "ip", "unshare"] + (["dockerd", "containerd", "docker"] if name == "docker" else [])
    for tool in tools:
        assert shutil.which(tool), f"{tool} is not installed (scripts/setup.sh installs it)"
    assert Path("/bin/busybox").is_file(), "busybox-static is not installed"


def pod(name: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())}, "spec": {"containers": []}}


def config(c: Obj, log_path: Path | None = None, env: dict[str, str] | None = None) -> ContainerConfig:
    return replace(config_from_spec(c, env or {}, []), log_path=log_path)


async def run(rt: Runtime, p: Obj, c: Obj, sandbox_id: str, cfg: ContainerConfig, attempt: int = 0) -> str:
    cid = await rt.create_container(sandbox_id, p, c, attempt, dict(cfg.env), list(cfg.mounts), config=cfg)
    await rt.start_container(cid)
    return cid


async def wait_exited(rt: Runtime, cid: str, timeout: float = 20.0) -> ContainerStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = await rt.container_status(cid)
        if st.state is ContainerState.EXITED:
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"container {cid} did not exit")


def read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_log(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = read_text(path)
        if text in content:
            return content
        assert time.monotonic() < deadline, f"{text!r} never logged to {path}: {content!r}"
        await asyncio.sleep(0.05)


def cgroup_of(pid: int, controller: str = "memory") -> str:
    """The cgroup path of ``pid`` in the hierarchy holding ``controller`` (v1) or the unified one (v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controllers == "" and cgroups.detect_layout().version == 2):
            return path
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def cgroup_value(path: str, controller: str, v1: str, v2: str) -> str:
    layout = cgroups.detect_layout()
    d = layout.controller_dir(controller, path)
    assert d is not None
    return (d / (v1 if layout.version == 1 else v2)).read_text().strip()


def hosts(cidr: str) -> list[str]:
    return [str(h) for h in ipaddress.ip_network(cidr).hosts()]


async def http_get(url: str, timeout: float = 10.0) -> bytes:
    def get() -> bytes:
        with urllib.request.urlopen(url, timeout=2) as r:
            data: bytes = r.read()
            return data

    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.to_thread(get)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
