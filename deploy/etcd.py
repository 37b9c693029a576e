"""etcd on every master (datastore etcd): a static cluster, TLS between members and towards clients.

The members are the inventory's ``masters`` group, so ``initial-cluster`` is known before any of
them starts (as kubespray does); adding or removing a master later is an etcd membership change,
which ``kubelite cluster`` refuses. Peers and clients must present a certificate from the
cluster's own etcd CA (``--client-cert-auth``): the certificates are made on the controlling
machine (kubelite.provision.credentials.ensure_shared_pki) and pushed here 0600 root:root, never
through a command line or a log. etcd runs as ``kubelite-etcd.service`` with its data in
/var/lib/etcd/kubelite; Debian's own ``etcd.service`` (which starts a default localhost member) is
kept stopped and disabled.

Debian's etcd-server and etcd-client come baked into the node image; on a machine without them
(an older image, an ssh host) the .debs are downloaded once on the controlling machine with its own
apt sources (``apt-get download``) and pushed: the node needs no network.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import threading
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import Sha256File
from pyinfra.facts.server import Which
from pyinfra.operations import files, server, systemd

from deploy.secrets import push_private
from deploy.services import service_running
from deploy.templates import template
from kubelite.provision.credentials import ETCD_TLS
from kubelite.provision.image import cache_dir
from kubelite.provision.spec import ClusterSpec
from kubelite.provision.state import ClusterState

CLIENT_PORT, PEER_PORT = 2379, 2380
DATA_DIR = "/var/lib/etcd/kubelite"
UNIT = "kubelite-etcd"
PACKAGES = ("etcd-server", "etcd-client")
DEBS_DIR = "/opt/kubelite/debs"
# What a member needs of ensure_etcd_pki's files (the CA key stays on the controlling machine).
MEMBER_FILES = ("ca.crt", "peer.crt", "peer.key", "server.crt", "server.key", "client.crt", "client.key")
_DOWNLOAD = threading.Lock()


def cluster_state() -> ClusterState:
    """The cluster's state dir on the controlling machine (the inventory names its secret files)."""
    d = Path(host.data.token_secret_file).parent
    return ClusterState(d.name, d.parent)


def cluster_spec() -> ClusterSpec:
    return cluster_state().load_spec()


def members() -> list[tuple[str, str]]:
    """(node name, address) of every master, in inventory order."""
    return [(h.data.node_name, h.data.node_ip) for h in inventory.get_group("masters")]


def datastore_endpoint() -> str:
    """The kubelite server's ``--datastore-endpoint``: every member, this master's own first."""
    me = host.data.node_ip
    ips = [me] + [ip for _, ip in members() if ip != me]
    query = f"cacert={ETCD_TLS}/ca.crt&cert={ETCD_TLS}/client.crt&key={ETCD_TLS}/client.key"
    return "etcds://" + ",".join(f"{ip}:{CLIENT_PORT}" for ip in ips) + "?" + query


def refuse_other_ca(local: Path, remote: str) -> None:
    """Never replace a CA a node already has: every credential issued from it would stop working."""
    have = host.get_fact(Sha256File, path=remote)
    if have and have != hashlib.sha256(local.read_bytes()).hexdigest():
        raise DeployError(
            f"{host.name}: {remote} holds another CA than the cluster's ({local}): this machine belongs to "
            "another cluster; refusing to replace it (remove kubelite from it first)"
        )


def local_debs() -> list[Path]:
    """The etcd .debs on the controlling machine, downloaded once into the cache."""
    d = cache_dir() / "debs"
    d.mkdir(parents=True, exist_ok=True)
    # pyinfra plans every host in a greenlet of one process: a (gevent-patched) thread lock
    # serialises them; another process downloading at the same time only renames its own files.
    with _DOWNLOAD:
        for pkg in PACKAGES:
            if list(d.glob(f"{pkg}_*.deb")):
                continue
            with tempfile.TemporaryDirectory(dir=d) as tmp:
                proc = subprocess.run(["apt-get", "download", "-q", pkg], cwd=tmp, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise DeployError(f"apt-get download {pkg} failed on this machine: {proc.stderr.strip()[-300:]}")
                for deb in Path(tmp).glob("*.deb"):
                    deb.rename(d / deb.name)
        return sorted(p for pkg in PACKAGES for p in d.glob(f"{pkg}_*.deb"))


def install_packages() -> None:
    if host.get_fact(Which, command="etcd") and host.get_fact(Which, command="etcdctl"):
        return
    debs = local_debs()
    for deb in debs:
        files.put(name=f"Upload {deb.name}", src=str(deb), dest=f"{DEBS_DIR}/{deb.name}", mode="644")
    names = " ".join(f"{DEBS_DIR}/{deb.name}" for deb in debs)
    server.shell(
        name="Install etcd-server and etcd-client from the uploaded .debs (offline)",
        commands=[
            # policy-rc.d 101: the package must not start its default member (it would hold port 2379).
            "if [ -e /usr/sbin/policy-rc.d ]; then dpkg -i " + names + "; else "
            "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && "
            "{ dpkg -i " + names + "; rc=$?; rm -f /usr/sbin/policy-rc.d; exit $rc; }; fi",
            "systemctl disable etcd.service",
        ],
    )  # fmt: skip


@deploy("etcd member")
def install_etcd() -> None:
    data = host.data
    cluster = cluster_state()
    install_packages()
    files.directory(name="Directory /etc/kubelite", path="/etc/kubelite", mode="755", present=True)
    files.directory(name=f"etcd data directory {DATA_DIR} (0700)", path=DATA_DIR, mode="700", present=True)
    files.directory(name=f"etcd certificates directory {ETCD_TLS} (0700)", path=ETCD_TLS, mode="700", present=True)
    local = cluster.etcd_member_dir(data.node_name) / "etcd"
    refuse_other_ca(local / "ca.crt", f"{ETCD_TLS}/ca.crt")
    certs = [push_private(f"etcd {name} (0600)", local / name, f"{ETCD_TLS}/{name}") for name in MEMBER_FILES]
    # Enabled by the package, it would start a second, default member on 127.0.0.1:2379.
    systemd.service(name="Debian's etcd.service stopped and disabled", service="etcd", running=False, enabled=False)
    env = files.template(
        name="etcd settings /etc/kubelite/etcd.env",
        src=template("config/etcd.env.j2"), dest="/etc/kubelite/etcd.env", mode="644",
        member=data.node_name, ip=data.node_ip, data_dir=DATA_DIR, tls=ETCD_TLS,
        client_port=CLIENT_PORT, peer_port=PEER_PORT, cluster_token=f"kubelite-{cluster.name}",
        initial_cluster=",".join(f"{n}=https://{ip}:{PEER_PORT}" for n, ip in members()),
    )  # fmt: skip
    unit = files.template(
        name=f"Unit {UNIT}.service",
        src=template("systemd/etcd.service.j2"), dest=f"/etc/systemd/system/{UNIT}.service", mode="644",
    )  # fmt: skip
    service_running(UNIT, unit, env, *certs)
