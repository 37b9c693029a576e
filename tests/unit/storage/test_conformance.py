"""One behavioural contract for every storage driver.

Each test runs against every driver in ``DRIVERS``; adding ``etcd://`` later means adding one
entry there (and a URL builder) and nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kubelite.storage import (
    CompactedError,
    Event,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RevisionMismatchError,
    StorageError,
    Store,
    UnavailableError,
    Watch,
    open_store,
)
from kubelite.storage._watchhub import WatchHub, WatchOverflowError
from tests.etcd_cluster import etcd_single, etcd_trio

__all__ = ["etcd_single", "etcd_trio"]  # module-scoped fixtures used through DRIVERS

# name -> URL for a fresh, empty store. The etcd clusters are started once per module; each test
# gets its own key prefix on them.
DRIVERS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "memory": lambda _req, _tmp: "memory://",
    "sqlite": lambda _req, tmp: f"sqlite://{tmp}/state.db",
    "etcd": lambda req, _tmp: req.getfixturevalue("etcd_single").namespaced_url(),
    "etcd-3-members": lambda req, _tmp: req.getfixturevalue("etcd_trio").namespaced_url(),
}


@pytest.fixture(params=sorted(DRIVERS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(DRIVERS[request.param](request, tmp_path))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def collect(watch: Watch, until_revision: int, timeout: float = 10.0) -> list[Event]:
    """Events from ``watch`` up to and including ``until_revision``; batches must be ordered."""
    out: list[Event] = []
    async with asyncio.timeout(timeout):
        while not out or out[-1].revision < until_revision:
            batch = await anext(watch)
            assert batch, "a watch must never yield an empty batch"
            out.extend(batch)
    revs = [e.revision for e in out]
    assert revs == sorted(set(revs)), f"events out of order or duplicated: {revs}"
    return out


async def assert_quiet(watch: Watch, wait: float = 0.1) -> None:
    """Nothing more is pending on ``watch``."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(wait):
            await anext(watch)


# -- revisions and writes ------------------------------------------------------------------


async def test_revisions_strictly_increase_by_one_per_write(store: Store) -> None:
    start = await store.current_revision()
    r1 = await store.create("/k/a", b"1")
    r2 = await store.update("/k/a", b"2", r1)
    r3 = await store.create("/k/b", b"x")
    r4, old = await store.delete("/k/a")
    assert [r1, r2, r3, r4] == [start + 1, start + 2, start + 3, start + 4]
    assert await store.current_revision() == r4
    assert old == KeyValue("/k/a", b"2", r1, r2)
    kv = await store.get("/k/b")
    assert kv == KeyValue("/k/b", b"x", r3, r3)


async def test_failed_writes_do_not_consume_revisions(store: Store) -> None:
    r1 = await store.create("/k/a", b"1")
    with pytest.raises(KeyExistsError):
        await store.create("/k/a", b"again")
    with pytest.raises(RevisionMismatchError):
        await store.update("/k/a", b"2", r1 + 100)
    with pytest.raises(KeyNotFoundError):
        await store.delete("/k/missing")
    assert await store.current_revision() == r1
    assert await store.create("/k/b", b"") == r1 + 1


async def test_create_only_if_absent(store: Store) -> None:
    r1 = await store.create("/k/a", b"v1")
    with pytest.raises(KeyExistsError) as info:
        await store.create("/k/a", b"v2")
    assert info.value.key == "/k/a"
    assert (await store.get("/k/a")) == KeyValue("/k/a", b"v1", r1, r1)
    # After a delete the key can be created again, as a new object with a new create_revision.
    await store.delete("/k/a")
    r3 = await store.create("/k/a", b"v3")
    assert (await store.get("/k/a")) == KeyValue("/k/a", b"v3", r3, r3)


async def test_compare_and_swap_update(store: Store) -> None:
    r1 = await store.create("/k/a", b"v1")
    r2 = await store.update("/k/a", b"v2", r1)
    assert (await store.get("/k/a")) == KeyValue("/k/a", b"v2", r1, r2)
    # A writer still holding r1 loses and is told the current value.
    with pytest.raises(RevisionMismatchError) as info:
        await store.update("/k/a", b"stale", r1)
    assert info.value.expected == r1
    assert info.value.current == KeyValue("/k/a", b"v2", r1, r2)
    assert (await store.get("/k/a")) == KeyValue("/k/a", b"v2", r1, r2)
    with pytest.raises(KeyNotFoundError):
        await store.update("/k/none", b"x", 1)


async def test_concurrent_cas_exactly_one_winner(store: Store) -> None:
    r1 = await store.create("/k/counter", b"0")
    results = await asyncio.gather(
        *(store.update("/k/counter", str(i).encode(), r1) for i in range(20)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, RevisionMismatchError)]
    assert len(winners) == 1 and len(losers) == 19
    kv = await store.get("/k/counter")
    assert kv is not None and kv.mod_revision == winners[0]
    assert all(e.current is not None and e.current.mod_revision == winners[0] for e in losers)


async def test_delete_with_and_without_expected_revision(store: Store) -> None:
    r1 = await store.create("/k/a", b"a")
    r2 = await store.create("/k/b", b"b")
    with pytest.raises(RevisionMismatchError) as info:
        await store.delete("/k/a", expected_revision=r1 + 50)
    assert info.value.current == KeyValue("/k/a", b"a", r1, r1)
    rev, old = await store.delete("/k/a", expected_revision=r1)
    assert rev == r2 + 1 and old == KeyValue("/k/a", b"a", r1, r1)
    rev2, old2 = await store.delete("/k/b")
    assert rev2 == rev + 1 and old2.value == b"b"
    assert await store.get("/k/a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/k/a")


# -- reads at a revision -------------------------------------------------------------------


async def test_get_at_old_revision(store: Store) -> None:
    r1 = await store.create("/k/a", b"v1")
    r2 = await store.update("/k/a", b"v2", r1)
    r3, _ = await store.delete("/k/a")
    r4 = await store.create("/k/a", b"v4")
    assert await store.get("/k/a", r1) == KeyValue("/k/a", b"v1", r1, r1)
    assert await store.get("/k/a", r2) == KeyValue("/k/a", b"v2", r1, r2)
    assert await store.get("/k/a", r3) is None
    assert await store.get("/k/a", r4) == KeyValue("/k/a", b"v4", r4, r4)
    assert await store.get("/k/a") == KeyValue("/k/a", b"v4", r4, r4)
    with pytest.raises(FutureRevisionError):
        await store.get("/k/a", r4 + 1)


async def test_range_by_prefix(store: Store) -> None:
    await store.create("/reg/pods/a", b"1")
    await store.create("/reg/pods/b", b"2")
    await store.create("/reg/podsx", b"not under /reg/pods/")
    await store.create("/reg/svc/a", b"3")
    await store.create("/reg/pods/c", b"4")
    await store.delete("/reg/pods/b")
    res = await store.range("/reg/pods/")
    assert [kv.key for kv in res.kvs] == ["/reg/pods/a", "/reg/pods/c"]
    assert res.revision == await store.current_revision()
    assert res.count == 2 and not res.more
    everything = await store.range("")
    assert [kv.key for kv in everything.kvs] == ["/reg/pods/a", "/reg/pods/c", "/reg/podsx", "/reg/svc/a"]


async def test_range_at_old_revision_sees_deleted_and_old_values(store: Store) -> None:
    ra = await store.create("/p/a", b"a1")
    await store.create("/p/b", b"b1")
    snapshot = await store.current_revision()
    await store.update("/p/a", b"a2", ra)
    await store.delete("/p/b")
    await store.create("/p/c", b"c1")
    old = await store.range("/p/", revision=snapshot)
    assert [(kv.key, kv.value) for kv in old.kvs] == [("/p/a", b"a1"), ("/p/b", b"b1")]
    assert old.revision == snapshot and old.count == 2
    new = await store.range("/p/")
    assert [(kv.key, kv.value) for kv in new.kvs] == [("/p/a", b"a2"), ("/p/c", b"c1")]
    with pytest.raises(FutureRevisionError):
        await store.range("/p/", revision=new.revision + 1)


async def test_range_paging_is_consistent_while_writes_happen(store: Store) -> None:
    keys = [f"/pods/ns/p{i:03d}" for i in range(25)]
    revs = {k: await store.create(k, k.encode()) for k in keys}
    await store.create("/pods0", b"outside")  # just past the prefix
    first = await store.range("/pods/", limit=10)
    assert first.more and first.count == 25 and len(first.kvs) == 10
    at = first.revision
    seen = [kv.key for kv in first.kvs]
    page = first
    head_rev = revs[keys[0]]
    while page.more:
        # Writes between pages must not leak into a range pinned at ``at``.
        await store.delete(keys[len(seen)])
        await store.create(f"/pods/ns/p{len(seen):03d}x", b"new")
        head_rev = await store.update(keys[0], b"changed", head_rev)
        page = await store.range("/pods/", revision=at, limit=10, start_after=page.kvs[-1].key)
        assert page.revision == at and page.count == 25
        seen += [kv.key for kv in page.kvs]
        assert all(kv.mod_revision == revs[kv.key] and kv.value == kv.key.encode() for kv in page.kvs)
    assert seen == keys
    assert len(page.kvs) == 5 and not page.more


async def test_range_limit_exact_fit_has_no_more(store: Store) -> None:
    for i in range(3):
        await store.create(f"/x/{i}", b"")
    res = await store.range("/x/", limit=3)
    assert len(res.kvs) == 3 and not res.more and res.count == 3


# -- watch ---------------------------------------------------------------------------------


async def test_watch_replays_from_every_retained_revision_then_goes_live(store: Store) -> None:
    r_start = await store.create("/other/first", b"")  # 0 would mean "from now"
    r1 = await store.create("/w/a", b"a1")
    r2 = await store.update("/w/a", b"a2", r1)
    r3 = await store.create("/w/b", b"b1")
    r4, _ = await store.delete("/w/a")
    await store.create("/other/z", b"not watched")
    history = [r1, r2, r3, r4]
    for i, start in enumerate([r_start, *history[:4]]):
        watch = await store.watch("/w/", start)
        try:
            expected = [r for r in history if r > start]
            if expected:
                replayed = await collect(watch, expected[-1])
                assert [e.revision for e in replayed] == expected
            live_rev = await store.create(f"/w/live{i}", b"x")
            live = await collect(watch, live_rev)
            assert [e.revision for e in live] == [live_rev]
            history.append(live_rev)
        finally:
            await watch.close()


async def test_watch_event_contents(store: Store) -> None:
    watch = await store.watch("/w/", 0)
    r1 = await store.create("/w/a", b"a1", lease=0)
    r2 = await store.update("/w/a", b"a2", r1)
    r3, _ = await store.delete("/w/a")
    events = await collect(watch, r3)
    await watch.close()
    put1, put2, gone = events
    assert put1.type is EventType.PUT and put1.created and put1.kv == KeyValue("/w/a", b"a1", r1, r1)
    assert put2.type is EventType.PUT and not put2.created and put2.kv == KeyValue("/w/a", b"a2", r1, r2)
    assert put2.prev_kv is not None and put2.prev_kv.value == b"a1" and put2.prev_kv.mod_revision == r1
    # A DELETE carries the old value at the deletion revision, with the old create revision.
    assert gone.type is EventType.DELETE and not gone.created
    assert gone.kv == KeyValue("/w/a", b"a2", r1, r3)
    assert gone.prev_kv is not None and gone.prev_kv.mod_revision == r2


async def test_watch_from_now_and_prefix_filter(store: Store) -> None:
    await store.create("/w/before", b"")
    watch = await store.watch("/w/", 0)
    await store.create("/x/ignored", b"")
    r = await store.create("/w/after", b"")
    events = await collect(watch, r)
    assert [e.kv.key for e in events] == ["/w/after"]
    await assert_quiet(watch)
    await watch.close()
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_watch_future_revision_rejected(store: Store) -> None:
    rev = await store.create("/w/a", b"")
    with pytest.raises(FutureRevisionError):
        await store.watch("/w/", rev + 10)


async def test_no_event_lost_or_duplicated_under_concurrent_writers(store: Store) -> None:
    base = await store.create("/seed", b"")  # so late watchers start from a real revision
    writers, per_writer = 20, 50
    final = base + writers * per_writer + writers * (per_writer // 10)
    expected = list(range(base + 1, final + 1))

    async def consume(watch: Watch) -> list[int]:
        try:
            revs = [e.revision for e in await collect(watch, final, timeout=30)]
            await assert_quiet(watch, 0.05)
            return revs
        finally:
            await watch.close()

    # Three watchers from "now", consumed while the writes happen.
    consumers = [asyncio.create_task(consume(await store.watch("/c/", 0))) for _ in range(3)]

    async def writer(w: int) -> None:
        key = f"/c/w{w:02d}"
        rev = await store.create(key, b"0")
        for i in range(1, per_writer):
            if w % 5 == 0 and i == 5 + w:
                # Joins mid-stream replaying from the start, while writes continue: exercises
                # the subscribe-then-replay merge, where events could fall in a gap or repeat.
                consumers.append(asyncio.create_task(consume(await store.watch("/c/", base))))
            if i % 10 == 9:
                await store.delete(key, rev)
                rev = await store.create(key, str(i).encode())
            else:
                rev = await store.update(key, str(i).encode(), rev)

    await asyncio.gather(*(writer(w) for w in range(writers)))
    assert await store.current_revision() == final
    results = await asyncio.gather(*consumers)
    assert len(results) == 3 + 4
    for revs in results:
        assert revs == expected


# -- compaction ----------------------------------------------------------------------------


async def test_compaction(store: Store) -> None:
    r1 = await store.create("/k/keep", b"k1")  # never modified again: must survive compaction
    r2 = await store.create("/k/gone", b"g1")
    r3, _ = await store.delete("/k/gone")
    r4 = await store.create("/k/upd", b"u1")
    r5 = await store.update("/k/upd", b"u2", r4)
    r6 = await store.update("/k/upd", b"u3", r5)
    await store.compact(r5)
    assert await store.compact_revision() == r5
    for rev in (r1, r2, r3, r4):
        with pytest.raises(CompactedError) as info:
            await store.get("/k/keep", rev)
        assert info.value.compact_revision == r5
        with pytest.raises(CompactedError):
            await store.range("/k/", revision=rev)
        with pytest.raises(CompactedError):
            await store.watch("/k/", rev)
    # At and above the compaction point everything still reads correctly.
    assert await store.get("/k/keep", r5) == KeyValue("/k/keep", b"k1", r1, r1)
    assert await store.get("/k/upd", r5) == KeyValue("/k/upd", b"u2", r4, r5)
    assert await store.get("/k/gone", r5) is None
    at5 = await store.range("/k/", revision=r5)
    assert [(kv.key, kv.value) for kv in at5.kvs] == [("/k/keep", b"k1"), ("/k/upd", b"u2")]
    watch = await store.watch("/k/", r5)  # exactly the compaction point is allowed
    assert [e.revision for e in await collect(watch, r6)] == [r6]
    await watch.close()
    # Compacting backwards is a no-op; compacting the future is an error.
    await store.compact(r2)
    assert await store.compact_revision() == r5
    with pytest.raises(FutureRevisionError):
        await store.compact(r6 + 1)
    # Revisions keep rising after compaction, even when it removed the newest row.
    r7, _ = await store.delete("/k/upd")
    await store.compact(r7)
    assert await store.create("/k/new", b"") == r7 + 1
    assert [kv.key for kv in (await store.range("/k/")).kvs] == ["/k/keep", "/k/new"]


async def test_watch_dropped_when_compaction_overtakes_replay(store: Store) -> None:
    start = await store.create("/k/first", b"")
    for i in range(3):
        await store.create(f"/k/{i}", b"")
    watch = await store.watch("/k/", start)
    await store.compact(await store.current_revision())
    with pytest.raises(CompactedError):
        await anext(watch)


# -- leases --------------------------------------------------------------------------------


async def test_lease_expiry_deletes_keys_with_delete_events(store: Store) -> None:
    short = await store.grant_lease(1)
    long = await store.grant_lease(30)
    watch = await store.watch("/l/", 0)
    r1 = await store.create("/l/a", b"a", lease=short)
    r2 = await store.create("/l/b", b"b", lease=short)
    await store.create("/l/c", b"c", lease=long)
    r_moved = await store.create("/l/moved", b"m", lease=short)
    # Re-writing a key without a lease detaches it from the lease.
    r_detached = await store.update("/l/moved", b"m2", r_moved, lease=0)
    events = await collect(watch, r_detached)
    # Expiry: within the TTL plus the expiry loop's tick. etcd deletes a lease's keys in one
    # transaction (one revision for both), the local drivers one revision each.
    deletes: list[Event] = []
    async with asyncio.timeout(5):
        while len(deletes) < 2:
            deletes += await anext(watch)
    await watch.close()
    assert sorted({e.revision for e in deletes}) in ([r_detached + 1], [r_detached + 1, r_detached + 2])
    assert {e.type for e in deletes} == {EventType.DELETE}
    assert sorted((e.kv.key, e.kv.create_revision) for e in deletes) == [("/l/a", r1), ("/l/b", r2)]
    assert events[0].kv.lease == short
    assert await store.get("/l/a") is None and await store.get("/l/b") is None
    assert (await store.get("/l/c")) is not None and (await store.get("/l/moved")) is not None
    with pytest.raises(StorageError):
        await store.keepalive_lease(short)
    with pytest.raises(StorageError):
        await store.create("/l/d", b"", lease=short)


async def test_lease_keepalive_and_revoke(store: Store) -> None:
    lease = await store.grant_lease(1)
    await store.create("/l/a", b"a", lease=lease)
    for _ in range(4):  # 1.2 s in total, past the 1 s TTL, kept alive
        await asyncio.sleep(0.3)
        await store.keepalive_lease(lease)
    assert await store.get("/l/a") is not None
    rev = await store.current_revision()
    await store.revoke_lease(lease)
    assert await store.get("/l/a") is None
    assert await store.current_revision() == rev + 1
    with pytest.raises(StorageError):
        await store.revoke_lease(lease)


# -- lifecycle -----------------------------------------------------------------------------


async def test_closed_store_raises_unavailable(store: Store) -> None:
    rev = await store.create("/k/a", b"")
    watch = await store.watch("/k/", 0)
    await store.close()
    with pytest.raises(UnavailableError):
        await anext(watch)
    calls = [
        store.current_revision(),
        store.compact_revision(),
        store.get("/k/a"),
        store.range("/k/"),
        store.create("/k/b", b""),
        store.update("/k/a", b"", rev),
        store.delete("/k/a"),
        store.watch("/k/", 0),
        store.compact(rev),
        store.grant_lease(10),
        store.keepalive_lease(1),
        store.revoke_lease(1),
    ]
    for call in calls:
        with pytest.raises(UnavailableError):
            await call
    await store.close()  # idempotent


# -- the hub on its own --------------------------------------------------------------------


async def test_slow_watcher_is_dropped_not_buffered_forever() -> None:
    hub = WatchHub(max_queue=5)

    async def no_history(prefix: str, after: int, limit: int) -> list[Event]:
        return []

    slow = hub.subscribe("/a/", 0, no_history)
    fast = hub.subscribe("/a/", 0, no_history)
    got: list[int] = []
    for rev in range(1, 20):
        hub.publish([Event(EventType.PUT, KeyValue("/a/x", b"", 1, rev))])
        hub.publish([Event(EventType.PUT, KeyValue("/b/x", b"", 1, rev))])  # filtered, not queued
        got += [e.revision for e in await anext(fast)]
    assert got == list(range(1, 20))
    with pytest.raises(WatchOverflowError):
        await anext(slow)
    assert len(hub) == 1
