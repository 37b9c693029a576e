"""The control plane on a master: settings, systemd unit, service (restarted when either changes).

The server serves HTTPS on its port with the cluster's certificates (in /var/lib/kubelite/server/tls,
the serving one with this master's address and name as SANs) and takes the cluster's join-token
secret from its 0600 settings file.

One master on sqlite makes the cluster CA itself at its first start. With datastore etcd every
master must share the CA, the ServiceAccount key and the token secret: the CA and key made on the
controlling machine are pushed 0600 before the first start (each server then issues its own
serving certificate from it), etcd runs on every master (deploy/etcd.py), and the server's
datastore is every member over TLS; leader election among the servers is on with etcd.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from deploy.etcd import cluster_state, datastore_endpoint, install_etcd, refuse_other_ca
from deploy.secrets import private_file, push_private, read_secret
from deploy.services import service_running
from deploy.templates import template
from kubelite.provision.credentials import SERVER_TLS

# The shared part of `kubelite server`'s tls dir; its leaves each server issues for itself.
SHARED_PKI = ("ca.crt", "ca.key", "service-account.key")


def push_cluster_pki() -> list[OperationMeta]:
    local = cluster_state().cluster_pki_dir
    files.directory(name=f"Server TLS directory {SERVER_TLS} (0700)", path=SERVER_TLS, mode="700", present=True)
    refuse_other_ca(local / "ca.crt", f"{SERVER_TLS}/ca.crt")
    return [push_private(f"Shared cluster {name} (0600)", local / name, f"{SERVER_TLS}/{name}") for name in SHARED_PKI]


@deploy("kubelite server")
def install_server() -> None:
    data = host.data
    etcd = cluster_state().load_spec().datastore == "etcd"
    shared: list[OperationMeta] = []
    if etcd:
        shared = push_cluster_pki()
        install_etcd()
    env = private_file(
        "Server settings /etc/kubelite/server.env (0600: holds the join-token secret)",
        "config/server.env.j2", "/etc/kubelite/server.env",
        api_port=data.api_port, service_cidr=data.service_cidr, pod_cidr=data.pod_cidr,
        datastore_endpoint=datastore_endpoint() if etcd else "", tls_sans=data.tls_sans,
        token=read_secret(data.token_secret_file),
    )  # fmt: skip
    unit = files.template(
        name="Unit kubelite-server.service",
        src=template("systemd/kubelite-server.service.j2"), dest="/etc/systemd/system/kubelite-server.service",
        mode="644", build=data.build,
    )  # fmt: skip
    service_running("kubelite-server", unit, env, *shared)
