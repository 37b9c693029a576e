"""kubelite.streams: a silent stream ends in TimeoutError on its own timer, not aiohttp's."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kubelite.streams import chunks


async def _stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    await resp.write(b"one\n")
    if request.query.get("silent"):
        await asyncio.sleep(3600)  # a server that went away: no data, no EOF
    await resp.write(b"two\n")
    return resp


@pytest.fixture
async def server() -> TestServer:
    app = web.Application()
    app.router.add_get("/", _stream)
    async with TestServer(app) as srv:
        yield srv


async def test_reads_every_chunk_until_eof(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/")) as resp:
        got = b"".join([c async for c in chunks(resp.content, 5.0)])
    assert got == b"one\ntwo\n"


async def test_silence_raises_timeout_without_a_socket_timer(server: TestServer) -> None:
    # No sock_read at all on the session: only the reader's own limit can end the wait.
    no_timer = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=no_timer) as session, session.get(server.make_url("/?silent=1")) as resp:
        got: list[bytes] = []
        with pytest.raises(TimeoutError):  # else the wait outlasts the test's timeout
            async for c in chunks(resp.content, 0.3):
                got.append(c)
    assert got == [b"one\n"]
