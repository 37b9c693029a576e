"""The garbage collector: deleting an owner deletes (or orphans) its dependents.

Kubernetes' design (pkg/controller/garbagecollector), kept small. Informers over every kind that
may carry ownerReferences feed one graph: object UID -> its owners' and dependents' UIDs. Work
items are object UIDs; ``reconcile(uid)`` is client-go's ``attemptToDeleteItem``:

* An object being deleted with the ``orphan`` finalizer: strip its ownerReference from every
  dependent, then remove the finalizer (the server then deletes it).
* An object being deleted with ``foregroundDeletion``: its dependents are deleted (they see it as
  "waiting for dependents"); once none with ``blockOwnerDeletion`` is left, remove the finalizer.
* Any other object with owners: sort its owners into solid (present), dangling (absent) and
  waiting (deleting in the foreground). With a solid owner it stays; only the references to
  dangling/waiting owners are removed. Otherwise it is deleted: in the foreground if it has
  dependents and an owner is waiting (so the chain below goes first), else with the policy its
  own finalizers ask for, else in the background.

An owner is absent only when no object with its UID exists: the graph says so first, and a live
GET confirms it (the cache lags behind a just-created owner); an object of that name with another
UID is a different object, so the reference dangles. The API server adds the ``orphan`` /
``foregroundDeletion`` finalizers when a DELETE carries propagationPolicy Orphan / Foreground;
Background (kubectl's and the Python client's default) deletes the owner at once and leaves its
dependents to this controller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.api.registry import RESOURCES, ResourceType, by_kind
from kubelite.client import ApiError
from kubelite.controllers.base import EVENTS, NODES, PODS, Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"

# Every namespaced kind but Events (the chattiest kind, and one that points at objects through
# involvedObject rather than ownerReferences), plus Nodes, which own their Leases.
GC_KINDS: tuple[ResourceType, ...] = (*(r for r in RESOURCES if r.namespaced and r is not EVENTS), NODES)


@dataclass(frozen=True)
class _Item:
    """One object in the graph: what reconcile needs without holding the whole object."""

    rt: ResourceType
    namespace: str | None
    name: str
    uid: str
    owners: tuple[Obj, ...]
    deleting: bool
    finalizers: tuple[str, ...]

    @classmethod
    def of(cls, rt: ResourceType, obj: Mapping[str, Any]) -> _Item:
        m = obj.get("metadata") or {}
        return cls(
            rt=rt,
            namespace=m.get("namespace"),
            name=str(m.get("name")),
            uid=str(m.get("uid")),
            owners=tuple(r for r in m.get("ownerReferences") or [] if isinstance(r, dict) and r.get("uid")),
            deleting=bool(m.get("deletionTimestamp")),
            finalizers=tuple(m.get("finalizers") or ()),
        )

    @property
    def owner_uids(self) -> set[str]:
        return {str(r["uid"]) for r in self.owners}

    def ref_to(self, owner_uid: str) -> Obj | None:
        return next((r for r in self.owners if r.get("uid") == owner_uid), None)

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.rt.kind} {where}{self.name}"


class GarbageCollector(Controller):
    name = "garbagecollector"
    # The GC has no single primary kind: its work items are UIDs of objects of every GC_KINDS kind.
    primary = PODS

    def setup(self) -> None:
        self._items: dict[str, _Item] = {}
        self._dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids (owner may be absent)
        for rt in GC_KINDS:
            self._watch(rt)

    def _watch(self, rt: ResourceType) -> None:
        self.informer(rt).add_handler(
            on_add=lambda obj: self._upsert(rt, obj),
            on_update=lambda _old, obj: self._upsert(rt, obj),
            on_delete=lambda obj: self._remove(rt, obj),
        )

    # ---- the graph (event handlers: quick, no I/O) -------------------------------------------

    def _upsert(self, rt: ResourceType, obj: Obj) -> None:
        item = _Item.of(rt, obj)
        old = self._items.get(item.uid)
        self._items[item.uid] = item
        old_owners = old.owner_uids if old else set()
        for gone in old_owners - item.owner_uids:
            self._unlink(gone, item.uid)
            self.queue.add(gone)  # a foreground owner may have been waiting for this one
        for owner in item.owner_uids - old_owners:
            self._dependents.setdefault(owner, set()).add(item.uid)
        if item.owners or (item.deleting and (ORPHAN in item.finalizers or FOREGROUND in item.finalizers)):
            self.queue.add(item.uid)

    def _remove(self, rt: ResourceType, obj: Obj) -> None:
        item = self._items.pop(str((obj.get("metadata") or {}).get("uid")), None) or _Item.of(rt, obj)
        for owner in item.owner_uids:
            self._unlink(owner, item.uid)
            self.queue.add(owner)  # a foreground owner may be done now
        for dependent in self._dependents.get(item.uid, ()):
            self.queue.add(dependent)  # their owner is gone

    def _unlink(self, owner: str, dependent: str) -> None:
        deps = self._dependents.get(owner)
        if deps is not None:
            deps.discard(dependent)
            if not deps:
                del self._dependents[owner]

    def dependents(self, uid: str) -> list[_Item]:
        return [self._items[d] for d in sorted(self._dependents.get(uid, ())) if d in self._items]

    # ---- work --------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        item = self._items.get(key)
        if item is None:
            return
        if item.deleting:
            if ORPHAN in item.finalizers:
                await self._orphan_dependents(item)
            elif FOREGROUND in item.finalizers:
                await self._process_deleting_dependents(item)
            return
        if item.owners:
            await self._attempt_to_delete(item)

    async def _attempt_to_delete(self, item: _Item) -> None:
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        for ref in item.owners:
            state = await self._owner_state(item, ref)
            {"solid": solid, "dangling": dangling, "waiting": waiting}[state].append(ref)
        if solid:
            stale = {str(r["uid"]) for r in (*dangling, *waiting)}
            if stale:
                await self._remove_owner_refs(item, stale)
            return
        if waiting and self.dependents(item.uid):
            # Delete this one in the foreground too, so its own dependents go before it does.
            policy = "Foreground"
        elif ORPHAN in item.finalizers:
            policy = "Orphan"
        elif FOREGROUND in item.finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        log.info("deleting %s (owners gone or being deleted), propagation %s", item, policy)
        await self._delete(item, policy)

    async def _owner_state(self, item: _Item, ref: Mapping[str, Any]) -> str:
        uid = str(ref["uid"])
        owner = self._items.get(uid)
        if owner is not None:
            return "waiting" if owner.deleting and FOREGROUND in owner.finalizers else "solid"
        rt = by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if rt is None:
            log.warning("%s: owner %s %s is of a kind not served here; keeping it", item, ref.get("kind"), ref.get("name"))
            return "solid"
        try:
            live = await self.client.get(rt, str(ref.get("name")), namespace=item.namespace if rt.namespaced else None)
        except ApiError as e:
            if e.code == 404:
                return "dangling"
            raise
        m = live.get("metadata") or {}
        if m.get("uid") != uid:
            return "dangling"  # same name, different object
        # Present but not in the graph yet: judge it as it is now.
        return "waiting" if m.get("deletionTimestamp") and FOREGROUND in (m.get("finalizers") or []) else "solid"

    async def _process_deleting_dependents(self, owner: _Item) -> None:
        dependents = self.dependents(owner.uid)
        blocking = [d for d in dependents if (d.ref_to(owner.uid) or {}).get("blockOwnerDeletion")]
        if not blocking:
            log.info("%s: no blocking dependents left, finishing foreground deletion", owner)
            await self._remove_finalizer(owner, FOREGROUND)
            return
        for d in dependents:
            if not d.deleting:
                self.queue.add(d.uid)

    async def _orphan_dependents(self, owner: _Item) -> None:
        for d in self.dependents(owner.uid):
            await self._remove_owner_refs(d, {owner.uid})
        log.info("%s: dependents orphaned", owner)
        await self._remove_finalizer(owner, ORPHAN)

    # ---- writes ------------------------------------------------------------------------------

    async def _get_live(self, item: _Item) -> Obj | None:
        """The object as the server has it now, or None if it is gone (or another object took the name)."""
        try:
            live = await self.client.get(item.rt, item.name, namespace=item.namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        return live if (live.get("metadata") or {}).get("uid") == item.uid else None

    async def _remove_owner_refs(self, item: _Item, owner_uids: set[str]) -> None:
        live = await self._get_live(item)
        if live is None:
            return
        refs = (live.get("metadata") or {}).get("ownerReferences") or []
        kept = [r for r in refs if r.get("uid") not in owner_uids]
        if len(kept) == len(refs):
            return
        # resourceVersion makes the merge patch compare-and-swap; a 409 retries on fresh data.
        patch = {"metadata": {"ownerReferences": kept or None, "resourceVersion": live["metadata"]["resourceVersion"]}}
        await self.client.patch(item.rt, item.name, patch, namespace=item.namespace, patch_type="merge")

    async def _remove_finalizer(self, item: _Item, finalizer: str) -> None:
        live = await self._get_live(item)
        if live is None:
            return
        finalizers = (live.get("metadata") or {}).get("finalizers") or []
        if finalizer not in finalizers:
            return
        kept = [f for f in finalizers if f != finalizer]
        patch = {"metadata": {"finalizers": kept or None, "resourceVersion": live["metadata"]["resourceVersion"]}}
        await self.client.patch(item.rt, item.name, patch, namespace=item.namespace, patch_type="merge")

    async def _delete(self, item: _Item, policy: str) -> None:
        try:
            await self.client.delete(
                item.rt, item.name, namespace=item.namespace, propagation_policy=policy, preconditions={"uid": item.uid}
            )
        except ApiError as e:
            if e.code not in (404, 409):  # gone, or replaced by a new object of that name
                raise
