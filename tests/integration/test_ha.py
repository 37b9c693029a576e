"""A highly available control plane: 3 `kubelite server` processes on a 3-member etcd, hollow nodes.

Real processes throughout, killed with SIGKILL. The tests run in file order on one cluster and
the last one checks the leadership history of the whole module (no two leaders at once).
Leader election is shortened (lease 4 s, renew deadline 3 s, retry 0.5 s) to keep the run short.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.client import ApiClient, ClientConfig
from kubelite.client.rest import ApiConnectionError, ApiError
from kubelite.controllers.base import CONFIGMAPS, DEPLOYMENTS, LEASES, NAMESPACES, PODS
from kubelite.controllers.leaderelection import LeaderElectionConfig, LeaderElector
from tests.conftest import ServerProcess, start_server
from tests.etcd_cluster import EtcdCluster, start_cluster
from tests.helpers import eventually, stop_processes
from tests.integration.test_etcd import deployment

ELECTION = [
    "--leader-elect",
    "--leader-elect-lease-duration", "4",
    "--leader-elect-renew-deadline", "3",
    "--leader-elect-retry-period", "0.5",
]  # fmt: skip
TAKEOVER_TIMEOUT = 15.0
STARTED = re.compile(r"started leading \S+ as (\S+) at monotonic ([\d.]+)")
STOPPED = re.compile(r"stopped leading \S+ as (\S+) at monotonic ([\d.]+)")
ATTEMPT = re.compile(r"attempting to acquire leader lease \S+ as (\S+)")


@dataclass
class HACluster:
    etcd: EtcdCluster
    servers: list[ServerProcess]
    agent: subprocess.Popen[bytes]
    kills: dict[str, float] = field(default_factory=dict)  # identity -> monotonic time of its SIGKILL

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def identity(self, server: ServerProcess) -> str:
        """The identity of the server's current process (its log is appended to across restarts)."""
        found = ATTEMPT.findall(server.log())
        assert found, f"no leader election in {server.log_path}"
        return str(found[-1])

    def restart(self, i: int) -> None:
        old = self.servers[i]
        self.servers[i] = start_server(old.data_dir, self.etcd.url, port=old.port, extra_args=ELECTION)

    def logs(self) -> str:
        return "\n".join(s.log() for s in self.servers)


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HACluster]:
    base = tmp_path_factory.mktemp("ha")
    etcd = start_cluster(base / "etcd", 3)
    servers: list[ServerProcess] = []
    agent: subprocess.Popen[bytes] | None = None
    try:
        for i in range(3):
            servers.append(start_server(base / f"server{i}", etcd.url, extra_args=ELECTION))
        urls = ",".join(s.url for s in servers)
        with open(base / "agent.log", "ab") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "kubelite", "agent", "--runtime", "fake", "--hollow-count", "3",
                 "--node-name", "hollow", "--server", urls, "--data-dir", str(base / "agent"),
                 "--heartbeat-interval", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        yield HACluster(etcd, servers, agent)
    finally:
        if agent is not None:
            stop_processes(agent)
        for s in servers:
            s.stop()
        etcd.stop()


async def leader(client: ApiClient) -> str:
    try:
        lease = await client.get(LEASES, "kubelite-controller-manager", "kube-system")
    except (ApiError, ApiConnectionError):
        return ""
    return str(lease["spec"].get("holderIdentity") or "")


async def kill_leader(ha: HACluster, client: ApiClient) -> int:
    """SIGKILL the leading server; return its index once another server holds the Lease."""
    holder = await eventually(lambda: leader(client), timeout=TAKEOVER_TIMEOUT, what="a leader")
    index = next(i for i, s in enumerate(ha.servers) if ha.identity(s) == holder)
    ha.kills[holder] = time.monotonic()
    ha.servers[index].stop(signal.SIGKILL)

    async def successor() -> str:
        now = await leader(client)
        return now if now and now != holder else ""

    new = await eventually(successor, timeout=TAKEOVER_TIMEOUT, what="another server to take the leader Lease")
    assert new in {ha.identity(s) for i, s in enumerate(ha.servers) if i != index}
    return index


async def test_leader_killed_another_takes_over_and_no_acknowledged_write_is_lost(ha: HACluster) -> None:
    clients = [ApiClient(url, timeout=10) for url in ha.urls]  # one per server: writes go through all
    failover = ApiClient(ClientConfig(servers=ha.urls), timeout=10)  # for reads that must survive the kill
    try:
        await eventually(lambda: _ready_nodes(clients), timeout=20, what="3 Ready hollow nodes")
        await clients[0].create(NAMESPACES, {"metadata": {"name": "ha"}})
        acknowledged: list[str] = []
        stop = asyncio.Event()

        async def writer() -> None:
            i = 0
            while not stop.is_set():
                name = f"cm-{i:05d}"
                with contextlib.suppress(ApiError, ApiConnectionError, TimeoutError):
                    await clients[i % 3].create(CONFIGMAPS, {"metadata": {"name": name}, "data": {"i": str(i)}}, "ha")
                    acknowledged.append(name)
                i += 1
                await asyncio.sleep(0.01)

        writing = asyncio.create_task(writer())
        await asyncio.sleep(1)
        killed = await kill_leader(ha, failover)
        survivor = clients[(killed + 1) % 3]
        # Work created after the kill is done by the new leader's controllers and scheduler.
        await survivor.create(DEPLOYMENTS, deployment("after-kill", 3), "ha")

        async def running() -> bool:
            pods = (await survivor.list(PODS, "ha"))["items"]
            return len(pods) == 3 and all(
                p["spec"].get("nodeName") and p.get("status", {}).get("phase") == "Running" for p in pods
            )

        await eventually(running, timeout=30, what="3 Running pods of the Deployment created after the kill")
        stop.set()
        await writing
        stored = {c["metadata"]["name"] for c in (await survivor.list(CONFIGMAPS, "ha"))["items"]}
        assert len(acknowledged) > 50
        assert set(acknowledged) <= stored, f"lost acknowledged writes: {sorted(set(acknowledged) - stored)[:10]}"
    finally:
        for c in [*clients, failover]:
            await c.close()
    ha.restart(killed)


async def test_etcd_member_loss_quorum_loss_and_recovery(ha: HACluster) -> None:
    client = ApiClient(ha.urls[0], timeout=30)
    m0, m1, _ = ha.etcd.members
    try:
        # One of three etcd members down: the API keeps serving reads and writes.
        m0.kill()
        await client.create(CONFIGMAPS, {"metadata": {"name": "one-down"}, "data": {"x": "1"}}, "ha")
        assert (await client.get(CONFIGMAPS, "one-down", "ha"))["data"] == {"x": "1"}
        # Two down: no quorum. A write fails with a 5xx Status within the timeout, not a hang.
        m1.kill()
        start = time.monotonic()
        with pytest.raises(ApiError) as info:
            await client.create(CONFIGMAPS, {"metadata": {"name": "no-quorum"}}, "ha")
        assert info.value.code >= 500 and time.monotonic() - start < 20
        # One member back: quorum again, and service recovers.
        ha.etcd.restart(m0)

        async def writes() -> bool:
            with contextlib.suppress(ApiError, ApiConnectionError):
                await client.create(CONFIGMAPS, {"metadata": {"name": "recovered"}}, "ha")
                return True
            with contextlib.suppress(ApiError, ApiConnectionError):
                return bool(await client.get(CONFIGMAPS, "recovered", "ha"))
            return False

        await eventually(writes, timeout=30, what="writes after quorum returned")
        assert (await client.get(CONFIGMAPS, "one-down", "ha"))["data"] == {"x": "1"}
        ha.etcd.restart(m1)
        # Without quorum nobody could renew: the leader stood down; a leader is elected again.
        await eventually(lambda: leader(client), timeout=TAKEOVER_TIMEOUT, what="a leader after recovery")
    finally:
        await client.close()
        for m in (m0, m1):
            if not m.running:
                ha.etcd.restart(m)
    ha.etcd.wait_healthy()


async def test_repeated_leader_kills_never_two_leaders(ha: HACluster) -> None:
    client = ApiClient(ClientConfig(servers=ha.urls), timeout=10)
    try:
        for _ in range(2):  # with the first test's kill, three leader kills in this module
            killed = await kill_leader(ha, client)
            ha.restart(killed)
        await eventually(lambda: leader(client), timeout=TAKEOVER_TIMEOUT, what="a leader")
    finally:
        await client.close()
    intervals = leadership_intervals(ha.logs(), ha.kills)
    assert len(intervals) >= 4, intervals  # the first leader and one per kill
    ordered = sorted(intervals)
    for (_, end_a, who_a), (start_b, _, who_b) in itertools.pairwise(ordered):
        assert end_a <= start_b, f"{who_a} led until {end_a:.3f} but {who_b} started at {start_b:.3f}"


def leadership_intervals(logs: str, kills: dict[str, float]) -> list[tuple[float, float, str]]:
    """(start, end, identity) per leadership term, from the servers' logs and the SIGKILL times."""
    starts: dict[str, list[float]] = {}
    stops: dict[str, list[float]] = {}
    for who, at in STARTED.findall(logs):
        starts.setdefault(who, []).append(float(at))
    for who, at in STOPPED.findall(logs):
        stops.setdefault(who, []).append(float(at))
    out = []
    for who, began in starts.items():
        ended = sorted(stops.get(who, []))
        for i, start in enumerate(sorted(began)):
            if i < len(ended):
                end = ended[i]
            elif who in kills:
                end = kills[who]
            else:
                end = float("inf")  # still leading
            out.append((start, end, who))
    return out


async def _ready_nodes(clients: list[ApiClient]) -> bool:
    from kubelite.controllers.base import NODES

    nodes = (await clients[0].list(NODES))["items"]
    ready = [
        n for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
    ]  # fmt: skip
    return len(ready) == 3


# -- the election rules in-process (API on memory://), fast --------------------------------


def _elector(client: ApiClient, identity: str, lead: Any, duration: float = 15) -> LeaderElector:
    config = LeaderElectionConfig(identity=identity, lease_duration=duration, renew_deadline=2, retry_period=0.2)
    return LeaderElector(client, config, lead)


async def test_work_stops_as_soon_as_another_holder_is_recorded(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    running, cancelled = asyncio.Event(), asyncio.Event()

    async def lead() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    a = _elector(client, "a", lead, duration=3)
    campaign = asyncio.create_task(a.run())
    try:
        await asyncio.wait_for(running.wait(), 5)
        # Another candidate is recorded as holder (what a peer does once our lease expired).
        lease = await client.get(LEASES, "kubelite-controller-manager", "kube-system")
        lease["spec"]["holderIdentity"] = "b"
        await client.replace(LEASES, lease)
        await asyncio.wait_for(cancelled.wait(), 5)
        assert not a.leading
        # b's record is fresh by a's clock: a must not take it back before it expires.
        await asyncio.sleep(1)
        assert await leader(client) == "b"
    finally:
        campaign.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await campaign


async def test_clean_shutdown_hands_over_without_waiting_for_expiry(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    leading: list[str] = []

    def lead_as(name: str) -> Any:
        async def lead() -> None:
            leading.append(name)
            await asyncio.Event().wait()

        return lead

    first = asyncio.create_task(_elector(client, "first", lead_as("first")).run())
    await eventually(lambda: _true(leading == ["first"]), timeout=5, what="first to lead")
    second = asyncio.create_task(_elector(client, "second", lead_as("second")).run())
    try:
        await asyncio.sleep(1)
        assert leading == ["first"]  # the lease (15 s) is held and renewed
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert await leader(client) in ("", "second")  # released (and maybe already taken)
        # Well under the 15 s lease duration: the released Lease is taken at once.
        await eventually(lambda: _true(leading == ["first", "second"]), timeout=3, what="second to lead")
    finally:
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second


async def _true(value: bool) -> bool:
    return value
