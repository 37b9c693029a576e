"""The node agent (kubelet's role): a Node's heartbeat plus the sync of the pods bound to it.

``Agent`` is one node. ``HollowNodes`` runs many fake nodes in one process (kubemark's hollow
nodes): they share one ApiClient, one pod informer and one work queue, and renew their leases at
jittered times, so a thousand of them cost a thousand sleeping tasks rather than a thousand watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from kubelite.agent.httpserver import AgentHttpServer
from kubelite.agent.node import NodeConfig, NodeHeartbeat
from kubelite.agent.pods import PodDispatcher, PodManager
from kubelite.agent.routes import ClusterNetwork, NetworkConfig
from kubelite.agent.runtime import Runtime, RuntimeOptions
from kubelite.agent.runtimes import create_runtime
from kubelite.client import ApiClient, ApiConnectionError, ApiError

__all__ = ["Agent", "HollowNodes"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class Agent:
    """One node: registers it, keeps its Lease and status fresh, runs its pods on ``runtime``.

    Without a ``dispatcher`` the agent watches its own pods (``spec.nodeName=<name>``); hollow
    nodes pass a shared one.
    """

    def __init__(
        self,
        client: ApiClient,
        config: NodeConfig,
        runtime: Runtime,
        *,
        dispatcher: PodDispatcher | None = None,
        jitter: bool = False,
        network: NetworkConfig | None = None,
        agent_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``agent_tls``: serve logs/exec over HTTPS (see ``httpserver.agent_ssl_context``)."""
        self.client = client
        self.config = config
        self.runtime = runtime
        self._own_dispatcher = dispatcher is None
        self.dispatcher = dispatcher or PodDispatcher(client, field_selector=f"spec.nodeName={config.name}")
        self.pods = PodManager(client, runtime, config.name, config.node_ip)
        self.heartbeat = NodeHeartbeat(
            client,
            config,
            runtime_healthy=runtime.healthy,
            on_fence=self.pods.fence,
            on_unfence=self._unfence,
            on_node=self._node_changed,
            jitter=jitter,
        )
        self.dispatcher.register(self.pods)
        self._pod_cidr: str | None = None
        self._task: asyncio.Task[None] | None = None
        # Routes to other nodes, the Service proxy and cluster DNS (routes.py); None for hollow nodes.
        self.network = ClusterNetwork(client, config.name, runtime, network) if network is not None else None
        # Hollow nodes share one endpoint (HollowNodes starts it); a real node serves its own.
        self.http: AgentHttpServer | None = (
            AgentHttpServer({config.name: self.pods}, config.node_ip, config.agent_port, ssl_context=agent_tls)
            if self._own_dispatcher else None
        )
        if self.http is not None:
            config.agent_scheme = self.http.scheme  # published on the Node for the API server's proxy

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def fenced(self) -> bool:
        return self.heartbeat.fenced

    async def _unfence(self) -> None:
        self.dispatcher.enqueue(self.pods.unfence())

    async def _node_changed(self, node: Obj) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and cidr != self._pod_cidr:
            self._pod_cidr = cidr
            await self.runtime.update_runtime_config(cidr)

    async def register(self, retry_until: float | None = None) -> None:
        """Register the Node, retrying while the API server cannot be reached (it may start later)."""
        delay = 0.5
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.heartbeat.register()
                return
            except (ApiConnectionError, ApiError) as e:
                if isinstance(e, ApiError) and e.code < 500 and e.code != 429:
                    raise
                if retry_until is not None and loop.time() >= retry_until:
                    raise
                log.warning("node %s: cannot register yet (%s); retrying in %.1fs", self.name, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def start_heartbeat(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.heartbeat.run(), name=f"heartbeat-{self.name}")

    async def start(self) -> None:
        if self.http is not None:
            # Bound before registering, so the Node publishes the port that really serves logs/exec.
            await self.http.start()
            self.config.agent_port = self.http.port
        await self.register()
        await self.heartbeat.renew_lease()
        self.start_heartbeat()
        if self.network is not None:
            await self.network.start()
        if self._own_dispatcher:
            await self.dispatcher.start()

    async def stop(self, cleanup_network: bool = True) -> None:
        if self.network is not None:
            await self.network.stop(cleanup=cleanup_network)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._own_dispatcher:
            await self.dispatcher.stop()
        if self.http is not None:
            await self.http.stop()
        await self.runtime.close()

    def pause_heartbeat(self) -> None:
        """Stop renewing the Lease and posting status, as a node cut off from the API would.

        The process and its containers keep running; after ``fencing_period`` the agent fences
        (stops its containers) exactly as a partitioned node does.
        """
        self.heartbeat.paused = True

    def resume_heartbeat(self) -> None:
        self.heartbeat.paused = False


_NODE_FIELDS = {f.name for f in fields(NodeConfig)}


class HollowNodes:
    """``count`` fake nodes named ``{base_name}-0`` … in this process, sharing one client and informer.

    ``node_opts`` are :class:`NodeConfig` fields (cpu, memory, max_pods, labels, taints, node_ip,
    heartbeat_interval, fencing_period, ...), applied to every node.
    """

    def __init__(
        self,
        client: ApiClient,
        base_name: str,
        count: int,
        *,
        data_dir: Path | None = None,
        workers: int = 8,
        registration_concurrency: int = 32,
        **node_opts: Any,
    ) -> None:
        unknown = set(node_opts) - _NODE_FIELDS
        if unknown:
            raise TypeError(f"unknown node option(s): {', '.join(sorted(unknown))}")
        if count < 1:
            raise ValueError("a hollow node count must be at least 1")
        self.client = client
        self.dispatcher = PodDispatcher(client, workers=workers)
        self._concurrency = registration_concurrency
        node_ip = node_opts.pop("node_ip", "127.0.0.1")
        # One logs/exec endpoint for every hollow node of the process (any free port by default).
        self.http = AgentHttpServer(self.dispatcher.managers, node_ip, node_opts.pop("agent_port", 0))
        base = NodeConfig(name=base_name, node_ip=node_ip, hollow=True)
        base = replace(base, **node_opts)
        data_dir = data_dir or Path("/var/lib/kubelite/agent")
        self.agents: list[Agent] = []
        for i in range(count):
            name = f"{base_name}-{i}"
            config = replace(base, name=name)
            runtime = create_runtime("fake", RuntimeOptions(node_name=name, data_dir=data_dir / name, node_index=i))
            self.agents.append(Agent(client, config, runtime, dispatcher=self.dispatcher, jitter=True))
        self._by_name = {a.name: a for a in self.agents}

    def agent(self, node: str | int) -> Agent:
        return self.agents[node] if isinstance(node, int) else self._by_name[node]

    def pause_heartbeat(self, node: str | int) -> None:
        """Simulate one dead node without stopping the others (or the process)."""
        self.agent(node).pause_heartbeat()

    def resume_heartbeat(self, node: str | int) -> None:
        self.agent(node).resume_heartbeat()

    async def start(self) -> None:
        await self.http.start()
        for agent in self.agents:
            agent.config.agent_port = self.http.port
        sem = asyncio.Semaphore(self._concurrency)

        async def register(agent: Agent) -> None:
            async with sem:
                await agent.register()
                await agent.heartbeat.renew_lease()

        await asyncio.gather(*(register(a) for a in self.agents))
        for agent in self.agents:
            agent.start_heartbeat()
        await self.dispatcher.start()

    async def stop(self) -> None:
        await asyncio.gather(*(a.stop() for a in self.agents))
        await self.dispatcher.stop()
        await self.http.stop()
