"""In-memory fan-out of committed event batches to watchers, shared by the local drivers.

The algorithm is kine's: a watcher subscribes to the hub *first* (so live events are buffered),
then replays history newer than its start revision from the driver, then drains the buffer while
skipping every revision it already replayed. Anything committed before the subscription is in
the replayed history; anything committed after it is in the buffer; overlap is removed by
revision, so nothing is lost or duplicated.

Drivers must call :meth:`WatchHub.publish` on the event loop, once per commit, in commit order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from kubelite.storage.interface import Event, StorageError, UnavailableError, Watch, WatchOverflowError

# Fetches up to ``limit`` events under ``prefix`` with revision > ``after``, in revision order.
# It raises CompactedError if ``after`` is below the compaction point.
ReplayFn = Callable[[str, int, int], Awaitable[list[Event]]]

DEFAULT_MAX_QUEUE = 10_000
REPLAY_PAGE = 1000


class WatchHub:
    """Live subscribers of one store."""

    def __init__(self, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self.max_queue = max_queue
        self._subs: set[HubWatch] = set()

    def subscribe(self, prefix: str, start_revision: int, replay: ReplayFn) -> HubWatch:
        watch = HubWatch(self, prefix, start_revision, replay)
        self._subs.add(watch)
        return watch

    def publish(self, events: Sequence[Event]) -> None:
        """Offer one commit's events (rising revisions) to every subscriber."""
        if not events:
            return
        for watch in list(self._subs):
            watch._offer(events)

    def close_all(self, error: StorageError) -> None:
        for watch in list(self._subs):
            watch._fail(error)

    def _unsubscribe(self, watch: HubWatch) -> None:
        self._subs.discard(watch)

    def __len__(self) -> int:
        return len(self._subs)


class HubWatch(Watch):
    def __init__(self, hub: WatchHub, prefix: str, start_revision: int, replay: ReplayFn) -> None:
        self._hub = hub
        self._prefix = prefix
        self._replay = replay
        # Highest revision handed to the consumer; everything at or below it is skipped.
        self._last = start_revision
        # start_revision 0 means "from now": nothing to replay.
        self._replaying = start_revision > 0
        self._queue: deque[list[Event]] = deque()
        self._wakeup = asyncio.Event()
        self._error: StorageError | None = None
        self._closed = False

    def _offer(self, events: Sequence[Event]) -> None:
        if self._closed or self._error is not None:
            return
        prefix = self._prefix
        matching = [e for e in events if e.kv.key.startswith(prefix)] if prefix else list(events)
        if not matching:
            return
        if len(self._queue) >= self._hub.max_queue:
            # Bounded memory: a consumer this far behind is dropped rather than buffered forever.
            self._fail(
                WatchOverflowError(f"watch on {self._prefix!r} fell behind by {len(self._queue)} batches")
            )
            return
        self._queue.append(matching)
        self._wakeup.set()

    def _fail(self, error: StorageError) -> None:
        if self._error is None and not self._closed:
            self._error = error
        self._queue.clear()
        self._hub._unsubscribe(self)
        self._wakeup.set()

    async def __anext__(self) -> list[Event]:
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            if self._replaying:
                try:
                    page = await self._replay(self._prefix, self._last, REPLAY_PAGE)
                except StorageError as exc:
                    self._fail(exc)
                    raise
                if self._closed:
                    raise StopAsyncIteration
                if len(page) < REPLAY_PAGE:
                    self._replaying = False
                if page:
                    self._last = page[-1].revision
                    return page
                continue
            if self._queue:
                batch = self._queue.popleft()
                if batch[0].revision <= self._last:
                    batch = [e for e in batch if e.revision > self._last]
                if batch:
                    self._last = batch[-1].revision
                    return batch
                continue
            self._wakeup.clear()
            await self._wakeup.wait()

    async def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self._hub._unsubscribe(self)
        self._wakeup.set()


def closed_error() -> UnavailableError:
    return UnavailableError("store is closed")
