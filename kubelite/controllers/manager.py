"""Runs the scheduler and the enabled controllers in one process (inside `kubelite server`, or alone).

``--controllers`` works like kube-controller-manager's flag: ``*`` is every controller, ``-name``
turns one off, ``name`` turns one on (``*,-garbagecollector``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from kubelite.client import ApiClient
from kubelite.controllers.base import Controller, ControllerContext, ControllerSettings, SharedInformers
from kubelite.controllers.events import EventRecorder
from kubelite.controllers.leaderelection import LeaderElectionConfig, LeaderElector

log = logging.getLogger(__name__)

# name -> "module:Class". The scheduler runs here too, as one more component.
COMPONENTS: dict[str, str] = {
    "scheduler": "kubelite.scheduler.scheduler:Scheduler",
    "replicaset": "kubelite.controllers.replicaset:ReplicaSetController",
    "deployment": "kubelite.controllers.deployment:DeploymentController",
    "daemonset": "kubelite.controllers.daemonset:DaemonSetController",
    "statefulset": "kubelite.controllers.statefulset:StatefulSetController",
    "endpoints": "kubelite.controllers.endpoints:EndpointsController",
    "nodelifecycle": "kubelite.controllers.nodelifecycle:NodeLifecycleController",
    "garbagecollector": "kubelite.controllers.garbagecollector:GarbageCollector",
    "podgc": "kubelite.controllers.podgc:PodGCController",
    "nodeipam": "kubelite.controllers.nodeipam:NodeIpamController",
    "nodepassword": "kubelite.controllers.nodepassword:NodePasswordController",
    "serviceaccount": "kubelite.controllers.serviceaccount:ServiceAccountsController",
    "rootcacert": "kubelite.controllers.serviceaccount:RootCACertPublisher",
}


class UnknownControllerError(ValueError):
    pass


def select(spec: str) -> list[str]:
    """Resolve a --controllers value into component names, in COMPONENTS order."""
    enabled: set[str] = set()
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        if raw == "*":
            enabled |= set(COMPONENTS)
            continue
        name = raw.lstrip("-")
        if name not in COMPONENTS:
            known = ", ".join(COMPONENTS)
            raise UnknownControllerError(f"unknown controller {name!r} (known: {known})")
        if raw.startswith("-"):
            enabled.discard(name)
        else:
            enabled.add(name)
    return [n for n in COMPONENTS if n in enabled]


def _load(name: str) -> type[Any]:
    module, cls = COMPONENTS[name].split(":")
    loaded: type[Any] = getattr(importlib.import_module(module), cls)
    return loaded


class ControllerManager:
    """Runs the components; with ``leader_elect`` only while this process holds the leader Lease
    (a fresh set of informers and components per term, stopped the moment leadership is lost)."""

    def __init__(
        self,
        client: ApiClient,
        names: list[str],
        settings: ControllerSettings | None = None,
        leader_elect: bool = False,
        election: LeaderElectionConfig | None = None,
    ) -> None:
        self.client = client
        self.names = names
        self.settings = settings or ControllerSettings()
        self.election = (election or LeaderElectionConfig()) if leader_elect else None
        self._build()
        self._tasks: list[asyncio.Task[None]] = []

    def _build(self) -> None:
        self.informers = SharedInformers(self.client)
        self.recorder = EventRecorder(self.client, "kubelite-controller-manager")
        self.ctx = ControllerContext(self.client, self.informers, self.recorder, self.settings)
        self.components: list[Controller] = [_load(name)(self.ctx) for name in self.names]

    async def run(self) -> None:
        if self.election is None:
            await self._run_components()
            return
        terms = 0

        async def lead() -> None:
            nonlocal terms
            if terms:
                self._build()  # workqueues are shut down when a term ends
            terms += 1
            await self._run_components()

        await LeaderElector(self.client, self.election, lead).run()

    async def _run_components(self) -> None:
        self.recorder.start()
        self.informers.start()
        self._tasks = [asyncio.create_task(c.run(), name=c.name) for c in self.components]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.informers.stop()
        await self.recorder.stop()
