"""The machinery every controller shares: shared informers -> workqueue -> reconcile(key).

A controller module holds only its reconcile logic. It declares which informers it reads, maps
events to keys (its own objects, or the owner of a changed dependent), and implements
``reconcile(key)``: read the cached object, return quietly if it is gone, converge, raise to be
retried with backoff. Workers start after every informer it reads has synced.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kubelite.api.registry import ResourceType
from kubelite.api.registry import resource as _rt
from kubelite.client import ApiClient, Informer, WorkQueue
from kubelite.client.informer import object_key
from kubelite.client.workqueue import run_workers
from kubelite.controllers.events import EventRecorder

log = logging.getLogger(__name__)
Obj = dict[str, Any]


PODS = _rt("", "pods")
NODES = _rt("", "nodes")
NAMESPACES = _rt("", "namespaces")
SERVICES = _rt("", "services")
ENDPOINTS = _rt("", "endpoints")
EVENTS = _rt("", "events")
PVCS = _rt("", "persistentvolumeclaims")
PVS = _rt("", "persistentvolumes")
CONFIGMAPS = _rt("", "configmaps")
SECRETS = _rt("", "secrets")
DEPLOYMENTS = _rt("apps", "deployments")
REPLICASETS = _rt("apps", "replicasets")
DAEMONSETS = _rt("apps", "daemonsets")
STATEFULSETS = _rt("apps", "statefulsets")
LEASES = _rt("coordination.k8s.io", "leases")


@dataclass
class ControllerSettings:
    """Tunables (flags of `kubelite server` / `kubelite controller-manager`)."""

    # Node lifecycle: a node whose lease is older than this is Ready=Unknown and tainted unreachable.
    node_monitor_grace_period: float = 10.0
    node_monitor_period: float = 1.0
    # Default tolerationSeconds added for not-ready/unreachable NoExecute taints (Kubernetes: 300 s).
    default_toleration_seconds: int = 5
    # StatefulSet pods on an unreachable node are force-deleted only after this (> agent fencing period).
    statefulset_force_delete_after: float = 30.0
    workers: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


class SharedInformers:
    """One informer per resource type, shared by every controller in the process."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._informers: dict[str, Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def get(self, rt: ResourceType) -> Informer:
        key = f"{rt.group}/{rt.plural}"
        if key not in self._informers:
            self._informers[key] = Informer(self.client, rt)
            if self._tasks:  # started already: run the late one too
                self._tasks.append(asyncio.create_task(self._informers[key].run()))
        return self._informers[key]

    def start(self) -> None:
        for inf in self._informers.values():
            self._tasks.append(asyncio.create_task(inf.run(), name=f"informer-{inf.rt.plural}"))

    async def wait_synced(self, *rts: ResourceType) -> None:
        informers = [self.get(rt) for rt in rts] if rts else list(self._informers.values())
        await asyncio.gather(*(i.wait_synced() for i in informers))

    async def stop(self) -> None:
        for inf in self._informers.values():
            inf.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class ControllerContext:
    client: ApiClient
    informers: SharedInformers
    recorder: EventRecorder
    settings: ControllerSettings


def owner_of(obj: Obj, kind: str) -> Obj | None:
    """The controller ownerReference of ``obj`` if it is of ``kind``."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            return dict(ref)
    return None


def controller_ref(owner: Obj) -> Obj:
    m = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": m["name"],
        "uid": m["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _on_all_changes(inf: Informer, on_change: Callable[[Obj], None]) -> None:
    """Call ``on_change`` for an added or deleted object, and for both sides of an update."""

    def on_update(old: Obj, new: Obj) -> None:
        on_change(old)
        on_change(new)

    inf.add_handler(on_add=on_change, on_update=on_update, on_delete=on_change)


class Controller(abc.ABC):
    """Subclasses set ``name`` and ``primary``, register handlers in ``setup()``, implement ``reconcile``."""

    name: ClassVar[str]
    primary: ClassVar[ResourceType]

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.settings = ctx.settings
        self.queue: WorkQueue[str] = WorkQueue(name=self.name)
        self._reads: list[ResourceType] = []
        self.setup()

    # ---- wiring ------------------------------------------------------------------------------

    def informer(self, rt: ResourceType) -> Informer:
        if rt not in self._reads:
            self._reads.append(rt)
        return self.ctx.informers.get(rt)

    def watch_primary(self) -> Informer:
        """Enqueue the key of every primary object that is added, changed or deleted."""
        inf = self.informer(self.primary)
        inf.add_handler(
            on_add=lambda o: self.enqueue(o),
            on_update=lambda _old, new: self.enqueue(new),
            on_delete=lambda o: self.enqueue(o),
        )
        return inf

    def watch_owned(self, rt: ResourceType, owner_kind: str | None = None) -> Informer:
        """Enqueue the controlling owner (of the primary kind) when a dependent changes."""
        kind = owner_kind or self.primary.kind
        inf = self.informer(rt)

        def on_change(obj: Obj) -> None:
            ref = owner_of(obj, kind)
            ns = (obj.get("metadata") or {}).get("namespace")
            if ref is not None:
                self.queue.add(f"{ns}/{ref['name']}" if ns else ref["name"])

        _on_all_changes(inf, on_change)
        return inf

    def watch_mapped(self, rt: ResourceType, keys_for: Callable[[Obj], list[str]]) -> Informer:
        """Enqueue whatever keys ``keys_for(obj)`` returns when an object of ``rt`` changes."""
        inf = self.informer(rt)

        def on_change(obj: Obj) -> None:
            for key in keys_for(obj):
                self.queue.add(key)

        _on_all_changes(inf, on_change)
        return inf

    def enqueue(self, obj: Obj, after: float = 0.0) -> None:
        key = object_key(obj)
        if after > 0:
            self.queue.add_after(key, after)
        else:
            self.queue.add(key)

    @abc.abstractmethod
    def setup(self) -> None:
        """Register informers and handlers (called from __init__)."""

    @abc.abstractmethod
    async def reconcile(self, key: str) -> None:
        """Converge one object; raise to retry with backoff."""

    # ---- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ctx.informers.wait_synced(*self._reads)
        log.info("controller %s started", self.name)
        try:
            await run_workers(self.queue, self.reconcile, workers=self.settings.workers)
        finally:
            self.queue.shut_down()
