"""``memory://``: an in-process store for tests and throwaway clusters.

Every mutation runs synchronously on the event loop (no await between checking and writing), so
each method is atomic with respect to other coroutines without any lock, and events are published
to the watch hub in exactly commit order.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time

from kubelite.storage._watchhub import (
    DEFAULT_MAX_QUEUE,
    WatchHub,
    closed_error,
)
from kubelite.storage.interface import (
    CompactedError,
    Event,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    LeaseNotFoundError,
    RangeResult,
    RevisionMismatchError,
    Store,
    Watch,
    WatchOverflowError,
    prefix_end,
)

__all__ = ["LeaseNotFoundError", "MemoryStore", "WatchOverflowError"]

# One entry of a key's history: (revision, value at that revision or None for a deletion).
_Entry = tuple[int, KeyValue | None]


def _entry_rev(entry: _Entry) -> int:
    return entry[0]


def _event_rev(event: Event) -> int:
    return event.kv.mod_revision


class MemoryStore(Store):
    def __init__(
        self,
        url: str = "memory://",
        *,
        watch_queue_size: int = DEFAULT_MAX_QUEUE,
        lease_check_interval: float = 0.1,
    ) -> None:
        self.url = url
        self._rev = 0
        self._compact = 0
        self._log: list[Event] = []  # every event with revision > the compaction point
        self._hist: dict[str, list[_Entry]] = {}  # per-key history, for reads at a revision
        self._names: list[str] = []  # sorted keys of _hist, for prefix ranges
        self._latest: dict[str, KeyValue] = {}  # live keys only
        self._leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, monotonic deadline)
        self._lease_keys: dict[int, set[str]] = {}
        self._next_lease = 0
        self._hub = WatchHub(watch_queue_size)
        self._lease_check_interval = lease_check_interval
        self._lease_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._check_open()
        if self._lease_task is None:
            self._lease_task = asyncio.create_task(self._expire_leases(), name="memory-lease-expiry")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
            self._lease_task = None
        self._hub.close_all(closed_error())

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()

    def _check_read_revision(self, revision: int) -> None:
        if revision > self._rev:
            raise FutureRevisionError(revision, self._rev)
        if revision < self._compact:
            raise CompactedError(revision, self._compact)

    # -- reads -------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        self._check_open()
        return self._rev

    async def compact_revision(self) -> int:
        self._check_open()
        return self._compact

    def _value_at(self, key: str, revision: int) -> KeyValue | None:
        if revision >= self._rev:
            return self._latest.get(key)
        hist = self._hist.get(key)
        if not hist:
            return None
        i = bisect.bisect_right(hist, revision, key=_entry_rev) - 1
        return hist[i][1] if i >= 0 else None

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        self._check_open()
        if revision == 0:
            return self._latest.get(key)
        self._check_read_revision(revision)
        return self._value_at(key, revision)

    async def range(
        self, prefix: str, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> RangeResult:
        self._check_open()
        if revision == 0:
            revision = self._rev
        self._check_read_revision(revision)
        end = prefix_end(prefix)
        names = self._names
        lo = bisect.bisect_left(names, prefix)
        hi = bisect.bisect_left(names, end, lo)
        start = bisect.bisect_right(names, start_after, lo, hi) if start_after else lo
        kvs: list[KeyValue] = []
        more = False
        for i in range(start, hi):
            kv = self._value_at(names[i], revision)
            if kv is None:
                continue
            if limit and len(kvs) == limit:
                more = True
                break
            kvs.append(kv)
        if start == lo and not more:
            count = len(kvs)
        else:
            count = sum(1 for i in range(lo, hi) if self._value_at(names[i], revision) is not None)
        return RangeResult(kvs=kvs, revision=revision, more=more, count=count)

    # -- writes ------------------------------------------------------------------------------

    def _commit(self, event: Event) -> None:
        kv = event.kv
        key = kv.key
        hist = self._hist.get(key)
        if hist is None:
            hist = self._hist[key] = []
            bisect.insort(self._names, key)
        prev = event.prev_kv
        if prev is not None and prev.lease:
            self._lease_keys.get(prev.lease, set()).discard(key)
        if event.type is EventType.PUT:
            hist.append((kv.mod_revision, kv))
            self._latest[key] = kv
            if kv.lease:
                self._lease_keys.setdefault(kv.lease, set()).add(key)
        else:
            hist.append((kv.mod_revision, None))
            del self._latest[key]
        self._log.append(event)
        self._hub.publish([event])

    def _put(self, key: str, value: bytes, lease: int, prev: KeyValue | None) -> int:
        if lease and lease not in self._leases:
            raise LeaseNotFoundError(lease)
        self._rev += 1
        rev = self._rev
        kv = KeyValue(key, bytes(value), prev.create_revision if prev else rev, rev, lease)
        self._commit(Event(EventType.PUT, kv, prev))
        return rev

    def _delete(self, old: KeyValue) -> int:
        self._rev += 1
        rev = self._rev
        # The DELETE event carries the old value at the deletion revision, as etcd's prev_kv.
        tomb = KeyValue(old.key, old.value, old.create_revision, rev, old.lease)
        self._commit(Event(EventType.DELETE, tomb, old))
        return rev

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        self._check_open()
        if key in self._latest:
            raise KeyExistsError(key)
        return self._put(key, value, lease, None)

    async def update(self, key: str, value: bytes, expected_revision: int, lease: int = 0) -> int:
        """As the interface; ``expected_revision`` 0 updates unconditionally (key must exist)."""
        self._check_open()
        cur = self._latest.get(key)
        if cur is None:
            raise KeyNotFoundError(key)
        if expected_revision and cur.mod_revision != expected_revision:
            raise RevisionMismatchError(key, expected_revision, cur)
        return self._put(key, value, lease, cur)

    async def delete(self, key: str, expected_revision: int = 0) -> tuple[int, KeyValue]:
        self._check_open()
        cur = self._latest.get(key)
        if cur is None:
            raise KeyNotFoundError(key)
        if expected_revision and cur.mod_revision != expected_revision:
            raise RevisionMismatchError(key, expected_revision, cur)
        return self._delete(cur), cur

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision > self._rev:
            raise FutureRevisionError(revision, self._rev)
        if revision <= self._compact:
            return
        emptied = False
        for key, hist in list(self._hist.items()):
            i = bisect.bisect_right(hist, revision, key=_entry_rev) - 1
            if i < 0:
                continue
            # Keep the key's latest value at the compaction point (needed for reads at
            # revisions >= it); drop it too if that was a deletion.
            keep = hist[i:] if hist[i][1] is not None else hist[i + 1 :]
            if keep:
                self._hist[key] = keep
            else:
                del self._hist[key]
                emptied = True
        if emptied:
            self._names = [n for n in self._names if n in self._hist]
        cut = bisect.bisect_right(self._log, revision, key=_event_rev)
        del self._log[:cut]
        self._compact = revision

    # -- watch -------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> Watch:
        self._check_open()
        if start_revision:
            if start_revision < self._compact:
                raise CompactedError(start_revision, self._compact)
            if start_revision > self._rev:
                raise FutureRevisionError(start_revision, self._rev)
        return self._hub.subscribe(prefix, start_revision, self._replay)

    async def _replay(self, prefix: str, after: int, limit: int) -> list[Event]:
        self._check_open()
        if after < self._compact:
            raise CompactedError(after, self._compact)
        out: list[Event] = []
        log = self._log
        for i in range(bisect.bisect_right(log, after, key=_event_rev), len(log)):
            event = log[i]
            if event.kv.key.startswith(prefix):
                out.append(event)
                if len(out) == limit:
                    break
        return out

    # -- leases ------------------------------------------------------------------------------

    async def grant_lease(self, ttl_seconds: int) -> int:
        self._check_open()
        self._next_lease += 1
        ttl = max(1, int(ttl_seconds))
        self._leases[self._next_lease] = (ttl, time.monotonic() + ttl)
        return self._next_lease

    async def keepalive_lease(self, lease_id: int) -> None:
        self._check_open()
        if lease_id not in self._leases:
            raise LeaseNotFoundError(lease_id)
        ttl, _ = self._leases[lease_id]
        self._leases[lease_id] = (ttl, time.monotonic() + ttl)

    async def revoke_lease(self, lease_id: int) -> None:
        self._check_open()
        self._revoke(lease_id)

    def _revoke(self, lease_id: int) -> None:
        if self._leases.pop(lease_id, None) is None:
            raise LeaseNotFoundError(lease_id)
        for key in sorted(self._lease_keys.pop(lease_id, set())):
            cur = self._latest.get(key)
            if cur is not None and cur.lease == lease_id:
                self._delete(cur)

    async def _expire_leases(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._lease_check_interval)
            now = time.monotonic()
            for lease_id, (_, deadline) in list(self._leases.items()):
                if deadline <= now and lease_id in self._leases:
                    self._revoke(lease_id)
