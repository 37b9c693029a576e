"""The ``default/kubernetes`` Endpoints: where in-cluster clients reach the API server.

Pods find the API through the ``kubernetes`` Service (``KUBERNETES_SERVICE_HOST``:443); the Service
proxy sends that ClusterIP to the Service's Endpoints, which no controller writes (the Service has
no selector). As kube-apiserver's endpoint reconciler does, every server puts its own advertised
address and secure port there, and repairs the object every ``interval`` seconds should someone
change or delete it. Several servers on one datastore each add their address and keep the others'
(stale addresses of a master that is gone stay until removed by hand: there are no master leases).

The advertised address is ``--bind-address``, or with a wildcard bind the address of the interface
holding the default route (kube-apiserver's choice). A loopback bind is not reachable from a pod's
network namespace: then nothing is advertised and in-cluster clients cannot reach the API.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from kubelite.api.registry import resource
from kubelite.apiserver import errors
from kubelite.apiserver.objects import ObjectStore, WriteOptions

__all__ = ["advertise_address", "reconcile_kubernetes_endpoints", "run_endpoint_reconciler"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
ENDPOINTS = resource("", "endpoints")
NAMESPACE, NAME, PORT_NAME = "default", "kubernetes", "https"
MANAGER = "kube-apiserver"  # the field manager of our writes


def advertise_address(bind_address: str) -> str | None:
    """The address pods reach this server at, or None when it listens on loopback only."""
    ip = ipaddress.ip_address(bind_address or "0.0.0.0")
    if ip.is_loopback:
        return None
    if not ip.is_unspecified:
        return str(ip)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    probe = "2001:db8::1" if ip.version == 6 else "192.0.2.1"  # documentation ranges: connect() on UDP sends nothing
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((probe, 9))
        except OSError:
            return None  # no default route
        return str(s.getsockname()[0])


def _wanted(existing: Obj | None, ip: str, port: int) -> list[Obj]:
    """The subsets with ``ip:port`` present, other servers' addresses on the same port kept."""
    others: list[Obj] = []
    for subset in (existing or {}).get("subsets") or []:
        if any(p.get("name") == PORT_NAME and p.get("port") == port for p in subset.get("ports") or []):
            others += [a for a in subset.get("addresses") or [] if a.get("ip") and a.get("ip") != ip]
    addresses = sorted([{"ip": ip}, *others], key=lambda a: str(a["ip"]))
    return [{"addresses": addresses, "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]}]


async def reconcile_kubernetes_endpoints(objects: ObjectStore, ip: str, port: int) -> None:
    """Make ``default/kubernetes`` list ``ip:port`` (create it, or add to it); a no-op when it does."""
    try:
        existing: Obj | None = await objects.get(ENDPOINTS, NAMESPACE, NAME)
    except errors.StatusError as e:
        if e.code != 404:
            raise
        existing = None
    subsets = _wanted(existing, ip, port)
    if existing is None:
        body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": NAME, "namespace": NAMESPACE}}
        await objects.create(ENDPOINTS, NAMESPACE, {**body, "subsets": subsets}, WriteOptions(field_manager=MANAGER))
    elif existing.get("subsets") != subsets:
        await objects.update(ENDPOINTS, NAMESPACE, NAME, {**existing, "subsets": subsets}, opts=WriteOptions(field_manager=MANAGER))


async def run_endpoint_reconciler(objects: ObjectStore, ip: str, port: int, interval: float = 10.0) -> None:
    """Reconcile every ``interval`` seconds until cancelled (the caller did the first round); a
    conflict with another server's write is retried on the next round."""
    while True:
        await asyncio.sleep(interval)
        try:
            await reconcile_kubernetes_endpoints(objects, ip, port)
        except errors.StatusError as e:
            log.warning("cannot update Endpoints default/kubernetes: %s", e)
