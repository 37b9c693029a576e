"""VMs through libvirt-python: real kernels, so nodes load their own modules and run their own cgroups.

Per cluster: an isolated libvirt network ``kubelite-<cluster>`` (no ``<forward>``: nothing is routed
or NATed off this machine) on the bridge ``klc-<cluster>`` holding the first node address, whose
DHCP gives every VM its fixed address by MAC (one ``<host>`` entry per machine, added and removed
live). The host-side routes and iptables rules are the nspawn provider's, inherited from it:
``unreachable`` routes for the cluster's ranges and ACCEPT rules on the bridge.

Per VM: a qcow2 overlay on the cached guest image (:mod:`kubelite.provision.guest_image`), direct
kernel boot with the node's identity on the command line, the serial console in
``machines/<node>/console.log``. The domain type is ``kvm`` when KVM really works here, else ``qemu``
(TCG, ``-cpu max``): :func:`kvm_usable` boots the guest kernel under KVM once to find out, since a
/dev/kvm that opens can still be a variant a stock kernel crashes on.

libvirtd must be running (``qemu:///system``, or ``$KUBELITE_LIBVIRT_URI``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

from kubelite.api.quantity import parse_quantity
from kubelite.provision.errors import ProviderError
from kubelite.provision.guest_image import GuestImage, ensure_guest_image, kernel_cmdline
from kubelite.provision.providers.base import MachineStatus
from kubelite.provision.providers.nspawn import NspawnProvider
from kubelite.provision.state import Machine
from kubelite.provision.templates import render

__all__ = ["LibvirtProvider", "domain_type", "kvm_usable", "network_name"]

PROBE_TIMEOUT = 30.0


def network_name(cluster: str) -> str:
    return f"kubelite-{cluster}"


def _mac(cluster: str, node: str) -> str:
    """Stable per node (a re-created VM keeps its DHCP entry), in QEMU's locally administered 52:54:00 range."""
    h = hashlib.sha1(f"{cluster}/{node}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in h[:3])


@cache
def kvm_usable(kernel: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """Boot ``kernel`` under KVM without a root disk: a working KVM runs it to its "cannot mount root"
    panic and QEMU exits (``-no-reboot``) within seconds; a broken one stops with "KVM internal error"."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return False
    cmd = [qemu, "-accel", "kvm", "-cpu", "host", "-m", "256", "-display", "none", "-nodefaults", "-no-reboot",
           "-serial", "stdio", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False  # a paused guest (after an internal error) never exits
    out = proc.stdout + proc.stderr
    return proc.returncode == 0 and "Kernel panic" in out and "KVM internal error" not in out


def domain_type(kernel: Path) -> str:
    """``kvm`` or ``qemu`` (TCG); ``$KUBELITE_LIBVIRT_DOMAIN_TYPE`` overrides the probe."""
    forced = os.environ.get("KUBELITE_LIBVIRT_DOMAIN_TYPE", "")
    if forced in ("kvm", "qemu"):
        return forced
    return "kvm" if kvm_usable(kernel) else "qemu"


class LibvirtProvider(NspawnProvider):
    name = "libvirt"
    boot_timeout = 240.0  # start -> SSH: ~35 s per VM under TCG on 2 cores, VMs booting together share them

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conn: Any = None

    @property
    def network(self) -> str:
        return network_name(self.spec.name)

    @property
    def conn(self) -> Any:
        if self._conn is None:
            try:
                import libvirt
            except ImportError:
                raise ProviderError("libvirt-python is not installed (pip install libvirt-python; "
                                    "apt-get install libvirt-dev pkg-config gcc to build it)") from None  # fmt: skip
            uri = os.environ.get("KUBELITE_LIBVIRT_URI", "qemu:///system")
            try:
                # Errors come back as exceptions; libvirt's default handler would also print each
                # expected lookup miss ("Network not found") to stderr.
                libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
                self._conn = libvirt.open(uri)
            except libvirt.libvirtError as e:
                raise ProviderError(f"cannot connect to libvirt at {uri} (is libvirtd running?): {e}") from None
        return self._conn

    def _lookup(self, kind: str, name: str) -> Any:
        import libvirt

        try:
            return self.conn.lookupByName(name) if kind == "domain" else self.conn.networkLookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK):
                return None
            raise ProviderError(f"libvirt {kind} {name}: {e}") from None

    # -- host ------------------------------------------------------------------------------------

    def check(self) -> None:
        for tool, pkg in (("qemu-img", "qemu-utils"), ("qemu-system-x86_64", "qemu-system-x86")):
            if shutil.which(tool) is None:
                raise ProviderError(f"{tool} is not installed (apt-get install {pkg})")
        self.conn  # noqa: B018 - refuse now, before anything exists, when libvirtd is not there
        super().check()

    def prepare_image(self) -> list[str]:
        self.guest: GuestImage = ensure_guest_image()
        self.domain_type = domain_type(self.guest.kernel)
        return [f"built guest image {self.guest.key}"] if self.guest.built else []

    def prepare(self) -> list[str]:
        changes: list[str] = []
        net = self._lookup("network", self.network)
        if net is None:
            gateway = self._net.network_address + 1
            hosts = [{"mac": m.extra["mac"], "name": m.name, "ip": m.address} for m in self.state.machines()]
            xml = render("libvirt-network.xml.j2", cluster=self.spec.name, network=self.network, bridge=self.bridge,
                         gateway=str(gateway), prefixlen=self._net.prefixlen, range_start=str(gateway + 1),
                         range_end=str(self._net.broadcast_address - 1), hosts=hosts)  # fmt: skip
            net = self.conn.networkDefineXML(xml)
            changes.append(f"network {self.network}")
        if not net.isActive():
            net.create()  # libvirt makes the bridge with the gateway address and runs dnsmasq on it
            changes.append(f"started network {self.network}")
        # Then the routes and firewall rules of the nspawn provider; the bridge exists, so it is left alone.
        return changes + super().prepare()

    def cleanup_host(self) -> list[str]:
        removed: list[str] = []
        net = self._lookup("network", self.network)
        if net is not None:
            if net.isActive():
                net.destroy()
            net.undefine()
            removed.append(f"network {self.network}")
        return removed + super().cleanup_host()

    # -- machines --------------------------------------------------------------------------------

    def _dhcp_host(self, machine: Machine, add: bool) -> None:
        import libvirt

        net = self._lookup("network", self.network)
        if net is None:
            return
        entry = f"<host mac='{machine.extra['mac']}' name='{machine.name}' ip='{machine.address}'/>"
        present = any(h.get("mac") == machine.extra["mac"] for h in ET.fromstring(net.XMLDesc()).iter("host"))
        if present == add:
            return
        command = libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST if add else libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if net.isActive():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, entry, flags)

    def create(self, name: str, role: str, address: str, ssh_pubkey: Path) -> Machine:
        if not hasattr(self, "domain_type"):
            self.prepare_image()
        d = self.state.machine_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        disk = d / "disk.qcow2"
        machine = Machine(name, role, address, {"mac": _mac(self.spec.name, name), "disk": str(disk),
                                                "image": str(self.guest.disk), "domain_type": self.domain_type})  # fmt: skip
        self._dhcp_host(machine, add=True)  # before the VM asks for its address
        if not disk.is_file():
            proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(self.guest.disk),
                                   str(disk)], capture_output=True, text=True)  # fmt: skip
            if proc.returncode != 0:
                raise ProviderError(f"{name}: qemu-img create: {proc.stderr.strip()}")
        xml = render(
            "libvirt-domain.xml.j2", domain=name, cluster=self.spec.name, role=role, domain_type=self.domain_type,
            memory_mib=parse_quantity(self.spec.memory) // 2**20, cpus=self.spec.cpu,
            kernel=self.guest.kernel, initrd=self.guest.initrd,
            cmdline=kernel_cmdline(name, ssh_pubkey.read_text()),
            disk=disk, network=self.network, mac=machine.extra["mac"], console_log=d / "console.log",
        )  # fmt: skip
        self.conn.defineXML(xml)
        self.start(machine)
        return machine

    def host_keys(self, machine: Machine) -> list[str]:
        return []  # made by the guest at first boot: the first SSH connection records them

    def start(self, machine: Machine) -> None:
        dom = self._lookup("domain", machine.name)
        if dom is None:
            raise ProviderError(f"{machine.name}: no libvirt domain of that name (removed by hand?)")
        if not dom.isActive():
            dom.create()

    def stop(self, machine: Machine, timeout: float = 60.0) -> None:
        dom = self._lookup("domain", machine.name)
        if dom is None or not dom.isActive():
            return
        with contextlib.suppress(Exception):
            dom.shutdown()  # ACPI power button: systemd shuts down cleanly
        deadline = time.monotonic() + timeout
        while dom.isActive() and time.monotonic() < deadline:
            time.sleep(0.5)
        if dom.isActive():
            dom.destroy()

    def destroy(self, machine: Machine) -> None:
        dom = self._lookup("domain", machine.name)
        if dom is not None:
            if dom.isActive():
                dom.destroy()  # its disk is deleted next: no clean shutdown to wait for
            dom.undefine()
        if "mac" in machine.extra:
            self._dhcp_host(machine, add=False)
        shutil.rmtree(self.state.machine_dir(machine.name), ignore_errors=True)

    def list_machines(self) -> list[MachineStatus]:
        out = []
        for m in self.state.machines():
            dom = self._lookup("domain", m.name)
            running = dom is not None and bool(dom.isActive())
            detail = f"{m.extra.get('domain_type', '?')} VM " + ("running" if running else "stopped" if dom else "undefined")
            out.append(MachineStatus(m, running, detail))
        return out
