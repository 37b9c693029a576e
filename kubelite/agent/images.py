"""The node's image store: content-addressed blobs, unpacked layers shared between images, tags.

Layout under ``root`` (``<agent data dir>/images``), itself an OCI image layout plus layers::

    oci-layout, index.json          tags: one descriptor per name (ref.name annotation = full name)
    blobs/sha256/<hex>              manifests, configs, layer tars exactly as imported or pulled
    layers/<diff_id hex>/           one unpacked layer (overlayfs format), shared by every image using it
    tmp/                            staging: an import unpacks here and renames into place only when all
                                    of it verified, so a failed import leaves the store as it was
    lock                            flock held by whoever commits or removes (CLI import vs running agent)

:meth:`ImageStore.ensure` is what the agent calls before creating a container: it applies the
pull policy, pulls over the OCI Distribution API from the node's registries, and raises
:class:`ImagePullError` (``reason`` ErrImagePull, ErrImageNeverPull or InvalidImageName).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from kubelite.agent import runtime
from kubelite.images.errors import ImageError, InvalidReferenceError, RegistryNotFoundError
from kubelite.images.oci import (
    OCI_INDEX,
    REF_NAME,
    ArchiveImage,
    Descriptor,
    ImageArchive,
    digest_hex,
    manifest_parts,
    parse_json,
    unpack_layer,
)
from kubelite.images.reference import DEFAULT_REGISTRY, ImageRef, parse_ref
from kubelite.images.registry import RegistryClient

__all__ = [
    "PULL_POLICIES",
    "Image",
    "ImageNeverPullError",
    "ImagePullError",
    "ImageStore",
    "InvalidImageNameError",
]

log = logging.getLogger(__name__)

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_STALE_STAGING = 3600.0  # seconds: older staging dirs are leftovers of a crashed import


class ImagePullError(runtime.ImagePullError):
    """The image could not be made available; ``reason`` is the container's waiting reason."""

    reason = "ErrImagePull"


class ImageNeverPullError(ImagePullError):
    reason = "ErrImageNeverPull"


class InvalidImageNameError(ImagePullError):
    reason = "InvalidImageName"


_CONFIG_DEFAULTS: dict[str, Callable[[], Any]] = {
    "Entrypoint": list,
    "Cmd": list,
    "Env": list,
    "WorkingDir": str,
    "User": str,
    "ExposedPorts": dict,
}


@dataclass(frozen=True, slots=True)
class Image:
    ref: ImageRef  # the stored name (normalised: docker.io/library/busybox:latest)
    digest: str  # the manifest digest: what a registry knows the image by
    id: str  # the config digest: the image id docker and crictl show
    layer_dirs: tuple[Path, ...]  # unpacked layers, lower -> upper (overlay lowerdir is the reverse)
    config: dict[str, Any]  # Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts always present
    size: int  # bytes of the layer blobs

    @property
    def repo_digest(self) -> str:
        """``docker.io/library/busybox@sha256:…``: a pod status's ``imageID``."""
        return f"{self.ref.name}@{self.digest}"


class ImageStore:
    """The images of one node. Synchronous methods do file I/O; call them off the event loop if large."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.layers = root / "layers"
        self.tmp = root / "tmp"
        for d in (self.blobs, self.layers, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        layout = root / "oci-layout"
        if not layout.exists():
            _atomic_write(layout, b'{"imageLayoutVersion":"1.0.0"}')
        self._pull_locks: dict[str, asyncio.Lock] = {}
        self._clean_stale_staging()

    # --- reading ---

    def get(self, ref: str | ImageRef) -> Image | None:
        """The image stored under ``ref`` (a digest reference matches any name with that manifest)."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        for name, desc in self._read_index():
            if parsed.digest is not None:
                if desc.digest == parsed.digest and name.name == parsed.name:
                    return self._image(parsed, desc)
            elif name == parsed:
                return self._image(name, desc)
        return None

    def list(self) -> builtins.list[Image]:
        images = []
        for name, desc in self._read_index():
            img = self._image(name, desc)
            if img is not None:
                images.append(img)
        return sorted(images, key=lambda i: str(i.ref))

    def _image(self, name: ImageRef, desc: Descriptor) -> Image | None:
        try:
            manifest = parse_json(self._blob(desc.digest).read_bytes(), f"manifest {desc.digest}")
            config_desc, layers = manifest_parts(manifest, f"manifest {desc.digest}")
            config = parse_json(self._blob(config_desc.digest).read_bytes(), f"config {config_desc.digest}")
        except (OSError, ImageError) as e:
            log.warning("image %s is damaged in the store (%s); ignoring it", name, e)
            return None
        diff_ids = [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
        layer_dirs = tuple(self.layers / digest_hex(d) for d in diff_ids)
        inner = dict(config.get("config") or {})
        for key, default in _CONFIG_DEFAULTS.items():
            if inner.get(key) is None:
                inner[key] = default()
        return Image(name, desc.digest, config_desc.digest, layer_dirs, inner, sum(d.size for d in layers))

    def _blob(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def _read_index(self) -> builtins.list[tuple[ImageRef, Descriptor]]:
        path = self.root / "index.json"
        if not path.exists():
            return []
        index = parse_json(path.read_bytes(), str(path))
        out = []
        for raw in index.get("manifests") or []:
            desc = Descriptor.from_json(raw, str(path))
            with contextlib.suppress(InvalidReferenceError):
                out.append((parse_ref(desc.annotations.get(REF_NAME, "")), desc))
        return out

    def _write_index(self, entries: Sequence[tuple[ImageRef, Descriptor]]) -> None:
        manifests = []
        for name, desc in sorted(entries, key=lambda e: str(e[0])):
            manifests.append(Descriptor(desc.media_type, desc.digest, desc.size, {REF_NAME: str(name)}).to_json())
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        _atomic_write(self.root / "index.json", json.dumps(index, indent=1, sort_keys=True).encode())

    # --- importing ---

    def import_archive(self, path: Path) -> builtins.list[ImageRef]:
        """Import every image of an OCI layout (dir or tar) or docker-save tarball; returns their names.

        All or nothing: any digest mismatch, unsafe layer entry or format error raises an
        :class:`~kubelite.images.errors.ImageError` and leaves the store unchanged.
        """
        with ImageArchive(path) as archive:
            unnamed = [img.manifest_digest for img in archive.images if not img.names]
            if unnamed:
                raise ImageError(f"{path}: image {unnamed[0]} has no name (no ref annotation or RepoTags)")
            with self._staging() as st:
                staged = [self._stage(st, img, archive.copy_blob) for img in archive.images]
                names = [(n, desc) for img, desc in zip(archive.images, staged, strict=True) for n in img.names]
                self._commit(st, names)
        return [n for n, _ in names]

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        st = Path(tempfile.mkdtemp(prefix="import-", dir=self.tmp))
        try:
            (st / "blobs").mkdir()
            (st / "layers").mkdir()
            yield st
        finally:
            shutil.rmtree(st, ignore_errors=True)

    def _stage(
        self, st: Path, img: ArchiveImage, fetch: Callable[[Descriptor, Path, str], None]
    ) -> Descriptor:
        """Verify and unpack what the store lacks of ``img`` into ``st``; returns its manifest descriptor.

        ``fetch(desc, dest, what)`` must write the verified blob to ``dest``; it is called only for
        blobs neither in the store nor already staged (a pull downloads into the staging dir first).
        """

        def blob(desc: Descriptor, what: str) -> Path:
            stored = self._blob(desc.digest)
            if stored.exists():
                return stored
            staged = st / "blobs" / digest_hex(desc.digest)
            if not staged.exists():
                fetch(desc, staged, what)
            return staged

        config = parse_json(blob(img.config, "config").read_bytes(), f"config {img.config.digest}")
        diff_ids = [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
        if len(diff_ids) != len(img.layers):
            raise ImageError(
                f"image {img.manifest_digest}: {len(img.layers)} layers but its config lists {len(diff_ids)} diff_ids"
            )
        done: builtins.list[Path] = []
        for i, (desc, diff_id) in enumerate(zip(img.layers, diff_ids, strict=True)):
            hexname = digest_hex(diff_id)
            target = self.layers / hexname
            if not target.exists():
                target = st / "layers" / hexname
                if not target.exists():
                    layer_blob = blob(desc, "layer")
                    work = st / "layers" / f".unpack-{hexname}"
                    work.mkdir()
                    unpack_layer(
                        layer_blob,
                        work,
                        expected_diff_id=diff_id,
                        lowers=done[::-1],
                        what=f"layer {i + 1}/{len(img.layers)} {desc.digest}",
                    )
                    work.rename(target)
            blob(desc, "layer")  # keep the blob too: a push or export needs it
            done.append(target)
        manifest_path = st / "blobs" / digest_hex(img.manifest_digest)
        manifest_path.write_bytes(img.manifest)
        return Descriptor(img.media_type, img.manifest_digest, len(img.manifest))

    def _commit(self, st: Path, names: Sequence[tuple[ImageRef, Descriptor]]) -> None:
        """Move staged content into place, then tag: readers never see a tag without its content."""
        with self._lock():
            for f in (st / "blobs").iterdir():
                os.replace(f, self.blobs / f.name)
            for d in (st / "layers").iterdir():
                if d.name.startswith("."):
                    continue
                try:
                    d.rename(self.layers / d.name)
                except OSError:
                    if not (self.layers / d.name).is_dir():
                        raise
                    # another import committed the same layer first: same diff_id, same content
            entries = {str(n): (n, desc) for n, desc in self._read_index()}
            for n, desc in names:
                entries[str(n)] = (n, desc)
            self._write_index(list(entries.values()))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.root / "lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _clean_stale_staging(self) -> None:
        now = time.time()
        for d in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if now - d.stat().st_mtime > _STALE_STAGING:
                    shutil.rmtree(d, ignore_errors=True)

    # --- removing ---

    def remove(self, ref: str | ImageRef) -> bool:
        """Untag ``ref`` and delete blobs and layers no remaining image uses. False if it was absent.

        The caller makes sure no container still runs from it (its layers are its rootfs).
        """
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        with self._lock():
            entries = self._read_index()

            def matches(n: ImageRef, desc: Descriptor) -> bool:
                if parsed.digest is not None:
                    return desc.digest == parsed.digest and n.name == parsed.name
                return n == parsed

            keep = [(n, d) for n, d in entries if not matches(n, d)]
            if len(keep) == len(entries):
                return False
            self._write_index(keep)
            self._collect_garbage(keep)
        return True

    def _collect_garbage(self, keep: Sequence[tuple[ImageRef, Descriptor]]) -> None:
        blobs: set[str] = set()
        layers: set[str] = set()
        for _, desc in keep:
            blobs.add(digest_hex(desc.digest))
            manifest = parse_json(self._blob(desc.digest).read_bytes(), desc.digest)
            config_desc, layer_descs = manifest_parts(manifest, desc.digest)
            blobs.update(digest_hex(d.digest) for d in (config_desc, *layer_descs))
            config = parse_json(self._blob(config_desc.digest).read_bytes(), config_desc.digest)
            layers.update(digest_hex(str(d)) for d in (config.get("rootfs") or {}).get("diff_ids") or [])
        for f in self.blobs.iterdir():
            if f.name not in blobs:
                f.unlink(missing_ok=True)
        for d in self.layers.iterdir():
            if d.name not in layers:
                shutil.rmtree(d, ignore_errors=True)

    # --- pulling ---

    async def ensure(
        self, ref: str, pull_policy: str = "IfNotPresent", registries: Sequence[str] = ()
    ) -> Image:
        """The image for a container, pulled if the policy says so; raises :class:`ImagePullError`.

        ``registries`` (``host:port``) serve docker.io names as mirrors, tried in order; a name with
        its own host (``registry.local:5000/app:1``) is pulled from that host only. docker.io itself
        is never contacted. ``Always`` falls back to a local copy when no registry has the image:
        images imported by hand on an offline cluster stay usable (kubelet would fail instead).
        """
        if pull_policy not in PULL_POLICIES:
            raise ValueError(f"unknown pull policy {pull_policy!r} (want one of {', '.join(PULL_POLICIES)})")
        try:
            parsed = parse_ref(ref)
        except InvalidReferenceError as e:
            raise InvalidImageNameError(f'failed to parse image reference "{ref}": {e}') from None
        local = await asyncio.to_thread(self.get, parsed)
        if pull_policy == "Never":
            if local is None:
                raise ImageNeverPullError(f'container image "{ref}" is not present with pull policy of Never')
            return local
        if pull_policy == "IfNotPresent" and local is not None:
            return local
        lock = self._pull_locks.setdefault(str(parsed), asyncio.Lock())
        async with lock:  # two pods starting with one image: one pull
            if pull_policy == "IfNotPresent" and (again := await asyncio.to_thread(self.get, parsed)):
                return again
            try:
                return await self.pull(parsed, registries, display=ref)
            except ImagePullError:
                if local is not None:
                    log.warning("pull of %s failed; using the local copy %s", ref, local.digest)
                    return local
                raise

    async def pull(self, ref: ImageRef, registries: Sequence[str], display: str | None = None) -> Image:
        """Pull ``ref`` from the first registry that has it; raises :class:`ImagePullError`."""
        shown = display or ref.familiar
        hosts = list(registries) if ref.registry == DEFAULT_REGISTRY else [ref.registry]
        tried: builtins.list[str] = []
        missing = True  # every registry answered "not found" (or there are none)
        for host in hosts:
            try:
                return await self._pull_from(host, ref)
            except RegistryNotFoundError:
                tried.append(f"{host}: not found")
            except (ImageError, aiohttp.ClientError, OSError, TimeoutError) as e:
                # unreachable, corrupt, malformed: try the next one, and report them all
                missing = False
                tried.append(" ".join(str(e).split()) or type(e).__name__)
        detail = f" (tried {'; '.join(tried)})" if tried else " (no registries configured)"
        if missing:
            raise ImagePullError(f'image "{shown}" not found in the local store and no registry has it{detail}')
        raise ImagePullError(f'failed to pull image "{shown}"{detail}')

    async def _pull_from(self, host: str, ref: ImageRef) -> Image:
        async with RegistryClient(host) as client:
            m = await client.resolve(ref.repository, ref.digest or ref.tag or "latest")
            manifest = parse_json(m.data, f"manifest {m.digest}")
            config, layers = manifest_parts(manifest, f"manifest {m.digest}")
            img = ArchiveImage([ref], m.data, m.digest, m.media_type, config, layers)
            with self._staging() as st:
                for desc in (config, *layers):  # download what the store lacks, then stage as an import
                    dest = st / "blobs" / digest_hex(desc.digest)
                    if not self._blob(desc.digest).exists() and not dest.exists():
                        await client.download_blob(ref.repository, desc, dest)

                def no_fetch(desc: Descriptor, dest: Path, what: str) -> None:
                    raise ImageError(f"{what} {desc.digest} was not downloaded")

                staged = await asyncio.to_thread(self._stage, st, img, no_fetch)
                await asyncio.to_thread(self._commit, st, [(ref, staged)])
        image = await asyncio.to_thread(self.get, ref)
        if image is None:
            raise ImagePullError(f"image {ref} vanished from the store right after its pull")
        log.info("pulled %s (%s) from %s", ref, m.digest, host)
        return image


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
