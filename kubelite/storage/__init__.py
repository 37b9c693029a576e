"""Storage seam: ``open_store(url)`` picks the driver from the URL scheme."""

from __future__ import annotations

from urllib.parse import urlparse

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
    StorageError,
    Store,
    UnavailableError,
    Watch,
    WatchOverflowError,
    prefix_end,
)

__all__ = [
    "CompactedError",
    "Event",
    "EventType",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "LeaseNotFoundError",
    "RangeResult",
    "RevisionMismatchError",
    "StorageError",
    "Store",
    "UnavailableError",
    "Watch",
    "WatchOverflowError",
    "open_store",
    "prefix_end",
]


class InvalidStoreURLError(ValueError):
    pass


def open_store(url: str) -> Store:
    """Build (not start) the driver for ``url``: memory://, sqlite:///path."""
    parsed = urlparse(url)
    if parsed.scheme == "memory":
        from kubelite.storage.memory import MemoryStore

        return MemoryStore(url)
    if parsed.scheme == "sqlite":
        from kubelite.storage.sqlite import SqliteStore

        if not parsed.path or parsed.path == "/":
            raise InvalidStoreURLError(f"sqlite URL needs a file path: {url!r} (sqlite:///path/state.db)")
        return SqliteStore(url, parsed.path)
    if parsed.scheme in ("etcd", "etcds"):
        from kubelite.storage.etcd import EtcdStore

        return EtcdStore(url)
    raise InvalidStoreURLError(
        f"unsupported datastore URL {url!r}: use sqlite:///path, etcd://host:port,... or memory://"
    )
