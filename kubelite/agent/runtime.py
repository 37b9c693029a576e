"""The container runtime seam: what the node agent needs from a runtime, CRI-shaped.

The agent drives every runtime through :class:`Runtime` only (``fake`` now; ``runc`` and
``docker`` later), so the pod sync logic in ``pods.py`` is written once against these types:

* a *pod sandbox* holds a pod's shared context (network namespace, IP); containers live in it;
* a *container* is created for one attempt of one spec container, then started, stopped, removed;
* every sandbox and container carries the :data:`LABEL_*` labels, so that after an agent restart
  ``list_pod_sandboxes()`` / ``list_containers()`` let it re-adopt what is already running: no
  duplicates, and anything whose pod is gone is found and removed (no orphans).

Runtime errors::

    RuntimeFailure          any runtime call failed (temporary: the pod sync retries)
      NotFoundError         the sandbox/container id is unknown to the runtime
      ImagePullError        the image could not be pulled (ErrImagePull)
      CreateContainerError  the container could not be created (CreateContainerError)
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LABEL_ATTEMPT",
    "LABEL_CONTAINER_NAME",
    "LABEL_POD_NAME",
    "LABEL_POD_NAMESPACE",
    "LABEL_POD_UID",
    "ContainerConfig",
    "ContainerInfo",
    "ContainerState",
    "ContainerStatus",
    "CreateContainerError",
    "ExecResult",
    "ImagePullError",
    "Mount",
    "NotFoundError",
    "PodSandbox",
    "Runtime",
    "RuntimeFailure",
    "RuntimeOptions",
    "SandboxState",
    "container_labels",
    "sandbox_labels",
]

Obj = dict[str, Any]

# Kubernetes' own label keys (kubelet's dockershim/CRI labels), so tools that know them read ours.
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_ATTEMPT = "io.kubernetes.container.attempt"


class RuntimeFailure(Exception):
    """A runtime call failed; the agent retries the pod's sync later."""


class NotFoundError(RuntimeFailure):
    """The sandbox or container id is not known to the runtime."""


class ImagePullError(RuntimeFailure):
    """The image could not be pulled (reported as ``reason``: ErrImagePull unless a subclass says)."""

    reason = "ErrImagePull"


class ImageNeverPullError(ImagePullError):
    """The image is absent and the pull policy is Never."""

    reason = "ErrImageNeverPull"


class CreateContainerError(RuntimeFailure):
    """The container could not be created (reported as CreateContainerError)."""


class SandboxState(enum.StrEnum):
    READY = "ready"
    NOT_READY = "notready"


class ContainerState(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """What a runtime is built from: the node it serves and where it may keep state."""

    node_name: str
    data_dir: Path
    node_index: int = 0  # position among hollow nodes in one process (fake pod IP ranges)
    pod_cidr: str | None = None  # the node's spec.podCIDR when the control plane assigned one
    # Cluster DNS for pods with dnsPolicy ClusterFirst (the default): off when cluster_domain is None;
    # cluster_dns None means the node bridge's gateway address (where the agent serves DNS).
    cluster_domain: str | None = None
    cluster_dns: str | None = None
    registries: tuple[str, ...] = ()  # host:port of OCI registries to pull from (the cluster registry)


@dataclass(frozen=True, slots=True)
class Mount:
    container_path: str
    host_path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """Everything the agent resolved for one container attempt (``create_container(config=...)``).

    The pod sync builds it (``pods.py``): ``command``/``args`` are the spec's with ``$(VAR)``
    expanded (empty: use the image's entrypoint/cmd), ``env`` is the final environment (envFrom,
    env, valueFrom resolved, in order), ``mounts`` the resolved volumeMounts. ``log_path`` is where
    the container's stdout/stderr must go in CRI log format (``kubelite.agent.logs.CriLogWriter``
    writes it and rotates). Resource fields are None when the spec sets nothing.
    """

    name: str
    image: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    working_dir: str = ""
    log_path: Path | None = None
    tty: bool = False
    stdin: bool = False
    cpu_request_millis: int | None = None
    cpu_limit_millis: int | None = None
    memory_request_bytes: int | None = None
    memory_limit_bytes: int | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    privileged: bool = False
    read_only_root_filesystem: bool = False


@dataclass(frozen=True, slots=True)
class PodSandbox:
    id: str
    pod_uid: str
    namespace: str
    name: str
    ip: str | None
    state: SandboxState
    created_at: str  # RFC 3339
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One container as ``list_containers()`` reports it; identity comes from its labels."""

    id: str
    sandbox_id: str
    image: str
    state: ContainerState
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def pod_uid(self) -> str:
        return self.labels.get(LABEL_POD_UID, "")

    @property
    def container_name(self) -> str:
        return self.labels.get(LABEL_CONTAINER_NAME, "")

    @property
    def attempt(self) -> int:
        try:
            return int(self.labels.get(LABEL_ATTEMPT, "0"))
        except ValueError:
            return 0


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """The observed state of one container (CRI ContainerStatus)."""

    id: str
    state: ContainerState
    exit_code: int | None = None
    reason: str = ""  # e.g. Completed, Error, OOMKilled
    message: str = ""
    created_at: str | None = None  # RFC 3339 timestamps
    started_at: str | None = None
    finished_at: str | None = None
    image: str = ""
    image_id: str = ""


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


def sandbox_labels(pod: Obj) -> dict[str, str]:
    m = pod.get("metadata") or {}
    return {
        LABEL_POD_UID: str(m.get("uid", "")),
        LABEL_POD_NAMESPACE: str(m.get("namespace", "")),
        LABEL_POD_NAME: str(m.get("name", "")),
    }


def container_labels(pod: Obj, container_name: str, attempt: int) -> dict[str, str]:
    return {**sandbox_labels(pod), LABEL_CONTAINER_NAME: container_name, LABEL_ATTEMPT: str(attempt)}


class Runtime(abc.ABC):
    """A container runtime as the agent sees it. Every call may raise :class:`RuntimeFailure`.

    Implementations label every sandbox with :func:`sandbox_labels` and every container with
    :func:`container_labels`; the agent relies on them to re-adopt after a restart.
    """

    #: Reported as the Node's ``status.nodeInfo.containerRuntimeVersion`` ("fake://0.1").
    version: str = ""
    #: How often the agent polls ``list_containers()`` for state changes it did not cause
    #: (a container exiting by itself). None: only the agent's own calls change state.
    relist_period: float | None = 1.0
    # True for a runtime that only simulates containers (hollow nodes): there is no process to
    # probe and its pod IPs route nowhere, so probes without an explicit host succeed unsent.
    simulated: bool = False

    # --- runtime ---

    async def healthy(self) -> bool:
        """Whether the runtime can run pods now (the Node's Ready condition follows it)."""
        return True

    async def update_runtime_config(self, pod_cidr: str) -> None:  # noqa: B027 - optional hook
        """The node's pod CIDR became known: sandboxes created from now on take IPs from it."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's own resources (not the containers: they outlive the agent)."""

    # --- sandboxes ---

    @abc.abstractmethod
    async def run_pod_sandbox(self, pod: Obj) -> PodSandbox:
        """Create and start the pod's sandbox; the result carries its id and IP."""

    @abc.abstractmethod
    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop the sandbox and every container in it (idempotent)."""

    @abc.abstractmethod
    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove a stopped sandbox and its containers (idempotent: unknown ids are fine)."""

    @abc.abstractmethod
    async def list_pod_sandboxes(self) -> list[PodSandbox]: ...

    # --- containers ---

    @abc.abstractmethod
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
        """Create (not start) one attempt of the spec ``container`` in the sandbox; returns its id.

        The agent always passes ``config`` (``env``/``mounts`` repeat its fields for older callers).
        """

    @abc.abstractmethod
    async def start_container(self, container_id: str) -> None: ...

    @abc.abstractmethod
    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds`` (idempotent on an exited container)."""

    @abc.abstractmethod
    async def remove_container(self, container_id: str) -> None:
        """Remove a container (idempotent: an unknown id is fine)."""

    @abc.abstractmethod
    async def list_containers(self) -> list[ContainerInfo]: ...

    @abc.abstractmethod
    async def container_status(self, container_id: str) -> ContainerStatus:
        """Raises NotFoundError for an unknown id."""

    # --- images ---

    @abc.abstractmethod
    async def image_present(self, ref: str) -> bool: ...

    @abc.abstractmethod
    async def pull_image(self, ref: str) -> str:
        """Make the image available locally; returns its image id (``sha256:…``)."""

    # --- streaming (the agent's logs/exec endpoints) ---

    def log_path(self, container_id: str) -> Path:
        """Where the container's output is written (CRI log format)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no container logs")

    async def exec(self, container_id: str, command: list[str], timeout: float | None = None) -> ExecResult:
        raise NotImplementedError(f"{type(self).__name__} cannot exec in containers")
