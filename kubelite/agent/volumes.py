"""Pod volumes on the node: materialised before the pod's containers start, kept up to date after.

Each volume of a pod becomes a host directory (or file) its containers bind-mount:

* ``emptyDir`` -> ``<data dir>/pods/<uid>/volumes/<name>``; ``medium: Memory`` mounts a tmpfs there
  (``sizeLimit`` is its size);
* ``configMap``, ``secret``, ``downwardAPI``, ``projected`` -> the same place, written by
  :func:`atomic_write_dir` with Kubernetes' ``..data`` symlink swap, so a reader sees either the old
  or the new set of files, never a mix; :meth:`VolumeManager.refresh` rewrites them when the
  objects (or the pod's labels/annotations) change. A projected ``serviceAccountToken`` is a
  TokenRequest bound to the pod (:class:`ServiceAccountTokenManager`, kubelet's token manager),
  renewed once 80% of its lifetime has passed; the pod's ``volumes`` directory is then 0750 so
  only root on the host reads the token;
* ``hostPath`` -> the path itself, after the ``type`` check;
* ``persistentVolumeClaim`` -> a local-path provisioner: the claim's data lives in
  ``<storage dir>/<namespace>/<claim>-<claim uid>`` on the node that first runs a pod using it. The
  agent binds the claim to a PersistentVolume ``pvc-<claim uid>`` whose node affinity names this
  node, so the scheduler puts later pods using the claim here. Data outlives pods and agent restarts
  (it is a plain directory); the PV's reclaim policy is Retain since nothing deletes that directory.

A volume that cannot be set up raises :class:`VolumeError`; the pod's containers then wait
(kubelet's FailedMount) and the sync retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from kubelite.agent.env import (
    ApiObjectSource,
    EnvError,
    ObjectSource,
    PodContext,
    configmap_data,
    field_value,
    resource_value,
    secret_data,
)
from kubelite.agent.runtime import Mount
from kubelite.api.quantity import QuantityError, to_int
from kubelite.api.registry import by_path
from kubelite.client import ApiClient, ApiConnectionError, ApiError

__all__ = [
    "DATA_DIR_NAME",
    "HostPathError",
    "ServiceAccountTokenManager",
    "TokenSource",
    "VolumeError",
    "VolumeManager",
    "atomic_write_dir",
    "check_host_path",
    "container_mounts",
    "projected_files",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

_PVCS = by_path("", "v1", "persistentvolumeclaims")
_PVS = by_path("", "v1", "persistentvolumes")
assert _PVCS is not None and _PVS is not None
PVCS, PVS = _PVCS, _PVS

DATA_DIR_NAME = "..data"
PROVISIONER = "kubelite.io/local-path"
DEFAULT_MODE = 0o644
# Kinds whose contents the agent writes; containers always see them read-only (as in Kubernetes).
_WRITTEN = ("configMap", "secret", "downwardAPI", "projected")


class VolumeError(Exception):
    """A volume cannot be set up; the message says why (the pod's containers wait)."""


class HostPathError(VolumeError):
    pass


# --- atomic writer ----------------------------------------------------------------------------------

Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def _check_rel(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or p.parts[0].startswith(".."):
        raise VolumeError(f"invalid file path {path!r} in volume")
    return p


def _current(target: Path) -> Files | None:
    data = target / DATA_DIR_NAME
    if not data.is_symlink():
        return None
    root = data.resolve()
    out: Files = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            f = Path(dirpath) / n
            out[str(f.relative_to(root))] = (f.read_bytes(), stat.S_IMODE(f.stat().st_mode))
    return out


def atomic_write_dir(target: Path, files: Files) -> bool:
    """Make ``target`` show exactly ``files``, switching atomically; False when nothing changed.

    Layout (Kubernetes' AtomicWriter): the files live in a timestamped directory ``..<ts>``;
    ``..data`` is a symlink to it, and each top-level name is a symlink ``name -> ..data/name``. An
    update writes a new timestamped directory, then renames a new ``..data`` symlink over the old
    one, which is the one atomic step.
    """
    for rel in files:
        _check_rel(rel)
    target.mkdir(parents=True, exist_ok=True)
    if _current(target) == files:
        return False
    stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    new_dir = target / stamp
    n = 0
    while new_dir.exists():
        n += 1
        new_dir = target / f"{stamp}{n}"
    new_dir.mkdir(mode=0o755)
    for rel, (content, mode) in files.items():
        f = new_dir / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content)
        f.chmod(mode)
    old_dir = (target / DATA_DIR_NAME).resolve() if (target / DATA_DIR_NAME).is_symlink() else None
    tmp_link = target / f"{DATA_DIR_NAME}_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(new_dir.name)
    os.replace(tmp_link, target / DATA_DIR_NAME)
    wanted = {PurePosixPath(rel).parts[0] for rel in files}
    for top in wanted:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR_NAME}/{top}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.is_symlink() and entry.name not in wanted:
            entry.unlink()
    if old_dir is not None and old_dir != new_dir.resolve() and old_dir.parent == target.resolve():
        shutil.rmtree(old_dir, ignore_errors=True)
    return True


# --- file sets of configMap / secret / downwardAPI / projected ----------------------------------------


def _mode(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default


def _keyed_files(kind: str, name: str, data: dict[str, bytes] | None, src: Obj, mode: int, namespace: str) -> Files:
    """configMap/secret source -> files: every key, or only ``items`` (key -> path)."""
    if data is None:
        if src.get("optional"):
            return {}
        raise VolumeError(f'{kind} "{name}" not found')
    items = src.get("items")
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out: Files = {}
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if src.get("optional"):
                continue
            label = "ConfigMap" if kind == "configmap" else "Secret"
            raise VolumeError(f"couldn't find key {key} in {label} {namespace}/{name}")
        out[str(item.get("path") or key)] = (data[key], _mode(item.get("mode"), mode))
    return out


def _downward_files(pod: Obj, items: list[Obj], mode: int, ctx: PodContext) -> Files:
    out: Files = {}
    for item in items or []:
        try:
            if item.get("fieldRef"):
                value = field_value(pod, str(item["fieldRef"].get("fieldPath", "")), ctx)
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                value = resource_value(pod, str(ref.get("containerName", "")), ref, ctx)
            else:
                continue
        except EnvError as e:
            raise VolumeError(str(e)) from None
        out[str(item.get("path", ""))] = (value.encode(), _mode(item.get("mode"), mode))
    return out


async def _keyed_source(kind: str, src: Obj, name_field: str, mode: int, namespace: str,
                        source: ObjectSource) -> Files:
    name = str(src.get(name_field, ""))
    if kind == "configmap":
        cm = await source.configmap(namespace, name)
        data = configmap_data(cm) if cm else None
    else:
        sec = await source.secret(namespace, name)
        data = secret_data(sec) if sec else None
    return _keyed_files(kind, name, data, src, mode, namespace)


async def projected_files(
    pod: Obj, volume: Obj, source: ObjectSource, ctx: PodContext, tokens: TokenSource | None = None
) -> Files:
    """The files a configMap/secret/downwardAPI/projected volume shows."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    if "configMap" in volume or "secret" in volume:
        kind, src = ("configmap", volume["configMap"]) if "configMap" in volume else ("secret", volume["secret"])
        mode = _mode(src.get("defaultMode"), DEFAULT_MODE)
        return await _keyed_source(kind, src, "name" if kind == "configmap" else "secretName", mode, namespace, source)
    if "downwardAPI" in volume:
        src = volume["downwardAPI"]
        return _downward_files(pod, src.get("items") or [], _mode(src.get("defaultMode"), DEFAULT_MODE), ctx)
    src = volume.get("projected") or {}
    mode = _mode(src.get("defaultMode"), DEFAULT_MODE)
    out: Files = {}
    for s in src.get("sources") or []:
        if s.get("configMap"):
            out.update(await _keyed_source("configmap", s["configMap"], "name", mode, namespace, source))
        elif s.get("secret"):
            out.update(await _keyed_source("secret", s["secret"], "name", mode, namespace, source))
        elif s.get("downwardAPI"):
            out.update(_downward_files(pod, s["downwardAPI"].get("items") or [], mode, ctx))
        elif s.get("serviceAccountToken"):
            sat = s["serviceAccountToken"]
            if tokens is None:
                raise VolumeError("serviceAccountToken: this node has no token source")
            seconds = sat.get("expirationSeconds")
            seconds = seconds if isinstance(seconds, int) and not isinstance(seconds, bool) else DEFAULT_TOKEN_EXPIRATION
            token = await tokens.token(pod, str(sat.get("audience") or ""), seconds)
            out[str(sat.get("path") or "token")] = (token.encode(), mode)
        # clusterTrustBundle sources: not served by this API server, so nothing to write.
    return out


# --- service account tokens -------------------------------------------------------------------------

DEFAULT_TOKEN_EXPIRATION = 3600  # serviceAccountToken.expirationSeconds when unset
TOKEN_REFRESH_FRACTION = 0.8  # kubelet renews a token once 80% of its lifetime has passed...
TOKEN_MAX_AGE = 24 * 3600  # ...or once it is a day old, whichever comes first


class TokenSource(Protocol):
    """Where projected ServiceAccount tokens come from."""

    async def token(self, pod: Obj, audience: str, expiration_seconds: int) -> str: ...

    def forget(self, pod_uid: str) -> None: ...


@dataclass(frozen=True)
class _Token:
    value: str
    issued: float  # epoch seconds
    expires: float

    def stale(self, now: float) -> bool:
        lifetime = self.expires - self.issued
        return now >= self.issued + min(lifetime * TOKEN_REFRESH_FRACTION, TOKEN_MAX_AGE)


def _epoch(rfc3339: str) -> float:
    return dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


class ServiceAccountTokenManager:
    """TokenRequests for the pods of this node, bound to the pod (deleting it revokes the token).

    A token is reused until :meth:`_Token.stale`; a failed renewal keeps serving the old token
    while it is still valid (kubelet does the same), so an API hiccup does not break pods.
    """

    def __init__(self, client: ApiClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._cache: dict[tuple[str, str, str, int], _Token] = {}
        self.requests = 0  # TokenRequests sent (for tests and metrics)

    async def token(self, pod: Obj, audience: str, expiration_seconds: int) -> str:
        m = pod.get("metadata") or {}
        namespace, name, uid = str(m.get("namespace") or "default"), str(m.get("name", "")), str(m.get("uid", ""))
        sa = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
        key = (uid, sa, audience, expiration_seconds)
        cached = self._cache.get(key)
        now = self.clock()
        if cached is not None and not cached.stale(now):
            return cached.value
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],  # empty: the API server's own audience
                "expirationSeconds": expiration_seconds,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uid},
            },
        }
        self.requests += 1
        try:
            answer = await self.client.request(
                "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token", json=body
            )
            status = answer["status"]
            expires = _epoch(str(status["expirationTimestamp"]))
            granted = int((answer.get("spec") or {}).get("expirationSeconds") or expiration_seconds)
            fresh = _Token(str(status["token"]), expires - granted, expires)
        except (ApiError, ApiConnectionError, KeyError, TypeError, ValueError) as e:
            if cached is not None and now < cached.expires:
                log.warning("pod %s/%s: token renewal failed, keeping the current token: %s", namespace, name, e)
                return cached.value
            raise VolumeError(f'failed to fetch token for serviceaccount "{sa}": {e}') from None
        self._cache[key] = fresh
        return fresh.value

    def forget(self, pod_uid: str) -> None:
        for key in [k for k in self._cache if k[0] == pod_uid]:
            del self._cache[key]


def _has_token(volume: Obj) -> bool:
    return any(isinstance(s, dict) and s.get("serviceAccountToken")
               for s in (volume.get("projected") or {}).get("sources") or [])


# --- hostPath ---------------------------------------------------------------------------------------


def check_host_path(path: Path, type_: str) -> None:
    """Kubernetes' hostPath ``type`` checks, creating what the *OrCreate types ask for."""
    if not path.is_absolute():
        raise HostPathError(f"hostPath {path} must be absolute")
    if type_ == "":
        return
    if type_ == "DirectoryOrCreate":
        if not path.exists():
            path.mkdir(mode=0o755, parents=True)
            return
        type_ = "Directory"
    if type_ == "FileOrCreate":
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o644)
            return
        type_ = "File"
    checks = {
        "Directory": (Path.is_dir, "a directory"),
        "File": (Path.is_file, "a file"),
        "Socket": (Path.is_socket, "a socket"),
        "CharDevice": (Path.is_char_device, "a character device"),
        "BlockDevice": (Path.is_block_device, "a block device"),
    }
    if type_ not in checks:
        raise HostPathError(f"hostPath type {type_!r} is not supported")
    check, what = checks[type_]
    if not path.exists():
        raise HostPathError(f"hostPath type check failed: {path} does not exist")
    if not check(path):
        raise HostPathError(f"hostPath type check failed: {path} is not {what}")


# --- tmpfs ------------------------------------------------------------------------------------------


def _is_mountpoint(path: Path) -> bool:
    target = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].encode().decode("unicode_escape") == target:
                return True
    return False


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise VolumeError(f"{' '.join(argv)} failed: {out.decode(errors='replace').strip()}")


# --- the manager --------------------------------------------------------------------------------------


@dataclass
class _PodVolumes:
    paths: dict[str, Path]
    tmpfs: list[Path]


class VolumeManager:
    """One node's pod volumes. ``setup`` before a pod's containers start, ``refresh`` periodically,
    ``teardown`` when the pod is gone."""

    def __init__(
        self,
        client: ApiClient,
        node_name: str,
        data_dir: Path,
        *,
        storage_dir: Path | None = None,
        source: ObjectSource | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.data_dir = data_dir
        self.storage_dir = storage_dir or data_dir / "storage"
        self.source = source or ApiObjectSource(client)
        self.tokens = tokens or ServiceAccountTokenManager(client)
        self._pods: dict[str, _PodVolumes] = {}

    def pod_dir(self, uid: str) -> Path:
        return self.data_dir / "pods" / uid

    def volume_dir(self, uid: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / name

    async def setup(self, pod: Obj, ctx: PodContext) -> dict[str, Path]:
        """Make every volume of ``pod`` exist (idempotent); volume name -> host path."""
        uid = str(pod["metadata"]["uid"])
        state = self._pods.setdefault(uid, _PodVolumes({}, []))
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = str(vol.get("name", ""))
            if name in state.paths and not any(k in vol for k in _WRITTEN):
                continue
            state.paths[name] = await self._setup_one(pod, vol, ctx, state)
        return dict(state.paths)

    async def refresh(self, pod: Obj, ctx: PodContext) -> bool:
        """Rewrite configMap/secret/downwardAPI/projected volumes of a set-up pod; True if any changed.

        A source that disappeared keeps its last files (kubelet does the same) and is logged.
        """
        uid = str(pod["metadata"]["uid"])
        state = self._pods.get(uid)
        if state is None:
            return False
        changed = False
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = str(vol.get("name", ""))
            if name not in state.paths or not any(k in vol for k in _WRITTEN):
                continue
            try:
                files = await projected_files(pod, vol, self.source, ctx, self.tokens)
            except (VolumeError, ApiError) as e:
                log.warning("pod %s volume %s: not refreshed: %s", uid, name, e)
                continue
            changed |= atomic_write_dir(state.paths[name], files)
        return changed

    def has_dynamic_volumes(self, pod: Obj) -> bool:
        return any(any(k in v for k in _WRITTEN) for v in (pod.get("spec") or {}).get("volumes") or [])

    async def _setup_one(self, pod: Obj, vol: Obj, ctx: PodContext, state: _PodVolumes) -> Path:
        uid, name = str(pod["metadata"]["uid"]), str(vol.get("name", ""))
        if "hostPath" in vol:
            hp = vol["hostPath"]
            path = Path(str(hp.get("path", "")))
            check_host_path(path, str(hp.get("type") or ""))
            return path
        if "persistentVolumeClaim" in vol:
            return await self._claim_dir(pod, vol["persistentVolumeClaim"])
        target = self.volume_dir(uid, name)
        if any(k in vol for k in _WRITTEN):
            try:
                files = await projected_files(pod, vol, self.source, ctx, self.tokens)
            except ApiError as e:
                raise VolumeError(f"volume {name}: {e}") from None
            if _has_token(vol):
                # Containers see the volume through its bind mount; host users need not see it at all.
                target.mkdir(parents=True, exist_ok=True)
                target.parent.chmod(0o750)
            atomic_write_dir(target, files)
            return target
        if "emptyDir" in vol or not any(isinstance(v, dict) for k, v in vol.items() if k != "name"):
            ed = vol.get("emptyDir") or {}
            target.mkdir(parents=True, exist_ok=True)
            if ed.get("medium") == "Memory" and not _is_mountpoint(target):
                opts = "mode=0777"
                if ed.get("sizeLimit"):
                    try:
                        opts += f",size={to_int(ed['sizeLimit'])}"
                    except QuantityError as e:
                        raise VolumeError(f"volume {name}: sizeLimit: {e}") from None
                await _run("mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target))
                state.tmpfs.append(target)
            else:
                target.chmod(0o777)  # any container user may write an emptyDir
            return target
        kinds = [k for k in vol if k != "name"]
        raise VolumeError(f"volume {name}: unsupported volume type {', '.join(kinds)}")

    async def teardown(self, uid: str) -> None:
        """Unmount and remove the pod's volume directories (claim and hostPath data stay)."""
        state = self._pods.pop(uid, None)
        self.tokens.forget(uid)
        pod_dir = self.pod_dir(uid)
        mounted = list(state.tmpfs) if state else []
        vol_root = pod_dir / "volumes"
        if vol_root.is_dir():
            mounted += [p for p in vol_root.iterdir() if p not in mounted and _is_mountpoint(p)]
        for target in mounted:
            with contextlib.suppress(VolumeError):
                await _run("umount", str(target))
        if pod_dir.exists():
            shutil.rmtree(pod_dir, ignore_errors=True)

    async def teardown_orphans(self, known_uids: set[str]) -> None:
        """After a restart: remove volume directories of pods this node no longer runs."""
        root = self.data_dir / "pods"
        if not root.is_dir():
            return
        for d in root.iterdir():
            if d.name not in known_uids:
                await self.teardown(d.name)

    # --- local-path claims ---

    async def _claim_dir(self, pod: Obj, src: Obj) -> Path:
        namespace = str(pod["metadata"].get("namespace") or "default")
        claim_name = str(src.get("claimName", ""))
        try:
            claim = await self.client.get(PVCS, claim_name, namespace)
        except ApiError as e:
            if e.code == 404:
                raise VolumeError(f'persistentvolumeclaim "{claim_name}" not found') from None
            raise VolumeError(f"persistentvolumeclaim {claim_name}: {e}") from None
        if claim["metadata"].get("deletionTimestamp"):
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" is being deleted')
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if volume_name:
            return await self._bound_path(claim, str(volume_name))
        return await self._provision(claim)

    async def _bound_path(self, claim: Obj, volume_name: str) -> Path:
        try:
            pv = await self.client.get(PVS, volume_name)
        except ApiError as e:
            raise VolumeError(f"persistentvolume {volume_name}: {e}") from None
        nodes = _affinity_nodes(pv)
        if nodes is not None and self.node_name not in nodes:
            raise VolumeError(
                f"volume node affinity conflict: persistentvolume {volume_name} is on node(s) {', '.join(nodes)}"
            )
        spec = pv.get("spec") or {}
        raw = (spec.get("local") or {}).get("path") or (spec.get("hostPath") or {}).get("path")
        if not raw:
            raise VolumeError(f"persistentvolume {volume_name} has no local or hostPath source this node can mount")
        path = Path(str(raw))
        _ensure_dir(path)  # our own provisioned dir may be gone after a wipe
        if (claim.get("status") or {}).get("phase") != "Bound":
            await self._mark_bound(claim, pv)
        return path

    async def _provision(self, claim: Obj) -> Path:
        meta = claim["metadata"]
        spec = claim.get("spec") or {}
        namespace, name, uid = str(meta.get("namespace")), str(meta["name"]), str(meta["uid"])
        path = self.storage_dir / namespace / f"{name}-{uid}"
        _ensure_dir(path)
        pv_name = f"pvc-{uid}"
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage") or "1Gi"
        pv: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                "labels": {"kubernetes.io/hostname": self.node_name},
            },
            "spec": {
                "capacity": {"storage": storage},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": spec.get("storageClassName") or "",
                "volumeMode": "Filesystem",
                "local": {"path": str(path)},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace,
                             "name": name, "uid": uid},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.node_name]},
                ]}]}},
            },
        }
        try:
            created = await self.client.create(PVS, pv)
        except ApiError as e:
            if e.code != 409:
                raise VolumeError(f"creating persistentvolume {pv_name}: {e}") from None
            created = await self.client.get(PVS, pv_name)  # a previous attempt got this far
        try:
            claim = await self.client.patch(PVCS, name, {"spec": {"volumeName": pv_name}}, namespace)
        except ApiError as e:
            raise VolumeError(f"binding persistentvolumeclaim {name}: {e}") from None
        await self._mark_bound(claim, created)
        log.info("node %s: provisioned %s for claim %s/%s at %s", self.node_name, pv_name, namespace, name, path)
        return path

    async def _mark_bound(self, claim: Obj, pv: Obj) -> None:
        pv_spec = pv.get("spec") or {}
        meta = claim["metadata"]
        try:
            if (pv.get("status") or {}).get("phase") != "Bound":
                await self.client.patch(PVS, pv["metadata"]["name"], {"status": {"phase": "Bound"}},
                                        subresource="status")
            await self.client.patch(PVCS, meta["name"], {"status": {
                "phase": "Bound",
                "accessModes": pv_spec.get("accessModes"),
                "capacity": pv_spec.get("capacity"),
            }}, meta.get("namespace"), subresource="status")
        except ApiError as e:
            raise VolumeError(f"marking persistentvolumeclaim {meta['name']} bound: {e}") from None


def _ensure_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True)
        path.chmod(0o777)  # any container user may write a claim's directory


def _affinity_nodes(pv: Obj) -> list[str] | None:
    """The hostnames a PV's required node affinity allows (None: no hostname restriction)."""
    terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
    names: list[str] = []
    for term in terms or []:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") == "kubernetes.io/hostname" and expr.get("operator") == "In":
                names.extend(str(v) for v in expr.get("values") or [])
    return names or None


# --- mounts -------------------------------------------------------------------------------------------


def container_mounts(pod: Obj, container: Obj, paths: dict[str, Path]) -> list[Mount]:
    """``volumeMounts`` of ``container`` as runtime mounts (subPath resolved, created if missing)."""
    volumes = {str(v.get("name")): v for v in (pod.get("spec") or {}).get("volumes") or []}
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        name = str(vm.get("name", ""))
        if name not in paths:
            raise VolumeError(f"volumeMount {name!r} names no volume of the pod")
        vol = volumes.get(name) or {}
        host = paths[name]
        sub = str(vm.get("subPath") or "")
        if sub:
            rel = _check_rel(sub)
            # Resolve through the ..data symlinks: the runtime bind-mounts a real file or directory.
            base = host.resolve()
            host = (host / rel).resolve() if (host / rel).exists() else host / rel
            if host != base and base not in host.parents:
                raise VolumeError(f"subPath {sub!r} of volume {name} leads outside the volume")
            if not host.exists():
                host.mkdir(parents=True, mode=0o777)
        read_only = bool(vm.get("readOnly")) or any(k in vol for k in _WRITTEN) or bool(
            (vol.get("persistentVolumeClaim") or {}).get("readOnly")
        )
        mounts.append(Mount(container_path=str(vm.get("mountPath", "")), host_path=str(host), read_only=read_only))
    return mounts

