"""The ``docker`` runtime: pods as Docker containers, driven through dockerd's Engine API.

It talks HTTP over dockerd's unix socket (``DOCKER_HOST=unix:///path``, default
``/var/run/docker.sock``) with aiohttp; no docker CLI. The shape is dockershim's:

* **Sandbox** = a tiny long-lived container (``sleep`` from a busybox-static image the runtime
  builds and loads itself, so it works offline) with ``NetworkMode=none`` and a shareable IPC
  namespace. Once it runs, its network namespace is named (``ip netns attach``) and handed to
  :class:`~kubelite.agent.netns.NodeNetwork`: the same bridge, veth and host-local IPAM as the
  ``runc`` runtime, so cross-node routes and Services work for both.
* **Container** = a Docker container with ``NetworkMode``/``IpcMode`` ``container:<sandbox>``
  (its own PID, mount and UTS namespaces), the pod's ``/etc/hosts`` and ``/etc/resolv.conf``
  bind-mounted, limits as HostConfig (Memory, CPU shares/quota, PidsLimit) under the cgroup parent
  ``/kubelite/<node>/<pod-uid>`` (cgroupfs driver), so several agents on one dockerd never collide.
* **Identity** lives in Docker labels (the protocol's ``io.kubernetes.*`` ones plus
  ``io.kubelite.node``/``role``/``sandbox-id``/``log-path``): a restarted agent lists by label and
  re-adopts; nothing but the sandbox's IP and files is kept outside dockerd.
* **Images** come from the node's :class:`~kubelite.agent.images.ImageStore`; before a container
  is created its image is loaded into dockerd (``POST /images/load`` of a ``docker save`` tar
  written from the store), at most once per image id: dockerd's image store is the cache.
* **Logs**: Docker keeps the output (json-file driver, rotated). A follower task per container
  streams ``GET /containers/{id}/logs?follow&timestamps`` into the CRI file the agent reads
  (``ContainerConfig.log_path``), and records the timestamp it got to under
  ``<data_dir>/docker/logpos``. After an agent restart the relist starts a follower for every
  container whose log is unfinished, resuming after that timestamp: output written while the agent
  was down is not lost. A crash may repeat at most the last ``_POS_SAVE_INTERVAL`` of output.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from kubelite.agent import cgroups
from kubelite.agent.images import Image, ImageStore
from kubelite.agent.logs import CriLogWriter
from kubelite.agent.netns import CommandError, NodeNetwork, netns_name, run_command
from kubelite.agent.runtime import (
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
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
    DEFAULT_CAPABILITIES,
    StoreBackedImages,
    config_from_spec,
    container_capabilities,
    pod_hostname,
    read_json_object,
    resolve_args,
    write_pod_dns_files,
)
from kubelite.agent.shim import write_json_atomic
from kubelite.images.build import build_busybox
from kubelite.images.oci import digest_hex, fixed_tarinfo, manifest_parts, parse_json

__all__ = ["DockerApiError", "DockerRuntime", "docker_socket", "write_docker_archive"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

API_VERSION = "v1.41"  # Docker 20.10; newer daemons serve older API versions
DEFAULT_SOCKET = "/var/run/docker.sock"
PAUSE_IMAGE = "kubelite/pause:busybox"  # built from busybox-static on first use, tagged in dockerd

LABEL_NODE = "io.kubelite.node"
LABEL_ROLE = "io.kubelite.role"  # "sandbox" or "container"
LABEL_SANDBOX = "io.kubelite.sandbox-id"
LABEL_LOG_PATH = "io.kubelite.log-path"
LABEL_IMAGE = "io.kubelite.image"  # the image reference as the pod spec names it

_ZERO_TIME = "0001-01-01T00:00:00Z"
_POS_SAVE_INTERVAL = 0.2  # seconds between saves of a log follower's position
_STATES = {
    "created": ContainerState.CREATED,
    "running": ContainerState.RUNNING,
    "paused": ContainerState.RUNNING,
    "restarting": ContainerState.RUNNING,
    "removing": ContainerState.EXITED,
    "exited": ContainerState.EXITED,
    "dead": ContainerState.EXITED,
}


def docker_socket(host: str | None = None) -> str:
    """The unix socket path of ``host`` (else ``$DOCKER_HOST``, else the default socket)."""
    host = host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if host.startswith("unix://"):
        return host.removeprefix("unix://")
    if host.startswith("/"):
        return host
    raise RuntimeFailure(f"DOCKER_HOST {host!r} is not supported: the docker runtime talks to a unix socket")


class DockerApiError(RuntimeFailure):
    """dockerd answered an API call with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _rfc3339(docker_time: str | None) -> str | None:
    """Docker's RFC 3339 with nanoseconds -> the runtime protocol's second precision (None: unset)."""
    if not docker_time or docker_time.startswith("0001-01-01"):
        return None
    return docker_time[:19] + "Z"


def _time_ns(docker_time: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC timestamp with up to 9 fraction digits."""
    main, _, frac = docker_time.rstrip("Z").partition(".")
    secs = dt.datetime.fromisoformat(main).replace(tzinfo=dt.UTC).timestamp()
    return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])


def _label_filter(*labels: str) -> dict[str, str]:
    return {"filters": json.dumps({"label": list(labels)})}


class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: one synchronous call at construction time (the version)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def _sync_get(path: str, url: str, timeout: float = 5.0) -> Obj:
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status >= 400:
            raise DockerApiError(resp.status, body.decode(errors="replace").strip())
        data = json.loads(body)
        return data if isinstance(data, dict) else {}
    finally:
        conn.close()


def write_docker_archive(store: ImageStore, image: Image, dest: Path, tags: list[str]) -> None:
    """Write ``image`` from ``store`` as a ``docker save`` tarball (what ``POST /images/load`` takes).

    Layer blobs go in as stored (gzip or not): dockerd decompresses and checks them against the
    config's diff_ids itself.
    """
    manifest = parse_json((store.blobs / digest_hex(image.digest)).read_bytes(), f"manifest {image.digest}")
    config, layers = manifest_parts(manifest, f"manifest {image.digest}")
    entries: list[tuple[str, Path]] = [(f"{digest_hex(config.digest)}.json", store.blobs / digest_hex(config.digest))]
    layer_names = []
    for layer in layers:
        name = f"{digest_hex(layer.digest)}/layer.tar"
        layer_names.append(name)
        entries.append((name, store.blobs / digest_hex(layer.digest)))
    index = [{"Config": entries[0][0], "RepoTags": tags or None, "Layers": layer_names}]
    index_bytes = json.dumps(index).encode()
    with tarfile.open(dest, "w") as tar:
        for name, src in entries:
            if "/" in name:
                tar.addfile(fixed_tarinfo(name.split("/", 1)[0], tarfile.DIRTYPE, 0o755))
            info = fixed_tarinfo(name, tarfile.REGTYPE, 0o644)
            info.size = src.stat().st_size
            with src.open("rb") as f:
                tar.addfile(info, f)
        info = fixed_tarinfo("manifest.json", tarfile.REGTYPE, 0o644)
        info.size = len(index_bytes)
        tar.addfile(info, _BytesReader(index_bytes))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        return chunk


class DockerRuntime(StoreBackedImages[ImageStore], Runtime):
    """Pods as containers of a dockerd on this machine. Needs root (netns, veth) and iproute2."""

    relist_period = 1.0

    def __init__(
        self,
        options: RuntimeOptions,
        *,
        host: str | None = None,
        images: ImageStore | None = None,
        pids_limit: int | None = 4096,
    ) -> None:
        self.options = options
        self.node_name = options.node_name
        self.socket_path = docker_socket(host)
        self.root = options.data_dir.resolve()
        self.state = self.root / "docker"
        self.pids_limit = pids_limit
        self._images = images
        self.network = NodeNetwork(options.node_name, self.root / "net", options.pod_cidr)
        self.layout = cgroups.detect_layout()
        try:
            ver = _sync_get(self.socket_path, f"/{API_VERSION}/version")
            info = _sync_get(self.socket_path, f"/{API_VERSION}/info")
        except (OSError, ValueError, DockerApiError) as e:
            raise RuntimeFailure(
                f"dockerd is not reachable at {self.socket_path}: {e} (start dockerd, or set DOCKER_HOST=unix:///path)"
            ) from e
        self.version = f"docker://{ver.get('Version', 'unknown')}"
        self.cgroup_driver = str(info.get("CgroupDriver") or "cgroupfs")
        for d in ("sandboxes", "logpos", "tmp"):
            (self.state / d).mkdir(parents=True, exist_ok=True)
        self._session: aiohttp.ClientSession | None = None
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._logs_done: set[str] = set()
        self._log_paths: dict[str, Path] = {}

    # --- the Engine API ---

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path),
                base_url="http://docker",
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        data: Any = None,
        ok_missing: bool = False,
        timeout: float = 60.0,
    ) -> Any:
        """One API call; returns the decoded JSON (or None). 404 raises NotFoundError unless ``ok_missing``."""
        try:
            async with self._http().request(
                method, f"/{API_VERSION}{path}", params=params, json=body, data=data,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RuntimeFailure(f"dockerd ({self.socket_path}): {method} {path}: {e or type(e).__name__}") from e
        if status == 404 and ok_missing:
            return None
        if status >= 400:
            try:
                message = str(json.loads(raw).get("message", ""))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace").strip()
            if status == 404:
                raise NotFoundError(message or f"{path}: not found")
            raise DockerApiError(status, message or f"{method} {path}: HTTP {status}")
        if not raw or status == 204:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    async def _inspect(self, cid: str) -> Obj:
        data = await self._call("GET", f"/containers/{cid}/json")
        if not isinstance(data, dict) or (data.get("Config") or {}).get("Labels", {}).get(LABEL_NODE) != self.node_name:
            raise NotFoundError(f"container {cid} not found on node {self.node_name}")
        return data

    async def _list(self, role: str) -> list[Obj]:
        params = {"all": "1", **_label_filter(f"{LABEL_NODE}={self.node_name}", f"{LABEL_ROLE}={role}")}
        data = await self._call("GET", "/containers/json", params=params)
        return list(data or [])

    async def healthy(self) -> bool:
        try:
            async with self._http().get("/_ping", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def update_runtime_config(self, pod_cidr: str) -> None:
        self.network.set_pod_cidr(pod_cidr)

    async def close(self) -> None:
        for task in list(self._followers.values()):
            task.cancel()
        for task in list(self._followers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- images ---

    def _images_root(self) -> Path:
        return self.root / "images"

    async def _docker_has(self, image_ref: str) -> str | None:
        data = await self._call("GET", f"/images/{image_ref}/json", ok_missing=True)
        return str(data["Id"]) if isinstance(data, dict) and data.get("Id") else None

    async def _load(self, archive: Path, what: str) -> None:
        with archive.open("rb") as f:
            data = await self._call("POST", "/images/load", params={"quiet": "1"}, data=f, timeout=600)
        # Errors come inside a 200 response, as a JSON message.
        if isinstance(data, dict) and (data.get("error") or data.get("errorDetail")):
            raise CreateContainerError(f"dockerd refused image {what}: {data.get('error') or data['errorDetail']}")

    async def _ensure_in_docker(self, image: Image) -> str:
        """Load ``image`` from the node's store into dockerd unless it has it; returns its id."""
        lock = self._load_locks.setdefault(image.id, asyncio.Lock())
        async with lock:
            if await self._docker_has(image.id):
                return image.id
            tags = [image.ref.familiar] if image.ref.tag and not image.ref.digest else []
            with self._temp_file("load-") as archive:
                await asyncio.to_thread(write_docker_archive, self._image_source(), image, archive, tags)
                await self._load(archive, str(image.ref))
            if not await self._docker_has(image.id):
                raise CreateContainerError(f"image {image.ref} ({image.id}) is missing from dockerd after loading it")
            return image.id

    @contextlib.contextmanager
    def _temp_file(self, prefix: str) -> Iterator[Path]:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tar", dir=self.state / "tmp")
        os.close(fd)
        try:
            yield Path(name)
        finally:
            os.unlink(name)

    def _build_pause(self, archive: Path) -> None:
        """The sandbox image as a docker-save tar: busybox-static, through a one-off store."""
        with tempfile.TemporaryDirectory(dir=self.state / "tmp") as tmp:
            oci = Path(tmp) / "pause.tar"
            build_busybox(PAUSE_IMAGE).write(oci)
            store = ImageStore(Path(tmp) / "store")
            store.import_archive(oci)
            img = store.get(PAUSE_IMAGE)
            if img is None:
                raise RuntimeFailure(f"{PAUSE_IMAGE} vanished from its build store")
            write_docker_archive(store, img, archive, [PAUSE_IMAGE])

    async def _pause_image(self) -> str:
        lock = self._load_locks.setdefault(PAUSE_IMAGE, asyncio.Lock())
        async with lock:
            found = await self._docker_has(PAUSE_IMAGE)
            if found:
                return found
            with self._temp_file("pause-") as archive:
                try:
                    await asyncio.to_thread(self._build_pause, archive)
                except Exception as e:
                    raise RuntimeFailure(f"cannot build the sandbox image {PAUSE_IMAGE}: {e}") from e
                await self._load(archive, PAUSE_IMAGE)
            found = await self._docker_has(PAUSE_IMAGE)
            if not found:
                raise RuntimeFailure(f"the sandbox image {PAUSE_IMAGE} is missing from dockerd after loading it")
            return found

    # --- sandboxes ---

    def _cgroup_parent(self, pod_uid: str) -> str:
        if self.cgroup_driver == "systemd":
            return "kubelite.slice"  # systemd names units itself: per-container ids cannot collide
        return cgroups.pod_cgroups_path(self.node_name, pod_uid)

    def _sandbox_dir(self, sid: str) -> Path:
        return self.state / "sandboxes" / sid

    def _sandbox_info(self, item: Obj) -> PodSandbox:
        sid = str(item["Id"])
        labels = dict(item.get("Labels") or {})
        meta = read_json_object(self._sandbox_dir(sid) / "meta.json") or {}
        ready = item.get("State") == "running" and self.network.pod_netns_exists(sid)
        created = dt.datetime.fromtimestamp(int(item.get("Created") or 0), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return PodSandbox(
            id=sid, pod_uid=labels.get(LABEL_POD_UID, ""), namespace=labels.get(LABEL_POD_NAMESPACE, ""),
            name=labels.get(LABEL_POD_NAME, ""), ip=meta.get("ip"),
            state=SandboxState.READY if ready else SandboxState.NOT_READY, created_at=created,
            labels={k: v for k, v in labels.items() if k.startswith("io.kubernetes.")},
        )

    def _name(self, *parts: str) -> str:
        # Unique and readable in `docker ps`; identity is in the labels, not here.
        return "_".join(["kl", self.node_name, *parts, uuid.uuid4().hex[:6]])

    async def run_pod_sandbox(self, pod: Obj) -> PodSandbox:
        m = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        uid = str(m.get("uid", ""))
        hostname = pod_hostname(pod)
        pause = await self._pause_image()
        body: Obj = {
            "Image": pause,
            "Entrypoint": ["sleep"],
            "Cmd": ["2147483647"],
            "Hostname": hostname,
            "StopSignal": "SIGKILL",  # it holds namespaces only: nothing to shut down gracefully
            "Labels": {**sandbox_labels(pod), LABEL_NODE: self.node_name, LABEL_ROLE: "sandbox"},
            "HostConfig": {
                "NetworkMode": "none",
                "IpcMode": "shareable",
                "CgroupParent": self._cgroup_parent(uid),
                "LogConfig": {"Type": "none", "Config": {}},
            },
        }
        created = await self._call("POST", "/containers/create", params={"name": self._name("POD", str(m.get("name")))},
                                   body=body)
        sid = str(created["Id"])
        d = self._sandbox_dir(sid)
        try:
            d.mkdir(parents=True)
            await self._call("POST", f"/containers/{sid}/start")
            pid = int((await self._inspect(sid))["State"]["Pid"])
            # Name the sandbox's netns so NodeNetwork sets it up exactly as for runc.
            await run_command("ip", "netns", "attach", netns_name(sid), str(pid))
            net = await self.network.setup_pod(sid)
            write_pod_dns_files(d, spec, str(m.get("namespace", "")), hostname, net, self.options)
            write_json_atomic(d / "meta.json", {"ip": net.ip, "hostname": hostname})
        except (CommandError, OSError, RuntimeError, RuntimeFailure) as e:
            await self.remove_pod_sandbox(sid)
            raise RuntimeFailure(f"pod sandbox for {m.get('namespace')}/{m.get('name')}: {e}") from e
        items = await self._call("GET", "/containers/json", params={"all": "1", "filters": json.dumps({"id": [sid]})})
        return self._sandbox_info(items[0])

    async def _containers_of(self, sandbox_id: str) -> list[Obj]:
        return [c for c in await self._list("container") if (c.get("Labels") or {}).get(LABEL_SANDBOX) == sandbox_id]

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        for c in await self._containers_of(sandbox_id):
            await self.stop_container(str(c["Id"]), 0)
        with contextlib.suppress(NotFoundError):
            await self._kill(sandbox_id, "KILL")
        await self.network.teardown_pod(sandbox_id)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        uid = ""
        for c in await self._containers_of(sandbox_id):
            await self.remove_container(str(c["Id"]))
        with contextlib.suppress(NotFoundError):
            uid = (await self._inspect(sandbox_id))["Config"]["Labels"].get(LABEL_POD_UID, "")
        await self._call("DELETE", f"/containers/{sandbox_id}", params={"force": "1", "v": "1"}, ok_missing=True)
        await self.network.teardown_pod(sandbox_id)
        shutil.rmtree(self._sandbox_dir(sandbox_id), ignore_errors=True)
        if uid and self.cgroup_driver != "systemd":
            others = [s for s in await self._list("sandbox") if (s.get("Labels") or {}).get(LABEL_POD_UID) == uid]
            if not others:
                cgroups.remove_cgroup_tree(self.layout, cgroups.pod_cgroups_path(self.node_name, uid))

    async def list_pod_sandboxes(self) -> list[PodSandbox]:
        return [self._sandbox_info(item) for item in await self._list("sandbox")]

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
        if config is None:
            config = config_from_spec(container, env, mounts)
        try:
            sb = await self._inspect(sandbox_id)
        except NotFoundError:
            raise NotFoundError(f"sandbox {sandbox_id} is not ready") from None
        if not (sb.get("State") or {}).get("Running") or not self.network.pod_netns_exists(sandbox_id):
            raise NotFoundError(f"sandbox {sandbox_id} is not ready")
        ref = config.image or str(container.get("image", ""))
        try:
            image = await self._image(ref, "IfNotPresent")
        except ImagePullError as e:
            raise CreateContainerError(str(e)) from e
        args = resolve_args(config, image.config)
        if not args:
            raise CreateContainerError("no command specified: the image has no Entrypoint/Cmd and the pod none")
        image_id = await self._ensure_in_docker(image)
        name = config.name or str(container.get("name", ""))
        labels = {**container_labels(pod, name, attempt), LABEL_NODE: self.node_name, LABEL_ROLE: "container",
                  LABEL_SANDBOX: sandbox_id, LABEL_IMAGE: ref}
        if config.log_path is not None:
            labels[LABEL_LOG_PATH] = str(config.log_path)
        body = self._container_body(pod, container, config, sb, image_id, args, labels)
        m = pod.get("metadata") or {}
        try:
            created = await self._call("POST", "/containers/create",
                                       params={"name": self._name(str(m.get("name")), name, str(attempt))}, body=body)
        except DockerApiError as e:
            raise CreateContainerError(f"container {name}: {e}") from e
        cid = str(created["Id"])
        if config.log_path is not None:
            self._log_paths[cid] = config.log_path
        return cid

    def _container_body(
        self, pod: Obj, container: Obj, config: ContainerConfig, sandbox: Obj, image_id: str, args: list[str],
        labels: dict[str, str],
    ) -> Obj:
        spec = pod.get("spec") or {}
        sid = str(sandbox["Id"])
        d = self._sandbox_dir(sid)
        res = cgroups.linux_resources(
            cpu_request_millis=config.cpu_request_millis, cpu_limit_millis=config.cpu_limit_millis,
            memory_limit_bytes=config.memory_limit_bytes, pids_limit=self.pids_limit,
        )
        caps = set(container_capabilities(container, config.privileged))
        sc = container.get("securityContext") or {}
        pod_sc = spec.get("securityContext") or {}
        host: Obj = {
            "NetworkMode": f"container:{sid}",
            "IpcMode": f"container:{sid}",
            "CgroupParent": str(sandbox["HostConfig"].get("CgroupParent") or ""),
            "Privileged": config.privileged,
            "ReadonlyRootfs": config.read_only_root_filesystem,
            "CapAdd": sorted(caps - set(DEFAULT_CAPABILITIES)) or None,
            "CapDrop": sorted(set(DEFAULT_CAPABILITIES) - caps) or None,
            "GroupAdd": [str(g) for g in pod_sc.get("supplementalGroups") or []] or None,
            "SecurityOpt": ["no-new-privileges"] if sc.get("allowPrivilegeEscalation") is False else None,
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            "Mounts": [
                {"Type": "bind", "Source": str(d / "hosts"), "Target": "/etc/hosts"},
                {"Type": "bind", "Source": str(d / "resolv.conf"), "Target": "/etc/resolv.conf"},
                *({"Type": "bind", "Source": mt.host_path, "Target": mt.container_path, "ReadOnly": mt.read_only}
                  for mt in config.mounts),
            ],
        }
        if spec.get("shareProcessNamespace"):
            host["PidMode"] = f"container:{sid}"
        if "memory" in res:
            host["Memory"] = res["memory"]["limit"]
            host["MemorySwap"] = res["memory"]["swap"]
        cpu = res.get("cpu") or {}
        if "shares" in cpu:
            host["CpuShares"] = cpu["shares"]
        if "quota" in cpu:
            host["CpuQuota"], host["CpuPeriod"] = cpu["quota"], cpu["period"]
        if "pids" in res:
            host["PidsLimit"] = res["pids"]["limit"]
        user = config.run_as_user if config.run_as_user is not None else pod_sc.get("runAsUser")
        group = config.run_as_group if config.run_as_group is not None else pod_sc.get("runAsGroup")
        body: Obj = {
            "Image": image_id,
            "Entrypoint": args[:1],
            "Cmd": args[1:],
            "Env": [f"{k}={v}" for k, v in config.env.items()],
            "WorkingDir": config.working_dir,
            "Labels": labels,
            "Tty": config.tty,
            "OpenStdin": config.stdin,
            "HostConfig": host,
        }
        if user is not None:
            body["User"] = str(user) + (f":{group}" if group is not None else "")
        elif group is not None:
            body["User"] = f"0:{group}"
        return body

    async def start_container(self, container_id: str) -> None:
        data = await self._inspect(container_id)
        try:
            await self._call("POST", f"/containers/{container_id}/start")
        except DockerApiError as e:
            raise RuntimeFailure(f"starting container {container_id}: {e}") from e
        finally:
            path = (data["Config"].get("Labels") or {}).get(LABEL_LOG_PATH)
            if path:
                self._follow(container_id, Path(path))

    async def list_containers(self) -> list[ContainerInfo]:
        out: list[ContainerInfo] = []
        for item in await self._list("container"):
            labels = dict(item.get("Labels") or {})
            cid = str(item["Id"])
            state = _STATES.get(str(item.get("State")), ContainerState.UNKNOWN)
            out.append(ContainerInfo(id=cid, sandbox_id=labels.get(LABEL_SANDBOX, ""), image=labels.get(LABEL_IMAGE, ""),
                                     state=state, labels={k: v for k, v in labels.items() if k.startswith("io.kubernetes.")}))
            # Re-adoption: a container whose output has not all reached its CRI file gets a follower.
            path = labels.get(LABEL_LOG_PATH)
            if path and state is not ContainerState.CREATED and cid not in self._logs_done:
                self._follow(cid, Path(path))
        return out

    async def container_status(self, container_id: str) -> ContainerStatus:
        data = await self._inspect(container_id)
        st = data.get("State") or {}
        labels = data["Config"].get("Labels") or {}
        state = _STATES.get(str(st.get("Status")), ContainerState.UNKNOWN)
        base = ContainerStatus(
            id=container_id, state=state, created_at=_rfc3339(data.get("Created")),
            started_at=_rfc3339(st.get("StartedAt")), image=labels.get(LABEL_IMAGE, ""), image_id=str(data.get("Image")),
        )
        if state is ContainerState.CREATED and st.get("Error"):
            # Start failed (e.g. the command is not in the image): containerd's CRI calls it StartError.
            return replace(base, state=ContainerState.EXITED, exit_code=128, reason="StartError",
                           message=str(st["Error"]), finished_at=_rfc3339(st.get("FinishedAt")) or base.created_at)
        if state is not ContainerState.EXITED:
            return base
        code = int(st.get("ExitCode") or 0)
        reason = "OOMKilled" if st.get("OOMKilled") else ("Completed" if code == 0 else "Error")
        return replace(base, exit_code=code, reason=reason, message=str(st.get("Error") or ""),
                       finished_at=_rfc3339(st.get("FinishedAt")))

    async def _kill(self, cid: str, sig: str) -> None:
        try:
            await self._call("POST", f"/containers/{cid}/kill", params={"signal": sig})
        except DockerApiError as e:
            if e.status != 409:  # 409: not running
                raise

    async def _wait_exited(self, cid: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            st = (await self._inspect(cid)).get("State") or {}
            if not st.get("Running"):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        st = (await self._inspect(container_id)).get("State") or {}
        if not st.get("Running"):
            return
        # kill + our own wait rather than /stop: the grace period may be fractional.
        if grace_seconds > 0:
            await self._kill(container_id, "TERM")
            if await self._wait_exited(container_id, grace_seconds):
                return
        await self._kill(container_id, "KILL")
        if not await self._wait_exited(container_id, 15.0):
            raise RuntimeFailure(f"container {container_id} did not stop")

    async def remove_container(self, container_id: str) -> None:
        task = self._followers.get(container_id)
        if task is not None:
            # The container has stopped: let the follower write its last output first.
            with contextlib.suppress(Exception):
                st = (await self._inspect(container_id)).get("State") or {}
                if st.get("Running"):
                    await self.stop_container(container_id, 0)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            task.cancel()
        await self._call("DELETE", f"/containers/{container_id}", params={"force": "1", "v": "1"}, ok_missing=True)
        (self.state / "logpos" / f"{container_id}.json").unlink(missing_ok=True)
        self._logs_done.discard(container_id)
        self._log_paths.pop(container_id, None)

    async def init_pid(self, container_id: str) -> int | None:
        """The host pid of the container's main process while it runs (None otherwise)."""
        st = (await self._inspect(container_id)).get("State") or {}
        return int(st["Pid"]) if st.get("Running") and st.get("Pid") else None

    # --- logs ---

    def _pos_file(self, cid: str) -> Path:
        return self.state / "logpos" / f"{cid}.json"

    def _follow(self, cid: str, path: Path) -> None:
        self._log_paths[cid] = path
        task = self._followers.get(cid)
        if task is not None and not task.done():
            return
        if (read_json_object(self._pos_file(cid)) or {}).get("done"):
            self._logs_done.add(cid)
            return
        task = asyncio.get_running_loop().create_task(self._copy_logs(cid, path), name=f"docker-logs-{cid[:12]}")
        self._followers[cid] = task
        task.add_done_callback(lambda t: self._followers.pop(cid, None) if self._followers.get(cid) is t else None)

    async def _copy_logs(self, cid: str, path: Path) -> None:
        """Stream dockerd's copy of the container's output into its CRI log file, resumably."""
        pos = read_json_object(self._pos_file(cid)) or {}
        since = int(pos.get("sinceNs") or 0)
        params = {"follow": "1", "stdout": "1", "stderr": "1", "timestamps": "1"}
        if since:
            params["since"] = f"{since // 1_000_000_000}.{since % 1_000_000_000:09d}"
        clock_now = [0.0]
        writer = CriLogWriter(path, clock=lambda: clock_now[0])
        saved_at = time.monotonic()
        dirty = done = False
        try:
            async for stream, ts, message in self._log_frames(cid, params):
                ns = _time_ns(ts)
                if ns <= since:
                    continue  # written before the agent restarted
                clock_now[0] = ns / 1e9
                writer.write(stream, message)
                since, dirty = ns, True
                if time.monotonic() - saved_at >= _POS_SAVE_INTERVAL:
                    write_json_atomic(self._pos_file(cid), {"sinceNs": since, "done": False})
                    saved_at, dirty = time.monotonic(), False
            # The stream also ends when dockerd goes away: only a stopped container's log is complete.
            done = not ((await self._inspect(cid)).get("State") or {}).get("Running")
        except NotFoundError:
            done = True  # removed: nothing more will come
        except (RuntimeFailure, aiohttp.ClientError, OSError) as e:
            log.warning("node %s: following the logs of %s failed: %s", self.node_name, cid[:12], e)
        finally:  # also on cancellation (agent shutdown): the position must not lag
            writer.close()
            if dirty or done:
                write_json_atomic(self._pos_file(cid), {"sinceNs": since, "done": done})
            if done:
                self._logs_done.add(cid)

    async def _log_frames(self, cid: str, params: Mapping[str, str]) -> AsyncIterator[tuple[str, str, bytes]]:
        """(stream, timestamp, message) of each record of Docker's multiplexed log stream."""
        async with self._http().get(f"/{API_VERSION}/containers/{cid}/logs", params=params) as resp:
            if resp.status == 404:
                raise NotFoundError(f"container {cid} not found")
            if resp.status >= 400:
                raise DockerApiError(resp.status, (await resp.text()).strip())
            async for stream, frame in _demux(resp.content):
                ts, _, message = frame.partition(b" ")
                yield stream, ts.decode(), message

    def log_path(self, container_id: str) -> Path:
        if container_id not in self._log_paths:
            with contextlib.suppress(OSError, ValueError, DockerApiError):
                labels = _sync_get(self.socket_path, f"/{API_VERSION}/containers/{container_id}/json")["Config"]["Labels"]
                if labels.get(LABEL_LOG_PATH):
                    self._log_paths[container_id] = Path(labels[LABEL_LOG_PATH])
        if container_id not in self._log_paths:
            raise NotFoundError(f"container {container_id} has no log file")
        return self._log_paths[container_id]

    # --- exec ---

    async def exec(self, container_id: str, command: list[str], timeout: float | None = None) -> ExecResult:
        """Run ``command`` in the container; raises TimeoutError (after killing it) past ``timeout``."""
        st = (await self._inspect(container_id)).get("State") or {}
        if not st.get("Running"):
            raise RuntimeFailure(f"container {container_id} is not running")
        created = await self._call("POST", f"/containers/{container_id}/exec", body={
            "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False, "Cmd": command,
        })
        exec_id = str(created["Id"])
        out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

        async def run() -> None:
            async with self._http().post(f"/{API_VERSION}/exec/{exec_id}/start",
                                         json={"Detach": False, "Tty": False}) as resp:
                if resp.status >= 400:
                    raise DockerApiError(resp.status, (await resp.text()).strip())
                async for stream, frame in _demux(resp.content):
                    out[stream] += frame

        try:
            await asyncio.wait_for(run(), timeout)
        except TimeoutError:
            info = await self._call("GET", f"/exec/{exec_id}/json", ok_missing=True) or {}
            if info.get("Running") and info.get("Pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(info["Pid"]), signal.SIGKILL)
            raise
        except aiohttp.ClientError as e:
            raise RuntimeFailure(f"exec in {container_id}: {e}") from e
        for _ in range(100):  # the stream ends a moment before dockerd records the exit code
            info = await self._call("GET", f"/exec/{exec_id}/json")
            if not info.get("Running"):
                break
            await asyncio.sleep(0.01)
        code = info.get("ExitCode")
        return ExecResult(exit_code=int(code) if code is not None else -1, stdout=bytes(out["stdout"]),
                          stderr=bytes(out["stderr"]))

    # --- the whole node ---

    async def reset(self) -> None:
        """Remove every container and sandbox of this node, its bridge and cgroups (a node leaving)."""
        for c in await self._list("container"):
            await self.remove_container(str(c["Id"]))
        for s in await self._list("sandbox"):
            await self.remove_pod_sandbox(str(s["Id"]))
        for d in (self.state / "sandboxes").iterdir():  # leftovers of interrupted creations
            await self.network.teardown_pod(d.name)
            shutil.rmtree(d, ignore_errors=True)
        await self.network.remove_bridge()
        if self.cgroup_driver != "systemd":
            cgroups.remove_cgroup_tree(self.layout, f"/kubelite/{self.node_name}")
            cgroups.prune_empty_cgroup(self.layout, "/kubelite")


async def _demux(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, bytes]]:
    """Docker's multiplexed stream: an 8-byte header (stream, 0, 0, 0, big-endian size) per frame."""
    while True:
        try:
            header = await content.readexactly(8)
        except asyncio.IncompleteReadError:
            return
        size = int.from_bytes(header[4:8], "big")
        try:
            frame = await content.readexactly(size)
        except asyncio.IncompleteReadError as e:
            frame = e.partial
        yield ("stderr" if header[0] == 2 else "stdout"), frame


