"""An informer: a local, watch-maintained cache of one resource type, with event handlers.

Like client-go's reflector + indexer + shared informer, in one asyncio task:

1. list (paged) and record the list's resourceVersion; the cache is replaced by the list and the
   handlers get the difference from what the cache held (ADDED / MODIFIED / DELETED), so a relist
   after a disconnect reports exactly what changed while away;
2. watch from that resourceVersion with bookmarks and a server-side timeout; every event updates
   the cache, then calls the handlers, in order; BOOKMARKs only advance the resourceVersion;
3. when the watch ends normally, watch again from the last resourceVersion; on 410 Gone list
   again; on connection errors retry with exponential backoff.

Cached objects are compacted (:func:`compact`): managedFields dropped, as Kubernetes' controllers
and scheduler do with their informers' transform (a PUT without them keeps the server's), and
short strings interned, since every pod repeats the same images, phases, node names and
condition types; together they take a cached pod from about 23 KB to 9 KB.

Handlers run inline in the informer's task and must be quick: they enqueue keys into a
WorkQueue and return (see ``kubelite.client.workqueue``). Objects in the cache are shared with
the handlers: treat them as read-only and copy before changing.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubelite.api.registry import ResourceType
from kubelite.client.rest import ApiClient, ApiConnectionError, ApiError

__all__ = ["Informer", "compact", "object_key", "split_key"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]


def object_key(obj: Obj) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's MetaNamespaceKey)."""
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name", "")
    return f"{ns}/{name}" if ns else str(name)


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of object_key: ``(namespace or None, name)``."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, key)


# Longer strings (certificates, scripts, annotations' JSON) are rarely repeated: not worth a lookup.
_INTERN_MAX = 64


def _intern_strings(node: Any, intern: Callable[[str], str] = sys.intern) -> None:
    pairs = node.items() if type(node) is dict else enumerate(node)
    for k, v in pairs:  # replacing a value in place keeps the dict's size, so iterating is safe
        t = type(v)
        if t is str:
            if len(v) <= _INTERN_MAX:
                node[k] = intern(v)
        elif t is dict or t is list:
            _intern_strings(v)


def compact(obj: Obj, keep_managed_fields: bool = False) -> Obj:
    """``obj`` made cheaper to keep (in place): without managedFields, short strings interned."""
    meta = obj.get("metadata")
    if not keep_managed_fields and type(meta) is dict:
        meta.pop("managedFields", None)
    _intern_strings(obj)
    return obj


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


@dataclass(frozen=True, slots=True)
class _Handler:
    on_add: Callable[[Obj], None] | None
    on_update: Callable[[Obj, Obj], None] | None
    on_delete: Callable[[Obj], None] | None


class Informer:
    def __init__(
        self,
        client: ApiClient,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        watch_timeout: int = 300,
        page_size: int = 500,
        max_backoff: float = 30.0,
        keep_managed_fields: bool = False,
    ) -> None:
        self.client = client
        self.rt = rt
        self.namespace = namespace if rt.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.max_backoff = max_backoff
        self.keep_managed_fields = keep_managed_fields
        self.resource_version: str | None = None  # last one seen (list, event, or bookmark)
        self._cache: dict[str, Obj] = {}
        # Keys per namespace, in cache order: a namespaced list() (every controller's sync) must not
        # scan tens of thousands of pods of other namespaces (client-go's namespace index).
        self._namespaces: dict[str, dict[str, None]] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._handlers: list[_Handler] = []
        self._synced = asyncio.Event()
        self._stopped = asyncio.Event()
        self._events_since_list = 0  # tells a 410 on a working watch from one right after listing

    # --- cache ---------------------------------------------------------------------------------

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self._cache.get(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> Obj | None:
        return self._cache.get(key)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self._cache.values())
        return [self._cache[k] for k in self._namespaces.get(namespace, ())]

    def keys(self) -> builtins.list[str]:
        return list(self._cache)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Index the cache by ``fn(obj)`` (several values allowed), for ``by_index(name, value)``.

        Informers are shared between controllers, so an index name means one thing per resource
        (e.g. "spec.nodeName"): adding a name that exists keeps the first function.
        """
        if name in self._index_funcs:
            return
        self._index_funcs[name] = fn
        self._indices[name] = {}
        for key, obj in self._cache.items():
            self._index_add(name, key, obj)

    def by_index(self, index_name: str, value: str) -> builtins.list[Obj]:
        try:
            keys = self._indices[index_name].get(value, ())
        except KeyError:
            raise KeyError(f"no index named {index_name!r}") from None
        return [self._cache[k] for k in sorted(keys)]

    def _index_add(self, name: str, key: str, obj: Obj) -> None:
        for value in self._index_funcs[name](obj):
            self._indices[name].setdefault(value, set()).add(key)

    def _index_remove(self, name: str, key: str, obj: Obj) -> None:
        index = self._indices[name]
        for value in self._index_funcs[name](obj):
            keys = index.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[value]

    def _store(self, key: str, obj: Obj | None) -> Obj | None:
        """Put (or with None, remove) an object, keeping indices right; returns the old one."""
        old = self._cache.pop(key, None) if obj is None else self._cache.get(key)
        ns, _name = split_key(key)
        if ns is not None and (old is None) != (obj is None):  # added or removed: the namespace's keys change
            keys = self._namespaces.setdefault(ns, {})
            if obj is None:
                keys.pop(key, None)
                if not keys:
                    del self._namespaces[ns]
            else:
                keys[key] = None
        for name in self._index_funcs:
            if old is not None:
                self._index_remove(name, key, old)
            if obj is not None:
                self._index_add(name, key, obj)
        if obj is not None:
            self._cache[key] = obj
        return old

    # --- handlers ------------------------------------------------------------------------------

    def add_handler(
        self,
        on_add: Callable[[Obj], None] | None = None,
        on_update: Callable[[Obj, Obj], None] | None = None,
        on_delete: Callable[[Obj], None] | None = None,
    ) -> None:
        """Register handlers; one added after the cache is filled first gets on_add for every object."""
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in list(self._cache.values()):
                self._call(on_add, obj)

    def _call(self, fn: Callable[..., None], *args: Obj) -> None:
        try:
            fn(*args)
        except Exception:
            # A broken handler must not stop the cache (or other handlers) from seeing events.
            log.exception("%s informer: event handler %r failed", self.rt.plural, fn)

    def _emit_add(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _emit_update(self, old: Obj, new: Obj) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _emit_delete(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    # --- sync state ----------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def stop(self) -> None:
        self._stopped.set()

    # --- list and watch ------------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until ``stop()``; cancelling it also stops it."""
        self._stopped.clear()
        main = asyncio.create_task(self._list_and_watch(), name=f"informer-{self.rt.plural}")
        tasks: set[asyncio.Task[Any]] = {main}
        stopper = asyncio.create_task(self._stopped.wait())
        if self.resync_period:
            tasks.add(asyncio.create_task(self._resync_loop(self.resync_period)))
        try:
            done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if main in done:
                main.result()  # only a bug ends the loop by itself: surface it
        finally:
            for t in (*tasks, stopper):
                t.cancel()
            for t in (*tasks, stopper):
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _list_and_watch(self) -> None:
        backoff = _Backoff(self.max_backoff)
        need_list = True
        fresh_list = False  # nothing has been watched since the last list
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list, fresh_list = False, True
                await self._watch_once()
                fresh_list = False
                backoff.reset()  # a watch that ended normally: just watch again
            except ApiError as e:
                need_list = True
                if e.code == 410 and (not fresh_list or self._events_since_list):
                    log.info("%s informer: resourceVersion %s expired, relisting", self.rt.plural, self.resource_version)
                    continue
                # Another refusal, or 410 straight after a list: start over after a pause.
                delay = backoff.next()
                log.warning("%s informer: %s; relisting in %.1fs", self.rt.plural, e, delay)
                await asyncio.sleep(delay)
            except ApiConnectionError as e:
                # The resourceVersion is still good: resume the watch from it once connected. A 410
                # then means history moved on while away, not a server refusing its own list's RV.
                fresh_list = False
                delay = backoff.next()
                log.warning("%s informer: %s; retrying in %.1fs", self.rt.plural, e, delay)
                await asyncio.sleep(delay)

    async def _relist(self) -> None:
        items: list[Obj] = []
        cont: str | None = None
        while True:
            page = await self.client.list(
                self.rt,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                limit=self.page_size,
                continue_=cont,
            )
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            cont = meta.get("continue") or None
            if not cont:
                self.resource_version = str(meta.get("resourceVersion", "")) or None
                break
        self._replace(items)
        self._events_since_list = 0
        self._synced.set()

    def _replace(self, items: builtins.list[Obj]) -> None:
        """Make the cache equal to ``items`` and tell the handlers what differed."""
        kind = self.rt.kind
        seen: set[str] = set()
        for obj in items:
            # List items carry no kind/apiVersion on the wire; handlers expect whole objects.
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", self.rt.api_version)
            compact(obj, self.keep_managed_fields)
            key = object_key(obj)
            seen.add(key)
            old = self._store(key, obj)
            if old is None:
                self._emit_add(obj)
            elif _rv(old) != _rv(obj):
                self._emit_update(old, obj)
        for key in [k for k in self._cache if k not in seen]:
            gone = self._store(key, None)
            if gone is not None:
                self._emit_delete(gone)

    async def _watch_once(self) -> None:
        """One watch, until the server ends it."""
        events = self.client.watch(
            self.rt,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            allow_bookmarks=True,
            timeout_seconds=self.watch_timeout,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                self._events_since_list += 1
                self._apply(event.type, event.object)

    def _apply(self, type_: str, obj: Obj) -> None:
        rv = _rv(obj)
        if rv:
            self.resource_version = rv
        if type_ == "BOOKMARK":
            return
        compact(obj, self.keep_managed_fields)
        key = object_key(obj)
        if type_ in ("ADDED", "MODIFIED"):
            old = self._store(key, obj)
            if old is None:
                self._emit_add(obj)
            else:
                self._emit_update(old, obj)
        elif type_ == "DELETED":
            old = self._store(key, None)
            self._emit_delete(obj if obj.get("metadata") else (old or obj))
        else:
            log.warning("%s informer: ignoring unknown watch event type %r", self.rt.plural, type_)

    async def _resync_loop(self, period: float) -> None:
        # Periodic on_update(obj, obj) so level-based controllers re-check everything they own.
        while True:
            await asyncio.sleep(period)
            if self.has_synced:
                for obj in list(self._cache.values()):
                    self._emit_update(obj, obj)


class _Backoff:
    """Exponential backoff with jitter, 0.2 s doubling up to ``cap``."""

    def __init__(self, cap: float, base: float = 0.2) -> None:
        self.cap, self.base, self.attempt = cap, base, 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return delay * random.uniform(0.5, 1.0)
