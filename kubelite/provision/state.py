"""A cluster's state directory: everything ``up`` made, so ``down``, ``status`` and ``add-node`` can find it.

``$KUBELITE_STATE_DIR/<name>``, else ``/var/lib/kubelite/clusters/<name>`` as root and
``~/.local/share/kubelite/clusters/<name>`` otherwise::

    spec.yaml        the effective spec (add-node / remove-node change the counts here)
    machines.json    [{name, role, address, extra}] in creation order
    id_ed25519(.pub) the cluster's SSH key (unless the spec names one)
    inventory.py     the pyinfra inventory generated from the machines
    kubeconfig       the admin kubeconfig (https, cluster CA, admin client certificate), fetched from
                     the first master with its server URLs rewritten to the masters' addresses  [secret]
    cluster-token    the join token's secret, generated here once per cluster                     [secret]
    join-token       the full join token K10<ca-hash>::server:<secret>, fetched from the master    [secret]
    pki/             datastore etcd only (0700, keys 0600): what every master shares, made here once  [secret]
      cluster/         the cluster CA and ServiceAccount key (kubelite.auth.pki.ensure_cluster_pki)
      etcd-ca/         the etcd CA
      etcd/<node>/etcd/  that member's peer, server and client certificates (ensure_etcd_pki)
    deploy-<phase>.log/.json   pyinfra's log and JSON results of the last run of each phase
    machines/<node>/ provider files (the nspawn overlay, its console log, the node's /var/lib/kubelite)

The directory is 0700 and every secret file 0600: the secrets reach the nodes only in files
(EnvironmentFiles written 0600 by the deploy), never on a command line or in any output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubelite.auth.pki import write_private
from kubelite.provision.errors import ProvisionError
from kubelite.provision.spec import ClusterSpec, parse_spec

__all__ = ["SECRET_FILES", "ClusterState", "Machine", "clusters_root", "write_private"]

# Files of the state dir that hold credentials (mode 0600); everything else in it is safe to show.
SECRET_FILES = ("kubeconfig", "cluster-token", "join-token", "id_ed25519")


@dataclass
class Machine:
    name: str
    role: str  # master | worker
    address: str
    extra: dict[str, Any] = field(default_factory=dict)  # provider data (pid, paths)


def clusters_root() -> Path:
    env = os.environ.get("KUBELITE_STATE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/kubelite/clusters")
    return Path.home() / ".local/share/kubelite/clusters"


class ClusterState:
    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = name
        self.dir = (root or clusters_root()) / name

    @property
    def exists(self) -> bool:
        return (self.dir / "spec.yaml").is_file()

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.py"

    @property
    def token_secret_file(self) -> Path:
        return self.dir / "cluster-token"

    @property
    def join_token_file(self) -> Path:
        return self.dir / "join-token"

    @property
    def cluster_pki_dir(self) -> Path:
        return self.dir / "pki" / "cluster"

    @property
    def etcd_ca_dir(self) -> Path:
        return self.dir / "pki" / "etcd-ca"

    def etcd_member_dir(self, node: str) -> Path:
        """``ensure_etcd_pki`` writes under ``<this>/etcd/``."""
        return self.dir / "pki" / "etcd" / node

    def ensure_dir(self) -> None:
        """The state dir, private to its owner: it holds the cluster's credentials."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)

    def token_secret(self, existing: str | None = None) -> str:
        """The cluster's join-token secret: kept once made; else ``existing`` (the secret the hosts
        already use, for a cluster taken over by a new state dir), else a new random one."""
        path = self.token_secret_file
        if path.is_file():
            return path.read_text().strip()
        secret = existing or secrets.token_hex(32)
        self.ensure_dir()
        write_private(path, (secret + "\n").encode())
        return secret

    def machine_dir(self, node: str) -> Path:
        return self.dir / "machines" / node

    # -- spec ------------------------------------------------------------------------------------

    def load_spec(self) -> ClusterSpec:
        if not self.exists:
            raise ProvisionError(f"no cluster named {self.name!r} (looked in {self.dir})")
        return parse_spec(yaml.safe_load((self.dir / "spec.yaml").read_text()), self.dir)

    def save_spec(self, spec: ClusterSpec) -> None:
        self.ensure_dir()
        _write(self.dir / "spec.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))

    # -- machines --------------------------------------------------------------------------------

    def machines(self) -> list[Machine]:
        path = self.dir / "machines.json"
        if not path.is_file():
            return []
        return [Machine(**m) for m in json.loads(path.read_text())]

    def save_machines(self, machines: list[Machine]) -> None:
        self.ensure_dir()
        _write(self.dir / "machines.json", json.dumps([asdict(m) for m in machines], indent=2))

    # -- ssh key ---------------------------------------------------------------------------------

    def ssh_key(self, spec: ClusterSpec) -> Path:
        """The spec's key, or the cluster's own (generated once)."""
        if spec.ssh_key:
            return Path(spec.ssh_key)
        key = self.dir / "id_ed25519"
        if not key.is_file():
            self.ensure_dir()
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"kubelite-{self.name}",
                            "-f", str(key)], check=True)  # fmt: skip
        return key

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _write(path: Path, text: str) -> None:
    """Write through a temp file and rename, so a crash never leaves half a state file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)

