"""Events (Scheduled, FailedScheduling, SuccessfulCreate, Killing, ...) that `describe` shows.

Recording never blocks a reconcile: events go into a bounded queue that one task writes out.
Repeats of the same (object, type, reason, message) bump ``count`` on the existing Event, as
client-go's event correlator does, instead of creating thousands of objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from kubelite.api.registry import resource
from kubelite.apiserver.meta import rfc3339
from kubelite.client import ApiClient, ApiError
from kubelite.client.rest import ApiConnectionError

log = logging.getLogger(__name__)
Obj = dict[str, Any]

EVENTS = resource("", "events")


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "", max_queue: int = 10000) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[tuple[Obj, str, str, str]] = asyncio.Queue(max_queue)
        # (uid, type, reason, message) -> (namespace, event name, count, last write time)
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` (type Normal or Warning). Never blocks; drops when flooded."""
        try:
            self._queue.put_nowait((obj, type_, reason, message))
        except asyncio.QueueFull:
            log.debug("event queue full, dropping %s %s", reason, message)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"events-{self.component}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued events are written (for tests and clean shutdown)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            obj, type_, reason, message = await self._queue.get()
            try:
                await self._write(obj, type_, reason, message)
            except (ApiError, ApiConnectionError) as e:
                log.debug("could not record event %s on %s: %s", reason, _name(obj), e)

    async def _write(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        m = obj.get("metadata") or {}
        namespace = m.get("namespace") or "default"
        uid = str(m.get("uid", ""))
        key = (uid, type_, reason, message)
        now = rfc3339()
        seen = self._seen.get(key)
        if seen is not None:
            ns, name, count, _ = seen
            try:
                await self.client.patch(
                    EVENTS, name, {"count": count + 1, "lastTimestamp": now}, namespace=ns, patch_type="merge"
                )
                self._seen[key] = (ns, name, count + 1, time.monotonic())
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        name = f"{m.get('name', 'unknown')}.{uuid.uuid4().hex[:16]}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "name": m.get("name", ""),
                "namespace": m.get("namespace", ""),
                "uid": uid,
                "resourceVersion": m.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        await self.client.create(EVENTS, event, namespace=namespace)
        if len(self._seen) > 4096:
            # Forget the oldest half: correlation is a nicety, memory must stay bounded.
            for k, _v in sorted(self._seen.items(), key=lambda kv: kv[1][3])[:2048]:
                del self._seen[k]
        self._seen[key] = (namespace, name, 1, time.monotonic())


def _name(obj: Obj) -> str:
    m = obj.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"
