"""What every namespace needs for in-cluster API access: a ``default`` ServiceAccount and the CA.

* :class:`ServiceAccountsController` (kube-controller-manager's ``serviceaccount``): each active
  namespace has a ServiceAccount ``default``; one that is deleted comes back.
* :class:`RootCACertPublisher` (``root-ca-cert-publisher``): each active namespace has a ConfigMap
  ``kube-root-ca.crt`` whose ``ca.crt`` is the cluster CA, so pods can verify the API server
  (the ServiceAccount admission mounts it next to the token). An edit or delete is undone.
  The CA comes from ``ControllerSettings.extra["ca_pem"]``; without it nothing is published.

Both are keyed by namespace name and read only their informers' caches; a namespace being
deleted is left alone (its content is going away).
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api.registry import resource
from kubelite.client import ApiError
from kubelite.controllers.base import CONFIGMAPS, NAMESPACES, Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

SERVICEACCOUNTS = resource("", "serviceaccounts")
DEFAULT_SERVICEACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions "
    "of Kubernetes clusters."
)


def _named(name: str) -> Any:
    """An event mapper: the namespace of an object called ``name``, else nothing."""

    def keys_for(obj: Obj) -> list[str]:
        m = obj.get("metadata") or {}
        return [str(m["namespace"])] if m.get("name") == name and m.get("namespace") else []

    return keys_for


def _active(ns: Obj | None) -> bool:
    if ns is None:
        return False
    return not (ns.get("metadata") or {}).get("deletionTimestamp") and (
        (ns.get("status") or {}).get("phase") != "Terminating"
    )


async def _create_ignoring_exists(ctrl: Controller, rt: Any, obj: Obj) -> bool:
    """Create ``obj``; False when it exists already (our cache lagged) or the namespace is closing."""
    try:
        await ctrl.client.create(rt, obj)
    except ApiError as e:
        if e.code == 409:
            return False
        if e.code in (403, 404) and "terminat" in str(e).lower():
            return False  # the namespace started terminating after our cache looked
        raise
    return True


class ServiceAccountsController(Controller):
    name = "serviceaccount"
    primary = NAMESPACES

    def setup(self) -> None:
        self.namespaces = self.watch_primary()
        self.serviceaccounts = self.watch_mapped(SERVICEACCOUNTS, _named(DEFAULT_SERVICEACCOUNT))

    async def reconcile(self, key: str) -> None:
        if not _active(self.namespaces.get(None, key)):
            return
        if self.serviceaccounts.get(key, DEFAULT_SERVICEACCOUNT) is not None:
            return
        sa = {"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": DEFAULT_SERVICEACCOUNT, "namespace": key}}
        if await _create_ignoring_exists(self, SERVICEACCOUNTS, sa):
            log.info("created serviceaccount %s/%s", key, DEFAULT_SERVICEACCOUNT)


class RootCACertPublisher(Controller):
    name = "rootcacert"
    primary = NAMESPACES

    def setup(self) -> None:
        raw = self.settings.extra.get("ca_pem")
        self.ca_pem = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        if not self.ca_pem:
            log.warning("rootcacert: no cluster CA given (settings.extra['ca_pem']); publishing nothing")
        self.namespaces = self.watch_primary()
        self.configmaps = self.watch_mapped(CONFIGMAPS, _named(ROOT_CA_CONFIGMAP))

    async def reconcile(self, key: str) -> None:
        if not self.ca_pem or not _active(self.namespaces.get(None, key)):
            return
        current = self.configmaps.get(key, ROOT_CA_CONFIGMAP)
        if current is None:
            cm = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": key,
                               "annotations": {DESCRIPTION: ROOT_CA_DESCRIPTION}},
                  "data": {ROOT_CA_KEY: self.ca_pem}}
            if await _create_ignoring_exists(self, CONFIGMAPS, cm):
                log.info("published %s in namespace %s", ROOT_CA_CONFIGMAP, key)
            return
        # Only the content matters (annotations are informational: no write for them).
        if current.get("data") == {ROOT_CA_KEY: self.ca_pem} and not current.get("binaryData"):
            return
        # Replace with the cached resourceVersion: a concurrent edit gives 409 and a retry.
        fixed = {**current, "data": {ROOT_CA_KEY: self.ca_pem}}
        fixed.pop("binaryData", None)
        try:
            await self.client.replace(CONFIGMAPS, fixed)
        except ApiError as e:
            if e.code == 404:
                self.queue.add(key)  # deleted meanwhile: recreate on the next pass
                return
            raise
        log.info("restored %s in namespace %s", ROOT_CA_CONFIGMAP, key)
