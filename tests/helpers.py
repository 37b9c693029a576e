"""Small helpers shared by tests: polling for a condition, running controllers against an API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kubelite.client import ApiClient
from kubelite.controllers.base import ControllerSettings
from kubelite.controllers.manager import ControllerManager


async def eventually(
    fn: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """Poll ``fn`` until it returns something truthy (and return that); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@contextlib.asynccontextmanager
async def running_controllers(
    client: ApiClient, names: list[str], settings: ControllerSettings | None = None
) -> AsyncIterator[ControllerManager]:
    """Run the named controllers (as in `kubelite server --controllers`) for the body of the block."""
    manager = ControllerManager(client, names, settings)
    task = asyncio.create_task(manager.run())
    try:
        yield manager
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
