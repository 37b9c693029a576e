"""The ``fake`` runtime: containers that exist only in this process's memory (kubemark's hollow kubelet).

Honest and minimal: a started container is Running until the agent stops it; nothing is executed.
The one exception is what a fake cannot otherwise model: an init container (one listed in
``spec.initContainers`` without ``restartPolicy: Always``) completes with exit code 0 as soon as it
is started, so pods with init containers become Running. Pod IPs come from a per-node range no
traffic is ever sent to. State is per agent and lost when the process ends.

So that log plumbing is testable end to end, a started container's log file (the config's
``log_path``) gets one line saying what a real runtime would run; the resolved env and mounts are
kept (:meth:`FakeRuntime.container_config`) for tests to inspect.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubelite.agent.logs import CriLogWriter
from kubelite.agent.runtime import (
    ContainerConfig,
    ContainerInfo,
    ContainerState,
    ContainerStatus,
    Mount,
    NotFoundError,
    PodSandbox,
    Runtime,
    RuntimeFailure,
    RuntimeOptions,
    SandboxState,
    container_labels,
    sandbox_labels,
)

__all__ = ["FakeRuntime", "fake_pod_cidr"]

Obj = dict[str, Any]

# Carrier-grade NAT space: clear of the usual cluster (10.42/16) and service (10.43/16) ranges.
_FAKE_POD_SPACE = ipaddress.ip_network("100.64.0.0/10")
_FAKE_PREFIX = 22  # 1022 pod IPs per node, 1024 nodes before ranges repeat


def fake_pod_cidr(node_index: int) -> str:
    """The pod range of the ``node_index``-th fake node (wraps after 1024 nodes: no traffic uses it)."""
    subnets = 2 ** (_FAKE_PREFIX - _FAKE_POD_SPACE.prefixlen)
    size = 2 ** (32 - _FAKE_PREFIX)
    base = int(_FAKE_POD_SPACE.network_address) + (node_index % subnets) * size
    return f"{ipaddress.IPv4Address(base)}/{_FAKE_PREFIX}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Container:
    id: str
    sandbox_id: str
    image: str
    labels: dict[str, str]
    completes: bool  # an init container: exits 0 when started
    status: ContainerStatus
    config: ContainerConfig


@dataclass
class _Sandbox:
    info: PodSandbox
    containers: set[str] = field(default_factory=set)


class FakeRuntime(Runtime):
    version = "fake://0.1"
    relist_period = None  # containers change state only when the agent asks
    simulated = True

    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self._ids = itertools.count(1)
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._images: set[str] = set()
        self._used_ips: set[str] = set()
        self._network = ipaddress.ip_network(options.pod_cidr or fake_pod_cidr(options.node_index))

    def _new_id(self, kind: str) -> str:
        # Unique across the hollow nodes of one process, so ids never collide in shared logs.
        return hashlib.sha256(f"{self.options.node_name}/{kind}/{next(self._ids)}".encode()).hexdigest()[:32]

    async def update_runtime_config(self, pod_cidr: str) -> None:
        self._network = ipaddress.ip_network(pod_cidr, strict=False)

    def _allocate_ip(self) -> str:
        # .1 is the node's bridge address in a real kubenet-style setup: skip it too.
        for host in itertools.islice(self._network.hosts(), 1, None):
            ip = str(host)
            if ip not in self._used_ips:
                self._used_ips.add(ip)
                return ip
        raise RuntimeFailure(f"no free pod IP left in {self._network}")

    # --- sandboxes ---

    async def run_pod_sandbox(self, pod: Obj) -> PodSandbox:
        m = pod.get("metadata") or {}
        info = PodSandbox(
            id=self._new_id("sandbox"),
            pod_uid=str(m.get("uid", "")),
            namespace=str(m.get("namespace", "")),
            name=str(m.get("name", "")),
            ip=self._allocate_ip(),
            state=SandboxState.READY,
            created_at=_now(),
            labels=sandbox_labels(pod),
        )
        self._sandboxes[info.id] = _Sandbox(info)
        return info

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            return
        for cid in list(sb.containers):
            await self.stop_container(cid, 0)
        sb.info = replace(sb.info, state=SandboxState.NOT_READY)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self._sandboxes.pop(sandbox_id, None)
        if sb is None:
            return
        for cid in sb.containers:
            self._containers.pop(cid, None)
        if sb.info.ip:
            self._used_ips.discard(sb.info.ip)

    async def list_pod_sandboxes(self) -> list[PodSandbox]:
        return [sb.info for sb in self._sandboxes.values()]

    # --- containers ---

    async def create_container(
        self,
        sandbox_id: str,
        pod: Obj,
        container: Obj,
        attempt: int,
        env: dict[str, str],
        mounts: list[Mount],
        config: ContainerConfig | None = None,
    ) -> str:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None or sb.info.state is not SandboxState.READY:
            raise NotFoundError(f"sandbox {sandbox_id} is not ready")
        name = str(container.get("name", ""))
        spec = pod.get("spec") or {}
        completes = any(
            c.get("name") == name and c.get("restartPolicy") != "Always" for c in spec.get("initContainers") or []
        )
        cid = self._new_id("container")
        image = str(container.get("image", ""))
        config = config or ContainerConfig(name=name, image=image, env=dict(env), mounts=list(mounts))
        self._containers[cid] = _Container(
            id=cid,
            sandbox_id=sandbox_id,
            image=image,
            labels=container_labels(pod, name, attempt),
            completes=completes,
            status=ContainerStatus(
                id=cid, state=ContainerState.CREATED, created_at=_now(), image=image, image_id=_image_id(image)
            ),
            config=config,
        )
        sb.containers.add(cid)
        return cid

    def _get(self, container_id: str) -> _Container:
        c = self._containers.get(container_id)
        if c is None:
            raise NotFoundError(f"container {container_id} not found")
        return c

    async def start_container(self, container_id: str) -> None:
        c = self._get(container_id)
        if c.status.state is not ContainerState.CREATED:
            raise RuntimeFailure(f"container {container_id} is {c.status.state}, not created")
        now = _now()
        if c.config.log_path is not None:
            what = " ".join([*c.config.command, *c.config.args]) or f"the entrypoint of {c.image}"
            with CriLogWriter(c.config.log_path) as w:
                w.write("stdout", f"fake runtime: would run {what}\n".encode())
        if c.completes:
            c.status = replace(
                c.status, state=ContainerState.EXITED, exit_code=0, reason="Completed", started_at=now, finished_at=now
            )
        else:
            c.status = replace(c.status, state=ContainerState.RUNNING, started_at=now)

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        c = self._get(container_id)
        if c.status.state is ContainerState.EXITED:
            return
        # What a shell-like process reports: 143 after SIGTERM within the grace period, 137 for SIGKILL.
        code = 143 if grace_seconds > 0 else 137
        c.status = replace(
            c.status,
            state=ContainerState.EXITED,
            exit_code=code,
            reason="Error",
            started_at=c.status.started_at,
            finished_at=_now(),
        )

    async def remove_container(self, container_id: str) -> None:
        c = self._containers.pop(container_id, None)
        if c is not None and c.sandbox_id in self._sandboxes:
            self._sandboxes[c.sandbox_id].containers.discard(container_id)

    async def list_containers(self) -> list[ContainerInfo]:
        return [
            ContainerInfo(id=c.id, sandbox_id=c.sandbox_id, image=c.image, state=c.status.state, labels=dict(c.labels))
            for c in self._containers.values()
        ]

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._get(container_id).status

    def container_config(self, container_id: str) -> ContainerConfig:
        """What the agent asked this container to be (env, mounts, command...): for tests."""
        return self._get(container_id).config

    def log_path(self, container_id: str) -> Path:
        path = self._get(container_id).config.log_path
        if path is None:
            raise NotImplementedError("this container was created without a log path")
        return path

    # --- images ---

    async def image_present(self, ref: str) -> bool:
        return ref in self._images

    async def pull_image(self, ref: str) -> str:
        self._images.add(ref)
        return _image_id(ref)


def _image_id(ref: str) -> str:
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
