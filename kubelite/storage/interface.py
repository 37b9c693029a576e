"""The one storage interface every driver implements, modelled 1:1 on etcd v3's KV + Watch + Lease.

Every write gets the next value of one global, strictly increasing revision. A key's
``mod_revision`` is the revision of its last write, and is what the API server exposes as
``resourceVersion``. Compare-and-swap is "write if the key's mod_revision is still N", exactly an
etcd transaction ``If(ModRevision(key) == N).Then(Put)``.

Drivers: ``memory://`` (tests), ``sqlite:///path`` (default, kine-style single table where the
row id is the revision), ``etcd://host:port,...`` (its own issue).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum


class StorageError(Exception):
    """Base of every error a driver raises; drivers translate their backend's errors at the edge."""


class KeyExistsError(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class KeyNotFoundError(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class RevisionMismatchError(StorageError):
    """A compare-and-swap lost: the key's mod_revision is no longer the expected one.

    ``current`` is the key's present value (None if it was deleted meanwhile), so callers can
    retry without another read, as etcd returns it in the failed branch of a transaction.
    """

    def __init__(self, key: str, expected: int, current: KeyValue | None) -> None:
        actual = current.mod_revision if current else 0
        super().__init__(f"revision mismatch on {key}: expected {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.current = current


class CompactedError(StorageError):
    """The requested revision is older than the compaction point (the API maps it to 410 Gone)."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted; oldest available is {compact_revision}"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class FutureRevisionError(StorageError):
    """A read or watch asked for a revision the store has not reached yet."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is in the future; current is {current}")
        self.requested = requested
        self.current = current


class LeaseNotFoundError(StorageError):
    """The lease does not exist (never granted, revoked or expired)."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease not found: {lease_id}")
        self.lease_id = lease_id


class WatchOverflowError(StorageError):
    """The watcher fell too far behind and was dropped; the client must re-list and re-watch."""


class UnavailableError(StorageError):
    """The backend cannot serve the request now (lost quorum, disk error, closed store)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For PUT, ``kv`` is the new value; ``created`` tells a create from an update.

    For DELETE, ``kv.mod_revision`` is the revision of the deletion and ``kv.value`` is the value
    the key held before it (so watchers can send the deleted object), as with etcd's prev_kv.
    """

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def created(self) -> bool:
        return self.type is EventType.PUT and self.kv.create_revision == self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store revision the range was read at
    more: bool  # True when ``limit`` cut the result; continue after ``kvs[-1].key``
    count: int = 0  # keys under the prefix at ``revision`` (0 when the driver skipped counting)


def prefix_end(prefix: str) -> str:
    """The smallest key greater than every key starting with ``prefix`` (etcd's range_end)."""
    if not prefix:
        return "\U0010ffff"
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Watch(abc.ABC):
    """An ordered stream of event batches, each batch sharing one revision or rising revisions.

    Iterating yields lists of events in strictly increasing revision order, with no gap and no
    duplicate relative to the store's history under the watched prefix. ``close()`` ends it;
    a driver that must drop a watcher (slow consumer, compaction) raises from ``__anext__``.
    """

    def __aiter__(self) -> AsyncIterator[list[Event]]:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> list[Event]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class Store(abc.ABC):
    """The storage seam. All methods are coroutines; drivers must be safe under concurrent callers."""

    url: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Open connections, create schema, start background tasks (lease expiry)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def current_revision(self) -> int: ...

    @abc.abstractmethod
    async def compact_revision(self) -> int:
        """The revision compaction has reached; watch/range below it raise CompactedError."""

    @abc.abstractmethod
    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        """The key's value at ``revision`` (0 = latest), or None."""

    @abc.abstractmethod
    async def range(
        self, prefix: str, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> RangeResult:
        """Live keys under ``prefix`` at ``revision`` (0 = latest) in key order.

        ``limit`` 0 means all. ``start_after`` resumes a paged range after that key, at the same
        ``revision`` as the first page (the API's ``continue`` token carries both).
        """

    @abc.abstractmethod
    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        """Write ``key`` only if absent; return the new revision. KeyExistsError otherwise."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, expected_revision: int, lease: int = 0) -> int:
        """Write ``key`` only if its mod_revision is ``expected_revision``; return the new revision.

        ``expected_revision`` 0 updates unconditionally (the key must exist, as with delete).
        KeyNotFoundError if absent, RevisionMismatchError if it changed.
        """

    @abc.abstractmethod
    async def delete(self, key: str, expected_revision: int = 0) -> tuple[int, KeyValue]:
        """Delete ``key`` (only at ``expected_revision`` unless 0); return (revision, old value)."""

    @abc.abstractmethod
    async def watch(self, prefix: str, start_revision: int) -> Watch:
        """Events under ``prefix`` with revision > ``start_revision``, replayed then live.

        ``start_revision`` 0 means "from now". CompactedError if it is below the compaction point.
        The driver subscribes before replaying so nothing falls between replay and live.
        """

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history at or below ``revision`` (the latest value of each key is kept)."""

    @abc.abstractmethod
    async def grant_lease(self, ttl_seconds: int) -> int:
        """A lease id; keys written with it are deleted (with DELETE events) when it expires."""

    @abc.abstractmethod
    async def keepalive_lease(self, lease_id: int) -> None: ...

    @abc.abstractmethod
    async def revoke_lease(self, lease_id: int) -> None: ...
