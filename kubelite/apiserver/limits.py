"""Limits against abuse: a request rate per user, open watches per user, bytes queued per watch.

* :class:`RateLimiter` is a token bucket per user name (kube-apiserver's API Priority and Fairness
  is far richer; one bucket per credential is the part that stops a single client from starving
  the others). A refusal carries the seconds until a token is due, for ``Retry-After``.
* :class:`WatchLimiter` counts the watches a user holds open.
* :class:`WatchBuffer` sits between a watch's event stream and its socket: events are encoded into
  it without waiting for the client, and a writer task drains it. A client that stops reading
  makes it grow; past its byte bound the watch is dropped (kube-apiserver likewise terminates a
  watcher whose buffer stays full), so the server never holds more than the bound for it. The
  bound must cover how far a healthy client may lag, including the initial ADDED events of a
  watch without resourceVersion (informers list first and watch from the list's revision).

``system:masters`` is exempt from the rate and the watch count: the in-process controllers run
as a master and hold one watch per informer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from kubelite.apiserver.errors import TooManyRequests
from kubelite.auth import MASTERS, UserInfo

__all__ = ["RateLimiter", "WatchBuffer", "WatchLimiter"]

# Buckets kept at most; beyond it the least recently used go (their users get a fresh bucket,
# which errs on the side of serving them). Idle buckets go long before this.
MAX_BUCKETS = 100_000
# The writer hands the socket at most this much per write, so it never copies the whole buffer.
WRITE_CHUNK = 256 * 1024


def _exempt(user: UserInfo) -> bool:
    return MASTERS in user.groups


@dataclass
class _Bucket:
    tokens: float
    stamp: float  # when ``tokens`` was last brought up to date


class RateLimiter:
    """Token bucket per user name: ``burst`` requests at once, refilled at ``qps``; 0 qps = unlimited."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if qps < 0 or burst < 0:
            raise ValueError("qps and burst must be >= 0")
        self.qps = qps
        # No burst given: two seconds' worth (as `kubelite server --help` says), at least one request.
        self.burst = burst if burst > 0 else max(1, math.ceil(2 * qps))
        self._clock = clock
        # Least recently used first, so idle buckets are found (and dropped) at the front.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        # A bucket untouched this long has refilled completely: it is the same as no bucket.
        self._refill_time = self.burst / qps if qps > 0 else 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, user: UserInfo) -> float | None:
        """Take a token for ``user``: None if allowed, else the seconds until one is due (nothing taken)."""
        if self.qps <= 0 or _exempt(user):
            return None
        now = self._clock()
        self._drop_idle(now)
        bucket = self._buckets.get(user.name)
        if bucket is None:
            bucket = self._buckets[user.name] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.qps)
            bucket.stamp = now
            self._buckets.move_to_end(user.name)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.qps

    def _drop_idle(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            name, oldest = next(iter(buckets.items()))
            if now - oldest.stamp < self._refill_time and len(buckets) < MAX_BUCKETS:
                break
            del buckets[name]


class WatchLimiter:
    """Open watches per user name; 0 = unlimited."""

    def __init__(self, max_per_user: int) -> None:
        if max_per_user < 0:
            raise ValueError("max_per_user must be >= 0")
        self.max_per_user = max_per_user
        self._open: dict[str, int] = {}

    def count(self, user: UserInfo) -> int:
        return self._open.get(user.name, 0)

    def acquire(self, user: UserInfo) -> bool:
        """Take a watch slot; False if the user already holds ``max_per_user``. Pair with :meth:`release`."""
        if self.max_per_user <= 0 or _exempt(user):
            return True
        held = self._open.get(user.name, 0)
        if held >= self.max_per_user:
            return False
        self._open[user.name] = held + 1
        return True

    def release(self, user: UserInfo) -> None:
        if self.max_per_user <= 0 or _exempt(user):
            return
        held = self._open.get(user.name, 0) - 1
        if held > 0:
            self._open[user.name] = held
        else:
            self._open.pop(user.name, None)  # only users with open watches take memory

    @contextlib.contextmanager
    def slot(self, user: UserInfo) -> Iterator[None]:
        """Hold a watch slot for the block; raises TooManyRequests (429, retry in 1 s) if none is free."""
        if not self.acquire(user):
            raise TooManyRequests(
                f"too many open watches for user {user.name!r} (at most {self.max_per_user})", 1.0
            )
        try:
            yield
        finally:
            self.release(user)


class WatchBuffer:
    """One watch's outgoing bytes: :meth:`send` queues without waiting for the client, :meth:`run` writes.

    ``pending`` counts the bytes queued and not yet handed to the socket (the transport itself
    holds at most its high-water mark more, as ``write`` waits for it to drain).
    """

    def __init__(self, write: Callable[[bytes], Awaitable[None]], limit: int) -> None:
        self._write = write
        self.limit = limit
        self.pending = 0
        self.written = 0
        self._chunks: deque[bytes] = deque()
        self._finished = False
        self._data = asyncio.Event()  # the writer has something to do

    async def send(self, data: bytes) -> bool:
        """Queue ``data``; False if the buffer is over its limit (the client fell behind: drop the watch)."""
        self._chunks.append(data)
        self.pending += len(data)
        self._data.set()
        # Let the writer hand bytes to the socket between events, even when the stream never
        # waits (a backlog, an initial list): only bytes the client has not taken count.
        await asyncio.sleep(0)
        return self.pending <= self.limit

    def finish(self) -> None:
        """No more data: :meth:`run` returns once everything queued is written."""
        self._finished = True
        self._data.set()

    async def run(self) -> None:
        """Write queued bytes until :meth:`finish` and empty; the write's errors (client gone) propagate."""
        while True:
            if not self._chunks:
                if self._finished:
                    return
                self._data.clear()
                await self._data.wait()
                continue
            out = [self._chunks.popleft()]
            size = len(out[0])
            while self._chunks and size + len(self._chunks[0]) <= WRITE_CHUNK:
                size += len(self._chunks[0])
                out.append(self._chunks.popleft())
            self.pending -= size
            await self._write(out[0] if len(out) == 1 else b"".join(out))
            self.written += size
