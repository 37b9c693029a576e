"""The scheduling queue: pods waiting for a scheduling attempt, and pods parked as unschedulable.

Three places a pending pod can be (kube-scheduler's activeQ / backoffQ / unschedulablePods):

* active: attempted next, first in first out, each key once;
* backing off: after a failed attempt a pod is not tried again before its backoff (1 s doubling
  to 10 s) has passed, however many cluster events arrive meanwhile;
* unschedulable: parked until something that could make it fit happens (``move_all_to_active``:
  a node added or changed, a placed pod removed) or the periodic flush, so a pod that fits
  nowhere costs nothing while the cluster is quiet.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

__all__ = ["SchedulingQueue"]


class SchedulingQueue:
    def __init__(self, initial_backoff: float = 1.0, max_backoff: float = 10.0) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._active: deque[str] = deque()
        self._in_active: set[str] = set()
        self.unschedulable: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._backoff_until: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._active)

    def __contains__(self, key: str) -> bool:
        return key in self._in_active or key in self.unschedulable or key in self._timers

    def add(self, key: str) -> None:
        """Queue for an attempt now (a new pod, or one whose spec changed)."""
        if self._closed:
            return
        self.unschedulable.discard(key)
        self._cancel_timer(key)
        if key not in self._in_active:
            self._in_active.add(key)
            self._active.append(key)
            self._wakeup.set()

    def _add_when_backed_off(self, key: str) -> None:
        until = self._backoff_until.get(key, 0.0)
        delay = until - time.monotonic()
        if delay <= 0:
            self.add(key)
            return
        self.unschedulable.discard(key)
        if key not in self._timers and key not in self._in_active:
            self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _cancel_timer(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _note_failure(self, key: str) -> None:
        n = self._attempts.get(key, 0) + 1
        self._attempts[key] = n
        delay = min(self.initial_backoff * 2 ** min(n - 1, 16), self.max_backoff)
        self._backoff_until[key] = time.monotonic() + delay

    def mark_unschedulable(self, key: str) -> None:
        """The attempt found no node: park the pod until the cluster changes."""
        self._note_failure(key)
        if key not in self._in_active and key not in self._timers:
            self.unschedulable.add(key)

    def retry_after_error(self, key: str) -> None:
        """The attempt failed for a transient reason (bind error): try again after the backoff."""
        self._note_failure(key)
        self._add_when_backed_off(key)

    def move_all_to_active(self) -> None:
        """Something changed that may let parked pods fit: each goes back once its backoff ends."""
        for key in list(self.unschedulable):
            self._add_when_backed_off(key)

    def done(self, key: str) -> None:
        """The pod is scheduled (or gone): forget its history."""
        self.forget(key)

    def forget(self, key: str) -> None:
        self.unschedulable.discard(key)
        self._cancel_timer(key)
        self._attempts.pop(key, None)
        self._backoff_until.pop(key, None)
        if key in self._in_active:
            self._in_active.discard(key)  # left in the deque; pop() skips keys no longer wanted

    async def pop(self) -> str:
        while True:
            while self._active:
                key = self._active.popleft()
                if key in self._in_active:
                    self._in_active.discard(key)
                    return key
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
