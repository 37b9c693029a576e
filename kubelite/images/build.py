"""``kubelite image build``: tiny images made from what this machine has, no registry needed.

``busybox``: the static busybox of Debian's busybox-static package, a symlink per applet in /bin,
/etc/passwd and /etc/group, /tmp and /root, ``Cmd ["sh"]``. Deterministic (sorted entries, mtime 0,
owner root, gzip without a timestamp), so the same busybox binary always gives the same digest.

``busybox-openssl``: the same plus a second layer with this machine's ``/usr/bin/openssl`` and the
shared libraries it loads (its ``ldd`` closure, at the same paths): an HTTPS client that verifies
the server, for pods that call the API. busybox's own ``wget`` cannot be that client: its built-in
TLS never checks the certificate and sends no signature_algorithms, so a TLS 1.2 server has to sign
with SHA-1, which OpenSSL 3 refuses at any security level above 0 (the API server's handshake fails).
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubelite.images.errors import ImageError
from kubelite.images.oci import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    fixed_tarinfo,
    host_platform,
    sha256_digest,
    write_oci_archive,
)
from kubelite.images.reference import ImageRef, parse_ref

__all__ = ["BUILDERS", "BuiltImage", "build_busybox", "build_image"]

BUSYBOX = Path("/bin/busybox")
OPENSSL = Path("/usr/bin/openssl")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class BuiltImage:
    ref: ImageRef
    manifest: Descriptor
    blobs: dict[str, bytes]  # digest -> content: manifest, config, layers

    def write(self, dest: Path) -> None:
        """Write it as an OCI image layout tar."""
        write_oci_archive(dest, [(self.ref, self.manifest)], self.blobs)


def build_busybox(tag: str = "busybox:latest", busybox: Path = BUSYBOX) -> BuiltImage:
    return assemble(parse_ref(tag), [_busybox_layer(busybox)], {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}, "busybox rootfs")


def _busybox_layer(busybox: Path) -> bytes:
    if not busybox.is_file():
        raise ImageError(f"{busybox} not found: install the busybox-static package")
    binary = busybox.read_bytes()
    if _dynamically_linked(binary):
        raise ImageError(f"{busybox} is dynamically linked: install busybox-static (the image has no libc)")
    return _busybox_rootfs(binary, _applets(busybox))


def assemble(ref: ImageRef, layer_tars: list[bytes], config: dict[str, object], created_by: str) -> BuiltImage:
    """An OCI image from uncompressed layer tars (lower first) and the image config's ``config``."""
    os_name, arch = host_platform()
    layers = [gzip.compress(t, compresslevel=6, mtime=0) for t in layer_tars]
    image_config = {
        "architecture": arch,
        "os": os_name,
        "created": _EPOCH,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(t) for t in layer_tars]},
        "history": [{"created": _EPOCH, "created_by": created_by}],
    }
    config_bytes = json.dumps(image_config, separators=(",", ":"), sort_keys=True).encode()
    blobs = {sha256_digest(b): b for b in (config_bytes, *layers)}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor(OCI_CONFIG, sha256_digest(config_bytes), len(config_bytes)).to_json(),
        "layers": [Descriptor(OCI_LAYER_GZIP, sha256_digest(b), len(b)).to_json() for b in layers],
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    digest = sha256_digest(manifest_bytes)
    blobs[digest] = manifest_bytes
    return BuiltImage(ref, Descriptor(OCI_MANIFEST, digest, len(manifest_bytes)), blobs)


def _dynamically_linked(elf: bytes) -> bool:
    """True if the ELF has a PT_INTERP program header (it needs a dynamic loader)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:  # 64-bit only: Debian's amd64/arm64 busybox
        return False
    endian = "<" if elf[5] == 1 else ">"
    phoff = struct.unpack_from(endian + "Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from(endian + "HH", elf, 0x36)
    return any(struct.unpack_from(endian + "I", elf, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def _applets(busybox: Path) -> list[str]:
    try:
        out = subprocess.run([str(busybox), "--list"], capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise ImageError(f"{busybox} --list failed: {e}") from None
    names = {n for n in out.decode().split() if n and "/" not in n and n != "busybox"}
    return sorted(names)


def _busybox_rootfs(binary: bytes, applets: list[str]) -> bytes:
    passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (fixed_tarinfo("bin", tarfile.DIRTYPE, 0o755), None),
        (fixed_tarinfo("etc", tarfile.DIRTYPE, 0o755), None),
        (fixed_tarinfo("root", tarfile.DIRTYPE, 0o700), None),
        (fixed_tarinfo("tmp", tarfile.DIRTYPE, 0o1777), None),
        (fixed_tarinfo("bin/busybox", tarfile.REGTYPE, 0o755), binary),
        (fixed_tarinfo("etc/passwd", tarfile.REGTYPE, 0o644), passwd),
        (fixed_tarinfo("etc/group", tarfile.REGTYPE, 0o644), b"root:x:0:\nnobody:x:65534:\n"),
    ]
    for applet in applets:
        link = fixed_tarinfo(f"bin/{applet}", tarfile.SYMTYPE, 0o777)
        link.linkname = "busybox"
        entries.append((link, None))
    return _tar(entries)


def build_busybox_openssl(
    tag: str = "busybox-openssl:latest", busybox: Path = BUSYBOX, openssl: Path = OPENSSL
) -> BuiltImage:
    if not openssl.is_file():
        raise ImageError(f"{openssl} not found: install the openssl package")
    files = {str(openssl): openssl.read_bytes()}
    for lib in _shared_libraries(openssl):
        files[lib] = Path(lib).read_bytes()  # a symlink's target, stored under the name the loader asks for
    layers = [_busybox_layer(busybox), _files_layer(files)]
    return assemble(parse_ref(tag), layers, {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}, "busybox rootfs + openssl")


def _shared_libraries(binary: Path) -> list[str]:
    """Absolute paths of every shared object ``binary`` loads, its dynamic loader included (ldd)."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, check=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise ImageError(f"ldd {binary} failed: {e}") from None
    libs: list[str] = []
    for line in out.splitlines():
        # "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0] if words else ""
        if path.startswith("/"):
            libs.append(path)
        elif "=>" in words and "not found" in line:
            raise ImageError(f"{binary}: {line.strip()}")
    return sorted(set(libs))


def _files_layer(files: dict[str, bytes]) -> bytes:
    """A layer tar holding ``files`` (absolute path -> content, mode 0755) and their parent directories."""
    dirs = {str(parent) for path in files for parent in Path(path.lstrip("/")).parents if str(parent) != "."}
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [(fixed_tarinfo(d, tarfile.DIRTYPE, 0o755), None) for d in dirs]
    entries += [(fixed_tarinfo(path.lstrip("/"), tarfile.REGTYPE, 0o755), data) for path, data in files.items()]
    return _tar(entries)


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in sorted(entries, key=lambda e: e[0].name):  # a directory sorts before its entries
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


BUILDERS: dict[str, Callable[[str], BuiltImage]] = {"busybox": build_busybox, "busybox-openssl": build_busybox_openssl}


def build_image(name: str, tag: str | None = None) -> BuiltImage:
    """Build the image ``name`` (one of :data:`BUILDERS`), named ``tag`` (default ``<name>:latest``)."""
    builder = BUILDERS.get(name)
    if builder is None:
        raise ImageError(f"unknown image {name!r}: kubelite can build {', '.join(sorted(BUILDERS))}")
    return builder(tag or f"{name}:latest")
