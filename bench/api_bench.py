"""API server figures: latency per verb under 100 concurrent clients, churn p99, watch fan-out,
LIST of many pods, and server RSS holding them.

    python bench/api_bench.py [--quick] [--pods 30000] [--rss-pods 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Server, cpu_seconds, record, rss_mb, start_server, summary
from kubelite.client.kubeconfig import load_kubeconfig
from kubelite.client.rest import build_ssl_context

NS = "/api/v1/namespaces/default"
# What bounds these figures when they miss their targets (from profiles), carried into RESULTS.md.
LIST_BOUND = (
    "the SQLite range over the prefix (GIL released), then one splice of each row's stored bytes (no decode) and"
    " the response written in one piece"
)
RSS_BOUND = (
    "the same server first serves 100 plain and 100 TLS clients, churn and 100 watchers (4,000 ConfigMaps in 200"
    " namespaces) and does not give all of it back; the SQLite latest-value cache holds up to 8 MB"
)


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "shard": name[-1]}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1.35",
                    "command": ["httpd", "-f", "-p", "8080"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    "ports": [{"containerPort": 8080}],
                }
            ]
        },
    }


async def timed(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None, ctype: str = "application/json", **kw: Any
) -> float:
    t0 = time.perf_counter()
    data = orjson.dumps(body) if body is not None else None
    async with session.request(method, url, data=data, headers={"Content-Type": ctype}, **kw) as r:
        await r.read()
        if r.status >= 400:
            raise RuntimeError(f"{method} {url} -> {r.status}")
    return time.perf_counter() - t0


async def concurrent_latency(
    server: Server, clients: int, per_client: int, prefix: str = "lat", tls: ssl.SSLContext | None = None
) -> float:
    """Each client creates ConfigMaps in its own namespace, reading each back and listing its namespace
    with a label selector after every create. Returns requests/s.

    One namespace per client: with all of them in one namespace every LIST scanned every client's
    objects, so 100 clients x 20 did 25 times the LIST work of 20 x 20 and the curve measured
    namespace size (20 clients x 100 objects gave the same 490 req/s as 100 x 20), not concurrency.
    ``tls``: go through the HTTPS port with the admin client certificate instead (authn + authz on).
    """
    url = server.tls_url if tls is not None else server.url
    conn = aiohttp.TCPConnector(limit=clients, ssl=tls if tls is not None else False)
    async with aiohttp.ClientSession(connector=conn) as s:
        lat: dict[str, list[float]] = {"create": [], "get": [], "list": []}
        namespaces = [f"{prefix}-{w}" for w in range(clients)]
        for ns in namespaces:
            await timed(s, "POST", f"{url}/api/v1/namespaces", {"metadata": {"name": ns}})

        async def worker(w: int) -> None:
            base = f"{url}/api/v1/namespaces/{namespaces[w]}/configmaps"
            for i in range(per_client):
                name = f"{prefix}-{w}-{i}"
                lat["create"].append(await timed(s, "POST", base, {"metadata": {"name": name}, "data": {"k": "v"}}))
                lat["get"].append(await timed(s, "GET", f"{base}/{name}"))
                lat["list"].append(await timed(s, "GET", base, params={"labelSelector": "none=1"}))

        cpu0, own0, t0 = cpu_seconds(server.proc.pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - t0
        server_cpu, own_cpu = cpu_seconds(server.proc.pid) - cpu0, time.process_time() - own0
        rate = 3 * clients * per_client / elapsed
        if tls is not None:
            record("api", f"requests/s over HTTPS with a client cert ({clients} clients)", rate, "req/s")
            return rate
        for verb, samples in lat.items():
            s_ = summary(samples)
            record("api", f"{verb} latency p50 ({clients} clients)", s_["p50"] * 1000, "ms")
            record("api", f"{verb} latency p99 ({clients} clients)", s_["p99"] * 1000, "ms")
        record("api", f"requests/s ({clients} clients)", rate, "req/s")
        # Who is busy: the server process, and this one (the clients run in it, on the same cores).
        record("api", f"server CPU per request ({clients} clients)", server_cpu / (3 * clients * per_client) * 1e6, "us")
        record("api", f"bench client CPU ({clients} clients)", own_cpu / elapsed * 100, "% of a core")
        return rate


async def churn(url: str, rate: float, seconds: float) -> None:
    """Mutating p99 at a fixed offered load (create+update+delete cycles), target <= 50 ms at 100 ops/s."""
    async with aiohttp.ClientSession() as s:
        samples: list[float] = []
        tasks = []

        async def one(i: int) -> None:
            name = f"churn-{i}"
            samples.append(await timed(s, "POST", f"{url}{NS}/configmaps", {"metadata": {"name": name}}))
            samples.append(await timed(s, "PATCH", f"{url}{NS}/configmaps/{name}", {"data": {"a": "b"}},
                                       ctype="application/merge-patch+json"))  # fmt: skip
            samples.append(await timed(s, "DELETE", f"{url}{NS}/configmaps/{name}"))

        n = int(rate * seconds / 3)
        start = time.perf_counter()
        for i in range(n):
            delay = start + i * 3 / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        s_ = summary(samples)
        record("api", f"mutating p99 at {rate:.0f} ops/s churn", s_["p99"] * 1000, "ms", target="<= 50 ms")
        record("api", f"mutating p50 at {rate:.0f} ops/s churn", s_["p50"] * 1000, "ms")


async def watch_fanout(url: str, watchers: int, writes: int) -> None:
    """One write observed by N watchers: time from the write's ack to the last watcher seeing it."""
    conn = aiohttp.TCPConnector(limit=watchers + 10)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        async with s.get(f"{url}{NS}/configmaps", params={"limit": "1"}) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        seen: dict[str, list[float]] = {}
        ready = 0

        async def watcher() -> None:
            nonlocal ready
            async with s.get(f"{url}{NS}/configmaps", params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "60"}) as r:
                ready += 1
                async for line in r.content:
                    ev = orjson.loads(line)
                    name = ev["object"]["metadata"]["name"]
                    if name.startswith("fan-"):
                        seen.setdefault(name, []).append(time.perf_counter())
                        if name == f"fan-{writes - 1}":
                            return

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        while ready < watchers:
            await asyncio.sleep(0.05)
        lat: list[float] = []
        for i in range(writes):
            t0 = time.perf_counter()
            await timed(s, "POST", f"{url}{NS}/configmaps", {"metadata": {"name": f"fan-{i}"}})
            while len(seen.get(f"fan-{i}", [])) < watchers:
                await asyncio.sleep(0.001)
            lat.append(max(seen[f"fan-{i}"]) - t0)
        await asyncio.gather(*tasks)
        s_ = summary(lat)
        record("api", f"watch fan-out to {watchers} watchers p50", s_["p50"] * 1000, "ms")
        record("api", f"watch fan-out to {watchers} watchers p99", s_["p99"] * 1000, "ms")


async def load_pods(url: str, start: int, end: int) -> None:
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as s:
        sem = asyncio.Semaphore(64)

        async def create(i: int) -> None:
            async with sem:
                await timed(s, "POST", f"{url}{NS}/pods", pod(f"p-{i:06d}"))

        await asyncio.gather(*(create(i) for i in range(start, end)))


async def list_pods(url: str) -> tuple[float, int]:
    async with aiohttp.ClientSession() as s:
        t0 = time.perf_counter()
        async with s.get(f"{url}/api/v1/pods") as r:
            body = await r.read()
        elapsed = time.perf_counter() - t0
        return elapsed, len(orjson.loads(body)["items"])


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-") as tmp:
        server = start_server(Path(tmp) / "srv", None, "--controllers", "")
        try:
            if args.clients_sweep:  # latency vs concurrency only (the plot in RESULTS.md)
                for clients in (int(c) for c in args.clients_sweep.split(",")):
                    await concurrent_latency(server, clients, args.per_client, f"lat{clients}")
                return
            # The server's RSS after each phase: what the "holding N pods" figure is made of.
            phases = [("at start", rss_mb(server.proc.pid))]
            plain = await concurrent_latency(server, args.clients, args.per_client)
            phases.append((f"after {args.clients} plain clients", rss_mb(server.proc.pid)))
            # The same load through the secure port: TLS, client-certificate authn and RBAC/Node authz.
            tls = build_ssl_context(load_kubeconfig(Path(tmp) / "srv" / "kubeconfig.yaml"))
            secure = await concurrent_latency(server, args.clients, args.per_client, "tls", tls)
            phases.append((f"after {args.clients} TLS clients", rss_mb(server.proc.pid)))
            record("api", f"HTTPS / plain requests/s ({args.clients} clients)", secure / plain, "x")
            await churn(server.url, 100.0, args.churn_seconds)
            await watch_fanout(server.url, args.watchers, args.fanout_writes)
            phases.append((f"after churn and {args.watchers} watchers", rss_mb(server.proc.pid)))
            await load_pods(server.url, 0, args.rss_pods)
            await asyncio.sleep(1)
            rss = rss_mb(server.proc.pid)
            by_phase = ", ".join(f"{what} {mb:.0f} MB" for what, mb in [*phases, (f"with {args.rss_pods} pods", rss)])
            print(f"server RSS by phase: {by_phase}")
            record("api", f"server RSS holding {args.rss_pods} pods", rss, "MB", target="<= 150 MB",
                   bound=f"{RSS_BOUND}; server RSS by phase in this run: {by_phase}")  # fmt: skip
            if args.pods > args.rss_pods:
                await load_pods(server.url, args.rss_pods, args.pods)
            elapsed, count = await list_pods(server.url)
            record("api", f"LIST of {count} pods", elapsed, "s", target="<= 2 s" if count >= 30000 else "", bound=LIST_BOUND)
            record("api", f"server RSS holding {count} pods", rss_mb(server.proc.pid), "MB")
        finally:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: checks every figure is produced")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--per-client", type=int, default=20)
    p.add_argument("--clients-sweep", default="", help="comma-separated client counts: only the latency figures")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--fanout-writes", type=int, default=50)
    p.add_argument("--churn-seconds", type=float, default=10.0)
    p.add_argument("--rss-pods", type=int, default=3000)
    p.add_argument("--pods", type=int, default=30000)
    args = p.parse_args()
    if args.quick and not args.clients_sweep:
        args.clients, args.per_client, args.watchers, args.fanout_writes = 20, 3, 20, 5
        args.churn_seconds, args.rss_pods, args.pods = 2.0, 200, 400
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
