"""A work queue with client-go's semantics, and the worker loop every controller shares.

The guarantees controllers rely on (client-go ``util/workqueue``):

* de-duplication: a key added many times before a worker takes it is processed once;
* exclusivity: a key being processed is never handed to a second worker; if it is added again
  meanwhile it is queued once more when ``done(key)`` is called, so the newest state is seen;
* fairness: keys are handed out in the order they were first added;
* per-key exponential backoff for retries (``add_rate_limited``), reset by ``forget``.

Event handlers only ``add`` keys; all work happens in ``run_workers``' handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ShutDownError", "WorkQueue", "run_workers"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class ShutDownError(Exception):
    """``get()`` on a queue that is shut down and drained: the worker should exit."""


class WorkQueue(Generic[K]):
    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0, name: str = "") -> None:
        # client-go's ItemExponentialFailureRateLimiter defaults: 5 ms doubling up to 1000 s.
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.name = name
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # waiting to be processed (queued, or re-added while processing)
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._delayed: dict[K, tuple[float, asyncio.TimerHandle]] = {}  # key -> (ready time, timer)
        self._failures: dict[K, int] = {}
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() queues it again
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (the earliest of several requests wins)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        self._delayed[key] = (ready, loop.call_at(ready, self._fire_delayed, key))

    def _fire_delayed(self, key: K) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        """Retry ``key`` after its backoff: base * 2^failures, capped at max_delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Cap the exponent too, so a key failing for days cannot overflow the float.
        delay = min(self.base_delay * (2 ** min(failures, 64)), self.max_delay)
        self.add_after(key, delay)

    def forget(self, key: K) -> None:
        """Stop tracking ``key``'s failures (call after it was processed successfully)."""
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        """The next key to process; the caller must call ``done(key)`` afterwards.

        Raises ShutDownError once the queue is shut down and nothing is left in it.
        """
        while not self._queue:
            if self._shutting_down:
                raise ShutDownError(f"work queue {self.name!r} is shut down")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                woken = waiter.done() and not waiter.cancelled()
                waiter.cancel()
                if waiter in self._getters:
                    self._getters.remove(waiter)
                if woken and self._queue:
                    self._wake_one()  # we were handed a wake-up we cannot use: pass it on
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def shut_down(self) -> None:
        """Refuse new keys; workers drain what is queued, then ``get()`` raises ShutDownError."""
        self._shutting_down = True
        for _, timer in self._delayed.values():
            timer.cancel()
        self._delayed.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


async def run_workers(
    queue: WorkQueue[K], handler: Callable[[K], Awaitable[None]], workers: int = 1
) -> None:
    """Run ``workers`` loops of get -> ``await handler(key)`` -> done until the queue shuts down.

    A handler that raises is logged and its key retried with backoff; one that returns has its
    backoff reset. Cancelling this coroutine stops every worker.
    """

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDownError:
                return
            try:
                await handler(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except Exception:
                log.exception(
                    "error syncing %r (queue %r, retry %d)", key, queue.name, queue.num_requeues(key) + 1
                )
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            queue.done(key)

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
