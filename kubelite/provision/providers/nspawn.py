"""systemd-nspawn machines on this machine: like kind, but each node boots systemd and runs sshd.

Per cluster the host gets a bridge ``klc-<cluster>`` holding the first address of the node range,
``unreachable`` routes for the node, pod and service ranges (so nothing of the cluster ever falls
through to the default route; the bridge's connected route wins for the node range), and iptables
ACCEPT rules for the bridge tagged with the comment ``kubelite:<cluster>``.

Per machine: an overlay (the cached image below, ``machines/<node>/upper`` above) mounted at
``machines/<node>/root``, its own machine-id, SSH host keys, ``10-host0.network`` with a static
address, and a settings file ``/run/systemd/nspawn/<node>.nspawn``. The host need not run systemd:
``systemd-nspawn --keep-unit --register=no`` runs as a plain background process whose PID is kept
in the state (SIGTERM makes it shut the machine down cleanly).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from kubelite.provision.errors import ProviderError
from kubelite.provision.image import ensure_image
from kubelite.provision.providers.base import MachineStatus, Provider
from kubelite.provision.state import Machine
from kubelite.provision.templates import render

__all__ = ["NspawnProvider", "bridge_name"]

SETTINGS_DIR = Path("/run/systemd/nspawn")
ROUTE_METRIC = 4242  # our unreachable routes; a real (connected) route has metric 0 and wins


def bridge_name(cluster: str) -> str:
    """An interface name fits in 15 bytes: long cluster names are hashed. ("kl-" is the agents' pod bridges.)"""
    if len(cluster) <= 11:
        return f"klc-{cluster}"
    return "klc-" + hashlib.sha1(cluster.encode()).hexdigest()[:11]


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ProviderError(f"{' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def _pid_alive(pid: int, machine: str) -> bool:
    """True when ``pid`` is still the nspawn of ``machine`` (a recycled PID is someone else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--machine={machine}".encode() in cmdline


class NspawnProvider(Provider):
    name = "nspawn"

    @property
    def bridge(self) -> str:
        return bridge_name(self.spec.name)

    @property
    def comment(self) -> str:
        return f"kubelite:{self.spec.name}"

    @property
    def _net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.spec.node_cidr)

    # -- host ------------------------------------------------------------------------------------

    def check(self) -> None:
        if os.geteuid() != 0:
            raise ProviderError("the nspawn provider needs root (it mounts overlays and creates a bridge)")
        for tool in ("systemd-nspawn", "mmdebstrap", "ip", "iptables", "ssh-keygen"):
            if shutil.which(tool) is None:
                pkg = {"systemd-nspawn": "systemd-container", "ip": "iproute2", "ssh-keygen": "openssh-client"}
                raise ProviderError(f"{tool} is not installed (apt-get install {pkg.get(tool, tool)})")
        # The node range must not already be routed here by something else: the machines would shadow it.
        for line in _run("ip", "-4", "route", "show").stdout.splitlines():
            parts = line.split()
            if not parts or parts[0] in ("unreachable", "blackhole", "prohibit"):
                continue
            dst = parts[0]
            if dst == "default" or f"dev {self.bridge}" in line:
                continue
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(dst, strict=False).overlaps(self._net):
                    raise ProviderError(f"network.nodes {self._net} overlaps the route '{line.strip()}' on this machine")

    def prepare_image(self) -> list[str]:
        self.image = ensure_image()
        return [f"built image {self.image.rootfs.name}"] if self.image.built else []

    def prepare(self) -> list[str]:
        changes: list[str] = []
        # Routes first: from the moment the cluster exists no address of it may leave this machine.
        for cidr in (self.spec.node_cidr, self.spec.pod_cidr, self.spec.service_cidr):
            if not _run("ip", "route", "show", "table", "main", "type", "unreachable", cidr, "metric", str(ROUTE_METRIC)).stdout.strip():
                _run("ip", "route", "replace", "unreachable", cidr, "metric", str(ROUTE_METRIC))
                changes.append(f"route unreachable {cidr}")
        if _run("ip", "link", "show", self.bridge, check=False).returncode != 0:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            changes.append(f"bridge {self.bridge}")
        gateway = f"{self._net.network_address + 1}/{self._net.prefixlen}"
        if gateway not in _run("ip", "-4", "addr", "show", "dev", self.bridge).stdout:
            _run("ip", "addr", "add", gateway, "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        # A host firewall with a DROP policy (docker sets one) must not cut the nodes off each other or the host.
        for chain, direction in (("INPUT", "-i"), ("FORWARD", "-i"), ("FORWARD", "-o")):
            rule = [chain, direction, self.bridge, "-m", "comment", "--comment", self.comment, "-j", "ACCEPT"]
            if _run("iptables", "-C", *rule, check=False).returncode != 0:
                _run("iptables", "-I", *rule)
                changes.append(f"iptables {chain} {direction} {self.bridge}")
        return changes

    def cleanup_host(self) -> list[str]:
        removed: list[str] = []
        for table_rules in (_run("iptables", "-S", check=False).stdout.splitlines(),):
            for rule in table_rules:
                if f'"{self.comment}"' in rule or f" {self.comment} " in rule + " ":
                    args = rule.replace('"', "").split()
                    if args[0] == "-A":
                        _run("iptables", "-D", *args[1:], check=False)
                        removed.append(f"iptables {' '.join(args[1:4])}")
        if _run("ip", "link", "show", self.bridge, check=False).returncode == 0:
            _run("ip", "link", "del", self.bridge)
            removed.append(f"bridge {self.bridge}")
        for cidr in (self.spec.node_cidr, self.spec.pod_cidr, self.spec.service_cidr):
            if _run("ip", "route", "del", "unreachable", cidr, "metric", str(ROUTE_METRIC), check=False).returncode == 0:
                removed.append(f"route {cidr}")
        return removed

    def allocate_address(self, taken: set[str]) -> str:
        gateway = self._net.network_address + 1
        for host in self._net.hosts():
            if host != gateway and str(host) not in taken:
                return str(host)
        raise ProviderError(f"network.nodes {self._net} has no free address left")

    # -- machines --------------------------------------------------------------------------------

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        d = self.state.machine_dir(name)
        return d / "upper", d / "work", d / "root"

    def create(self, name: str, role: str, address: str, ssh_pubkey: Path) -> Machine:
        upper, work, root = self._paths(name)
        for p in (upper, work, root):
            p.mkdir(parents=True, exist_ok=True)
        if not hasattr(self, "image"):
            self.prepare_image()
        machine = Machine(name, role, address, {"image": str(self.image.rootfs)})
        self._mount(machine)
        # Identity of this node only: a shared machine-id or host key would make nodes indistinguishable.
        _run("systemd-machine-id-setup", f"--root={root}")
        (root / "etc/hostname").write_text(name + "\n")
        _run("ssh-keygen", "-A", "-f", str(root))
        net = root / "etc/systemd/network"
        net.mkdir(parents=True, exist_ok=True)
        (net / "10-host0.network").write_text(
            render(
                "nspawn/10-host0.network.j2",
                address=address,
                prefixlen=self._net.prefixlen,
                gateway=str(self._net.network_address + 1),
                service_cidr=self.spec.service_cidr,
            )
        )
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(ssh_pubkey.read_text())
        os.chmod(ssh_dir / "authorized_keys", 0o600)
        self.start(machine)
        return machine

    def host_keys(self, machine: Machine) -> list[str]:
        _, _, root = self._paths(machine.name)
        return [" ".join(p.read_text().split()[:2]) for p in sorted((root / "etc/ssh").glob("ssh_host_*_key.pub"))]

    def _mount(self, machine: Machine) -> None:
        upper, work, root = self._paths(machine.name)
        if not _is_mounted(root):
            image = str(machine.extra["image"])
            if not Path(image).is_dir():
                raise ProviderError(f"{machine.name}: its image {image} is gone from the cache")
            _run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={image},upperdir={upper},workdir={work}", str(root))

    def _data_dir(self, name: str) -> Path:
        return self.state.machine_dir(name) / "var-lib-kubelite"

    def _settings_file(self, name: str) -> Path:
        return SETTINGS_DIR / f"{name}.nspawn"

    def start(self, machine: Machine) -> None:
        pid = machine.extra.get("pid")
        if isinstance(pid, int) and _pid_alive(pid, machine.name):
            return
        self._mount(machine)
        self._data_dir(machine.name).mkdir(parents=True, exist_ok=True)
        SETTINGS_DIR.mkdir(parents=True, exist_ok=True)
        self._settings_file(machine.name).write_text(
            render("nspawn/machine.nspawn.j2", machine=machine.name, cluster=self.spec.name, bridge=self.bridge,
                   data_dir=self._data_dir(machine.name))
        )
        _, _, root = self._paths(machine.name)
        log = open(self.state.machine_dir(machine.name) / "console.log", "ab")
        # --keep-unit/--register=no: no systemd or machined on the host is needed (PID 1 may be anything).
        proc = subprocess.Popen(
            ["systemd-nspawn", f"--directory={root}", f"--machine={machine.name}", "--keep-unit",
             "--register=no", "--console=passive", "--settings=trusted"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        machine.extra["pid"] = proc.pid
        time.sleep(0.3)
        if proc.poll() is not None:
            tail = (self.state.machine_dir(machine.name) / "console.log").read_text().strip().splitlines()[-5:]
            raise ProviderError(f"{machine.name}: systemd-nspawn exited at once: {' / '.join(tail)}")

    def stop(self, machine: Machine, timeout: float = 30.0) -> None:
        """Power the machine off cleanly (nspawn turns SIGTERM into a systemd shutdown)."""
        self._signal(machine, signal.SIGTERM, timeout)

    def power_off(self, machine: Machine) -> None:
        """Pull the plug: every process of the machine dies at once (a failure, not a shutdown)."""
        self._signal(machine, signal.SIGKILL, timeout=10)

    def _signal(self, machine: Machine, sig: signal.Signals, timeout: float) -> None:
        pid = machine.extra.get("pid")
        if isinstance(pid, int) and _pid_alive(pid, machine.name):
            if sig == signal.SIGKILL:
                # The container's init (nspawn's child): killing it ends the whole PID namespace at once.
                for child in _children(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
            else:
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid, machine.name) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.1)
            if _pid_alive(pid, machine.name):
                # A shutdown that hangs (pods still stopping): kill the machine's init with nspawn, or
                # its processes would outlive it and the next start would find its veth still there.
                for child in _children(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            _reap(pid)
        machine.extra.pop("pid", None)

    def destroy(self, machine: Machine) -> None:
        # Its disk is deleted next: no clean shutdown to wait for.
        self._signal(machine, signal.SIGKILL, timeout=10)
        _, _, root = self._paths(machine.name)
        if _is_mounted(root):
            _run("umount", str(root))
        self._settings_file(machine.name).unlink(missing_ok=True)
        # nspawn leaves its (empty) propagation directory behind when the host has no systemd.
        with contextlib.suppress(OSError):
            Path(f"/run/systemd/nspawn/propagate/{machine.name}").rmdir()
        shutil.rmtree(self.state.machine_dir(machine.name), ignore_errors=True)

    def list_machines(self) -> list[MachineStatus]:
        out = []
        for m in self.state.machines():
            pid = m.extra.get("pid")
            running = isinstance(pid, int) and _pid_alive(pid, m.name)
            out.append(MachineStatus(m, running, f"pid {pid}" if running else "stopped"))
        return out


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _reap(pid: int) -> None:
    """Collect our own exited child, if it is one, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
