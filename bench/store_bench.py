"""Storage driver benchmark: write, read and range throughput.

    python bench/store_bench.py [--url sqlite:///tmp/x.db | --url etcd://host:port] [--n 5000] [--quick]
    python bench/store_bench.py --etcd   # sqlite vs etcd (1 and 3 local members) + an etcdctl floor

Prints a table and appends one JSON line per figure to bench/results/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import record
from kubelite.storage import Store, open_store

RANGE_KEYS = 30_000
VALUE_SIZE = 1024


@dataclass
class Figure:
    name: str
    value: float
    unit: str


def reset(url: str) -> None:
    """Benchmarks start from an empty store."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(parsed.path + suffix).unlink(missing_ok=True)


async def fresh(url: str) -> Store:
    store = open_store(url)
    await store.start()
    return store


async def writes_sequential(store: Store, n: int, value: bytes) -> float:
    start = time.perf_counter()
    for i in range(n):
        await store.create(f"/bench/seq/{i:08d}", value)
    return n / (time.perf_counter() - start)


async def writes_concurrent(store: Store, n: int, value: bytes, writers: int, prefix: str) -> float:
    async def writer(w: int) -> None:
        for i in range(w, n, writers):
            await store.create(f"{prefix}{i:08d}", value)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return n / (time.perf_counter() - start)


async def reads(store: Store, n: int) -> tuple[float, float]:
    keys = [f"/bench/seq/{i:08d}" for i in range(n)]
    start = time.perf_counter()
    for key in keys:
        assert await store.get(key) is not None
    sequential = n / (time.perf_counter() - start)

    async def reader(r: int) -> None:
        for key in keys[r::50]:
            await store.get(key)

    start = time.perf_counter()
    await asyncio.gather(*(reader(r) for r in range(50)))
    return sequential, n / (time.perf_counter() - start)


async def range_time(store: Store, value: bytes) -> tuple[float, float]:
    await writes_concurrent(store, RANGE_KEYS, value, 200, "/bench/range/")
    best_full = best_page = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        res = await store.range("/bench/range/")
        best_full = min(best_full, time.perf_counter() - start)
        assert len(res.kvs) == RANGE_KEYS, len(res.kvs)
        start = time.perf_counter()
        page = await store.range("/bench/range/", limit=500)
        best_page = min(best_page, time.perf_counter() - start)
        assert page.more and page.count == RANGE_KEYS
    return best_full, best_page


async def run(url: str, n: int) -> list[Figure]:
    value = os.urandom(VALUE_SIZE // 2).hex().encode()
    store = await fresh(url)
    try:
        figures = [
            Figure("writes_sequential", await writes_sequential(store, n, value), "writes/s"),
            Figure(
                "writes_50_concurrent",
                await writes_concurrent(store, n, value, 50, "/bench/conc/"),
                "writes/s",
            ),
        ]
        seq, conc = await reads(store, n)
        figures += [Figure("gets_sequential", seq, "reads/s"), Figure("gets_50_concurrent", conc, "reads/s")]
        full, page = await range_time(store, value)
        figures += [
            Figure(f"range_{RANGE_KEYS}_keys_1KB", full, "s"),
            Figure("range_page_500_of_30000", page, "s"),
        ]
    finally:
        await store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="", help="store URL (default: sqlite in a temp dir)")
    parser.add_argument("--n", type=int, default=5000, help="writes/reads per figure")
    parser.add_argument("--quick", action="store_true", help="small n, for CI (< 20 s)")
    parser.add_argument("--etcd", action="store_true", help="compare sqlite with local 1- and 3-member etcd")
    args = parser.parse_args()
    n = min(args.n, 1000) if args.quick else args.n
    if args.etcd:
        compare_etcd(n)
        return
    tmp = None
    url = args.url
    if not url:
        tmp = tempfile.mkdtemp(prefix="store-bench-")
        url = f"sqlite://{tmp}/state.db"
    try:
        reset(url)
        figures = asyncio.run(run(url, n))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    driver = urlparse(url).scheme
    print(f"store bench: {url} n={n}")
    for f in figures:
        record("store", f"{driver} {f.name}", f.value, f.unit, driver=driver, n=n)

def etcdctl_put_floor(endpoints: str, puts: int = 200) -> float:
    """Sequential `etcdctl put` processes: what etcd itself sustains, plus one exec per put."""
    start = time.perf_counter()
    for i in range(puts):
        subprocess.run(["etcdctl", "--endpoints", endpoints, "put", f"/floor/{i}", "x"],
                       check=True, capture_output=True, env={**os.environ, "ETCDCTL_API": "3"})  # fmt: skip
    return puts / (time.perf_counter() - start)


def compare_etcd(n: int) -> None:
    from tests.etcd_cluster import start_cluster

    tmp = tempfile.mkdtemp(prefix="store-bench-")
    try:
        main_args = ["--n", str(n)]
        subprocess.run([sys.executable, __file__, *main_args], check=True)  # the sqlite figures
        for size in (1, 3):
            cluster = start_cluster(Path(tmp) / f"etcd{size}", size)
            try:
                driver = f"etcd-{size}-member{'s' if size > 1 else ''}"
                print(f"store bench: {cluster.url} n={n}")
                for f in asyncio.run(run(cluster.namespaced_url(), n)):
                    record("store", f"{driver} {f.name}", f.value, f.unit, driver=driver, n=n)
                floor = etcdctl_put_floor(cluster.endpoints)
                record("store", f"{driver} etcdctl_put_sequential", floor, "writes/s", driver=driver)
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
