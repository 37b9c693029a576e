"""A watch-fed, in-process copy of one resource type, for the authorizers inside the API server.

Authorization runs on every request, so it must not read the store each time. Like an informer,
but over the ObjectStore directly (no HTTP, no credentials): list, then watch from the list's
revision, and re-list when the watch ends or history was compacted. Changes take effect as soon
as the watch delivers them, so an RBAC edit needs no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubelite.api.registry import ResourceType

if TYPE_CHECKING:
    from kubelite.apiserver.objects import ObjectStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)


class LocalCache:
    def __init__(
        self,
        objects: ObjectStore,
        rt: ResourceType,
        on_change: Callable[[str, Obj | None, Obj | None], None] | None = None,
        transform: Callable[[Obj], Obj] | None = None,
    ) -> None:
        """``on_change(type, old, new)`` runs for every ADDED/MODIFIED/DELETED and for re-list diffs.
        ``transform`` keeps only what the caller reads (a cache of every pod in full would double
        the API server's memory)."""
        self.objects = objects
        self.rt = rt
        self.transform = transform
        self.items: dict[Key, Obj] = {}
        self.on_change = on_change
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Bumped on every change: callers that derive indexes can tell when to rebuild.
        self.generation = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"local-cache-{self.rt.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_synced(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self.items.get((namespace or "", name))

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self.items.values())
        return [o for (ns, _), o in self.items.items() if ns == namespace]

    @staticmethod
    def key_of(obj: Obj) -> Key:
        m = obj.get("metadata") or {}
        return (m.get("namespace") or "", m.get("name") or "")

    def _apply(self, type_: str, obj: Obj) -> None:
        if self.transform is not None:
            obj = self.transform(obj)
        key = self.key_of(obj)
        old = self.items.get(key)
        if type_ == "DELETED":
            self.items.pop(key, None)
            new = None
        else:
            self.items[key] = obj
            new = obj
        self.generation += 1
        if self.on_change is not None:
            try:
                self.on_change(type_, old, new)
            except Exception:
                log.exception("%s cache handler failed", self.rt.plural)

    async def _run(self) -> None:
        from kubelite.apiserver.objects import ListOptions

        while True:
            try:
                listed = await self.objects.list(self.rt, None, ListOptions())
                fresh = {self.key_of(o): o for o in listed["items"]}
                for key in set(self.items) - set(fresh):
                    self._apply("DELETED", self.items[key])
                for key, obj in fresh.items():
                    self._apply("MODIFIED" if key in self.items else "ADDED", obj)
                self.synced.set()
                rv = listed["metadata"]["resourceVersion"]
                events = self.objects.watch(self.rt, None, ListOptions(resource_version=rv), False, 3600)
                try:
                    async for event in events:
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._apply(event["type"], event["object"])
                        elif event["type"] == "ERROR":
                            break  # compacted: re-list
                finally:
                    await events.aclose()  # type: ignore[attr-defined]
            except asyncio.CancelledError:
                raise
            except Exception as e:  # storage hiccup: keep serving the last view, retry shortly
                log.warning("%s cache: %s; re-listing", self.rt.plural, e)
                await asyncio.sleep(1)
