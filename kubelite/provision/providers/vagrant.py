"""VMs through Vagrant and vagrant-libvirt: ``vagrant/Vagrantfile`` reads the cluster spec, kubelite runs
``vagrant up/halt/destroy/status/ssh-config`` in ``vagrant/`` and deploys over the SSH it reports.

It is the libvirt provider with Vagrant owning the domains. From the libvirt provider it keeps the
host side: the isolated network ``kubelite-<cluster>`` (DHCP with a fixed address per MAC), which
the Vagrantfile names as Vagrant's management network (so each VM has one NIC at the spec's address
and vagrant-libvirt's stock 192.168.121.0/24 NAT network is never made), the ``unreachable`` routes
and firewall rules, and the KVM-or-TCG probe.

The box ``kubelite/debian-<image key>`` is made once from the cached guest image
(:mod:`kubelite.provision.guest_image`): box.img is its qcow2, the kernel and initrd ride along for
direct boot. It is added to ``$KUBELITE_CACHE_DIR/vagrant/home`` (Vagrant's home, shared by all
clusters) and uploaded by vagrant-libvirt into the storage pool ``kubelite-vagrant``, whose
directory is kept as a cache. The cluster's SSH key reaches root at boot on the kernel command line,
as for libvirt VMs: Vagrant's public insecure key is never used.

Per cluster Vagrant keeps its machine data in ``<state>/vagrant`` (``VAGRANT_DOTFILE_PATH``) and the
machines it defines in ``<state>/vagrant-machines.json``; ``<state>/vagrant.env`` holds the
environment, so ``set -a; . <state>/vagrant.env`` makes ``vagrant status``/``vagrant ssh`` in
``vagrant/`` work by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from kubelite.provision.errors import ProviderError
from kubelite.provision.guest_image import GuestImage, kernel_cmdline
from kubelite.provision.image import cache_dir
from kubelite.provision.providers.base import MachineStatus
from kubelite.provision.providers.libvirt import LibvirtProvider, _mac
from kubelite.provision.state import Machine
from kubelite.provision.templates import checkout_dir, render

__all__ = ["POOL", "VagrantProvider", "box_name", "vagrant_home"]

POOL = "kubelite-vagrant"
UP_TIMEOUT = 900.0  # `vagrant up` of one VM: box upload, boot under TCG, SSH
COMMAND_TIMEOUT = 120.0


def vagrant_home() -> Path:
    return cache_dir() / "vagrant" / "home"


def box_name(guest: GuestImage) -> str:
    """One box per guest image: vagrant-libvirt finds its uploaded volume by box name, so a rebuilt
    image under an old name would boot the old disk."""
    return f"kubelite/debian-{guest.key}"


class VagrantProvider(LibvirtProvider):
    name = "vagrant"

    # -- vagrant ---------------------------------------------------------------------------------

    @property
    def _machines_file(self) -> Path:
        return self.state.dir / "vagrant-machines.json"

    def _defined(self) -> list[dict[str, str]]:
        """The machines the Vagrantfile defines for this cluster (kubelite's, including one being created)."""
        if not self._machines_file.is_file():
            return []
        machines: list[dict[str, str]] = json.loads(self._machines_file.read_text())
        return machines

    def _save_defined(self, machines: list[dict[str, str]]) -> None:
        self.state.ensure_dir()
        self._machines_file.write_text(json.dumps(machines, indent=1) + "\n")

    def _env(self) -> dict[str, str]:
        uri = os.environ.get("KUBELITE_LIBVIRT_URI", "qemu:///system")
        env = {
            "VAGRANT_CWD": str(checkout_dir() / "vagrant"),
            "VAGRANT_HOME": str(vagrant_home()),
            "VAGRANT_DOTFILE_PATH": str(self.state.dir / "vagrant"),
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "VAGRANT_CHECKPOINT_DISABLE": "1",  # no version check: nothing leaves this machine
            "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
            "VAGRANT_NO_COLOR": "1",
            "LIBVIRT_DEFAULT_URI": uri,
            "KUBELITE_LIBVIRT_URI": uri,
            "KUBELITE_SPEC": str(self.state.dir / "spec.yaml"),
            "KUBELITE_MACHINES": str(self._machines_file),
            "KUBELITE_SSH_KEY": str(self.state.ssh_key(self.spec)),
            "KUBELITE_POOL": POOL,
            "KUBELITE_CONSOLE_DIR": str(self.state.dir / "machines"),
        }
        if hasattr(self, "box"):  # only `up` needs them: halt, status and destroy do not look at the box
            env |= {"KUBELITE_BOX": self.box, "KUBELITE_DOMAIN_TYPE": self.domain_type}
        return env

    def _vagrant(self, *args: str, timeout: float = COMMAND_TIMEOUT, log: Path | None = None) -> str:
        try:
            proc = subprocess.run(["vagrant", *args], env={**os.environ, **self._env()}, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise ProviderError(f"vagrant {' '.join(args)}: no result within {timeout:.0f} s") from None
        if log is not None:
            log.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            raise ProviderError(
                f"vagrant {' '.join(args)} failed (exit {proc.returncode}): " + " | ".join(lines[-8:])
            )
        return proc.stdout

    # -- host ------------------------------------------------------------------------------------

    def check(self) -> None:
        if shutil.which("vagrant") is None:
            raise ProviderError("vagrant is not installed (apt-get install vagrant vagrant-libvirt)")
        if "vagrant-libvirt" not in self._vagrant("plugin", "list"):
            raise ProviderError("the vagrant-libvirt plugin is missing (apt-get install vagrant-libvirt)")
        super().check()

    def prepare_image(self) -> list[str]:
        changes = super().prepare_image()  # the guest image and the domain type
        self.box = box_name(self.guest)
        if self.box not in self._vagrant("box", "list"):
            self._add_box()
            changes.append(f"vagrant box {self.box}")
        self._write_env_file()
        return changes

    def _add_box(self) -> None:
        """A vagrant-libvirt box: an uncompressed tar (the qcow2 is compressed already) of box.img,
        metadata.json, a Vagrantfile, and the kernel and initrd the Vagrantfile boots."""
        info = subprocess.run(["qemu-img", "info", "--output=json", str(self.guest.disk)], capture_output=True,
                              text=True, check=True)  # fmt: skip
        metadata = {"provider": "libvirt", "format": "qcow2",
                    "virtual_size": math.ceil(json.loads(info.stdout)["virtual-size"] / 2**30)}  # fmt: skip
        vagrantfile = render("vagrant/box-Vagrantfile.j2", box=self.box, key=self.guest.key,
                             kernel="vmlinuz", initrd="initrd.img")  # fmt: skip
        work = vagrant_home().parent
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".box-", dir=work) as tmp:
            box = Path(tmp) / "kubelite.box"
            with tarfile.open(box, "w") as tar:
                for path, arcname in ((self.guest.disk, "box.img"), (self.guest.kernel, "vmlinuz"),
                                      (self.guest.initrd, "initrd.img")):  # fmt: skip
                    tar.add(path, arcname)
                for arcname, text in (("metadata.json", json.dumps(metadata)), ("Vagrantfile", vagrantfile)):
                    data = text.encode()
                    member = tarfile.TarInfo(arcname)
                    member.size, member.mtime = len(data), int(time.time())
                    tar.addfile(member, io.BytesIO(data))
            self._vagrant("box", "add", "--force", "--name", self.box, str(box), timeout=300)

    def _write_env_file(self) -> None:
        """Vagrant's view of this cluster by hand: ``set -a; . vagrant.env; set +a`` in vagrant/."""
        self.state.ensure_dir()
        lines = [f"{k}={shlex.quote(v)}" for k, v in sorted(self._env().items())]
        text = "# kubelite: the environment `kubelite cluster` runs vagrant with (set -a; . this file)\n"
        text += "\n".join(lines) + "\n"
        path = self.state.dir / "vagrant.env"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)

    def prepare(self) -> list[str]:
        changes = super().prepare()  # the network first: Vagrant finds it by its address and uses it
        if self._lookup_pool() is None:
            pool_dir = cache_dir() / "vagrant" / "pool"
            pool_dir.mkdir(parents=True, exist_ok=True)
            pool = self.conn.storagePoolDefineXML(
                render("vagrant/storage-pool.xml.j2", pool=POOL, path=pool_dir)
            )
            changes.append(f"storage pool {POOL}")
        else:
            pool = self._lookup_pool()
        if not pool.isActive():
            pool.create()  # also scans the directory: a box uploaded before is found again
        return changes

    def _lookup_pool(self) -> Any:
        import libvirt

        try:
            return self.conn.storagePoolLookupByName(POOL)
        except libvirt.libvirtError:
            return None

    def cleanup_host(self) -> list[str]:
        removed: list[str] = []
        # A VM whose `vagrant up` failed is Vagrant's but not yet in the cluster's machine list.
        for m in self._defined():
            self.destroy(Machine(m["name"], m["role"], m["address"], {"mac": m["mac"]}))
            removed.append(f"machine {m['name']}")
        removed += super().cleanup_host()
        pool = self._lookup_pool()
        # The box volumes stay on disk as a cache; the pool goes once no VM disk (of any cluster) is in it.
        if pool is not None:
            pool.refresh()
            if all("_vagrant_box_image_" in v for v in pool.listVolumes()):
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
                removed.append(f"storage pool {POOL}")
        return removed

    # -- machines --------------------------------------------------------------------------------

    def create(self, name: str, role: str, address: str, ssh_pubkey: Path) -> Machine:
        if not hasattr(self, "box"):
            self.prepare_image()
        d = self.state.machine_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        machine = Machine(name, role, address, {"mac": _mac(self.spec.name, name), "box": self.box,
                                                "domain_type": self.domain_type})  # fmt: skip
        self._dhcp_host(machine, add=True)  # before the VM asks for its address
        defined = [m for m in self._defined() if m["name"] != name]
        defined.append({"name": name, "role": role, "address": address, "mac": machine.extra["mac"],
                        "cmd_line": kernel_cmdline(name, ssh_pubkey.read_text())})  # fmt: skip
        self._save_defined(defined)
        self.start(machine)
        return machine

    def start(self, machine: Machine) -> None:
        if not hasattr(self, "box"):
            self.prepare_image()
        d = self.state.machine_dir(machine.name)
        d.mkdir(parents=True, exist_ok=True)
        self._vagrant("up", machine.name, timeout=UP_TIMEOUT, log=d / "vagrant-up.log")
        self._check_ssh_config(machine)

    def _check_ssh_config(self, machine: Machine) -> None:
        """Vagrant's SSH settings for the machine, kept for ``ssh -F``: the deploy reaches it at the same
        address as the user, and a VM at any other address (a lost DHCP entry) is refused."""
        config = self._vagrant("ssh-config", "--host", machine.name, machine.name)
        host = re.search(r"^\s*HostName\s+(\S+)", config, re.M)
        if host is None or host.group(1) != machine.address:
            found = host.group(1) if host else "none"
            raise ProviderError(f"{machine.name}: Vagrant reaches it at {found}, expected {machine.address}")
        (self.state.machine_dir(machine.name) / "ssh-config").write_text(config)

    def stop(self, machine: Machine, timeout: float = 60.0) -> None:
        if any(m["name"] == machine.name for m in self._defined()):
            self._vagrant("halt", machine.name, timeout=timeout + 60)

    def destroy(self, machine: Machine) -> None:
        defined = self._defined()
        if any(m["name"] == machine.name for m in defined):
            self._vagrant("destroy", "--force", machine.name, timeout=300)
            self._save_defined([m for m in defined if m["name"] != machine.name])
        self._remove_stray_disks(machine)
        super().destroy(machine)  # a domain Vagrant no longer knew, the DHCP entry, the machine dir

    def _remove_stray_disks(self, machine: Machine) -> None:
        """The pool volumes of a domain Vagrant lost track of (its data dir gone): undefining the domain
        alone would leave its disk in the pool."""
        dom = self._lookup("domain", machine.name)
        pool = self._lookup_pool()
        if dom is None or pool is None:
            return
        for source in ET.fromstring(dom.XMLDesc()).iter("source"):
            path = source.get("file")
            if path and not path.endswith(("vmlinuz", "initrd.img")):
                with contextlib.suppress(Exception):
                    self.conn.storageVolLookupByPath(path).delete()

    def list_machines(self) -> list[MachineStatus]:
        states: dict[str, str] = {}
        if self._defined():
            # Machine-readable lines: timestamp,target,type,data
            for line in self._vagrant("status", "--machine-readable").splitlines():
                parts = line.split(",", 3)
                if len(parts) == 4 and parts[2] == "state":
                    states[parts[1]] = parts[3]
        out = []
        for m in self.state.machines():
            state = states.get(m.name, "not_created")
            detail = f"{m.extra.get('domain_type', '?')} VM, vagrant: {state}"
            out.append(MachineStatus(m, state == "running", detail))
        return out
