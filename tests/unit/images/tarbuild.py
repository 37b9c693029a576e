"""Hand-built layer tars and archives for the image tests (no image tool involved)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Entry:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    devmajor: int = 0
    devminor: int = 0


# One-letter constructors: a layer reads like a table of entries.
def F(name: str, data: bytes = b"", mode: int = 0o644) -> Entry:
    return Entry(name, tarfile.REGTYPE, data, mode)


def D(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, tarfile.DIRTYPE, mode=mode)


def S(name: str, target: str) -> Entry:
    return Entry(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def H(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target)


def layer_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.linkname, info.mtime = e.kind, e.mode, e.linkname, 1_000_000
            info.uid, info.gid, info.devmajor, info.devminor = e.uid, e.gid, e.devmajor, e.devminor
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def docker_save(dest: Path, tag: str, layers: list[bytes], cmd: list[str]) -> str:
    """A ``docker save`` tarball of the legacy format: manifest.json, <hex>.json, <id>/layer.tar."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/w", "ExposedPorts": {"80/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]},
        }
    ).encode()
    config_name = sha(config).removeprefix("sha256:") + ".json"
    layer_names = [f"{sha(t).removeprefix('sha256:')[:16]}/layer.tar" for t in layers]
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]
    with tarfile.open(dest, "w") as tar:
        files = [("manifest.json", json.dumps(manifest).encode()), (config_name, config)]
        for name, data in [*files, *zip(layer_names, layers, strict=True)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sha(config)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)
