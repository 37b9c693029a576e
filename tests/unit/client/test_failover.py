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
