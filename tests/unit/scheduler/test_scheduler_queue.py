"""SchedulingQueue: parked pods come back only on a cluster change, and never before their backoff."""

from __future__ import annotations

import asyncio

from kubelite.scheduler.queue import SchedulingQueue


async def pop_now(q: SchedulingQueue) -> str | None:
    try:
        return await asyncio.wait_for(q.pop(), 0.01)
    except TimeoutError:
        return None


async def test_fifo_without_duplicates() -> None:
    q = SchedulingQueue()
    for key in ["a", "b", "a", "c"]:
        q.add(key)
    assert [await pop_now(q) for _ in range(4)] == ["a", "b", "c", None]


async def test_unschedulable_pod_waits_for_a_change_and_its_backoff() -> None:
    q = SchedulingQueue(initial_backoff=0.2)
    q.add("p")
    assert await pop_now(q) == "p"
    q.mark_unschedulable("p")
    assert await pop_now(q) is None  # parked: nothing happened
    q.move_all_to_active()
    assert await pop_now(q) is None  # a change, but still backing off: no hot loop
    assert await asyncio.wait_for(q.pop(), 2) == "p"
    q.mark_unschedulable("p")
    await asyncio.sleep(0.5)
    assert await pop_now(q) is None  # backoff over, yet no change: stays parked


async def test_forgotten_pods_are_not_handed_out() -> None:
    q = SchedulingQueue()
    q.add("gone")
    q.add("kept")
    q.forget("gone")
    assert await pop_now(q) == "kept"
    assert await pop_now(q) is None


async def test_a_spec_change_retries_at_once() -> None:
    q = SchedulingQueue(initial_backoff=5)
    q.add("p")
    await pop_now(q)
    q.mark_unschedulable("p")
    q.add("p")  # the pod itself changed (new tolerations): no reason to wait
    assert await pop_now(q) == "p"
