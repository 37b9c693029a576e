"""WorkQueue semantics (client-go's) and the shared worker loop, on a real event loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kubelite.client.workqueue import ShutDownError, WorkQueue, run_workers


async def test_fifo_and_deduplication() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "c", "b", "a"]:
        q.add(key)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0


async def test_key_readded_while_processing_is_requeued_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed out while in flight
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()  # a second worker must not get "a" now
    q.done(key)
    assert await asyncio.wait_for(getter, 1) == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_readd_does_not_requeue() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.done(await q.get())
    assert len(q) == 0


async def test_get_blocks_until_add() -> None:
    q: WorkQueue[int] = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    q.add(7)
    assert await asyncio.wait_for(getter, 1) == 7


async def test_cancelled_getter_passes_wakeup_on() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("x")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs: `second` must get the key
    assert await asyncio.wait_for(second, 1) == "x"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_add_after_delays_and_keeps_earliest() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.2)
    q.add_after("a", 0.05)  # earlier wins
    q.add_after("a", 0.5)  # later is ignored
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.wait_for(q.get(), 1) == "a"
    elapsed = loop.time() - start
    assert 0.04 <= elapsed < 0.19
    q.done("a")
    await asyncio.sleep(0.6)
    assert len(q) == 0  # the superseded timers did not fire


async def test_add_after_zero_is_immediate() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0)
    assert len(q) == 1


async def test_rate_limited_backoff_grows_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.02, max_delay=0.1)
    loop = asyncio.get_running_loop()
    delays = []
    for _ in range(4):
        start = loop.time()
        q.add_rate_limited("k")
        key = await asyncio.wait_for(q.get(), 2)
        delays.append(loop.time() - start)
        q.done(key)
    assert q.num_requeues("k") == 4
    # 20 ms, 40 ms, 80 ms, then capped at 100 ms
    assert delays[0] < delays[1] < delays[2]
    assert delays[0] >= 0.015 and delays[2] >= 0.075
    assert 0.09 <= delays[3] < 0.2
    q.forget("k")
    assert q.num_requeues("k") == 0
    start = loop.time()
    q.add_rate_limited("k")
    await asyncio.wait_for(q.get(), 1)
    assert loop.time() - start < 0.06


def test_default_backoff_matches_client_go() -> None:
    q: WorkQueue[str] = WorkQueue()
    assert q.base_delay == 0.005
    assert q.max_delay == 1000.0


async def test_shutdown_drains_then_raises_and_refuses_adds() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add_after("late", 0.01)
    q.shut_down()
    q.add("b")
    assert await q.get() == "a"
    with pytest.raises(ShutDownError):
        await q.get()
    await asyncio.sleep(0.03)
    assert len(q) == 0  # the delayed add was cancelled


async def test_shutdown_wakes_blocked_getters() -> None:
    q: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.shut_down()
    for g in getters:
        with pytest.raises(ShutDownError):
            await asyncio.wait_for(g, 1)


async def test_run_workers_never_processes_a_key_concurrently() -> None:
    q: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    processed: list[int] = []
    overlap = False

    async def handler(key: int) -> None:
        nonlocal overlap
        if key in active:
            overlap = True
        active.add(key)
        await asyncio.sleep(0.005)
        active.discard(key)
        processed.append(key)

    runner = asyncio.create_task(run_workers(q, handler, workers=4))
    for _ in range(20):
        for key in range(5):
            q.add(key)
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.1)
    q.shut_down()
    await asyncio.wait_for(runner, 2)
    assert not overlap
    assert set(processed) == set(range(5))
    assert len(processed) < 100  # de-duplicated, far fewer runs than adds


async def test_run_workers_retries_failures_with_backoff_then_forgets(caplog: pytest.LogCaptureFixture) -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.01)
    attempts: list[str] = []

    async def handler(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("boom")

    q.add("k")
    with caplog.at_level(logging.ERROR, logger="kubelite.client.workqueue"):
        runner = asyncio.create_task(run_workers(q, handler, workers=2))
        for _ in range(100):
            if len(attempts) >= 3:
                break
            await asyncio.sleep(0.01)
        q.shut_down()
        await asyncio.wait_for(runner, 2)
    assert attempts == ["k", "k", "k"]
    assert q.num_requeues("k") == 0  # success forgot the failures
    assert sum("boom" in (r.exc_text or "") or "error syncing" in r.getMessage() for r in caplog.records) == 2


async def test_run_workers_cancellation_stops_all_workers() -> None:
    q: WorkQueue[str] = WorkQueue()
    started = asyncio.Event()

    async def handler(key: str) -> None:
        started.set()
        await asyncio.sleep(10)

    q.add("a")
    runner = asyncio.create_task(run_workers(q, handler, workers=3))
    await asyncio.wait_for(started.wait(), 1)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    q.add("a")
    assert len(q) == 1  # "a" was marked done on cancellation, so it can be queued again
