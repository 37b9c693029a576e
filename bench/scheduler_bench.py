"""Scheduler throughput on the scheduler_perf "SchedulingBasic" shape: N nodes (4 CPU, 32Gi, 110 pods,
Ready), N pods already bound, then M measured pods (100m / 500Mi each, as scheduler_perf's
pod-default.yaml).

The API server is a real `kubelite server` process on SQLite (started with no controllers); the
Scheduler runs in this process, as it would inside the controller manager. Two figures:

* scheduling pods/s: the M pods are created first, then the scheduler starts; time from its start
  (informer list included) until the last of them is bound. This isolates the scheduler from how
  fast pods can be created.
* create-to-bound pods/s: with the scheduler running, another M pods are created (64 requests in
  flight); time from the first create to the last bind. Creation shares the server with binding.

    python bench/scheduler_bench.py [--quick] [--nodes 500] [--existing 500] [--pods 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Server, record, start_server
from kubelite.client import ApiClient
from kubelite.controllers.base import NODES, PODS
from kubelite.controllers.manager import ControllerManager

Obj = dict[str, Any]
CONCURRENCY = 64


def node(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }


NODE_STATUS: Obj = {
    "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
    "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
}


def pod(name: str, node_name: str | None = None) -> Obj:
    spec: Obj = {
        "containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.9",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "100m", "memory": "500Mi"}},
        }],
    }  # fmt: skip
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


async def bounded(coros: Iterable[Awaitable[Any]], limit: int = CONCURRENCY) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[Any]) -> None:
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def create_node(client: ApiClient, name: str) -> None:
    await client.create(NODES, node(name))
    await client.patch(NODES, name, {"status": NODE_STATUS}, subresource="status")


class BoundWatcher:
    """Counts binds of the named pods as the scheduler's own pod informer sees them (a watch)."""

    def __init__(self, names: set[str]) -> None:
        self.pending = set(names)
        self.done = asyncio.Event()
        self.last_bound = 0.0

    def on_pod(self, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if name in self.pending and obj["spec"].get("nodeName"):
            self.pending.discard(name)
            self.last_bound = time.perf_counter()
            if not self.pending:
                self.done.set()


def start_control_plane(data_dir: Path) -> Server:
    # The scheduler under test runs here: the server must not run one of its own.
    try:
        return start_server(data_dir, None, "--controllers", "")
    except RuntimeError:
        return start_server(data_dir)


async def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="kubelite-sched-bench-") as tmp:
        server = start_control_plane(Path(tmp) / "srv")
        client = ApiClient(server.url)
        try:
            t0 = time.perf_counter()
            await bounded(create_node(client, f"node-{i}") for i in range(args.nodes))
            await bounded(
                client.create(PODS, pod(f"existing-{i}", f"node-{i % args.nodes}"))
                for i in range(args.existing)
            )
            first = [f"pending-{i}" for i in range(args.pods)]
            await bounded(client.create(PODS, pod(n)) for n in first)
            setup = time.perf_counter() - t0
            print(
                f"setup: {args.nodes} nodes, {args.existing} bound pods, {args.pods} pending pods in {setup:.1f}s"
            )

            # 1. Scheduling throughput: every measured pod exists before the scheduler starts.
            manager = ControllerManager(client, ["scheduler"])
            watch = BoundWatcher(set(first))
            manager.informers.get(PODS).add_handler(
                on_add=watch.on_pod, on_update=lambda _o, n: watch.on_pod(n)
            )
            start = time.perf_counter()
            task = asyncio.create_task(manager.run())
            await asyncio.wait_for(watch.done.wait(), args.timeout)
            elapsed = watch.last_bound - start
            record("scheduler", f"scheduler_perf {args.nodes} nodes: scheduling pods/s (pods pre-created)",
                   args.pods / elapsed, "pods/s", target=">= 500", nodes=args.nodes, pods=args.pods)  # fmt: skip

            # 2. Create-to-bound: pods created while the scheduler runs.
            second = [f"measured-{i}" for i in range(args.pods)]
            watch2 = BoundWatcher(set(second))
            manager.informers.get(PODS).add_handler(
                on_add=watch2.on_pod, on_update=lambda _o, n: watch2.on_pod(n)
            )
            start = time.perf_counter()
            await bounded(client.create(PODS, pod(n)) for n in second)
            created = time.perf_counter() - start
            await asyncio.wait_for(watch2.done.wait(), args.timeout)
            elapsed = watch2.last_bound - start
            record("scheduler", f"scheduler_perf {args.nodes} nodes: pods/s", args.pods / elapsed, "pods/s",
                   target=">= 500", nodes=args.nodes, pods=args.pods, note="first create to last bind")  # fmt: skip
            record("scheduler", f"scheduler_perf {args.nodes} nodes: pod creates/s (while scheduling)",
                   args.pods / created, "pods/s")  # fmt: skip

            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            await client.close()
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="50 nodes, 50 bound + 100 measured pods")
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--existing", type=int, default=500)
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    if args.quick:
        args.nodes, args.existing, args.pods, args.timeout = 50, 50, 100, 15.0
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
