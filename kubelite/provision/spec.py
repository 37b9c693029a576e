"""The cluster spec: one YAML file describing a cluster, validated before anything is created.

Every error is a :class:`SpecError` whose ``field`` is the dotted path of the offending key
(``masters``, ``network.pods``, ``ssh.key``, ``hosts[1].role``), so a user sees what to fix::

    name: local            # [a-z0-9-], starts with a letter
    provider: nspawn       # nspawn | libvirt | vagrant | ssh
    masters: 1
    workers: 2
    resources: {cpu: 2, memory: 1Gi}
    datastore: sqlite      # sqlite (one master) | etcd (an odd number of masters, fixed once created)
    runtime: fake          # runc | docker | fake
    network: {nodes: 10.250.0.0/24, pods: 10.251.0.0/16, services: 10.252.0.0/16}
    images: [busybox]      # preloaded into the cluster registry: a name `kubelite image build` knows, or an archive
    registry: true         # run docker-registry on every master
    ssh: {user: root, key: ~/.ssh/id_ed25519}   # default: a key generated for the cluster
    hosts:                 # provider ssh only: the existing machines ...
      - {name: node-a, address: 192.0.2.10, role: master}
    inventory: hosts.py    # ... or a pyinfra inventory file with groups masters and workers
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubelite.api.quantity import QuantityError, parse_quantity
from kubelite.provision.errors import SpecError

__all__ = ["PROVIDERS", "RUNTIMES", "ClusterSpec", "HostEntry", "load_spec", "parse_spec"]

PROVIDERS = ("nspawn", "ssh", "libvirt", "vagrant")
RUNTIMES = ("runc", "docker", "fake")
DATASTORES = ("sqlite", "etcd")
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_TOP_KEYS = {"name", "provider", "masters", "workers", "resources", "datastore", "runtime", "network",
             "images", "registry", "ssh", "hosts", "inventory"}  # fmt: skip


@dataclass
class HostEntry:
    name: str
    address: str
    role: str  # master | worker


@dataclass
class ClusterSpec:
    name: str
    provider: str = "nspawn"
    masters: int = 1
    workers: int = 0
    cpu: int = 2
    memory: str = "1Gi"
    datastore: str = "sqlite"
    runtime: str = "fake"
    node_cidr: str = "10.250.0.0/24"
    pod_cidr: str = "10.251.0.0/16"
    service_cidr: str = "10.252.0.0/16"
    images: list[str] = field(default_factory=list)
    registry: bool = True
    ssh_user: str = "root"
    ssh_key: str | None = None  # None: the cluster generates its own key
    hosts: list[HostEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what ``parse_spec`` reads), used to store the spec with the cluster state."""
        d: dict[str, Any] = {
            "name": self.name, "provider": self.provider,
            **({} if self.provider == "ssh" else {"masters": self.masters, "workers": self.workers}),
            "resources": {"cpu": self.cpu, "memory": self.memory}, "datastore": self.datastore,
            "runtime": self.runtime, "images": list(self.images), "registry": self.registry,
            "network": {"nodes": self.node_cidr, "pods": self.pod_cidr, "services": self.service_cidr},
            "ssh": {"user": self.ssh_user, **({"key": self.ssh_key} if self.ssh_key else {})},
        }  # fmt: skip
        if self.hosts:
            d["hosts"] = [asdict(h) for h in self.hosts]
        return d


def _int(doc: dict[str, Any], key: str, default: int, minimum: int, path: str | None = None) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path or key, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(path or key, f"must be at least {minimum}, got {value}")
    return value


def _choice(doc: dict[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = doc.get(key, default)
    if value not in choices:
        raise SpecError(key, f"unknown {key} {value!r} (one of: {', '.join(choices)})")
    return str(value)


def _mapping(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(key, f"must be a mapping, got {type(value).__name__}")
    return value


def _network(doc: dict[str, Any], spec: ClusterSpec) -> None:
    net = _mapping(doc, "network")
    unknown = set(net) - {"nodes", "pods", "services"}
    if unknown:
        raise SpecError(f"network.{sorted(unknown)[0]}", "unknown key (known: nodes, pods, services)")
    parsed: dict[str, ipaddress.IPv4Network] = {}
    for key, default in (("nodes", spec.node_cidr), ("pods", spec.pod_cidr), ("services", spec.service_cidr)):
        raw = net.get(key, default)
        try:
            cidr = ipaddress.ip_network(str(raw), strict=True)
        except ValueError as e:
            raise SpecError(f"network.{key}", f"{raw!r} is not a network CIDR ({e})") from None
        if not isinstance(cidr, ipaddress.IPv4Network):
            raise SpecError(f"network.{key}", "only IPv4 is supported")
        for other, prev in parsed.items():
            if cidr.overlaps(prev):
                raise SpecError(f"network.{key}", f"{cidr} overlaps network.{other} {prev}")
        parsed[key] = cidr
    if parsed["nodes"].num_addresses < 8:
        raise SpecError("network.nodes", f"{parsed['nodes']} is too small (at least a /29)")
    if parsed["pods"].prefixlen > 22:
        raise SpecError("network.pods", f"{parsed['pods']} is too small: each node takes a /24 of it")
    spec.node_cidr, spec.pod_cidr, spec.service_cidr = (str(parsed[k]) for k in ("nodes", "pods", "services"))


def _inventory_hosts(value: Any, base_dir: Path | None) -> list[dict[str, Any]]:
    """Hosts of a pyinfra inventory file: its ``masters`` and ``workers`` groups of host or (host, data)."""
    path = Path(str(value)).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise SpecError("inventory", f"inventory file {path} does not exist")
    scope: dict[str, Any] = {}
    try:
        exec(compile(path.read_text(), str(path), "exec"), scope)  # the user's own inventory, as pyinfra runs it
    except Exception as e:
        raise SpecError("inventory", f"{path}: {type(e).__name__}: {e}") from None
    hosts = []
    for group, role in (("masters", "master"), ("workers", "worker")):
        for entry in scope.get(group) or []:
            address, data = (entry if isinstance(entry, tuple) else (entry, {}))
            if "node_name" not in data:
                raise SpecError("inventory", f"{path}: host {address} needs data {{'node_name': ...}} (its Node name)")
            hosts.append({"name": data["node_name"], "address": address, "role": role})
    return hosts


def _hosts(doc: dict[str, Any], spec: ClusterSpec, base_dir: Path | None) -> None:
    raw = doc.get("hosts")
    if "inventory" in doc:
        if raw is not None:
            raise SpecError("inventory", "give either hosts or inventory, not both")
        raw = _inventory_hosts(doc["inventory"], base_dir)
    if raw is None:
        return
    if not isinstance(raw, list):
        raise SpecError("hosts", "must be a list of {name, address, role}")
    seen: set[str] = set()
    for i, h in enumerate(raw):
        where = f"hosts[{i}]"
        if not isinstance(h, dict):
            raise SpecError(where, "must be a mapping {name, address, role}")
        name, address, role = str(h.get("name", "")), str(h.get("address", "")), h.get("role", "worker")
        if not _NAME.match(name):
            raise SpecError(f"{where}.name", f"{name!r} is not a valid node name")
        if name in seen:
            raise SpecError(f"{where}.name", f"duplicate host name {name!r}")
        seen.add(name)
        if not address:
            raise SpecError(f"{where}.address", "is required")
        if role not in ("master", "worker"):
            raise SpecError(f"{where}.role", f"unknown role {role!r} (master or worker)")
        spec.hosts.append(HostEntry(name, address, role))


def _images(raw: Any, base_dir: Path | None) -> list[str]:
    """Images to preload: a name ``kubelite image build`` knows (busybox) or an OCI/docker archive."""
    from kubelite.images.build import BUILDERS

    if not isinstance(raw, list):
        raise SpecError("images", "must be a list")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, str) or not entry:
            raise SpecError(f"images[{i}]", f"must be a string, got {entry!r}")
        if entry in BUILDERS:
            out.append(entry)
            continue
        path = Path(entry).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise SpecError(f"images[{i}]", f"{entry!r} is neither a buildable image ({', '.join(BUILDERS)}) "
                                            "nor an existing archive file")  # fmt: skip
        out.append(str(path.resolve()))
    return out


def parse_spec(doc: Any, base_dir: Path | None = None) -> ClusterSpec:
    """Validate a parsed YAML document; relative paths are resolved against ``base_dir``."""
    if not isinstance(doc, dict):
        raise SpecError("spec", "must be a YAML mapping")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise SpecError(sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError("name", f"{name!r} must be 1-32 of [a-z0-9-], starting with a letter")
    spec = ClusterSpec(name=name)
    spec.provider = _choice(doc, "provider", spec.provider, PROVIDERS)
    spec.datastore = _choice(doc, "datastore", spec.datastore, DATASTORES)
    spec.runtime = _choice(doc, "runtime", spec.runtime, RUNTIMES)
    _hosts(doc, spec, base_dir)
    if spec.provider == "ssh":
        if not spec.hosts:
            raise SpecError("hosts", "the ssh provider needs the existing machines under hosts (or an inventory file)")
        if "masters" in doc or "workers" in doc:
            raise SpecError("masters", "the ssh provider takes masters and workers from hosts[].role")
        spec.masters = sum(h.role == "master" for h in spec.hosts)
        spec.workers = len(spec.hosts) - spec.masters
        masters_field = "hosts"
    else:
        if spec.hosts:
            raise SpecError("hosts", f"only the ssh provider takes hosts; {spec.provider} creates its machines")
        spec.masters = _int(doc, "masters", 1, 0)
        spec.workers = _int(doc, "workers", 0, 0)
        masters_field = "masters"
    if spec.masters < 1:
        raise SpecError(masters_field, "a cluster needs at least 1 master, got 0")
    if spec.datastore == "sqlite" and spec.masters > 1:
        raise SpecError(masters_field, f"{spec.masters} masters need datastore: etcd (sqlite serves one master)")
    if spec.datastore == "etcd" and spec.masters % 2 == 0:
        raise SpecError(masters_field, f"etcd needs an odd number of masters for a quorum, got {spec.masters}")
    res = _mapping(doc, "resources")
    spec.cpu = _int(res, "cpu", spec.cpu, 1, "resources.cpu")
    memory = res.get("memory", spec.memory)
    try:
        if parse_quantity(str(memory)) < 256 * 2**20:
            raise SpecError("resources.memory", f"{memory} is below the 256Mi a node needs")
    except QuantityError:
        raise SpecError("resources.memory", f"{memory!r} is not a quantity like 1Gi") from None
    spec.memory = str(memory)
    _network(doc, spec)
    spec.images = _images(doc.get("images") or [], base_dir)
    registry = doc.get("registry", True)
    if not isinstance(registry, bool):
        raise SpecError("registry", f"must be true or false, got {registry!r}")
    spec.registry = registry
    ssh = _mapping(doc, "ssh")
    unknown = set(ssh) - {"user", "key"}
    if unknown:
        raise SpecError(f"ssh.{sorted(unknown)[0]}", "unknown key (known: user, key)")
    spec.ssh_user = str(ssh.get("user", "root"))
    if "key" in ssh:
        key = Path(str(ssh["key"])).expanduser()
        if not key.is_absolute() and base_dir is not None:
            key = base_dir / key
        if not key.is_file():
            raise SpecError("ssh.key", f"SSH key file {key} does not exist")
        spec.ssh_key = str(key.resolve())
    elif spec.provider == "ssh":
        raise SpecError("ssh.key", "the ssh provider needs the key that logs in to the hosts")
    return spec


def load_spec(path: Path) -> ClusterSpec:
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError("spec", f"cannot read {path}: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError("spec", f"{path} is not valid YAML: {e}") from None
    return parse_spec(doc, path.resolve().parent)
