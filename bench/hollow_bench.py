"""Hollow-node figures: a real `kubelite server` (all controllers) and `kubelite agent --runtime fake
--hollow-count N` processes, measured from outside.

* Deployment of R replicas on N hollow nodes: time from create to R available.
* Control plane RSS at N nodes / P pods (Deployments of 100, one namespace per 100 nodes, at most 2,000
  pods starting at once), with heartbeat health checked:
  the largest lease lag seen, and how many times a node's Ready condition changed after it first became
  Ready (a flapping node would show here).
* Hollow agent RSS (the N-node process, and per node), and a one-node agent process.
* Model inputs (bench/model.py): server CPU per heartbeat, per pod started, bytes per stored pod, watch
  events per pod started.
* Node failure: 4 one-node agent processes, a Deployment spread over them; kill -9 the agent holding
  pods and time until every replica runs on the other nodes (server defaults).

Heartbeats: by default the agent's (a Lease renewal every 2 s, node grace period 10 s on the server).
``--heartbeat-interval 10`` renews at Kubernetes' cadence instead (kubelet: every 10 s), the grace
and fencing periods kept at kubelite's 5 and 10 heartbeats (50 s, 100 s): at 1,000 nodes kubelite's
2 s renewals alone are 500 writes/s, more than the server sustains beside pod work on 2 cores. The
interval is recorded with the figures.

    python bench/hollow_bench.py [--quick] [--nodes 100] [--pods 3000] [--replicas 100] [--no-failover]
                                 [--heartbeat-interval 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Server, cpu_seconds, record, rss_mb, start_server
from kubelite.client import ApiClient, ApiError
from kubelite.client.informer import Informer
from kubelite.controllers.base import DEPLOYMENTS, LEASES, NAMESPACES, NODES, PODS

Obj = dict[str, Any]
BENCH = "hollow"
HEARTBEAT_INTERVAL = 2.0  # the agent's default --heartbeat-interval
# The server's default --node-monitor-grace-period (10 s) and the agent's --fencing-period (20 s) are
# 5 and 10 heartbeats: a longer interval keeps those ratios, so nodes neither flap nor fence.
GRACE_HEARTBEATS, FENCING_HEARTBEATS = 5, 10
IN_FLIGHT_PODS = 2000  # pods of the load created but not yet available (see scale_run)
# The load is spread over one namespace per 100 nodes, as Kubernetes' clusterloader2 load test does
# (NODES_PER_NAMESPACE=100).
NODES_PER_NAMESPACE = 100


def deployment(name: str, replicas: int, node_selector: Obj | None = None, namespace: str = "default") -> Obj:
    spec: Obj = {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"],
                                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}  # fmt: skip
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


async def wait_for(fn: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await fn():
            return
        await asyncio.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s")


def start_agent(url: str, data_dir: Path, name: str, count: int, *extra: str) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "agent.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "kubelite", "agent", "--server", url, "--runtime", "fake", "--node-name", name,
         "--hollow-count", str(count), "--data-dir", str(data_dir), "--log-level", "warning", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def is_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in node.get("status", {}).get("conditions", []))


async def ready_nodes(client: ApiClient, label: str) -> int:
    nodes = (await client.list(NODES, label_selector=label))["items"]
    return sum(1 for n in nodes if is_ready(n))


async def available(client: ApiClient, name: str, replicas: int) -> bool:
    d = await client.get(DEPLOYMENTS, name, "default")
    return int(d.get("status", {}).get("availableReplicas") or 0) >= replicas


class ReadyFlaps:
    """Counts Ready condition changes of nodes after each first became Ready (a watch on nodes)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.state: dict[str, bool] = {}
        self.transitions = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        rv = (await self.client.list(NODES, limit=1))["metadata"]["resourceVersion"]
        async with contextlib.aclosing(self.client.watch(NODES, resource_version=rv)) as events:
            async for ev in events:
                if ev.type not in ("ADDED", "MODIFIED"):
                    continue
                name, ready = ev.object["metadata"]["name"], is_ready(ev.object)
                before = self.state.get(name)
                if before is None:
                    if ready:  # counting starts once a node is first Ready
                        self.state[name] = True
                elif before != ready:
                    self.transitions += 1
                    self.state[name] = ready

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError):
                await self.task


class PodEvents:
    """Counts watch events on pods (the fan-out one pod start causes, as one watcher sees it)."""

    def __init__(self, client: ApiClient, label: str) -> None:
        self.client, self.label, self.count = client, label, 0
        self.task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await self.started.wait()

    async def _run(self) -> None:
        rv = (await self.client.list(PODS, limit=1))["metadata"]["resourceVersion"]
        stream = self.client.watch(PODS, label_selector=self.label, resource_version=rv, allow_bookmarks=False)
        self.started.set()
        async with contextlib.aclosing(stream) as events:
            async for _ in events:
                self.count += 1

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError):
                await self.task


async def lease_lag(client: ApiClient, prefix: str) -> float:
    """Largest age of a hollow node's lease renewTime right now, in seconds."""
    now = dt.datetime.now(dt.UTC)
    worst = 0.0
    for lease in (await client.list(LEASES, "kube-node-lease"))["items"]:
        if not lease["metadata"]["name"].startswith(prefix):
            continue
        renew = lease.get("spec", {}).get("renewTime")
        if renew:
            at = dt.datetime.fromisoformat(renew.replace("Z", "+00:00"))
            worst = max(worst, (now - at).total_seconds())
    return worst


def stored_pod_bytes(db: Path) -> float:
    """Mean size of the current pod values in the SQLite store (bytes per object as stored)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        row = con.execute(
            "SELECT AVG(LENGTH(value)) FROM kv WHERE name LIKE ? AND deleted = 0"
            " AND id IN (SELECT MAX(id) FROM kv GROUP BY name)",
            (PODS.key_prefix() + "%",),
        ).fetchone()
    return float(row[0] or 0.0)


async def scale_run(args: argparse.Namespace, tmp: Path) -> None:
    n, label = args.nodes, "bench-role=hollow"
    # Each node gets a /24 of the cluster CIDR (nodeipam): the default /16 holds only 256 nodes, and
    # past that every node update re-runs a failing allocation, which is not what this measures.
    beat = args.heartbeat_interval
    grace = max(10.0, GRACE_HEARTBEATS * beat)
    server = start_server(tmp / "srv", None, "--cluster-cidr", cluster_cidr(n),
                          "--node-monitor-grace-period", str(grace))  # fmt: skip
    agent = start_agent(server.url, tmp / "agent", "hollow", n, "--node-labels", label,
                        "--heartbeat-interval", str(beat), "--fencing-period", str(FENCING_HEARTBEATS * beat))  # fmt: skip
    client = ApiClient(server.url)
    flaps = ReadyFlaps(client)
    try:
        flaps.start()
        t0 = time.perf_counter()
        await wait_for(lambda: at_least(ready_nodes(client, label), n), args.timeout, f"{n} hollow nodes Ready", 0.5)
        print(f"{n} hollow nodes Ready in {time.perf_counter() - t0:.1f}s")
        await asyncio.sleep(2 * beat)  # past registration: steady heartbeats only

        # Idle: only heartbeats (lease renewals and node status) reach the server.
        c0, w0 = cpu_seconds(server.proc.pid), time.perf_counter()
        await asyncio.sleep(args.idle_seconds)
        idle_cpu = (cpu_seconds(server.proc.pid) - c0) / (time.perf_counter() - w0)
        record(BENCH, f"server CPU idle at {n} hollow nodes", idle_cpu * 100, "% of a core", nodes=n,
               interval=beat)  # fmt: skip
        record(BENCH, "server CPU per node heartbeat", idle_cpu * beat / n * 1000, "ms", nodes=n, interval=beat)
        rss_base = rss_mb(server.proc.pid)

        selector = {"bench-role": "hollow"}
        if args.replicas:
            events = PodEvents(client, "app=deploy")
            await events.start()
            c0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
            await client.create(DEPLOYMENTS, deployment("deploy", args.replicas, selector))
            await wait_for(lambda: available(client, "deploy", args.replicas), args.timeout, "deployment available")
            elapsed = time.perf_counter() - t0
            busy = cpu_seconds(server.proc.pid) - c0 - idle_cpu * elapsed
            await events.stop()
            record(BENCH, f"deployment of {args.replicas} replicas on {n} hollow nodes: to all available", elapsed,
                   "s", target="<= 5 s", anchor="Kubernetes pod startup SLO: p99 <= 5 s", nodes=n)  # fmt: skip
            record(BENCH, "server CPU per pod started", busy / args.replicas * 1000, "ms")
            record(BENCH, "watch events per pod started", events.count / args.replicas, "events",
                   note="one pod watcher's view")  # fmt: skip

        # Load up to P pods in Deployments of 100 (the last one smaller), at most IN_FLIGHT_PODS not yet
        # available at a time: all 300 at once made the ReplicaSet controller create 30,000 pods in
        # 4 minutes, the server's pod watches (the controllers' and the agent's informers) fell 10,000
        # events behind and were dropped (WatchOverflowError), and everything stalled while they relisted.
        namespaces = [f"load-{k}" for k in range(max(1, n // NODES_PER_NAMESPACE))]
        for ns in namespaces:
            await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        sizes: dict[tuple[str, str], int] = {}  # (namespace, name) -> replicas
        have = args.replicas
        while have < args.pods:
            size = min(100, args.pods - have)
            sizes[(namespaces[len(sizes) % len(namespaces)], f"load-{len(sizes)}")] = size
            have += size
        waiting = list(sizes)
        # A watch, not a LIST a second: at 300 Deployments a LIST is ~1 MB and took ~15 % of the
        # server's core at 1,000 nodes, time the run then spent waiting for itself.
        deployments = Informer(client, DEPLOYMENTS)
        watching = asyncio.create_task(deployments.run())

        async def all_loaded() -> bool:
            done = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in deployments.list()
                    if int(d.get("status", {}).get("availableReplicas") or 0) >= d["spec"]["replicas"]}  # fmt: skip
            in_flight = sum(size for key, size in sizes.items() if key not in done and key not in waiting)
            while waiting and in_flight < IN_FLIGHT_PODS:
                ns, name = waiting.pop(0)
                await client.create(DEPLOYMENTS, deployment(name, sizes[(ns, name)], selector, ns))
                in_flight += sizes[(ns, name)]
            return not waiting and set(sizes) <= done

        t0 = time.perf_counter()
        try:
            await deployments.wait_synced()
            await wait_for(all_loaded, args.timeout, f"{args.pods} pods available", 1.0)
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        print(f"{args.pods} pods available in {time.perf_counter() - t0:.1f}s")
        lag = 0.0
        for _ in range(int(args.idle_seconds)):
            lag = max(lag, await lease_lag(client, "hollow-"))
            await asyncio.sleep(1)
        rss = rss_mb(server.proc.pid)
        record(BENCH, f"control plane RSS at {n} nodes / {args.pods} pods", rss, "MB", target="<= 1596 MB",
               anchor="k3s server with a workload, SQLite: 1596 MB (k3s resource profiling)", nodes=n, pods=args.pods,
               interval=beat)  # fmt: skip
        if args.pods > args.replicas:
            record(BENCH, "control plane RSS per pod", (rss - rss_base) * 1024 / (args.pods - args.replicas), "KB")
        record(BENCH, f"max heartbeat lag at {n} nodes / {args.pods} pods", lag, "s", target=f"<= {grace:g} s",
               anchor=f"node-monitor-grace-period ({grace:g} s here)", interval=beat)  # fmt: skip
        record(BENCH, f"node Ready transitions at {n} nodes / {args.pods} pods", flaps.transitions, "count",
               target="<= 0", anchor="no node flapping")  # fmt: skip
        record(BENCH, f"hollow agent RSS with {n} nodes", rss_mb(agent.pid), "MB", nodes=n)
        record(BENCH, "hollow agent RSS per node", rss_mb(agent.pid) * 1024 / n, "KB", nodes=n)
        record(BENCH, "stored pod bytes", stored_pod_bytes(tmp / "srv" / "state.db"), "bytes")
    finally:
        await flaps.stop()
        await client.close()
        stop_process(agent)
        server.stop()


def cluster_cidr(nodes: int) -> str:
    """The smallest 10.x.0.0 network with a /24 for every node (and room to spare)."""
    prefix = 16
    while prefix > 8 and 2 ** (24 - prefix) < 2 * nodes:
        prefix -= 1
    return f"10.{128 if prefix > 9 else 0}.0.0/{prefix}"


async def at_least(value: Awaitable[int], want: int) -> bool:
    return await value >= want


async def failover_run(args: argparse.Namespace, tmp: Path) -> None:
    server: Server = start_server(tmp / "fo-srv")
    agents = {f"fo{i}-0": start_agent(server.url, tmp / f"fo{i}", f"fo{i}", 1, "--node-labels", "bench-role=failover")
              for i in range(4)}  # fmt: skip
    client = ApiClient(server.url)
    replicas = 8
    try:
        await wait_for(lambda: at_least(ready_nodes(client, "bench-role=failover"), 4), args.timeout, "4 agents Ready")
        record(BENCH, "agent RSS (one hollow node process)", rss_mb(agents["fo0-0"].pid), "MB",
               target="<= 275 MB", anchor="k3s agent: 275 MB (k3s resource profiling)")  # fmt: skip
        await client.create(DEPLOYMENTS, deployment("fo", replicas, {"bench-role": "failover"}))
        await wait_for(lambda: available(client, "fo", replicas), args.timeout, "failover deployment available")
        pods = (await client.list(PODS, "default", label_selector="app=fo"))["items"]
        per_node: dict[str, int] = {}
        for p in pods:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        victim = max(per_node, key=lambda k: per_node[k])
        agents[victim].kill()  # SIGKILL: the node just disappears
        agents[victim].wait()
        t0 = time.perf_counter()

        async def elsewhere() -> bool:
            items = (await client.list(PODS, "default", label_selector="app=fo"))["items"]
            running = [p for p in items if p["spec"].get("nodeName") not in (None, victim)
                       and not p["metadata"].get("deletionTimestamp") and p.get("status", {}).get("phase") == "Running"
                       and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]  # fmt: skip
            return len(running) >= replicas

        await wait_for(elsewhere, args.failover_timeout, "pods running elsewhere", 0.25)
        record(BENCH, "node failure: pods running elsewhere (hollow, 4 nodes)", time.perf_counter() - t0, "s",
               target="<= 340 s", anchor="Kubernetes defaults: 40 s grace + 300 s toleration",
               moved=per_node[victim])  # fmt: skip
    finally:
        await client.close()
        for proc in agents.values():
            stop_process(proc)
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20 nodes, 200 pods, 20-replica Deployment, failover")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--pods", type=int, default=3000)
    p.add_argument("--replicas", type=int, default=100, help="Deployment timed to all available (0: skip)")
    p.add_argument("--no-failover", dest="failover", action="store_false")
    p.add_argument("--no-scale", dest="scale", action="store_false", help="only the failover figure")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--heartbeat-interval", type=float, default=HEARTBEAT_INTERVAL,
                   help="the hollow nodes' Lease renewal interval (the server's grace period follows)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--failover-timeout", type=float, default=180.0)
    args = p.parse_args()
    if args.quick:
        args.nodes, args.pods, args.replicas, args.idle_seconds, args.timeout = 20, 200, 20, 3.0, 60.0
    with tempfile.TemporaryDirectory(prefix="kubelite-hollow-bench-") as tmp:
        if args.scale:
            asyncio.run(scale_run(args, Path(tmp)))
        if args.failover:
            asyncio.run(failover_run(args, Path(tmp)))


if __name__ == "__main__":
    main()
