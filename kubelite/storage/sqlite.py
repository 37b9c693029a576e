"""``sqlite:///path``: the default durable store, kine's design on stdlib sqlite3.

One append-only table ``kv`` holds every version of every key; its row id *is* the revision, so
history, reads at a revision and watch replay are plain index scans. A key's latest row is its
current value (or a tombstone). Compare-and-swap is check-then-insert on the single writer thread,
with a UNIQUE (name, prev_revision) index as a backstop: two versions can never claim the same
predecessor.

Threads: exactly one writer thread owns all writes and group-commits them (every queued write in
one transaction, one fsync), then resolves the callers' futures on the event loop. Reads run on a
small pool of reader threads with their own connections; WAL lets them read a consistent snapshot
while the writer commits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
    StorageError,
    Store,
    UnavailableError,
    Watch,
    WatchOverflowError,
    prefix_end,
)

__all__ = ["LeaseNotFoundError", "SqliteStore", "WatchOverflowError"]

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS kv (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        lease INTEGER NOT NULL,
        value BLOB NOT NULL,
        old_value BLOB
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS kv_name_prev ON kv (name, prev_revision)",
    "CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id, deleted)",
    "CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY AUTOINCREMENT, ttl INTEGER NOT NULL)",
)

_INSERT = (
    "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, lease, value, old_value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_EVENT_COLS = "id, name, created, deleted, create_revision, prev_revision, lease, value, old_value"
_CURRENT_REV = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'kv'), 0)"
_COMPACT_REV = "SELECT COALESCE((SELECT value FROM meta WHERE name = 'compact_rev'), 0)"
# Live keys under [lo, hi) as of a revision. The inner query walks the covering index
# (name, id, deleted) once: MAX(id) per name is the key's latest version and, by SQLite's bare-column
# rule, ``deleted`` comes from that same row, so tombstones are dropped before ORDER BY/LIMIT and a
# page costs O(limit). CROSS JOIN pins the join order so rows come out in the inner (name) order
# without sorting 30k values in a temp b-tree; _r_range still verifies the order.
_LATEST = (
    "SELECT MAX(id) AS mid, deleted AS d, name FROM kv WHERE name {op} ? AND name < ? AND id <= ?"
    " GROUP BY name HAVING d = 0"
)
_RANGE = (
    "SELECT kv.id, kv.name, kv.create_revision, kv.lease, kv.value FROM ("
    + _LATEST
    + " ORDER BY name LIMIT ?) AS m CROSS JOIN kv ON kv.id = m.mid"
)
_COUNT = "SELECT COUNT(*) FROM (" + _LATEST.format(op=">=") + ")"

_Row = tuple[int, str, int, int, int, int, int, bytes, bytes | None]


def _row_event(row: _Row) -> Event:
    """One kv row as the Event it recorded; live events are built the same way as replayed ones."""
    rev, name, created, deleted, create_rev, prev_rev, lease, value, old_value = row
    kv = KeyValue(name, value, create_rev, rev, lease)
    if deleted:
        return Event(EventType.DELETE, kv, KeyValue(name, value, create_rev, prev_rev, lease))
    if created:
        return Event(EventType.PUT, kv, None)
    # The previous version's lease is not stored; prev_kv.lease is 0 for updates.
    return Event(EventType.PUT, kv, KeyValue(name, old_value or b"", create_rev, prev_rev, 0))


@dataclass(eq=False)
class _Op:
    kind: str
    future: asyncio.Future[Any]
    key: str = ""
    value: bytes = b""
    expected: int = 0
    lease: int = 0
    arg: int = 0
    # Filled in by the writer thread.
    result: Any = None
    error: BaseException | None = None
    events: list[Event] = field(default_factory=list)


class SqliteStore(Store):
    def __init__(
        self,
        url: str,
        path: str,
        *,
        readers: int = 4,
        watch_queue_size: int = DEFAULT_MAX_QUEUE,
        lease_check_interval: float = 0.1,
        max_batch: int = 1000,
        cache_bytes: int = 8 * 1024 * 1024,  # heartbeat objects of 1,000 nodes take about 4 MB
    ) -> None:
        self.url = url
        self.path = path
        self._n_readers = readers
        self._max_batch = max_batch
        self._lease_check_interval = lease_check_interval
        self._hub = WatchHub(watch_queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._wconn: sqlite3.Connection | None = None
        self._wrev = 0  # last revision written, owned by the writer thread
        self._rev = 0  # last revision published on the loop
        self._compact = 0
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        self._rconns_lock = threading.Lock()
        self._leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, monotonic deadline)
        # The latest version of recently written keys (None: deleted), kept by _complete on the loop
        # in commit order, so get() answers them without a trip to a reader thread: an update is a
        # get then a write, and heartbeats update the same keys over and over. Filled by writes only:
        # a read result could be older than a write that lands while it is in flight.
        self._cache: OrderedDict[str, KeyValue | None] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._lease_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _open(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is fsynced on every commit, so an acknowledged write survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        for stmt in _SCHEMA:
            conn.execute(stmt)
        self._wconn = conn
        # Revisions continue from the highest ever allocated (sqlite_sequence survives compaction
        # removing the newest row), never reusing one.
        (seq,) = conn.execute(_CURRENT_REV).fetchone()
        (max_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM kv").fetchone()
        self._wrev = self._rev = max(seq, max_id)
        (self._compact,) = conn.execute(_COMPACT_REV).fetchone()
        # Like etcd after a restart, every persisted lease gets a full TTL again.
        now = time.monotonic()
        self._leases = {lid: (ttl, now + ttl) for lid, ttl in conn.execute("SELECT id, ttl FROM lease")}

    async def start(self) -> None:
        self._check_open()
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._open)
        except sqlite3.Error as exc:
            raise UnavailableError(f"cannot open {self.path}: {exc}") from exc
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._n_readers, thread_name_prefix="sqlite-reader"
        )
        self._writer = threading.Thread(target=self._writer_main, name="sqlite-writer", daemon=True)
        self._writer.start()
        self._lease_task = asyncio.create_task(self._expire_leases(), name="sqlite-lease-expiry")
        self._started = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
        if self._writer is not None:
            # Writes already queued are committed and acknowledged before the thread exits.
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, True)
        with self._rconns_lock:
            for conn in self._rconns:
                conn.close()
            self._rconns.clear()
        if self._wconn is not None:
            self._wconn.close()
        self._hub.close_all(closed_error())

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()

    def _check_started(self) -> None:
        if self._closed:
            raise closed_error()
        if not self._started:
            raise UnavailableError("store not started")

    # -- reads (reader threads) --------------------------------------------------------------

    def _rconn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._rconns_lock:
                self._rconns.append(conn)
        return conn

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_started()
        assert self._readers is not None and self._loop is not None
        try:
            return await self._loop.run_in_executor(self._readers, fn, *args)
        except RuntimeError as exc:  # executor shut down by a concurrent close()
            raise closed_error() from exc
        except sqlite3.Error as exc:
            raise UnavailableError(f"sqlite read failed: {exc}") from exc

    @staticmethod
    def _snapshot_bounds(conn: sqlite3.Connection, revision: int) -> tuple[int, int]:
        """Inside a read transaction: (current, compact) revisions, validating ``revision``."""
        (current,) = conn.execute(_CURRENT_REV).fetchone()
        (compact,) = conn.execute(_COMPACT_REV).fetchone()
        if revision > current:
            raise FutureRevisionError(revision, current)
        if revision and revision < compact:
            raise CompactedError(revision, compact)
        return current, compact

    def _r_get(self, key: str, revision: int) -> KeyValue | None:
        conn = self._rconn()
        sql = "SELECT id, create_revision, deleted, lease, value FROM kv WHERE name = ?"
        if revision == 0:
            row = conn.execute(sql + " ORDER BY id DESC LIMIT 1", (key,)).fetchone()
        else:
            conn.execute("BEGIN")
            try:
                self._snapshot_bounds(conn, revision)
                row = conn.execute(sql + " AND id <= ? ORDER BY id DESC LIMIT 1", (key, revision)).fetchone()
            finally:
                conn.execute("COMMIT")
        if row is None or row[2]:
            return None
        return KeyValue(key, row[4], row[1], row[0], row[3])

    def _r_range(self, prefix: str, revision: int, limit: int, start_after: str) -> RangeResult:
        conn = self._rconn()
        end = prefix_end(prefix)
        conn.execute("BEGIN")
        try:
            current, _ = self._snapshot_bounds(conn, revision)
            rev = revision or current
            paged = bool(start_after) and start_after >= prefix
            if paged:
                sql, lo = _RANGE.format(op=">"), start_after
            else:
                sql, lo = _RANGE.format(op=">="), prefix
            rows = conn.execute(sql, (lo, end, rev, limit + 1 if limit else -1)).fetchall()
            if any(rows[i][1] >= rows[i + 1][1] for i in range(len(rows) - 1)):
                rows.sort(key=lambda r: r[1])  # never seen; guards against a planner change
            more = bool(limit) and len(rows) > limit
            if more:
                del rows[limit:]
            if not paged and not more:
                count = len(rows)
            else:
                (count,) = conn.execute(_COUNT, (prefix, end, rev)).fetchone()
        finally:
            conn.execute("COMMIT")
        kvs = [KeyValue(name, value, crev, mrev, lease) for mrev, name, crev, lease, value in rows]
        return RangeResult(kvs=kvs, revision=rev, more=more, count=count)

    def _r_replay(self, prefix: str, after: int, limit: int) -> list[Event]:
        conn = self._rconn()
        conn.execute("BEGIN")
        try:
            (compact,) = conn.execute(_COMPACT_REV).fetchone()
            if after < compact:
                raise CompactedError(after, compact)
            rows = conn.execute(
                f"SELECT {_EVENT_COLS} FROM kv WHERE id > ? AND name >= ? AND name < ? ORDER BY id LIMIT ?",
                (after, prefix, prefix_end(prefix), limit),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return [_row_event(r) for r in rows]

    def _r_watch_check(self, start_revision: int) -> None:
        conn = self._rconn()
        conn.execute("BEGIN")
        try:
            self._snapshot_bounds(conn, start_revision)
        finally:
            conn.execute("COMMIT")

    async def current_revision(self) -> int:
        self._check_started()
        return self._rev

    async def compact_revision(self) -> int:
        self._check_started()
        return self._compact

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        if revision == 0 and key in self._cache:
            self._check_started()
            self._cache.move_to_end(key)
            return self._cache[key]
        return await self._read(self._r_get, key, revision)

    def _remember(self, events: list[Event]) -> None:
        """Cache the latest value of each key the batch wrote (tombstones as None), LRU by bytes."""
        cache = self._cache
        for ev in events:
            key = ev.kv.key
            old = cache.pop(key, None)
            if old is not None:
                self._cache_bytes -= len(old.value)
            kv = ev.kv if ev.type is EventType.PUT else None
            cache[key] = kv
            if kv is not None:
                self._cache_bytes += len(kv.value)
        while self._cache_bytes > self._cache_limit or len(cache) > self._cache_limit // 64:
            _, evicted = cache.popitem(last=False)
            if evicted is not None:
                self._cache_bytes -= len(evicted.value)

    async def range(
        self, prefix: str, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> RangeResult:
        return await self._read(self._r_range, prefix, revision, limit, start_after)

    async def watch(self, prefix: str, start_revision: int) -> Watch:
        if start_revision:
            # Checked against the database, which may be a commit ahead of self._rev.
            await self._read(self._r_watch_check, start_revision)
        else:
            self._check_started()
        return self._hub.subscribe(prefix, start_revision, self._replay)

    async def _replay(self, prefix: str, after: int, limit: int) -> list[Event]:
        return await self._read(self._r_replay, prefix, after, limit)

    # -- writes (submitted to the writer thread) ---------------------------------------------

    async def _submit(self, kind: str, **kw: Any) -> Any:
        self._check_started()
        assert self._loop is not None
        op = _Op(kind, self._loop.create_future(), **kw)
        self._queue.put(op)
        return await op.future

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        rev: int = await self._submit("create", key=key, value=bytes(value), lease=lease)
        return rev

    async def update(self, key: str, value: bytes, expected_revision: int, lease: int = 0) -> int:
        """As the interface; ``expected_revision`` 0 updates unconditionally (key must exist)."""
        rev: int = await self._submit(
            "update", key=key, value=bytes(value), expected=expected_revision, lease=lease
        )
        return rev

    async def delete(self, key: str, expected_revision: int = 0) -> tuple[int, KeyValue]:
        result: tuple[int, KeyValue] = await self._submit("delete", key=key, expected=expected_revision)
        return result

    async def compact(self, revision: int) -> None:
        compact: int = await self._submit("compact", arg=revision)
        self._compact = max(self._compact, compact)

    # -- leases ------------------------------------------------------------------------------

    async def grant_lease(self, ttl_seconds: int) -> int:
        ttl = max(1, int(ttl_seconds))
        lease_id: int = await self._submit("grant", arg=ttl)
        self._leases[lease_id] = (ttl, time.monotonic() + ttl)
        return lease_id

    async def keepalive_lease(self, lease_id: int) -> None:
        self._check_started()
        entry = self._leases.get(lease_id)
        if entry is None:
            raise LeaseNotFoundError(lease_id)
        self._leases[lease_id] = (entry[0], time.monotonic() + entry[0])

    async def revoke_lease(self, lease_id: int) -> None:
        try:
            await self._submit("revoke", arg=lease_id)
        except LeaseNotFoundError:
            self._leases.pop(lease_id, None)
            raise
        # Only forgotten once revoked; after a disk error the expiry loop retries it.
        self._leases.pop(lease_id, None)

    async def _expire_leases(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._lease_check_interval)
            now = time.monotonic()
            for lease_id, (_, deadline) in list(self._leases.items()):
                if deadline > now or lease_id not in self._leases:
                    continue
                try:
                    await self.revoke_lease(lease_id)
                except LeaseNotFoundError:
                    pass
                except UnavailableError:
                    break  # closing, or a disk error: retried on the next tick

    # -- writer thread -----------------------------------------------------------------------

    def _writer_main(self) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                return
            batch = [op]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[_Op]) -> None:
        """Group commit: every op in one transaction; a failed op fails alone."""
        conn = self._wconn
        assert conn is not None
        start_rev = self._wrev
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                saved = self._wrev
                try:
                    self._apply(conn, op)
                except Exception as exc:  # the op fails alone; others in the batch proceed
                    op.error = exc if isinstance(exc, StorageError) else UnavailableError(str(exc))
                    op.events.clear()
                    self._wrev = saved
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._wrev = start_rev
            err = UnavailableError(f"sqlite commit failed: {exc}")
            for op in batch:
                op.error, op.result = err, None
                op.events.clear()
        rev = self._wrev
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._complete, batch, rev)
        except RuntimeError:
            pass  # the loop is gone; nobody is waiting any more

    def _complete(self, batch: list[_Op], rev: int) -> None:
        """On the loop: publish the batch's events in revision order, then wake the callers."""
        self._rev = max(self._rev, rev)
        events = [e for op in batch for e in op.events]
        self._remember(events)
        self._hub.publish(events)
        for op in batch:
            if op.kind == "revoke" and op.error is None:
                self._leases.pop(op.arg, None)  # gone with its keys' DELETE events, not a step later
            if op.future.done():
                continue
            if op.error is not None:
                op.future.set_exception(op.error)
            else:
                op.future.set_result(op.result)

    def _apply(self, conn: sqlite3.Connection, op: _Op) -> None:
        kind = op.kind
        if kind == "create":
            row = conn.execute(
                "SELECT id, deleted FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1", (op.key,)
            ).fetchone()
            if row is not None and not row[1]:
                raise KeyExistsError(op.key)
            self._check_lease(conn, op.lease)
            rev = self._wrev + 1
            # prev_revision points at the tombstone (if any) so (name, prev_revision) stays unique.
            self._insert(conn, op, (rev, op.key, 1, 0, rev, row[0] if row else 0, op.lease, op.value, None))
            op.result = rev
        elif kind in ("update", "delete"):
            cur = self._latest(conn, op.key)
            if cur is None:
                raise KeyNotFoundError(op.key)
            if op.expected and cur.mod_revision != op.expected:
                raise RevisionMismatchError(op.key, op.expected, cur)
            rev = self._wrev + 1
            if kind == "update":
                self._check_lease(conn, op.lease)
                row = (
                    rev,
                    op.key,
                    0,
                    0,
                    cur.create_revision,
                    cur.mod_revision,
                    op.lease,
                    op.value,
                    cur.value,
                )
                self._insert(conn, op, row)
                op.result = rev
            else:
                self._delete_row(conn, op, cur)
                op.result = (rev, cur)
        elif kind == "compact":
            op.result = self._compact_rows(conn, op.arg)
        elif kind == "grant":
            op.result = conn.execute("INSERT INTO lease (ttl) VALUES (?)", (op.arg,)).lastrowid
        elif kind == "revoke":
            self._revoke_rows(conn, op)
        else:
            raise ValueError(f"unknown op {kind}")

    def _insert(self, conn: sqlite3.Connection, op: _Op, row: _Row) -> None:
        # The writer thread is the only writer, so it knows the next id; inserting it explicitly
        # lets a create row carry its own revision as create_revision.
        conn.execute(_INSERT, row)
        self._wrev = row[0]
        op.events.append(_row_event(row))

    def _delete_row(self, conn: sqlite3.Connection, op: _Op, cur: KeyValue) -> None:
        rev = self._wrev + 1
        # The tombstone keeps the old value, so the DELETE event can carry the deleted object.
        row = (rev, cur.key, 0, 1, cur.create_revision, cur.mod_revision, cur.lease, cur.value, None)
        self._insert(conn, op, row)

    @staticmethod
    def _latest(conn: sqlite3.Connection, key: str) -> KeyValue | None:
        row = conn.execute(
            "SELECT id, create_revision, deleted, lease, value FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is None or row[2]:
            return None
        return KeyValue(key, row[4], row[1], row[0], row[3])

    @staticmethod
    def _check_lease(conn: sqlite3.Connection, lease: int) -> None:
        if lease and conn.execute("SELECT 1 FROM lease WHERE id = ?", (lease,)).fetchone() is None:
            raise LeaseNotFoundError(lease)

    def _compact_rows(self, conn: sqlite3.Connection, revision: int) -> int:
        if revision > self._wrev:
            raise FutureRevisionError(revision, self._wrev)
        (compact,) = conn.execute(_COMPACT_REV).fetchone()
        if revision <= compact:
            return int(compact)
        conn.execute("SAVEPOINT compact")
        try:
            # Keep each key's latest version at the compaction point (reads at revisions >= it
            # need it) unless it is a tombstone; drop everything older.
            conn.execute(
                "DELETE FROM kv WHERE id <= ? AND id NOT IN"
                " (SELECT MAX(id) FROM kv WHERE id <= ? GROUP BY name)",
                (revision, revision),
            )
            conn.execute("DELETE FROM kv WHERE id <= ? AND deleted = 1", (revision,))
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('compact_rev', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (revision,),
            )
        except BaseException:
            conn.execute("ROLLBACK TO compact")
            conn.execute("RELEASE compact")
            raise
        conn.execute("RELEASE compact")
        return revision

    def _revoke_rows(self, conn: sqlite3.Connection, op: _Op) -> None:
        lease_id = op.arg
        if conn.execute("SELECT 1 FROM lease WHERE id = ?", (lease_id,)).fetchone() is None:
            raise LeaseNotFoundError(lease_id)
        conn.execute("SAVEPOINT revoke")
        try:
            names = [
                n
                for (n,) in conn.execute(
                    "SELECT DISTINCT name FROM kv WHERE lease = ? AND deleted = 0 ORDER BY name", (lease_id,)
                )
            ]
            for name in names:
                cur = self._latest(conn, name)
                if cur is not None and cur.lease == lease_id:
                    self._delete_row(conn, op, cur)
            conn.execute("DELETE FROM lease WHERE id = ?", (lease_id,))
        except BaseException:
            conn.execute("ROLLBACK TO revoke")
            conn.execute("RELEASE revoke")
            raise
        conn.execute("RELEASE revoke")
