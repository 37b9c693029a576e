"""OCI image content: descriptors and digests, image archives, and layer unpacking.

Three things live here, all synchronous and free of any store or network concern:

* :class:`ImageArchive` reads an OCI image layout (a directory or a tar of one) or a ``docker save``
  tarball (``manifest.json`` + layer tars; newer Docker adds an OCI layout beside it) and hands out
  each image's manifest and its blobs, every byte verified against its digest;
* :func:`write_oci_archive` writes an OCI layout tar deterministically (sorted entries, fixed mtimes);
* :func:`unpack_layer` applies one layer tar to its own directory in the overlayfs format (a whiteout
  is a 0/0 character device, an opaque directory carries ``trusted.overlay.opaque=y``), so layer
  directories stack as overlay ``lowerdir``\\ s; :func:`merge_layers` flattens such a stack into one
  rootfs where overlayfs is not available.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from kubelite.images.errors import (
    ArchiveFormatError,
    DigestMismatchError,
    InvalidReferenceError,
    UnsafeLayerError,
)
from kubelite.images.reference import ImageRef, parse_ref

__all__ = [
    "CONTAINERD_NAME",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "REF_NAME",
    "ArchiveImage",
    "Descriptor",
    "ImageArchive",
    "digest_hex",
    "fixed_tarinfo",
    "host_platform",
    "manifest_parts",
    "merge_layers",
    "parse_json",
    "select_platform",
    "sha256_digest",
    "unpack_layer",
    "verify",
    "write_oci_archive",
]

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

REF_NAME = "org.opencontainers.image.ref.name"  # by the spec a tag; some tools put a full name here
CONTAINERD_NAME = "io.containerd.image.name"  # the full name (containerd, Docker >= 25)
OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_hex(digest: str) -> str:
    """The hex part of ``sha256:<hex>``; refuses anything else (it becomes a file name)."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ArchiveFormatError(f"unsupported or malformed digest {digest!r}")
    return hexpart


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, d: Any, where: str) -> Descriptor:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not isinstance(d.get("size"), int):
            raise ArchiveFormatError(f"{where}: malformed descriptor {d!r}")
        digest_hex(d["digest"])
        return cls(
            media_type=str(d.get("mediaType", "")),
            digest=d["digest"],
            size=d["size"],
            annotations=dict(d.get("annotations") or {}),
            platform=d.get("platform"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform
        return out


def verify(what: str, data: bytes, desc: Descriptor) -> None:
    actual = sha256_digest(data)
    if actual != desc.digest:
        raise DigestMismatchError(what, desc.digest, actual)
    if len(data) != desc.size:
        raise DigestMismatchError(f"{what} (size {len(data)}, expected {desc.size})", desc.digest, actual)


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise ArchiveFormatError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ArchiveFormatError(f"{what} is not a JSON object")
    return obj


def manifest_parts(manifest: dict[str, Any], what: str) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of an image manifest."""
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise ArchiveFormatError(f"{what} has no layers list")
    config = Descriptor.from_json(manifest.get("config"), f"{what} config")
    return config, [Descriptor.from_json(layer, f"{what} layer") for layer in layers]


def host_platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    return "linux", arch


def select_platform(index: dict[str, Any], what: str) -> Descriptor:
    """The manifest for this host (linux/amd64 here) from an image index or manifest list."""
    want_os, want_arch = host_platform()
    seen: list[str] = []
    for raw in index.get("manifests") or []:
        desc = Descriptor.from_json(raw, what)
        plat = desc.platform or {}
        seen.append(f"{plat.get('os', '?')}/{plat.get('architecture', '?')}")
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            return desc
    raise ArchiveFormatError(f"{what} has no {want_os}/{want_arch} image (has: {', '.join(seen) or 'none'})")


# ---------------------------------------------------------------------------------------------
# archives


class _Files:
    """Read access by relative path to a directory or a tar file (plain or compressed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if path.is_dir():
            return
        try:
            self._tar = tarfile.open(path, "r:*")
            for m in self._tar.getmembers():
                self._members[_clean(m.name)] = m
        except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as e:
            if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError):
                raise
            # tarfile's "r:*" lists every method it tried, over several lines: keep the gist.
            detail = " ".join(str(e).split()) if not isinstance(e, tarfile.ReadError) else "not a tar file"
            raise ArchiveFormatError(
                f"{path}: neither an OCI image layout nor a docker save archive ({detail})"
            ) from None

    def exists(self, rel: str) -> bool:
        if self._tar is None:
            return (self.path / rel).is_file()
        m = self._members.get(rel)
        return m is not None and m.isfile()

    @contextlib.contextmanager
    def open(self, rel: str) -> Iterator[IO[bytes]]:
        if self._tar is None:
            target = self.path / rel
            if not target.is_file():
                raise ArchiveFormatError(f"{self.path}: {rel} is missing")
            with target.open("rb") as f:
                yield f
            return
        m = self._members.get(rel)
        member = self._tar.extractfile(m) if m is not None and m.isfile() else None
        if member is None:
            raise ArchiveFormatError(f"{self.path}: {rel} is missing")
        with member:
            yield member

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            return f.read()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


@dataclass(slots=True)
class ArchiveImage:
    """One image found in an archive: its names, its manifest (raw bytes, as its digest covers them)."""

    names: list[ImageRef]
    manifest: bytes
    manifest_digest: str
    media_type: str
    config: Descriptor
    layers: list[Descriptor]


class ImageArchive:
    """An OCI image layout (directory or tar) or a docker-save tarball, opened for reading.

    Manifests and configs are verified when the archive is opened; layer blobs when copied out
    (:meth:`copy_blob`). Use as a context manager.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files = _Files(path)
        self._blob_paths: dict[str, str] = {}  # digest -> member path, for docker-save layer tars
        try:
            if self._files.exists("oci-layout") and self._files.exists("index.json"):
                self.format = "oci"
                self.images = self._read_oci()
            elif self._files.exists("manifest.json"):
                self.format = "docker"
                self.images = self._read_docker_save()
            else:
                raise ArchiveFormatError(
                    f"{path}: neither an OCI image layout (oci-layout, index.json) "
                    "nor a docker save archive (manifest.json)"
                )
        except BaseException:
            self._files.close()
            raise

    def __enter__(self) -> ImageArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._files.close()

    def _member(self, digest: str) -> str:
        return self._blob_paths.get(digest) or f"blobs/sha256/{digest_hex(digest)}"

    def read_blob(self, desc: Descriptor, what: str) -> bytes:
        """A small blob (manifest, config, index), verified."""
        member = self._member(desc.digest)
        if not self._files.exists(member):
            raise ArchiveFormatError(f"{self.path}: {what} blob {desc.digest} is missing")
        data = self._files.read(member)
        verify(f"{what} {desc.digest}", data, desc)
        return data

    def copy_blob(self, desc: Descriptor, dest: Path, what: str = "blob") -> None:
        """Copy a blob to ``dest`` verifying its digest and size; ``dest`` is removed on a mismatch."""
        member = self._member(desc.digest)
        if not self._files.exists(member):
            raise ArchiveFormatError(f"{self.path}: {what} {desc.digest} is missing")
        h, size = hashlib.sha256(), 0
        try:
            with self._files.open(member) as src, dest.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            actual = "sha256:" + h.hexdigest()
            if actual != desc.digest:
                raise DigestMismatchError(f"{what} {desc.digest} in {self.path}", desc.digest, actual)
            if size != desc.size:
                raise DigestMismatchError(
                    f"{what} {desc.digest} in {self.path} (size {size}, expected {desc.size})", desc.digest, actual
                )
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    # --- OCI image layout ---

    def _read_oci(self) -> list[ArchiveImage]:
        layout = parse_json(self._files.read("oci-layout"), "oci-layout")
        if not str(layout.get("imageLayoutVersion", "")).startswith("1."):
            raise ArchiveFormatError(f"{self.path}: unsupported imageLayoutVersion {layout.get('imageLayoutVersion')!r}")
        index = parse_json(self._files.read("index.json"), "index.json")
        docker_tags = self._docker_repo_tags()
        images: list[ArchiveImage] = []
        for raw in index.get("manifests") or []:
            top = Descriptor.from_json(raw, "index.json")
            desc = top
            if desc.media_type in INDEX_TYPES:
                nested = parse_json(self.read_blob(desc, "image index"), f"image index {desc.digest}")
                desc = select_platform(nested, f"image index {desc.digest}")
            if desc.media_type not in MANIFEST_TYPES:
                raise ArchiveFormatError(f"{self.path}: unsupported manifest media type {desc.media_type!r}")
            data = self.read_blob(desc, "manifest")
            manifest = parse_json(data, f"manifest {desc.digest}")
            config, layers = manifest_parts(manifest, f"manifest {desc.digest}")
            names = self._oci_names(top.annotations, docker_tags.get(config.digest, []))
            images.append(ArchiveImage(names, data, desc.digest, desc.media_type, config, layers))
        if not images:
            raise ArchiveFormatError(f"{self.path}: the OCI layout's index.json lists no images")
        return images

    def _docker_repo_tags(self) -> dict[str, list[str]]:
        """Config digest -> RepoTags from a manifest.json beside the layout (Docker >= 25 writes both)."""
        if not self._files.exists("manifest.json"):
            return {}
        try:
            entries = json.loads(self._files.read("manifest.json"))
        except ValueError:
            return {}
        out: dict[str, list[str]] = {}
        for e in entries if isinstance(entries, list) else []:
            cfg = str(e.get("Config", "")) if isinstance(e, dict) else ""
            if cfg.startswith("blobs/sha256/"):
                out["sha256:" + cfg.rsplit("/", 1)[1]] = [str(t) for t in e.get("RepoTags") or []]
        return out

    def _oci_names(self, annotations: dict[str, str], repo_tags: list[str]) -> list[ImageRef]:
        full = annotations.get(CONTAINERD_NAME)
        ref_name = annotations.get(REF_NAME, "")
        if not full and any(c in ref_name for c in ":/@"):
            full = ref_name  # a full reference rather than the spec's bare tag
        candidates = [full] if full else repo_tags
        try:
            return [parse_ref(c) for c in candidates]
        except InvalidReferenceError as e:
            raise ArchiveFormatError(f"{self.path}: bad image name: {e}") from None

    # --- docker save ---

    def _read_docker_save(self) -> list[ArchiveImage]:
        try:
            entries = json.loads(self._files.read("manifest.json"))
        except ValueError as e:
            raise ArchiveFormatError(f"{self.path}: manifest.json is not valid JSON: {e}") from None
        if not isinstance(entries, list) or not entries:
            raise ArchiveFormatError(f"{self.path}: manifest.json lists no images")
        images: list[ArchiveImage] = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise ArchiveFormatError(f"{self.path}: malformed manifest.json entry {entry!r}")
            config_path = _clean(entry["Config"])
            config_bytes = self._files.read(config_path)
            config_digest = sha256_digest(config_bytes)
            # The config's file name is its digest: the only integrity check the format carries for it.
            stem = PurePosixPath(config_path).name.removesuffix(".json")
            if len(stem) == 64 and "sha256:" + stem != config_digest:
                raise DigestMismatchError(f"image config {config_path} in {self.path}", "sha256:" + stem, config_digest)
            config = parse_json(config_bytes, f"image config {config_path}")
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            layer_paths = [_clean(str(p)) for p in entry.get("Layers") or []]
            if len(diff_ids) != len(layer_paths):
                raise ArchiveFormatError(
                    f"{self.path}: {len(layer_paths)} layers but the config lists {len(diff_ids)} diff_ids"
                )
            layers = [self._docker_layer(p, str(d)) for p, d in zip(layer_paths, diff_ids, strict=True)]
            config_desc = Descriptor(DOCKER_CONFIG, config_digest, len(config_bytes))
            self._blob_paths[config_digest] = config_path
            manifest = {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": config_desc.to_json(),
                "layers": [d.to_json() for d in layers],
            }
            data = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
            try:
                names = [parse_ref(str(t)) for t in entry.get("RepoTags") or []]
            except InvalidReferenceError as e:
                raise ArchiveFormatError(f"{self.path}: bad image name: {e}") from None
            images.append(ArchiveImage(names, data, sha256_digest(data), DOCKER_MANIFEST, config_desc, layers))
        return images

    def _docker_layer(self, member: str, diff_id: str) -> Descriptor:
        """Hash a docker-save layer tar; an uncompressed one must hash to its diff_id."""
        h, size = hashlib.sha256(), 0
        with self._files.open(member) as f:
            head = f.read(2)
            h.update(head)
            size += len(head)
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
        digest = "sha256:" + h.hexdigest()
        gzipped = head == b"\x1f\x8b"
        if not gzipped and digest != diff_id:
            raise DigestMismatchError(f"layer {member} in {self.path}", diff_id, digest)
        self._blob_paths[digest] = member
        return Descriptor(DOCKER_LAYER_GZIP if gzipped else DOCKER_LAYER, digest, size)


def write_oci_archive(dest: Path, images: Sequence[tuple[ImageRef, Descriptor]], blobs: dict[str, bytes]) -> None:
    """Write an OCI layout tar holding ``blobs`` and an index naming each manifest descriptor.

    Deterministic: sorted entries, mtime 0, owner root, so equal content gives an equal file.
    Names go in ``io.containerd.image.name`` (full) and ``org.opencontainers.image.ref.name`` (tag),
    as Docker >= 25 writes them, so ctr/skopeo/docker read the names too.
    """
    manifests = []
    for ref, desc in images:
        ann = {CONTAINERD_NAME: str(ref)}
        if ref.tag:
            ann[REF_NAME] = ref.tag
        manifests.append(Descriptor(desc.media_type, desc.digest, desc.size, ann).to_json())
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    files: dict[str, bytes] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index, separators=(",", ":"), sort_keys=True).encode(),
    }
    for digest, data in blobs.items():
        files[f"blobs/sha256/{digest_hex(digest)}"] = data
    tmp = dest.with_name(f".{dest.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            tar.addfile(fixed_tarinfo(d, tarfile.DIRTYPE, 0o755))
        for name in sorted(files):
            data = files[name]
            info = fixed_tarinfo(name, tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, dest)


def fixed_tarinfo(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    """A tar header with nothing machine-specific in it (owner root, mtime 0): reproducible archives."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = kind, mode, 0, 0, 0, "", ""
    return info


# ---------------------------------------------------------------------------------------------
# layers


class _HashingReader(io.RawIOBase):
    """Hashes every byte read through it: the diff_id of the uncompressed layer tar."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> str:
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()


def _is_root() -> bool:
    return os.geteuid() == 0


def _safe_parts(name: str, what: str) -> tuple[str, ...]:
    if name.startswith("/"):
        raise UnsafeLayerError(f"{what}: absolute path {name!r} refused")
    parts = tuple(p for p in PurePosixPath(_clean(name)).parts if p != ".")
    if ".." in parts:
        raise UnsafeLayerError(f"{what}: path {name!r} refused ('..' escapes the layer root)")
    return parts


def _parent(root: Path, parts: tuple[str, ...], what: str, create: bool = True) -> Path:
    """The real directory holding ``parts[-1]`` inside ``root``: never reached through a symlink."""
    cur = root
    for p in parts[:-1]:
        cur = cur / p
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(cur, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeLayerError(f"{what}: {'/'.join(parts)!r} refused (it goes through the symlink {p!r})")
        if not stat.S_ISDIR(st.st_mode):
            if _is_whiteout(cur, st):  # a directory re-created over a whiteout of this layer
                os.unlink(cur)
                os.mkdir(cur, 0o755)
            else:
                raise ArchiveFormatError(f"{what}: {'/'.join(parts)!r}: {p!r} is not a directory")
    return cur


def _is_whiteout(path: Path, st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _open_layer(path: Path) -> IO[bytes]:
    f = path.open("rb")
    magic = f.read(4)
    f.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if magic == b"\x28\xb5\x2f\xfd":
        f.close()
        raise ArchiveFormatError(f"layer {path.name}: zstd-compressed layers are not supported")
    return f


def unpack_layer(
    blob: Path,
    dest: Path,
    *,
    expected_diff_id: str | None = None,
    lowers: Sequence[Path] = (),
    what: str = "layer",
) -> str:
    """Unpack the layer tar ``blob`` (gzip or plain) into the empty directory ``dest``; returns its diff_id.

    Whiteouts become overlayfs whiteouts (as root; otherwise the ``.wh.`` files stay, which
    :func:`merge_layers` also understands). Absolute paths, ``..``, writes through a symlink and
    symlinks or hardlinks that climb out of the root raise :class:`UnsafeLayerError`. ``lowers``
    (upper first) serve hardlinks to files of lower layers, which are copied. A diff_id other than
    ``expected_diff_id`` raises :class:`DigestMismatchError`. On any error ``dest`` is left for the
    caller to delete (it unpacks into a temporary directory).
    """
    root = _is_root()
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    with _open_layer(blob) as raw:
        reader = _HashingReader(raw)
        try:
            tar = tarfile.open(fileobj=reader, mode="r|")
            for m in tar:
                parts = _safe_parts(m.name, what)
                if not parts:
                    dirs.append((dest, m))  # the root itself: only its metadata
                    continue
                parent = _parent(dest, parts, what)
                base = parts[-1]
                if base == OPAQUE_MARKER:
                    _mark_opaque(parent, root)
                    continue
                if base.startswith(WHITEOUT_PREFIX):
                    _whiteout(parent, base[len(WHITEOUT_PREFIX) :], root, what)
                    continue
                path = parent / base
                if m.isdir():
                    if not (path.is_dir() and not path.is_symlink()):
                        _remove(path)
                        os.mkdir(path, 0o755)
                    dirs.append((path, m))
                    continue
                _remove(path)  # a later entry of the same name wins; replaces a whiteout too
                if m.issym():
                    _check_symlink(parts, m.linkname, what)
                    os.symlink(m.linkname, path)
                elif m.islnk():
                    _hardlink(dest, path, m.linkname, lowers, what)
                    continue  # the link shares the target's inode and metadata
                elif m.isreg():
                    src = tar.extractfile(m)
                    assert src is not None
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                elif m.isfifo():
                    os.mkfifo(path, 0o600)
                elif m.ischr() or m.isblk():
                    if not root:
                        log.debug("%s: skipping device %s (not root)", what, m.name)
                        continue
                    kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                    os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
                else:
                    log.debug("%s: skipping %s of unsupported type %r", what, m.name, m.type)
                    continue
                _set_meta(path, m, root)
        except tarfile.TarError as e:
            raise ArchiveFormatError(f"{what}: not a valid tar stream ({e})") from None
        except (EOFError, zlib.error, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, gzip.BadGzipFile) and e.errno is not None:
                raise
            raise ArchiveFormatError(f"{what}: corrupt layer data ({e})") from None
        diff_id = reader.drain()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DigestMismatchError(f"{what} diff_id", expected_diff_id, diff_id)
    for path, m in reversed(dirs):  # deepest first, after their contents: a 0555 dir stays writable till then
        _set_meta(path, m, root)
    return diff_id


def _set_meta(path: Path, m: tarfile.TarInfo, root: bool) -> None:
    if root:
        os.lchown(path, m.uid, m.gid)
    if not m.issym():
        os.chmod(path, m.mode & 0o7777)  # after chown, which clears setuid bits
    os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)


def _check_symlink(parts: tuple[str, ...], target: str, what: str) -> None:
    """Refuse relative symlink targets that climb above the layer root (absolute ones stay inside it)."""
    if target.startswith("/"):
        return
    depth = len(parts) - 1
    for p in PurePosixPath(target).parts:
        if p == "..":
            depth -= 1
            if depth < 0:
                raise UnsafeLayerError(f"{what}: symlink {'/'.join(parts)!r} -> {target!r} escapes the layer root")
        elif p != ".":
            depth += 1


def _hardlink(dest: Path, path: Path, linkname: str, lowers: Sequence[Path], what: str) -> None:
    parts = _safe_parts(linkname, what)
    if not parts:
        raise UnsafeLayerError(f"{what}: hardlink {path.name!r} to the layer root refused")
    for base in (dest, *lowers):
        try:
            target = _parent(base, parts, what, create=False) / parts[-1]
            st = os.lstat(target)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode) or _is_whiteout(target, st):
            continue
        if base == dest:
            os.link(target, path, follow_symlinks=False)
        else:  # a lower layer is shared with other images: copy, never link across layers
            shutil.copy2(target, path, follow_symlinks=False)
            if _is_root():
                os.lchown(path, st.st_uid, st.st_gid)
        return
    raise ArchiveFormatError(f"{what}: hardlink {path.name!r} -> {linkname!r}: target not found")


def _mark_opaque(directory: Path, root: bool) -> None:
    if root:
        with contextlib.suppress(OSError):
            os.setxattr(directory, OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
    (directory / OPAQUE_MARKER).touch()


def _whiteout(parent: Path, name: str, root: bool, what: str) -> None:
    if not name or name in (".", ".."):
        raise UnsafeLayerError(f"{what}: malformed whiteout {WHITEOUT_PREFIX + name!r}")
    target = parent / name
    if os.path.lexists(target):
        return  # the layer has its own entry of that name: it hides the lower one already
    if root:
        with contextlib.suppress(OSError):
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            return
    (parent / (WHITEOUT_PREFIX + name)).touch()


def merge_layers(layer_dirs: Sequence[Path], dest: Path) -> None:
    """Flatten layer directories (lower -> upper) into ``dest`` as overlayfs would show them."""
    dest.mkdir(parents=True, exist_ok=True)
    for layer in layer_dirs:
        links: dict[tuple[int, int], Path] = {}
        _merge_dir(layer, dest, links)


def _merge_dir(src: Path, dst: Path, links: dict[tuple[int, int], Path]) -> None:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    opaque = any(e.name == OPAQUE_MARKER for e in entries)
    with contextlib.suppress(OSError):
        opaque = opaque or os.getxattr(src, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    if opaque:
        for child in list(dst.iterdir()):
            _remove(child)
    for e in entries:  # whiteouts first: they hide lower entries, never this layer's own
        if e.name.startswith(WHITEOUT_PREFIX) and e.name != OPAQUE_MARKER:
            _remove(dst / e.name[len(WHITEOUT_PREFIX) :])
    for e in entries:
        st = e.stat(follow_symlinks=False)
        if e.name.startswith(WHITEOUT_PREFIX):
            continue
        target = dst / e.name
        if _is_whiteout(Path(e.path), st):
            _remove(target)
            continue
        if stat.S_ISDIR(st.st_mode):
            if not (target.is_dir() and not target.is_symlink()):
                _remove(target)
                os.mkdir(target)
            _merge_dir(Path(e.path), target, links)
            shutil.copystat(e.path, target, follow_symlinks=False)
            if _is_root():
                os.lchown(target, st.st_uid, st.st_gid)
            continue
        _remove(target)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            os.link(links[key], target, follow_symlinks=False)
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(e.path), target)
        elif stat.S_ISREG(st.st_mode):
            shutil.copy2(e.path, target, follow_symlinks=False)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(target, stat.S_IMODE(st.st_mode))
        else:
            os.mknod(target, st.st_mode, st.st_rdev)
        if _is_root():
            os.lchown(target, st.st_uid, st.st_gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(target, stat.S_IMODE(st.st_mode))
        links[key] = target
