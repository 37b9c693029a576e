"""Leader failover time of an HA control plane: 3 `kubelite server` processes on a 3-member etcd.

    python bench/ha_bench.py [--kills 10] [--puts 2000] [--quick]

Each round finds the leader (the holder of the Lease kube-system/kubelite-controller-manager),
SIGKILLs it, creates a Pod through a surviving server and measures, from the kill:

* kill to new lease holder: another server is recorded in the Lease;
* kill to new leader acting: the new leader's scheduler has bound that Pod (spec.nodeName set).

The killed server is restarted (same port, data dir) before the next round. Full mode uses the
server's default election timings (lease 15 s, renew deadline 10 s, retry 2 s), so the figures are
what a default deployment sees; --quick shortens them (4 / 3 / 0.5 s) and does 2 kills.
Both figures are polled every 50 ms, which bounds their resolution.

Before the servers start, the same etcd's raw write floor is taken through its JSON gateway
(sequential puts on one HTTP connection, 1 KB values) next to the etcd driver's sequential
creates of the same size, so the driver's overhead over etcd itself is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, record
from bench.store_bench import VALUE_SIZE, fresh, writes_sequential
from kubelite.client import ApiClient, ClientConfig
from kubelite.client.rest import ApiConnectionError, ApiError
from kubelite.controllers.base import LEASES, NAMESPACES, NODES, PODS
from tests.conftest import ServerProcess, start_server
from tests.etcd_cluster import EtcdCluster, start_cluster

LEASE = ("kubelite-controller-manager", "kube-system")
NAMESPACE = "ha-bench"
POLL = 0.05
QUICK_ELECTION = ["--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3",
                  "--leader-elect-retry-period", "0.5"]  # fmt: skip


async def wait_for(fn: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll ``fn`` until it returns something truthy; API errors count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiError, ApiConnectionError, TimeoutError):
            if value := await fn():
                return value
        await asyncio.sleep(POLL)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s")


# -- the raw etcd floor ---------------------------------------------------------------------


async def gateway_puts(endpoint: str, n: int, value: bytes) -> float:
    """Sequential puts through etcd's JSON gateway on one keep-alive connection: writes/s."""
    url = f"http://{endpoint}/v3/kv/put"
    b64 = base64.b64encode(value).decode()
    bodies = [
        {"key": base64.b64encode(f"/raw-floor/{i:08d}".encode()).decode(), "value": b64} for i in range(n)
    ]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        async with session.post(url, json=bodies[0]) as resp:  # connect outside the timed loop
            resp.raise_for_status()
        start = time.perf_counter()
        for body in bodies:
            async with session.post(url, json=body) as resp:
                resp.raise_for_status()
                await resp.read()
        return n / (time.perf_counter() - start)


async def driver_creates(url: str, n: int, value: bytes) -> float:
    store = await fresh(url)
    try:
        return await writes_sequential(store, n, value)
    finally:
        await store.close()


def etcd_floor(etcd: EtcdCluster, puts: int) -> None:
    value = os.urandom(VALUE_SIZE // 2).hex().encode()  # the store bench's value shape
    driver = f"etcd-{len(etcd.members)}-members"
    raw = asyncio.run(gateway_puts(etcd.members[0].endpoint, puts, value))
    record("store", "raw etcd writes/s (gateway, sequential)", raw, "writes/s", driver=driver, n=puts,
           value_bytes=len(value))  # fmt: skip
    ours = asyncio.run(driver_creates(etcd.namespaced_url(), puts, value))
    record("store", "etcd driver writes/s (sequential, same cluster as raw)", ours, "writes/s", driver=driver,
           n=puts, value_bytes=len(value))  # fmt: skip


# -- the HA control plane -------------------------------------------------------------------


class ControlPlane:
    def __init__(self, base: Path, etcd: EtcdCluster, election: list[str]) -> None:
        self.base = base
        self.etcd = etcd
        self.election = election
        self.servers: list[ServerProcess] = []
        self.agent: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for i in range(3):
            self.servers.append(
                start_server(self.base / f"server{i}", self.etcd.url, extra_args=self.election)
            )
        with open(self.base / "agent.log", "ab") as log:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "kubelite", "agent", "--runtime", "fake", "--hollow-count", "3",
                 "--node-name", "hollow", "--server", ",".join(s.url for s in self.servers),
                 "--data-dir", str(self.base / "agent"), "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def index_of(self, identity: str) -> int:
        """Which server holds ``identity`` (each logs its election identity when it campaigns)."""
        found = [i for i, s in enumerate(self.servers) if f"as {identity}" in s.log()]
        if len(found) != 1:
            raise RuntimeError(f"lease holder {identity!r} found in {len(found)} server logs")
        return found[0]

    def restart(self, i: int) -> None:
        old = self.servers[i]
        self.servers[i] = start_server(old.data_dir, self.etcd.url, port=old.port, extra_args=self.election)

    def stop(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        for s in self.servers:
            s.stop()


async def holder(client: ApiClient) -> str:
    lease = await client.get(LEASES, *LEASE)
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


async def ready_nodes(client: ApiClient) -> bool:
    nodes = (await client.list(NODES))["items"]
    return 3 == sum(
        any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
        for n in nodes
    )


def pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def bound(client: ApiClient, name: str) -> bool:
    return bool((await client.get(PODS, name, NAMESPACE))["spec"].get("nodeName"))


async def failover_round(cp: ControlPlane, n: int, timeout: float) -> tuple[float, float]:
    """Kill the leader; (seconds to a new lease holder, seconds to the Pod created after the kill bound)."""
    everywhere = ApiClient(ClientConfig(servers=[s.url for s in cp.servers]), timeout=5)
    try:
        old = await wait_for(lambda: holder(everywhere), timeout, "a leader")
    finally:
        await everywhere.close()
    index = cp.index_of(old)
    survivor = ApiClient(cp.servers[(index + 1) % 3].url, timeout=5)
    try:
        killed = time.monotonic()
        cp.servers[index].stop(signal.SIGKILL)
        await survivor.create(PODS, pod(f"after-kill-{n}"), NAMESPACE)
        lease_at = bound_at = 0.0
        deadline = killed + timeout
        while not (lease_at and bound_at):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"round {n}: no failover within {timeout:.0f}s (lease {lease_at}, bound {bound_at})"
                )
            with contextlib.suppress(ApiError, ApiConnectionError, TimeoutError):
                if not lease_at and (now := await holder(survivor)) and now != old:
                    lease_at = time.monotonic()
                if not bound_at and await bound(survivor, f"after-kill-{n}"):
                    bound_at = time.monotonic()
            await asyncio.sleep(POLL)
    finally:
        await survivor.close()
    cp.restart(index)
    return lease_at - killed, bound_at - killed


async def failovers(cp: ControlPlane, kills: int, timeout: float) -> tuple[list[float], list[float]]:
    client = ApiClient(ClientConfig(servers=[s.url for s in cp.servers]), timeout=5)
    try:
        await wait_for(lambda: ready_nodes(client), 60, "3 Ready hollow nodes")
        await client.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
        # A leader whose scheduler already binds: every round starts from a working control plane.
        await client.create(PODS, pod("warm-up"), NAMESPACE)
        await wait_for(lambda: bound(client, "warm-up"), timeout, "the warm-up Pod bound")
    finally:
        await client.close()
    to_lease: list[float] = []
    to_acting: list[float] = []
    for n in range(kills):
        lease_s, acting_s = await failover_round(cp, n, timeout)
        to_lease.append(lease_s)
        to_acting.append(acting_s)
        print(f"kill {n + 1}/{kills}: new lease holder after {lease_s:.2f}s, new leader acting after {acting_s:.2f}s",
              flush=True)  # fmt: skip
    return to_lease, to_acting


def report(figure: str, samples: list[float], **extra: Any) -> None:
    rounded = [round(s, 3) for s in samples]
    for stat, value in (
        ("p50", percentile(samples, 50)),
        ("p90", percentile(samples, 90)),
        ("max", max(samples)),
    ):
        record(
            "ha",
            f"leader failover: {figure} {stat}",
            value,
            "s",
            samples=rounded,
            kills=len(samples),
            **extra,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=None, help="leader kills (default 10; --quick: 2)")
    p.add_argument(
        "--puts", type=int, default=None, help="puts for the raw etcd floor (default 2000; --quick: 300)"
    )
    p.add_argument("--quick", action="store_true", help="short election timings and 2 kills (< 60 s)")
    args = p.parse_args()
    kills = args.kills or (2 if args.quick else 10)
    puts = args.puts or (300 if args.quick else 2000)
    election = ["--leader-elect", *(QUICK_ELECTION if args.quick else [])]
    timings = (
        "lease 4 s, renew 3 s, retry 0.5 s" if args.quick else "defaults: lease 15 s, renew 10 s, retry 2 s"
    )
    # Worst case for a takeover: the lease runs out, then up to one jittered retry (2.2 x) to notice.
    lease, retry = (4.0, 0.5) if args.quick else (15.0, 2.0)
    timeout = lease + 2.2 * retry + 30
    with tempfile.TemporaryDirectory(prefix="ha-bench-") as tmp:
        base = Path(tmp)
        etcd = start_cluster(base / "etcd", 3)
        cp = ControlPlane(base, etcd, election)
        try:
            etcd_floor(etcd, puts)
            cp.start()
            to_lease, to_acting = asyncio.run(failovers(cp, kills, timeout))
        finally:
            cp.stop()
            etcd.stop()
    report("kill to new lease holder", to_lease, election=timings)
    report("kill to new leader acting (Pod bound)", to_acting, election=timings)


if __name__ == "__main__":
    main()
