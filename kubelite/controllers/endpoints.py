"""The Endpoints controller: for every Service with a selector, an Endpoints object of the same name
listing the IPs (and resolved target ports) of the pods it selects.

As in Kubernetes (pkg/controller/endpoint): Ready pods go in ``addresses``, the others in
``notReadyAddresses`` (all in ``addresses`` with ``publishNotReadyAddresses``); terminating and
finished pods and pods without an IP are left out; a named ``targetPort`` is looked up in each
pod's container ports, and a pod lacking it is left out of that port. Pods are grouped into one
subset per distinct list of resolved ports. Services without a selector have user-managed
Endpoints, which this controller never touches; a deleted Service takes its Endpoints with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubelite.client import ApiError
from kubelite.client.informer import split_key
from kubelite.controllers import podutil
from kubelite.controllers.base import ENDPOINTS, PODS, SERVICES, Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

HEADLESS_LABEL = "service.kubernetes.io/headless"
# Marks Endpoints this controller writes, so Endpoints whose Service is not there (yet) are deleted only if
# they are ours: a user may create selectorless Endpoints before their Service.
MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"
MANAGED_BY = "endpoint-controller"

# (name or "", port, protocol)
PortKey = tuple[str, int, str]


def selects(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    """A Service selector is a plain equality map (labels.SelectorFromSet)."""
    have = labels or {}
    return all(have.get(k) == v for k, v in selector.items())


def service_selector(svc: Obj) -> dict[str, str] | None:
    """The selector that drives Endpoints, or None when the Endpoints are the user's to manage."""
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    selector = spec.get("selector")
    # An empty selector counts as none: Kubernetes never selects every pod for a Service.
    return dict(selector) if selector else None


def resolve_target_port(svc_port: Mapping[str, Any], pod: Obj) -> int | None:
    """The pod port a Service port sends to: a number, or a named container port (None if absent)."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str):
        if target.isdigit():
            return int(target)
        protocol = svc_port.get("protocol") or "TCP"
        for container in (pod.get("spec") or {}).get("containers") or []:
            for p in container.get("ports") or []:
                if p.get("name") == target and (p.get("protocol") or "TCP") == protocol:
                    return int(p["containerPort"])
    return None


def _should_include(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if not status.get("podIP") or podutil.is_terminating(pod):
        return False
    # A finished pod will never serve again (ShouldPodBeInEndpoints).
    return status.get("phase") not in ("Succeeded", "Failed")


def _address(pod: Obj, svc: Obj) -> Obj:
    m = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    addr: Obj = {
        "ip": (pod.get("status") or {})["podIP"],
        "targetRef": {"kind": "Pod", "name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid")},
    }
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    # Per-pod DNS names exist only under the Service named by the pod's subdomain.
    if spec.get("hostname") and spec.get("subdomain") == (svc.get("metadata") or {}).get("name"):
        addr["hostname"] = spec["hostname"]
    return addr


def _addr_sort_key(addr: Obj) -> tuple[str, str]:
    return (str(addr.get("ip")), str((addr.get("targetRef") or {}).get("name")))


def desired_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """The ``subsets`` of the Service's Endpoints for the given (already selected) pods."""
    spec = svc.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    svc_ports = spec.get("ports") or []
    groups: dict[tuple[PortKey, ...], tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not _should_include(pod):
            continue
        ports: list[PortKey] = []
        for sp in svc_ports:
            number = resolve_target_port(sp, pod)
            if number is None:
                continue  # this pod does not serve that port
            ports.append((str(sp.get("name") or ""), number, str(sp.get("protocol") or "TCP")))
        if svc_ports and not ports:
            continue  # serves none of the Service's ports
        # Headless Services without ports still publish addresses (for DNS).
        ready, not_ready = groups.setdefault(tuple(sorted(ports)), ([], []))
        address = _address(pod, svc)
        (ready if publish_not_ready or podutil.is_pod_ready(pod) else not_ready).append(address)
    subsets: list[Obj] = []
    for ports_key in sorted(groups):
        ready, not_ready = groups[ports_key]
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_addr_sort_key)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_addr_sort_key)
        if ports_key:
            subset["ports"] = [
                {**({"name": name} if name else {}), "port": port, "protocol": protocol}
                for name, port, protocol in ports_key
            ]
        subsets.append(subset)
    return subsets


def _desired_labels(svc: Obj) -> dict[str, str]:
    labels = dict((svc.get("metadata") or {}).get("labels") or {})
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


class EndpointsController(Controller):
    name = "endpoints"
    primary = SERVICES

    def setup(self) -> None:
        self.services = self.watch_primary()
        # Services seen deleted: their Endpoints go too, even user-managed ones (as in Kubernetes).
        self._deleted: set[str] = set()
        self.services.add_handler(on_delete=lambda svc: self._deleted.add(_key(svc)))
        # What we last wrote per key: newer than the cache until our own write's event arrives, and
        # writing over a stale cached copy would only earn a 409.
        self._written: dict[str, Obj] = {}
        self.pods = self.watch_mapped(PODS, self._services_for_pod)
        # A changed or deleted Endpoints is put back (someone else wrote it); our own writes are no-ops.
        self.endpoints = self.watch_mapped(ENDPOINTS, lambda ep: [_key(ep)])

    def _services_for_pod(self, pod: Obj) -> list[str]:
        m = pod.get("metadata") or {}
        ns = m.get("namespace")
        keys = []
        for svc in self.services.list(ns):
            selector = service_selector(svc)
            if selector is not None and selects(selector, m.get("labels")):
                keys.append(_key(svc))
        return keys

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get_by_key(key)
        existing = _newest(self.endpoints.get_by_key(key), self._written.get(key))
        if svc is None:
            deleted = key in self._deleted
            self._deleted.discard(key)
            labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
            if existing is not None and (deleted or labels.get(MANAGED_BY_LABEL) == MANAGED_BY):
                await self._delete(ns, name)
            self._written.pop(key, None)
            return
        self._deleted.discard(key)
        selector = service_selector(svc)
        if selector is None:
            return
        pods = [p for p in self.pods.list(ns) if selects(selector, (p.get("metadata") or {}).get("labels"))]
        subsets = desired_subsets(svc, pods)
        labels = _desired_labels(svc)
        if existing is None:
            body: Obj = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, **({"labels": labels} if labels else {})},
                "subsets": subsets,
            }
            try:
                self._written[key] = await self.client.create(ENDPOINTS, body, namespace=ns)
            except ApiError as e:
                if e.code != 409:
                    raise
                # It exists but the cache has not seen it yet: the informer event brings us back.
            return
        if (existing.get("subsets") or []) == subsets and ((existing.get("metadata") or {}).get("labels") or {}) == labels:
            return
        updated = dict(existing)
        updated["metadata"] = {**(existing.get("metadata") or {}), "labels": labels}
        updated["subsets"] = subsets
        # resourceVersion from the cache makes this compare-and-swap; a 409 retries on fresh data.
        self._written[key] = await self.client.replace(ENDPOINTS, updated)

    async def _delete(self, ns: str | None, name: str) -> None:
        try:
            await self.client.delete(ENDPOINTS, name, namespace=ns)
        except ApiError as e:
            if e.code != 404:
                raise


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _newest(cached: Obj | None, written: Obj | None) -> Obj | None:
    """The cached object, unless what we wrote is newer (same object, higher resourceVersion)."""
    if cached is None or written is None:
        return cached  # deleted (or never cached): trust the cache
    same = (cached.get("metadata") or {}).get("uid") == (written.get("metadata") or {}).get("uid")
    return written if same and _rv(written) > _rv(cached) else cached


def _key(obj: Obj) -> str:
    m = obj.get("metadata") or {}
    return f"{m.get('namespace')}/{m.get('name')}"
