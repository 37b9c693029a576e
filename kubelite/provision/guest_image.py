"""The VM guest image: the node image plus a kernel, as a compressed qcow2 with kernel and initrd beside it.

Built offline from this machine's own Debian mirror by the same mmdebstrap run as the nspawn image
(:func:`kubelite.provision.image.ensure_image`, with a kernel, an initramfs and udev added), then
turned into a disk without a loop mount: ``mkfs.ext4 -d`` into a sparse file, ``qemu-img convert -c``.
VMs boot it by direct kernel boot (no bootloader in the image) with a qcow2 overlay each.

The image is shared by every cluster, so nothing per-cluster is baked in: the cluster's SSH key and
the hostname arrive on the kernel command line (``kubelite.authorized_key=<base64>``,
``systemd.hostname=``), read at boot by ``kubelite-firstboot.service``, which also makes the
machine's own SSH host keys (the node image ships none). The address comes from DHCP.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kubelite.provision.image import (
    IMAGE_PACKAGES,
    ImageError,
    apt_sources,
    cache_dir,
    ensure_image,
    image_key,
)

__all__ = ["GUEST_PACKAGES", "GuestImage", "ensure_guest_image", "kernel_cmdline"]

GUEST_PACKAGES = sorted({*IMAGE_PACKAGES, "linux-image-amd64", "initramfs-tools", "udev"})
DISK_SIZE = "4G"  # the ext4 size VMs see; the file is sparse and the qcow2 holds only what is used

# Runs after the node image's own customisation, on the finished rootfs ($1).
_GUEST_CUSTOMIZE = r"""
set -e
root="$1"
mkdir -p "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/10-eth0.network" <<'EOF'
# The libvirt network's DHCP hands every VM its fixed address (a host entry by MAC).
[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > "$root/etc/fstab"
cat > "$root/usr/local/sbin/kubelite-firstboot" <<'EOF'
#!/bin/sh
# The machine's own host keys, and the cluster's key from the kernel command line (base64 of the line).
set -e
ssh-keygen -A
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kubelite.authorized_key=*)
            install -d -m 700 /root/.ssh
            echo "${arg#kubelite.authorized_key=}" | base64 -d > /root/.ssh/authorized_keys
            chmod 600 /root/.ssh/authorized_keys ;;
    esac
done
EOF
chmod 755 "$root/usr/local/sbin/kubelite-firstboot"
cat > "$root/etc/systemd/system/kubelite-firstboot.service" <<'EOF'
[Unit]
Description=kubelite: SSH host keys and the cluster key from the kernel command line
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kubelite-firstboot

[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable kubelite-firstboot.service
"""


@dataclass(frozen=True)
class GuestImage:
    disk: Path  # compressed qcow2: the read-only backing file of every VM's overlay
    kernel: Path
    initrd: Path
    key: str
    built: bool


def kernel_cmdline(hostname: str, pubkey: str, extra: str = "") -> str:
    """The guest's kernel command line: root on the virtio disk, serial console, and its identity."""
    import base64

    key = base64.b64encode(pubkey.strip().encode()).decode()
    return (f"root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.hostname={hostname} "
            f"kubelite.authorized_key={key} {extra}").strip()  # fmt: skip


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}")


def ensure_guest_image(cache: Path | None = None) -> GuestImage:
    """The cached guest image, built (about 2-3 minutes, once) when missing."""
    sources = apt_sources()
    if not sources:
        raise ImageError("no enabled Debian source found in /etc/apt/sources.list(.d) to build the guest image from")
    key = hashlib.sha256(
        (image_key(sources, GUEST_PACKAGES) + _GUEST_CUSTOMIZE + DISK_SIZE).encode()
    ).hexdigest()[:16]
    base = (cache or cache_dir()) / "images"
    final = base / f"libvirt-{key}"
    image = GuestImage(final / "root.qcow2", final / "vmlinuz", final / "initrd.img", key, built=False)
    if all(p.is_file() for p in (image.disk, image.kernel, image.initrd)):
        return image
    for tool, pkg in (("mkfs.ext4", "e2fsprogs"), ("qemu-img", "qemu-utils")):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} is not installed (apt-get install {pkg})")
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".libvirt-{key}-", dir=base) as tmp:
        work = Path(tmp)
        # The node image's own build, with the kernel added: the same mirror, packages and hook.
        rootfs = ensure_image(GUEST_PACKAGES, cache=work).rootfs
        _run(["sh", "-c", _GUEST_CUSTOMIZE, "guest-customize", str(rootfs)], "guest customisation")
        out = work / "out"
        out.mkdir()
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise ImageError("the guest rootfs has no kernel in /boot (linux-image-amd64 missing?)")
        version = kernels[-1].name.removeprefix("vmlinuz-")
        initrd = rootfs / "boot" / f"initrd.img-{version}"
        if not initrd.is_file():
            raise ImageError(f"the guest rootfs has no initrd for kernel {version}")
        shutil.copy2(kernels[-1], out / "vmlinuz")
        shutil.copy2(initrd, out / "initrd.img")
        raw = work / "root.raw"
        _run(["mkfs.ext4", "-q", "-F", "-L", "kubelite-root", "-d", str(rootfs), str(raw), DISK_SIZE], "mkfs.ext4 -d")
        _run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(out / "root.qcow2")], "qemu-img convert")
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)  # atomic: a half-built image is never taken from the cache
    return GuestImage(image.disk, image.kernel, image.initrd, key, built=True)
