"""Small helpers shared by tests: polling for a condition, running controllers against an API,
stopping the processes a test started."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from kubelite.client import ApiClient
from kubelite.controllers.base import ControllerSettings
from kubelite.controllers.manager import ControllerManager

T = TypeVar("T")


async def eventually(
    fn: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``fn`` until it returns something truthy (and return that); fail after ``timeout``.

    An exception of a ``retry_on`` type counts as "not yet" (and is reported if time runs out).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
        except retry_on as e:
            last = e
        else:
            if last:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def eventually_sync(
    fn: Callable[[], T | None],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.2,
    retry_on: tuple[type[BaseException], ...] = (AssertionError,),
) -> T:
    """:func:`eventually` for synchronous callers (tests driving a blocking client or CLI)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except retry_on as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def stop_processes(*procs: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send ``sig`` to each process still running, then wait for each up to ``timeout``, SIGKILLing
    (and reaping) any that outlives it, so a test never leaves a process or a zombie behind.

    All are signalled before any is waited for: several shut down in parallel.
    """
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.send_signal(sig)
    for p in running:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
