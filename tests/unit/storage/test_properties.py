"""Property test: any sequence of writes and compactions matches a plain dict model.

For a random op sequence, every driver must (1) accept/reject each op exactly as the model does,
(2) end in the model's state, (3) read every retained revision as the model's snapshot and reject
compacted ones, and (4) stream exactly the model's op log to a watcher opened before the ops.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubelite.storage import (
    CompactedError,
    Event,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RevisionMismatchError,
    Store,
    open_store,
)

KEYS = ["/p/a", "/p/b", "/p/c", "/q/a"]
# (type, key, value, create_revision, mod_revision): what an Event must carry.
LogEntry = tuple[EventType, str, bytes, int, int]
State = dict[str, tuple[bytes, int, int]]  # key -> (value, create_revision, mod_revision)
Op = tuple[Any, ...]

ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(KEYS), st.binary(max_size=8)),
        st.tuples(st.just("update"), st.sampled_from(KEYS), st.binary(max_size=8), st.booleans()),
        st.tuples(st.just("delete"), st.sampled_from(KEYS), st.sampled_from(["none", "right", "stale"])),
        st.tuples(st.just("compact"), st.integers(min_value=0, max_value=6)),
    ),
    max_size=40,
)


@dataclass
class Model:
    rev: int = 0
    compact: int = 0
    state: State = field(default_factory=dict)
    snapshots: dict[int, State] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)

    def write(self, entry: LogEntry) -> None:
        self.rev += 1
        self.log.append(entry)
        self.snapshots[self.rev] = dict(self.state)


def entry_of(event: Event) -> LogEntry:
    kv = event.kv
    return (event.type, kv.key, kv.value, kv.create_revision, kv.mod_revision)


async def apply(store: Store, model: Model, op: Op) -> None:
    kind, *args = op
    if kind == "create":
        key, value = str(args[0]), bytes(args[1])
        if key in model.state:
            with pytest.raises(KeyExistsError):
                await store.create(key, value)
            return
        rev = await store.create(key, value)
        model.state[key] = (value, model.rev + 1, model.rev + 1)
        model.write((EventType.PUT, key, value, model.rev + 1, model.rev + 1))
        assert rev == model.rev
    elif kind == "update":
        key, value, stale = str(args[0]), bytes(args[1]), bool(args[2])
        cur = model.state.get(key)
        if cur is None:
            with pytest.raises(KeyNotFoundError):
                await store.update(key, value, 1)
            return
        expected = (cur[2] - 1 or cur[2] + 1) if stale else cur[2]  # never 0: that is "any"
        if stale:
            with pytest.raises(RevisionMismatchError) as info:
                await store.update(key, value, expected)
            assert info.value.current is not None and info.value.current.value == cur[0]
            return
        rev = await store.update(key, value, expected)
        model.state[key] = (value, cur[1], model.rev + 1)
        model.write((EventType.PUT, key, value, cur[1], model.rev + 1))
        assert rev == model.rev
    elif kind == "delete":
        key, mode = str(args[0]), str(args[1])
        cur = model.state.get(key)
        if cur is None:
            with pytest.raises(KeyNotFoundError):
                await store.delete(key)
            return
        expected = {"none": 0, "right": cur[2], "stale": cur[2] - 1 or cur[2] + 1}[mode]
        if mode == "stale":
            with pytest.raises(RevisionMismatchError):
                await store.delete(key, expected)
            return
        rev, old = await store.delete(key, expected)
        assert (old.value, old.create_revision, old.mod_revision) == cur
        del model.state[key]
        model.write((EventType.DELETE, key, cur[0], cur[1], model.rev + 1))
        assert rev == model.rev
    else:
        target = max(0, model.rev - int(args[0]))
        await store.compact(target)
        model.compact = max(model.compact, target)
        assert await store.compact_revision() == model.compact


def as_state(kvs: list[KeyValue]) -> State:
    return {kv.key: (kv.value, kv.create_revision, kv.mod_revision) for kv in kvs}


async def check(url: str, ops: list[Op]) -> None:
    store = open_store(url)
    await store.start()
    try:
        model = Model()
        everything = await store.watch("", 0)
        only_p = await store.watch("/p/", 0)
        for op in ops:
            await apply(store, model, op)
        assert await store.current_revision() == model.rev
        assert as_state((await store.range("")).kvs) == model.state
        for rev in range(1, model.rev + 1):
            if rev < model.compact:
                with pytest.raises(CompactedError):
                    await store.range("", revision=rev)
                continue
            res = await store.range("", revision=rev)
            assert as_state(res.kvs) == model.snapshots[rev], f"at revision {rev}"
            assert res.count == len(model.snapshots[rev])
            for key in KEYS:
                kv = await store.get(key, rev)
                assert (kv and (kv.value, kv.create_revision, kv.mod_revision)) == (
                    model.snapshots[rev].get(key)
                )
        # The live watchers see exactly the op log, filtered by prefix.
        for watch, prefix in ((everything, ""), (only_p, "/p/")):
            want = [e for e in model.log if e[1].startswith(prefix)]
            got: list[LogEntry] = []
            async with asyncio.timeout(5):
                while len(got) < len(want):
                    got += [entry_of(e) for e in await anext(watch)]
            assert got == want
            await watch.close()
        # A watcher replaying from the compaction point sees the log after it.
        if model.rev:
            replay = await store.watch("", max(model.compact, 1))
            want = model.log[max(model.compact, 1) :]
            got = []
            async with asyncio.timeout(5):
                while len(got) < len(want):
                    got += [entry_of(e) for e in await anext(replay)]
            assert got == want
            await replay.close()
    finally:
        await store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_memory_matches_model(ops: list[Op]) -> None:
    asyncio.run(check("memory://", ops))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_sqlite_matches_model(ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(check(f"sqlite://{tmp}/state.db", ops))
