"""The node image: an mmdebstrap rootfs built once from this machine's own Debian mirror, then cached.

The mirror comes from the controlling machine's apt sources (``/etc/apt/sources.list`` and
``/etc/apt/sources.list.d``), so the project never names a registry host: a machine that can
``apt-get install`` can build the image, and nodes need no network of their own. The cache key is
the package list, the sources and the hook script, so changing any of them builds a new image.

Every machine shares the cached rootfs read-only (the lower layer of an overlay); per-node
identity (machine-id, SSH host keys, network file) is written into the node's own upper layer.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubelite.provision.errors import ProvisionError

__all__ = ["DOCKER_PACKAGES", "IMAGE_PACKAGES", "AptSource", "NodeImage", "apt_sources", "cache_dir", "ensure_image"]

# The ``docker`` runtime's engine. Every image has it, disabled at boot (the deploy enables it on nodes
# of ``runtime: docker`` only): one image serves every runtime, so a machine that runs clusters of both
# (CI does) builds and caches one image, not two. Measured here: +7 s of build (43 -> 50 s) and
# +240 MB of rootfs (247 -> 488 MB), once; a second, docker-only image would cost a whole build.
DOCKER_PACKAGES = ["docker.io", "containerd"]

# OS packages baked into the image: nodes install nothing from the network.
IMAGE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-venv", "iproute2",
    "iptables", "runc", "busybox-static", "ca-certificates", "kmod", "procps", "docker-registry",
    "etcd-server", "etcd-client",  # the masters' datastore when masters > 1 (deploy/etcd.py runs its own unit)
    *DOCKER_PACKAGES,
]  # fmt: skip

# Runs inside mmdebstrap's customize stage ($1 is the rootfs). Host keys and machine-id are removed so
# no two nodes share them; services a node should not start by itself are disabled.
_CUSTOMIZE = r"""
set -e
root="$1"
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
chroot "$root" systemctl enable systemd-networkd ssh
chroot "$root" systemctl disable docker-registry || true
chroot "$root" systemctl disable docker.service docker.socket containerd.service || true
chroot "$root" systemctl disable etcd.service || true
chroot "$root" systemctl mask systemd-resolved.service apt-daily.timer apt-daily-upgrade.timer || true
mkdir -p "$root/root/.ssh" && chmod 700 "$root/root/.ssh"
printf 'PermitRootLogin prohibit-password\nUseDNS no\n' > "$root/etc/ssh/sshd_config.d/kubelite.conf"
"""


class ImageError(ProvisionError):
    """The image could not be built (mmdebstrap missing or failing, no usable apt source)."""


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""

    def one_line(self, suite: str) -> str:
        opts = f"[signed-by={self.signed_by}] " if self.signed_by else ""
        return f"deb {opts}{self.uri} {suite} {' '.join(self.components)}"


def _os_codename(root: Path = Path("/")) -> str:
    try:
        text = (root / "etc/os-release").read_text()
    except OSError:
        return ""
    m = re.search(r"^VERSION_CODENAME=\"?([^\"\n]+)", text, re.M)
    return m.group(1) if m else ""


def _parse_one_line(text: str) -> list[AptSource]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        signed_by = ""
        m = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        rest = line[4:].strip()
        if m:
            for opt in m.group(1).split():
                if opt.startswith("signed-by="):
                    signed_by = opt.split("=", 1)[1]
            rest = m.group(2)
        parts = rest.split()
        if len(parts) >= 3:
            out.append(AptSource(parts[0], (parts[1],), tuple(parts[2:]), signed_by))
    return out


def _parse_deb822(text: str) -> list[AptSource]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0].isspace() and key:
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                 tuple(fields.get("components", "main").split()), fields.get("signed-by", "")))  # fmt: skip
    return out


def apt_sources(etc_apt: Path = Path("/etc/apt"), codename: str | None = None) -> list[AptSource]:
    """The enabled Debian sources of this machine for its own release (third-party repos left out)."""
    codename = _os_codename() if codename is None else codename
    found: list[AptSource] = []
    legacy = etc_apt / "sources.list"
    if legacy.is_file():
        found += _parse_one_line(legacy.read_text())
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.suffix == ".list":
                found += _parse_one_line(f.read_text())
            elif f.suffix == ".sources":
                found += _parse_deb822(f.read_text())
    if codename:
        # Only suites of this release (bookworm, bookworm-updates, bookworm-security): a vendor repo
        # such as "nodistro" or "cloud-sdk-bookworm" has nothing the image needs.
        found = [
            AptSource(s.uri, tuple(x for x in s.suites if x == codename or x.startswith(codename + "-")),
                      s.components, s.signed_by)
            for s in found
        ]  # fmt: skip
        found = [s for s in found if s.suites]
    return found


def cache_dir() -> Path:
    """``$KUBELITE_CACHE_DIR``, else ``.cache/`` of the checkout kubelite runs from, else ~/.cache/kubelite."""
    env = os.environ.get("KUBELITE_CACHE_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".cache"
    return Path.home() / ".cache" / "kubelite"


@dataclass(frozen=True)
class NodeImage:
    rootfs: Path
    key: str
    built: bool  # False when it came from the cache


def image_key(sources: list[AptSource], packages: list[str]) -> str:
    h = hashlib.sha256()
    for s in sources:
        h.update(repr(s).encode())
    h.update(" ".join(packages).encode())
    h.update(_CUSTOMIZE.encode())
    return h.hexdigest()[:16]


def ensure_image(packages: list[str] | None = None, cache: Path | None = None) -> NodeImage:
    """The cached rootfs for these packages, built with mmdebstrap when missing."""
    packages = sorted(set(packages or IMAGE_PACKAGES))
    sources = apt_sources()
    if not sources:
        raise ImageError("no enabled Debian source found in /etc/apt/sources.list(.d) to build the node image from")
    key = image_key(sources, packages)
    base = (cache or cache_dir()) / "images"
    rootfs = base / f"nspawn-{key}"
    if (rootfs / "etc/os-release").is_file():
        return NodeImage(rootfs, key, built=False)
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".nspawn-{key}.building"
    if tmp.exists():
        shutil.rmtree(tmp)
    suite = sources[0].suites[0]
    mirrors = [s.one_line(x) for s in sources for x in s.suites]
    cmd = [
        "mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
        f"--include={','.join(packages)}",
        "--aptopt=Acquire::Retries \"3\"",
        *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale")),
        f"--customize-hook={_CUSTOMIZE}",
        suite, str(tmp), *mirrors,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ImageError(f"mmdebstrap failed (exit {proc.returncode}):\n{tail}")
    tmp.rename(rootfs)  # atomic: a half-built image is never taken from the cache
    return NodeImage(rootfs, key, built=True)
