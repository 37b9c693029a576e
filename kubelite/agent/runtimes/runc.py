"""The ``runc`` runtime (the default): real containers, isolated by namespaces and cgroups.

Shape (a minimal containerd + CNI for one node):

* **Sandbox** = the pod's shared context, held by the kernel, not by a process: a named network
  namespace with a veth on the node bridge (:mod:`kubelite.agent.netns`), a persistent IPC
  namespace bind-mounted on a file, and the pod's ``/etc/hosts``, ``/etc/hostname`` and
  ``/etc/resolv.conf``. Every container of the pod joins the netns and IPC namespace by path.
* **Container** = an OCI bundle (``config.json`` built by :func:`oci_spec` from the pod spec and the
  image config) over a copy-on-write rootfs: overlayfs with the image layers as lower dirs (a copy
  when the kernel refuses the overlay). Its cgroup is ``/kubelite/<node>/<pod-uid>/<container-id>``.
* **Shim**: ``runc create`` is run by :mod:`kubelite.agent.shim`, a per-container daemon that
  becomes the container init's parent, logs its output, and records its exit code (and whether it
  was OOM-killed) in ``exit.json``. The agent may die and restart at any time: everything it knows
  is in files under the data dir, and containers keep running.
* **State** lives under ``<data_dir>``: ``runc/`` (runc ``--root``, per node, so several agents on
  one machine never see each other's containers), ``sandboxes/<id>/``, ``containers/<id>/``,
  ``net/ipam/``. ``list_pod_sandboxes()``/``list_containers()`` read it back (labels included):
  that is how a restarted agent re-adopts what runs.

Images come from an :class:`ImageSource` (the node's :class:`~kubelite.agent.images.ImageStore` under
``<data_dir>/images`` by default): a ref becomes its unpacked layer directories and image config.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from kubelite.agent import cgroups
from kubelite.agent.netns import CommandError, NodeNetwork, netns_path, run_command
from kubelite.agent.runtime import (
    ContainerConfig,
    ContainerInfo,
    ContainerState,
    ContainerStatus,
    CreateContainerError,
    ExecResult,
    ImagePullError,
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
from kubelite.agent.runtimes.common import (
    ImageSource,
    StoreBackedImages,
    config_from_spec,
    container_capabilities,
    pod_hostname,
    read_json_object,
    resolve_args,
    write_pod_dns_files,
)
from kubelite.agent.shim import write_json_atomic
from kubelite.images.oci import merge_layers

__all__ = [
    "Image",
    "ImageSource",
    "RuncRuntime",
    "oci_spec",
    "resolve_user",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

_SHIM = Path(__file__).resolve().parent.parent / "shim.py"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# runc's `runc spec` defaults: kernel interfaces a container must not read or write.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_MNT_DETACH = 2


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- images -------------------------------------------------------------------------------------


class Image(Protocol):
    """An unpacked image (:class:`kubelite.agent.images.Image`): ``layer_dirs`` lower -> upper;
    ``config`` is the image config's ``config`` object (Entrypoint, Cmd, Env, WorkingDir, User)."""

    @property
    def id(self) -> str: ...

    @property
    def layer_dirs(self) -> Sequence[Path]: ...

    @property
    def config(self) -> Mapping[str, Any]: ...


# --- the OCI spec -------------------------------------------------------------------------------


def _lookup(rootfs: Path, db: str, key: str, *, by_name: bool) -> list[str] | None:
    """A line of the image's /etc/passwd or /etc/group, by name or by numeric id."""
    with contextlib.suppress(OSError):
        for line in (rootfs / "etc" / db).read_text().splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0 if by_name else 2] == key:
                return fields
    return None


def resolve_user(pod: Obj, config: ContainerConfig, image_config: Mapping[str, Any], rootfs: Path) -> Obj:
    """The process user: runAsUser/runAsGroup (container, then pod securityContext), else the
    image's ``User`` (a name or uid, optionally ``:group``), looked up in the image's /etc files."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    user, _, group = str(image_config.get("User") or "").partition(":")
    uid, gid = 0, 0
    if user:
        entry = _lookup(rootfs, "passwd", user, by_name=not user.isdigit())
        if entry is None and not user.isdigit():
            raise CreateContainerError(f"image user {user!r} not found in the image's /etc/passwd")
        uid = int(entry[2]) if entry else int(user)
        gid = int(entry[3]) if entry else 0
    if group:
        entry = _lookup(rootfs, "group", group, by_name=not group.isdigit())
        if entry is None and not group.isdigit():
            raise CreateContainerError(f"image group {group!r} not found in the image's /etc/group")
        gid = int(entry[2]) if entry else int(group)
    run_as_user = config.run_as_user if config.run_as_user is not None else pod_sc.get("runAsUser")
    if run_as_user is not None:
        uid = int(run_as_user)
        entry = _lookup(rootfs, "passwd", str(uid), by_name=False)
        gid = int(entry[3]) if entry else 0
    run_as_group = config.run_as_group if config.run_as_group is not None else pod_sc.get("runAsGroup")
    if run_as_group is not None:
        gid = int(run_as_group)
    out: Obj = {"uid": uid, "gid": gid}
    extra = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if extra:
        out["additionalGids"] = extra
    return out


def oci_spec(
    *,
    pod: Obj,
    container: Obj,
    config: ContainerConfig,
    image_config: Mapping[str, Any],
    rootfs: Path,
    hostname: str,
    netns: Path,
    ipcns: Path | None,
    etc_files: Mapping[str, Path],
    cgroups_path: str,
    pids_limit: int | None,
) -> Obj:
    """The bundle's ``config.json`` (OCI runtime spec 1.0) for one container of a pod."""
    args = resolve_args(config, image_config)
    if not args:
        raise CreateContainerError("no command specified: the image has no Entrypoint/Cmd and the pod none")
    merged: dict[str, str] = {}
    for item in image_config.get("Env") or []:
        key, _, value = str(item).partition("=")
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    merged["HOSTNAME"] = hostname
    merged.update(config.env)
    caps = container_capabilities(container, config.privileged)
    sc = container.get("securityContext") or {}
    oci_mounts: list[Obj] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev"] + ([] if config.privileged else ["ro"])},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    for dest, src in etc_files.items():
        oci_mounts.append({"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "rprivate"]})
    for m in config.mounts:
        opts = ["rbind", "rprivate"] + (["ro"] if m.read_only else [])
        oci_mounts.append({"destination": m.container_path, "type": "bind", "source": m.host_path, "options": opts})
    namespaces: list[Obj] = [
        {"type": "pid"},
        {"type": "mount"},
        {"type": "uts"},
        {"type": "network", "path": str(netns)},
        {"type": "ipc", "path": str(ipcns)} if ipcns is not None else {"type": "ipc"},
    ]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": resolve_user(pod, config, image_config, rootfs),
            "args": args,
            "env": [f"{k}={v}" for k, v in merged.items()],
            "cwd": config.working_dir or image_config.get("WorkingDir") or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": bool(sc.get("allowPrivilegeEscalation") is False),
        },
        "root": {"path": str(rootfs), "readonly": config.read_only_root_filesystem},
        "hostname": hostname,
        "mounts": oci_mounts,
        "linux": {
            "resources": cgroups.linux_resources(
                cpu_request_millis=config.cpu_request_millis, cpu_limit_millis=config.cpu_limit_millis,
                memory_limit_bytes=config.memory_limit_bytes, pids_limit=pids_limit,
                devices_allowed=config.privileged,
            ),
            "cgroupsPath": cgroups_path,
            "namespaces": namespaces,
            "maskedPaths": [] if config.privileged else list(MASKED_PATHS),
            "readonlyPaths": [] if config.privileged else list(READONLY_PATHS),
        },
    }


# --- mounts -------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _mount_overlay(layers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    # overlayfs lists the top-most lower dir first; images list the base layer first.
    lower = ":".join(str(p) for p in reversed(layers))
    data = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _umount(target: Path) -> None:
    if _libc.umount2(str(target).encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(err, os.strerror(err))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited (its parent has not reaped it yet).
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


# --- the runtime --------------------------------------------------------------------------------


@dataclass
class _Paths:
    root: Path

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    def sandbox(self, sid: str) -> Path:
        return self.root / "sandboxes" / sid

    def container(self, cid: str) -> Path:
        return self.root / "containers" / cid


class RuncRuntime(StoreBackedImages[ImageSource], Runtime):
    """Pods as runc containers on this machine. Needs root, runc and iproute2."""

    relist_period = 1.0

    def __init__(
        self,
        options: RuntimeOptions,
        *,
        images: ImageSource | None = None,
        runc: str = "runc",
        pids_limit: int | None = 4096,
    ) -> None:
        self.options = options
        self.node_name = options.node_name
        self.paths = _Paths(options.data_dir.resolve())
        self.runc = runc
        self.pids_limit = pids_limit
        self._images = images
        self.network = NodeNetwork(options.node_name, self.paths.root / "net", options.pod_cidr)
        self.layout = cgroups.detect_layout()
        self.version = f"runc://{self._runc_version()}"
        for d in (self.paths.runc_root, self.paths.root / "sandboxes", self.paths.root / "containers"):
            d.mkdir(parents=True, exist_ok=True)

    def _runc_version(self) -> str:
        try:
            out = subprocess.run([self.runc, "--version"], capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError) as e:
            raise RuntimeFailure(f"runc is not usable ({self.runc}): {e}") from e
        first = out.stdout.split("\n", 1)[0]  # "runc version 1.1.5+ds1"
        return first.rsplit(" ", 1)[-1]

    async def _runc(self, *args: str, check: bool = True, timeout: float = 60.0) -> tuple[int, str, str]:
        try:
            return await run_command(self.runc, "--root", str(self.paths.runc_root), *args, check=check,
                                     timeout=timeout)
        except CommandError as e:
            raise RuntimeFailure(str(e)) from e

    async def healthy(self) -> bool:
        code, _, _ = await self._runc("list", "-q", check=False)
        return code == 0

    async def update_runtime_config(self, pod_cidr: str) -> None:
        self.network.set_pod_cidr(pod_cidr)

    # --- images ---

    def _images_root(self) -> Path:
        return self.paths.root / "images"

    # --- sandboxes ---

    def _sandbox_meta(self, sid: str) -> Obj | None:
        return read_json_object(self.paths.sandbox(sid) / "meta.json")

    def _sandbox_info(self, sid: str, meta: Obj) -> PodSandbox:
        ready = not meta.get("stopped") and self.network.pod_netns_exists(sid)
        return PodSandbox(
            id=sid, pod_uid=meta["uid"], namespace=meta["namespace"], name=meta["name"], ip=meta.get("ip"),
            state=SandboxState.READY if ready else SandboxState.NOT_READY, created_at=meta["createdAt"],
            labels=dict(meta.get("labels") or {}),
        )

    async def run_pod_sandbox(self, pod: Obj) -> PodSandbox:
        m = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        sid = uuid.uuid4().hex
        d = self.paths.sandbox(sid)
        d.mkdir(parents=True)
        hostname = pod_hostname(pod)
        meta: Obj = {
            "uid": str(m.get("uid", "")), "namespace": str(m.get("namespace", "")), "name": str(m.get("name", "")),
            "hostname": hostname, "createdAt": _now(), "labels": sandbox_labels(pod),
        }
        write_json_atomic(d / "meta.json", meta)  # first, so a crash below leaves something removable
        try:
            net = await self.network.setup_pod(sid)
            meta["ip"] = net.ip
            write_json_atomic(d / "meta.json", meta)
            (d / "hostname").write_text(hostname + "\n")
            write_pod_dns_files(d, spec, str(meta["namespace"]), hostname, net, self.options)
            (d / "ipc").touch()
            await run_command("unshare", f"--ipc={d / 'ipc'}", "true")
        except (CommandError, OSError, RuntimeError) as e:
            await self.remove_pod_sandbox(sid)
            raise RuntimeFailure(f"pod sandbox for {m.get('namespace')}/{m.get('name')}: {e}") from e
        return self._sandbox_info(sid, meta)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        meta = self._sandbox_meta(sandbox_id)
        if meta is None:
            return
        for c in await self.list_containers():
            if c.sandbox_id == sandbox_id:
                await self.stop_container(c.id, 0)
        await self.network.teardown_pod(sandbox_id)
        if not meta.get("stopped"):
            meta["stopped"] = True
            write_json_atomic(self.paths.sandbox(sandbox_id) / "meta.json", meta)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        d = self.paths.sandbox(sandbox_id)
        if not d.exists():
            return
        meta = self._sandbox_meta(sandbox_id) or {}
        for c in await self.list_containers():
            if c.sandbox_id == sandbox_id:
                await self.remove_container(c.id)
        await self.network.teardown_pod(sandbox_id)
        with contextlib.suppress(OSError):
            _umount(d / "ipc")
        uid = str(meta.get("uid", ""))
        if uid and not any(s.pod_uid == uid for s in await self.list_pod_sandboxes() if s.id != sandbox_id):
            left = cgroups.remove_cgroup_tree(self.layout, cgroups.pod_cgroups_path(self.node_name, uid))
            if left:
                log.warning("node %s: cgroups still in use after removing pod %s: %s", self.node_name, uid, left)
        shutil.rmtree(d, ignore_errors=True)

    async def list_pod_sandboxes(self) -> list[PodSandbox]:
        out: list[PodSandbox] = []
        for d in sorted((self.paths.root / "sandboxes").iterdir()):
            meta = self._sandbox_meta(d.name)
            if meta is not None and "uid" in meta:
                out.append(self._sandbox_info(d.name, meta))
        return out

    # --- containers ---

    def _container_meta(self, cid: str) -> Obj:
        meta = read_json_object(self.paths.container(cid) / "meta.json")
        if meta is None:
            raise NotFoundError(f"container {cid} not found")
        return meta

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
        if config is None:
            config = config_from_spec(container, env, mounts)
        sb_meta = self._sandbox_meta(sandbox_id)
        if sb_meta is None or sb_meta.get("stopped") or not self.network.pod_netns_exists(sandbox_id):
            raise NotFoundError(f"sandbox {sandbox_id} is not ready")
        ref = config.image or str(container.get("image", ""))
        try:
            image = await self._image(ref, "IfNotPresent")
        except ImagePullError as e:
            raise CreateContainerError(str(e)) from e
        cid = uuid.uuid4().hex
        d = self.paths.container(cid)
        d.mkdir(parents=True)
        cg = cgroups.container_cgroups_path(self.node_name, str(sb_meta["uid"]), cid)
        log_file = config.log_path or d / "container.log"
        meta: Obj = {
            "sandboxId": sandbox_id, "image": ref, "imageId": image.id, "createdAt": _now(), "cgroupsPath": cg,
            "labels": container_labels(pod, config.name or str(container.get("name", "")), attempt),
            "logPath": str(log_file),
        }
        write_json_atomic(d / "meta.json", meta)
        try:
            rootfs = d / "rootfs"
            self._prepare_rootfs(image.layer_dirs, d, rootfs)
            sd = self.paths.sandbox(sandbox_id)
            spec = oci_spec(
                pod=pod, container=container, config=config, image_config=image.config, rootfs=rootfs,
                hostname=str(sb_meta["hostname"]), netns=netns_path(sandbox_id),
                ipcns=sd / "ipc", cgroups_path=cg, pids_limit=self.pids_limit,
                etc_files={"/etc/hosts": sd / "hosts", "/etc/hostname": sd / "hostname",
                           "/etc/resolv.conf": sd / "resolv.conf"},
            )
            write_json_atomic(d / "config.json", spec)
            await self._spawn_shim(cid, cg, log_file)
        except BaseException as e:
            await self.remove_container(cid)
            if isinstance(e, RuntimeFailure | asyncio.CancelledError):
                raise
            if isinstance(e, OSError):
                raise CreateContainerError(f"container {config.name}: {e}") from e
            raise
        return cid

    def _prepare_rootfs(self, layers: Sequence[Path], d: Path, rootfs: Path) -> None:
        for sub in ("rootfs", "upper", "work"):
            (d / sub).mkdir(exist_ok=True)
        try:
            _mount_overlay(layers, d / "upper", d / "work", rootfs)
        except OSError as e:
            log.warning("node %s: overlay mount failed (%s); copying the image layers instead", self.node_name, e)
            merge_layers(layers, rootfs)

    async def _spawn_shim(self, cid: str, cg: str, log_file: Path) -> None:
        d = self.paths.container(cid)
        argv = [sys.executable, "-I", str(_SHIM), "--state-dir", str(d), "--log", str(log_file)]
        oom_file = cgroups.oom_events_file(self.layout, cg)
        if oom_file is not None:
            argv += ["--oom-file", str(oom_file)]
        argv += ["--", self.runc, "--root", str(self.paths.runc_root), "--log", str(d / "runc.log"),
                 "--log-format", "json", "create", "--bundle", str(d), "--pid-file", str(d / "init.pid"),
                 "--no-new-keyring", cid]
        shim_log = os.open(d / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=shim_log, stderr=shim_log, start_new_session=True
            )
        finally:
            os.close(shim_log)
        await proc.wait()  # the shim daemonises: this returns at once
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not (d / "created").exists():
            if (d / "create.err").exists():
                raise CreateContainerError(_runc_error(d) or (d / "create.err").read_text().strip())
            shim_pid = _read_int(d / "shim.pid")
            if loop.time() > deadline or (shim_pid is not None and not _pid_alive(shim_pid)
                                          and not (d / "created").exists()):
                tail = (d / "shim.log").read_text(errors="replace")[-500:]
                raise CreateContainerError(f"the container shim did not report: {tail.strip()}")
            await asyncio.sleep(0.01)

    async def start_container(self, container_id: str) -> None:
        self._container_meta(container_id)
        d = self.paths.container(container_id)
        code, _, err = await self._runc("start", container_id, check=False)
        if code != 0:
            raise RuntimeFailure(f"runc start {container_id}: {_runc_error(d) or err.strip()}")
        write_json_atomic(d / "started.json", {"startedAt": _now()})

    def _state(self, cid: str) -> tuple[ContainerState, Obj | None]:
        d = self.paths.container(cid)
        exit_info = read_json_object(d / "exit.json")
        if exit_info is not None:
            return ContainerState.EXITED, exit_info
        init_pid = _read_int(d / "init.pid")
        if not (d / "created").exists() or init_pid is None:
            return ContainerState.UNKNOWN, None
        if _pid_alive(init_pid):
            return (ContainerState.RUNNING if (d / "started.json").exists() else ContainerState.CREATED), None
        shim_pid = _read_int(d / "shim.pid")
        if shim_pid is not None and _pid_alive(shim_pid):
            return ContainerState.RUNNING, None  # the shim is about to write exit.json
        return ContainerState.EXITED, None  # the shim died: the exit code is lost

    async def list_containers(self) -> list[ContainerInfo]:
        out: list[ContainerInfo] = []
        for d in sorted((self.paths.root / "containers").iterdir()):
            meta = read_json_object(d / "meta.json")
            if meta is None or "labels" not in meta:
                continue
            state, _ = self._state(d.name)
            out.append(ContainerInfo(id=d.name, sandbox_id=meta["sandboxId"], image=meta["image"], state=state,
                                     labels=dict(meta["labels"])))
        return out

    async def container_status(self, container_id: str) -> ContainerStatus:
        meta = self._container_meta(container_id)
        d = self.paths.container(container_id)
        state, exit_info = self._state(container_id)
        started = (read_json_object(d / "started.json") or {}).get("startedAt")
        base = ContainerStatus(id=container_id, state=state, created_at=meta["createdAt"], started_at=started,
                               image=meta["image"], image_id=meta.get("imageId", ""))
        if state is not ContainerState.EXITED:
            return base
        if exit_info is None:
            return replace(base, exit_code=255, reason="Unknown", message="the container's shim died: exit code lost")
        code = int(exit_info["exitCode"])
        if exit_info.get("oomKilled"):
            reason = "OOMKilled"
        else:
            reason = "Completed" if code == 0 else "Error"
        return replace(base, exit_code=code, reason=reason, finished_at=exit_info.get("finishedAt"))

    async def _wait_exited(self, cid: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._state(cid)[0] is ContainerState.EXITED:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        self._container_meta(container_id)
        state, _ = self._state(container_id)
        if state is ContainerState.EXITED:
            return
        if state is ContainerState.RUNNING and grace_seconds > 0:
            await self._runc("kill", container_id, "TERM", check=False)
            if await self._wait_exited(container_id, grace_seconds):
                return
        await self._runc("kill", container_id, "KILL", check=False)
        if not await self._wait_exited(container_id, 10.0):
            # runc no longer knows it (e.g. deleted behind our back): kill the init by pid.
            pid = _read_int(self.paths.container(container_id) / "init.pid")
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not await self._wait_exited(container_id, 5.0):
                raise RuntimeFailure(f"container {container_id} did not stop")

    async def remove_container(self, container_id: str) -> None:
        d = self.paths.container(container_id)
        if not d.exists():
            return
        meta = read_json_object(d / "meta.json") or {}
        if (d / "created").exists() and self._state(container_id)[0] is not ContainerState.EXITED:
            await self.stop_container(container_id, 0)
        await self._runc("delete", "--force", container_id, check=False)
        if meta.get("cgroupsPath"):
            cgroups.remove_cgroup_tree(self.layout, str(meta["cgroupsPath"]))
        _umount(d / "rootfs")
        shutil.rmtree(d, ignore_errors=True)

    def init_pid(self, container_id: str) -> int | None:
        """The host pid of the container's init process while it runs (None otherwise)."""
        pid = _read_int(self.paths.container(container_id) / "init.pid")
        return pid if pid is not None and self._state(container_id)[0] is ContainerState.RUNNING else None

    # --- streaming ---

    def log_path(self, container_id: str) -> Path:
        meta = read_json_object(self.paths.container(container_id) / "meta.json") or {}
        return Path(meta.get("logPath") or self.paths.container(container_id) / "container.log")

    async def exec(self, container_id: str, command: list[str], timeout: float | None = None) -> ExecResult:
        """Run ``command`` in the container; raises TimeoutError (after killing it) past ``timeout``."""
        self._container_meta(container_id)
        if self._state(container_id)[0] is not ContainerState.RUNNING:
            raise RuntimeFailure(f"container {container_id} is not running")
        pid_file = self.paths.container(container_id) / f"exec-{uuid.uuid4().hex[:8]}.pid"
        proc = await asyncio.create_subprocess_exec(
            self.runc, "--root", str(self.paths.runc_root), "exec", "--pid-file", str(pid_file), container_id,
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            pid = _read_int(pid_file)
            for p in (pid, proc.pid):
                if p is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            await proc.wait()
            raise
        finally:
            pid_file.unlink(missing_ok=True)
        return ExecResult(exit_code=proc.returncode if proc.returncode is not None else -1, stdout=out, stderr=err)

    # --- the whole node ---

    async def reset(self) -> None:
        """Remove every sandbox and container of this node, its bridge and cgroups (a node leaving)."""
        for c in await self.list_containers():
            await self.remove_container(c.id)
        for s in await self.list_pod_sandboxes():
            await self.remove_pod_sandbox(s.id)
        # Leftovers of interrupted creations (no metadata yet).
        for sub in ("containers", "sandboxes"):
            for d in (self.paths.root / sub).iterdir():
                if sub == "containers":
                    await self.remove_container(d.name)
                else:
                    await self.remove_pod_sandbox(d.name)
        await self.network.remove_bridge()
        cgroups.remove_cgroup_tree(self.layout, f"/kubelite/{self.node_name}")
        cgroups.prune_empty_cgroup(self.layout, "/kubelite")


def _runc_error(bundle: Path) -> str:
    """The last error runc logged (its --log is JSON lines)."""
    msg = ""
    with contextlib.suppress(OSError):
        for line in (bundle / "runc.log").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    msg = str(entry.get("msg", ""))
    return msg

