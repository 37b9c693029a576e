"""Abuse limits: the per-user token bucket, the watch count, the watch's byte-bounded buffer, and the
client's handling of the 429s they produce."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kubelite.apiserver import limits
from kubelite.apiserver.app import status_response
from kubelite.apiserver.errors import TooManyRequests
from kubelite.apiserver.limits import RateLimiter, WatchBuffer, WatchLimiter
from kubelite.auth import ALL_AUTHENTICATED, MASTERS, UserInfo
from kubelite.client import ApiClient, ApiError

ALICE = UserInfo("alice", (ALL_AUTHENTICATED,))
BOB = UserInfo("bob", (ALL_AUTHENTICATED,))
ADMIN = UserInfo("admin", (MASTERS, ALL_AUTHENTICATED))


class Clock:
    """Time that moves only when the test says, so bucket arithmetic is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- RateLimiter -------------------------------------------------------------------------------


def test_burst_then_refused_with_time_until_next_token() -> None:
    clock = Clock()
    rl = RateLimiter(qps=2, burst=3, clock=clock)
    assert [rl.check(ALICE) for _ in range(3)] == [None, None, None]
    assert rl.check(ALICE) == pytest.approx(0.5)  # one token every 1/qps seconds
    clock.now += 0.25
    assert rl.check(ALICE) == pytest.approx(0.25)  # a refusal takes nothing
    clock.now += 0.25
    assert rl.check(ALICE) is None
    assert rl.check(ALICE) == pytest.approx(0.5)


def test_refill_is_capped_at_burst() -> None:
    clock = Clock()
    rl = RateLimiter(qps=10, burst=2, clock=clock)
    rl.check(ALICE)
    clock.now += 3600
    assert rl.check(ALICE) is None and rl.check(ALICE) is None
    assert rl.check(ALICE) is not None


def test_users_have_their_own_buckets() -> None:
    rl = RateLimiter(qps=1, burst=1, clock=Clock())
    assert rl.check(ALICE) is None
    assert rl.check(ALICE) is not None
    assert rl.check(BOB) is None


def test_masters_and_zero_qps_are_unlimited() -> None:
    rl = RateLimiter(qps=1, burst=1, clock=Clock())
    assert all(rl.check(ADMIN) is None for _ in range(100))
    off = RateLimiter(qps=0, burst=0, clock=Clock())
    assert all(off.check(ALICE) is None for _ in range(100))
    assert len(rl) == 0 and len(off) == 0  # neither keeps a bucket


def test_burst_defaults_to_twice_qps_and_at_least_one() -> None:
    assert RateLimiter(qps=5, burst=0).burst == 10
    assert RateLimiter(qps=0.1, burst=0).burst == 1
    with pytest.raises(ValueError):
        RateLimiter(qps=-1, burst=0)


def test_idle_buckets_are_dropped() -> None:
    clock = Clock()
    rl = RateLimiter(qps=10, burst=5, clock=clock)
    for i in range(1000):
        rl.check(UserInfo(f"user-{i}"))
    assert len(rl) == 1000
    clock.now += 0.5  # refill time is burst/qps: a bucket idle that long is full, i.e. like none
    rl.check(ALICE)
    assert len(rl) == 1


def test_bucket_count_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BUCKETS", 50)
    rl = RateLimiter(qps=1, burst=1, clock=Clock())  # nothing goes idle: the clock stands still
    for i in range(500):
        rl.check(UserInfo(f"user-{i}"))
    assert len(rl) <= 50


# ---- WatchLimiter ------------------------------------------------------------------------------


def test_watch_limit_per_user() -> None:
    wl = WatchLimiter(2)
    assert wl.acquire(ALICE) and wl.acquire(ALICE)
    assert not wl.acquire(ALICE)
    assert wl.acquire(BOB)
    wl.release(ALICE)
    assert wl.acquire(ALICE)
    assert not wl.acquire(ALICE)


def test_watch_limit_exempts_masters_and_zero_means_unlimited() -> None:
    wl = WatchLimiter(1)
    assert all(wl.acquire(ADMIN) for _ in range(50))
    off = WatchLimiter(0)
    assert all(off.acquire(ALICE) for _ in range(50))


def test_watch_slot_refuses_with_429_and_releases() -> None:
    wl = WatchLimiter(1)
    with wl.slot(ALICE):
        assert wl.count(ALICE) == 1
        with pytest.raises(TooManyRequests) as refused, wl.slot(ALICE):
            pass
        assert refused.value.code == 429 and refused.value.retry_after >= 1
    assert wl.count(ALICE) == 0
    with contextlib.suppress(RuntimeError), wl.slot(ALICE):
        raise RuntimeError("the watch failed")
    assert wl.count(ALICE) == 0 and wl._open == {}  # nothing kept for users without watches


def test_too_many_requests_response() -> None:
    resp = status_response(TooManyRequests("too many requests, please try again later", 2.2))
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "3"  # whole seconds, rounded up
    assert isinstance(resp.body, bytes)
    status = orjson.loads(resp.body)
    assert status["kind"] == "Status" and status["reason"] == "TooManyRequests" and status["code"] == 429
    assert status["details"]["retryAfterSeconds"] == 3


# ---- WatchBuffer on a real socket ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def socket_pair(
    reader_limit: int = 2**16,
) -> AsyncIterator[tuple[asyncio.StreamReader, Callable[[bytes], Awaitable[None]]]]:
    """A loopback TCP connection: (the client's reader, a write like aiohttp's: send, then drain)."""
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def on_connect(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put(w)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, client_writer = await asyncio.open_connection("127.0.0.1", port, limit=reader_limit)
    server_writer = await accepted.get()

    async def write(data: bytes) -> None:
        server_writer.write(data)
        await server_writer.drain()

    try:
        yield reader, write
    finally:
        server_writer.transport.abort()
        client_writer.close()
        server.close()


async def test_buffer_delivers_everything_in_order_to_a_reading_client() -> None:
    events = [orjson.dumps({"n": i, "pad": "x" * (i * 37 % 5000)}) + b"\n" for i in range(2000)]
    async with socket_pair() as (reader, write):
        buf = WatchBuffer(write, limit=256 * 1024)
        writer = asyncio.create_task(buf.run())

        async def produce() -> bool:
            for e in events:
                if not await buf.send(e):
                    return False
            buf.finish()
            return True

        received = asyncio.create_task(reader.readexactly(sum(map(len, events))))
        assert await produce()
        await asyncio.wait_for(writer, 10)  # run() returns once finished and drained
        assert await received == b"".join(events)
        assert buf.pending == 0 and buf.written == sum(map(len, events))


async def test_buffer_refuses_once_a_stalled_client_leaves_it_over_the_limit() -> None:
    limit = 512 * 1024
    event = b"y" * 100_000 + b"\n"
    async with socket_pair() as (_reader, write):  # the client never reads
        buf = WatchBuffer(write, limit)
        writer = asyncio.create_task(buf.run())
        sent = 0
        while await buf.send(event):
            sent += 1
            assert sent < 10_000, "a client that never reads was never refused"
        # Bounded: the socket and transport took some, the buffer holds the limit plus one event.
        assert limit < buf.pending <= limit + len(event)
        assert not writer.done()  # blocked on the full socket, not failed
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


# ---- the client waits out 429s ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def limited_api(rl: RateLimiter) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A real HTTP server that rate-limits every request as one user, as the API server's middleware does."""
    seen = {"429": 0, "processed": 0}

    @web.middleware
    async def rate_limit(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        wait = rl.check(ALICE)
        if wait is not None:
            seen["429"] += 1
            return status_response(TooManyRequests("too many requests, please try again later", wait))
        return await handler(request)

    async def handle(request: web.Request) -> web.Response:
        seen["processed"] += 1
        return web.json_response({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}})

    app = web.Application(middlewares=[rate_limit])
    app.router.add_route("*", "/api/v1/namespaces/default/configmaps", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


async def test_client_retries_after_429_even_for_a_post() -> None:
    async with limited_api(RateLimiter(qps=1, burst=1)) as (url, seen), ApiClient(url) as client:
        path = "/api/v1/namespaces/default/configmaps"
        await client.request("POST", path, json={"metadata": {"name": "a"}})
        await client.request("POST", path, json={"metadata": {"name": "b"}})  # refused once, then served
        assert seen == {"429": 1, "processed": 2}


async def test_client_gives_up_when_retry_after_exceeds_its_budget() -> None:
    async with limited_api(RateLimiter(qps=0.01, burst=1)) as (url, seen), ApiClient(url) as client:
        path = "/api/v1/namespaces/default/configmaps"
        await client.request("GET", path)
        with pytest.raises(ApiError) as err:
            await client.request("GET", path)  # Retry-After 100 s: more than the client will wait
        assert err.value.code == 429 and err.value.reason == "TooManyRequests"
        assert seen == {"429": 1, "processed": 1}
