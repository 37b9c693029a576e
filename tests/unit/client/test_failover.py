"""The client with several API servers (HA): a server that goes silent costs seconds, not the request.

A "silent" server accepts TCP connections and never answers, as a powered-off machine's kernel
would not (it would not even answer), but close enough: the read must be cut short and a GET — safe
to repeat — retried on the next server, while a POST (which may have taken effect) is not replayed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.api.registry import resource
from kubelite.client import ApiClient, ApiConnectionError, ClientConfig, rest

CONFIGMAPS = resource("", "configmaps")


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    loop = asyncio.get_running_loop()
    sock.setblocking(False)

    async def accept_forever() -> None:
        while True:
            conn, _ = await loop.sock_accept(sock)
            accepted.append(conn)  # held open, never answered

    task = asyncio.create_task(accept_forever())
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        task.cancel()
        for conn in accepted:
            conn.close()
        sock.close()


async def test_get_moves_on_from_a_silent_server_and_post_is_not_replayed(
    inproc_api: Any, silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest, "FAILOVER_READ_TIMEOUT", 0.5)
    await inproc_api.client.create(CONFIGMAPS, {"metadata": {"name": "there"}}, namespace="default")
    async with ApiClient(ClientConfig(servers=[silent_server, inproc_api.url])) as client:
        got = await client.get(CONFIGMAPS, "there", "default")
        assert got["metadata"]["name"] == "there"
        assert client.server == inproc_api.url  # it stays with the server that answered
    async with ApiClient(ClientConfig(servers=[silent_server, inproc_api.url])) as client:
        with pytest.raises(ApiConnectionError):
            await client.create(CONFIGMAPS, {"metadata": {"name": "maybe"}}, namespace="default")
    with pytest.raises(Exception, match="not found"):
        await inproc_api.client.get(CONFIGMAPS, "maybe", "default")


@pytest.fixture
async def frozen_watch_server() -> AsyncIterator[str]:
    """Answers a watch with its headers, then nothing: a server that died with the stream open."""
    from aiohttp import web

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await asyncio.sleep(3600)
        return resp

    app = web.Application()
    app.router.add_get("/{tail:.*}", watch)
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # its handler never ends by itself
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_silent_watch_is_cut_and_the_next_one_goes_to_the_next_server(
    inproc_api: Any, frozen_watch_server: str
) -> None:
    async with ApiClient(ClientConfig(servers=[frozen_watch_server, inproc_api.url])) as client:
        client.watch_idle_timeout = 0.5
        with pytest.raises(ApiConnectionError, match="no data"):
            async with asyncio.timeout(10):  # without the idle cut this would hang for the watch's timeout
                async for _ in client.watch(CONFIGMAPS, "default"):
                    pass
        assert client.server == inproc_api.url
        await inproc_api.client.create(CONFIGMAPS, {"metadata": {"name": "seen"}}, namespace="default")
        async with asyncio.timeout(10):
            async for event in client.watch(CONFIGMAPS, "default", resource_version="0"):
                if event.object["metadata"]["name"] == "seen":
                    break


async def test_bookmarks_keep_coming_while_the_selector_drops_every_event() -> None:
    """A field-selected watch (an agent's pods) on a busy store still hears from the server."""
    import tempfile
    from pathlib import Path

    from kubelite.apiserver.config import ServerConfig
    from kubelite.apiserver.server import start_server
    from tests.conftest import free_port

    with tempfile.TemporaryDirectory(prefix="kubelite-bookmarks-") as tmp:
        config = ServerConfig(data_dir=Path(tmp), datastore_endpoint="memory://", port=free_port(),
                              insecure_port=free_port(), bookmark_interval=0.3)  # fmt: skip
        running = await start_server(config)
        try:
            async with ApiClient(f"http://127.0.0.1:{config.insecure_port}") as client:
                stop = asyncio.Event()

                async def churn() -> None:  # events the watch below never matches, every 50 ms
                    i = 0
                    while not stop.is_set():
                        await client.create(CONFIGMAPS, {"metadata": {"name": f"other-{i}"}}, namespace="default")
                        i += 1
                        await asyncio.sleep(0.05)

                task = asyncio.create_task(churn())
                bookmarks = 0
                try:
                    async with asyncio.timeout(10):
                        async for event in client.watch(CONFIGMAPS, "default", field_selector="metadata.name=never"):
                            assert event.type == "BOOKMARK", event
                            bookmarks += 1
                            if bookmarks == 3:
                                break
                finally:
                    stop.set()
                    await task
        finally:
            await running.stop()
