"""Reading long-lived HTTP response streams (API watches, etcd watches) with an idle limit.

aiohttp's ``sock_read`` timer lives on the connection's protocol: a response whose connection has
been detached from it (seen after a server's machine was powered off mid-watch) is never woken by
that timer, and its reader waits forever. The limit here is an ``asyncio.timeout`` around each read,
so a stream that stays silent for ``idle`` seconds raises ``TimeoutError`` whatever state the
connection is in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp


async def chunks(content: aiohttp.StreamReader, idle: float | None) -> AsyncIterator[bytes]:
    """The stream's data as it arrives, until EOF; ``TimeoutError`` after ``idle`` s without any."""
    while True:
        async with asyncio.timeout(idle):
            chunk = await content.readany()
        if not chunk:
            return
        yield chunk
