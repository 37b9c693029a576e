"""A watch client that stops reading is dropped once its buffer passes the bound, and server memory stays flat.

A raw socket opens a watch on configmaps and never reads (with a tiny receive buffer, so the
kernel holds little for it) while the test writes far more ConfigMap data than the bound; a
normal watcher alongside must still see every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import rss_mb
from kubelite.api.registry import lookup
from kubelite.client import ApiClient
from tests.conftest import ServerProcess, start_server
from tests.helpers import eventually

CONFIGMAPS = lookup("configmaps")
BUFFER = 1024 * 1024  # --watch-buffer-bytes
VALUE = 1024 * 1024  # bytes of data per ConfigMap
# 96 MiB written in all, far beyond the bound and the kernel's socket buffers. A server that held
# the stalled client's events would grow by about that much (measured: ~95-110 MB more than without
# the stalled client). Python's allocator makes the growth from the big writes themselves vary by
# tens of MB from run to run, so the judge is a control run in the same test: the same writes with no
# stalled client. The stalled client may cost only about its buffer more.
WRITES = 96
MAX_EXTRA_GROWTH_MB = 40  # stalled run minus control run: well under the ~100 MB of holding it


def start(tmp_path: Path, name: str) -> ServerProcess:
    return start_server(
        tmp_path / name, extra_args=["--controllers", "", "--watch-buffer-bytes", str(BUFFER)]
    )


def stalled_watch(url: str, resource_version: str) -> socket.socket:
    """Open a configmap watch on a socket that will not be read until the test says so."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, so the window stays small
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    path = f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={resource_version}"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n\r\n".encode())
    return sock


def drain_until_closed(sock: socket.socket, timeout: float) -> tuple[int, bool]:
    """Read everything the server sent: (bytes read, whether the server closed the connection)."""
    sock.settimeout(timeout)
    total = 0
    try:
        while chunk := sock.recv(1 << 20):
            total += len(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return total, False  # still open, and quiet: the server kept the watch
    return total, True


async def write_and_measure(server: ServerProcess, stall: bool) -> tuple[float, int | None, bool]:
    """Write WRITES big ConfigMaps while a normal watcher follows (and, with ``stall``, a client that
    never reads): (peak RSS growth in MB, bytes the stalled client got, whether it was disconnected)."""
    async with ApiClient(server.url) as client:
        start_rv = (await client.list(CONFIGMAPS, "default"))["metadata"]["resourceVersion"]
        seen: set[str] = set()

        async def normal_watcher() -> None:
            async with contextlib.aclosing(
                client.watch(CONFIGMAPS, "default", resource_version=start_rv)
            ) as events:
                async for ev in events:
                    if ev.type == "ADDED":
                        seen.add(ev.object["metadata"]["name"])

        watcher = asyncio.create_task(normal_watcher())
        stalled = stalled_watch(server.url, start_rv) if stall else None
        try:
            # Warm up (first big request, the watches streaming) before taking the baseline.
            await client.create(
                CONFIGMAPS, {"metadata": {"name": "warm"}, "data": {"v": "w" * VALUE}}, "default"
            )
            await eventually(lambda: saw(seen, {"warm"}), 10, "the normal watcher to see the first write")
            baseline = peak = rss_mb(server.proc.pid)
            for i in range(WRITES):
                body = {"metadata": {"name": f"big-{i}"}, "data": {"v": chr(ord("a") + i % 26) * VALUE}}
                await client.create(CONFIGMAPS, body, "default")
                peak = max(peak, rss_mb(server.proc.pid))
            names = {f"big-{i}" for i in range(WRITES)}
            await eventually(lambda: saw(seen, names), 30, "the normal watcher to see every write")
            peak = max(peak, rss_mb(server.proc.pid))
            assert not watcher.done(), f"the normal watch ended: {watcher}"
            if stalled is None:
                return peak - baseline, None, False
            await eventually(
                lambda: logged(server, "dropping watch on configmaps"), 10, "the drop to be logged"
            )
            read, closed = await asyncio.to_thread(drain_until_closed, stalled, 5.0)
            return peak - baseline, read, closed
        finally:
            if stalled is not None:
                stalled.close()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def test_stalled_watch_is_dropped_and_server_memory_stays_flat(tmp_path: Path) -> None:
    runs: dict[str, tuple[float, int | None, bool]] = {}
    for name, stall in (("control", False), ("stalled", True)):
        server = start(tmp_path, name)
        try:
            runs[name] = await write_and_measure(server, stall)
        finally:
            server.stop()
    control, _, _ = runs["control"]
    growth, read, closed = runs["stalled"]
    assert read is not None
    assert closed, f"the server kept the stalled watch open ({read} bytes sent)"
    written = (WRITES + 1) * VALUE
    assert read < written / 2, f"the stalled client got {read} of {written} bytes: it was not cut off"
    rss = f"server RSS growth: {growth:.1f} MB with the stalled client, {control:.1f} MB without"
    assert growth - control < MAX_EXTRA_GROWTH_MB, rss


async def saw(seen: set[str], names: set[str]) -> bool:
    return names <= seen


async def logged(server: ServerProcess, text: str) -> bool:
    return text in server.log()
