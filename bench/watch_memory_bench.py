"""Server memory with watch clients that stop reading: RSS over time while ConfigMaps are written,
with 0, 1 and 10 stalled watchers (plus one normal watcher), and the peak growth per stalled watcher.

A stalled watcher is a raw socket with a small receive buffer that opens a configmap watch and never
reads. The server should drop it once ``--watch-buffer-bytes`` wait for it, so the growth per stalled
watcher is about that bound or less, not the volume written.

    python bench/watch_memory_bench.py [--quick] [--stalled 0,1,10] [--mib 64] [--buffer-mib 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Server, record, rss_mb, start_server

CM = "/api/v1/namespaces/default/configmaps"
VALUE = 1024 * 1024  # one ConfigMap carries 1 MiB


def stalled_watch(url: str, resource_version: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    path = f"{CM}?watch=true&resourceVersion={resource_version}"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n\r\n".encode())
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Drain the socket: True if the server closed it (EOF or reset), False if it is still open."""
    sock.settimeout(2.0)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


async def run_once(
    server: Server, stalled: int, mib: int
) -> tuple[float, float, list[tuple[float, float]], int]:
    """Write ``mib`` MiB with ``stalled`` stalled watchers: (baseline MB, peak MB, RSS samples, watches dropped)."""
    pid = server.proc.pid
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as s:
        async with s.get(server.url + CM) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        seen = 0

        async def normal_watcher() -> None:
            nonlocal seen
            async with s.get(server.url + CM, params={"watch": "true", "resourceVersion": rv}) as r:
                buf = b""
                async for chunk in r.content.iter_any():
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    seen += sum(1 for line in lines if line and orjson.loads(line)["type"] == "ADDED")

        watcher = asyncio.create_task(normal_watcher())
        socks = [stalled_watch(server.url, rv) for _ in range(stalled)]
        await asyncio.sleep(0.5)
        baseline = rss_mb(pid)
        t0 = time.perf_counter()
        samples: list[tuple[float, float]] = []

        async def sampler() -> None:
            while True:
                samples.append((time.perf_counter() - t0, rss_mb(pid)))
                await asyncio.sleep(0.1)

        sampling = asyncio.create_task(sampler())
        try:
            for i in range(mib):
                body = {"metadata": {"name": f"big-{i}"}, "data": {"v": chr(ord("a") + i % 26) * VALUE}}
                async with s.post(
                    server.url + CM, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
                ) as r:
                    if r.status >= 400:
                        raise RuntimeError(f"create big-{i}: {r.status} {await r.text()}")
            deadline = time.perf_counter() + 60
            while seen < mib and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            if seen < mib:
                raise RuntimeError(f"the normal watcher saw {seen} of {mib} writes")
            await asyncio.sleep(0.5)
        finally:
            sampling.cancel()
            watcher.cancel()
            for task in (sampling, watcher):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        dropped = sum([await asyncio.to_thread(closed_by_server, sock) for sock in socks])
        for sock in socks:
            sock.close()
        return baseline, max(rss for _, rss in samples), samples, dropped


async def main_async(args: argparse.Namespace) -> None:
    buffer_bytes = args.buffer_mib * 1024 * 1024
    growth: dict[int, float] = {}
    for stalled in (int(n) for n in args.stalled.split(",")):
        with tempfile.TemporaryDirectory(prefix="kubelite-bench-") as tmp:
            server = start_server(
                Path(tmp) / "srv", None, "--controllers", "", "--watch-buffer-bytes", str(buffer_bytes)
            )
            try:
                baseline, peak, samples, dropped = await run_once(server, stalled, args.mib)
            finally:
                server.stop()
        growth[stalled] = peak - baseline
        curve = " ".join(f"{t:.1f}s:{rss:.0f}" for t, rss in samples[:: max(1, len(samples) // 12)])
        print(f"  {stalled} stalled: RSS MB over time {curve}", flush=True)
        record("watch-memory", f"peak RSS growth writing {args.mib} MiB, {stalled} stalled watchers", peak - baseline, "MB",
               baseline_mb=round(baseline, 1), watch_buffer_mib=args.buffer_mib)  # fmt: skip
        if stalled:
            record("watch-memory", f"stalled watchers dropped ({stalled} opened)", dropped, "watches")
    base = growth.get(0)
    if base is not None:
        for stalled, g in growth.items():
            if stalled:
                record("watch-memory", f"peak RSS growth per stalled watcher ({stalled} stalled)",
                       max(0.0, g - base) / stalled, "MB", target=f"<= {args.buffer_mib} MB (--watch-buffer-bytes)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: checks every figure is produced")
    p.add_argument("--stalled", default="0,1,10", help="comma-separated counts of stalled watchers")
    p.add_argument("--mib", type=int, default=64, help="MiB of ConfigMap data written per round")
    p.add_argument("--buffer-mib", type=int, default=4, help="--watch-buffer-bytes, in MiB")
    args = p.parse_args()
    if args.quick:
        args.mib, args.buffer_mib = 24, 1
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
