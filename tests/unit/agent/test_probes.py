"""The prober: the per-probe state machine (driven by a fake clock and scripted outcomes) and the
httpGet/tcpSocket handlers against real listeners on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kubelite.agent.probes import ContainerProbes, ProbeKind, ProbeManager, ProbeSpec, ProbeState, run_probe
from kubelite.agent.runtime import RuntimeOptions
from kubelite.agent.runtimes.fake import FakeRuntime

Obj = dict[str, Any]


def test_thresholds_and_initial_results() -> None:
    spec = ProbeSpec({}, initial_delay=5, period=2, success_threshold=2, failure_threshold=3)
    ready = ProbeState.start(ProbeKind.READINESS, spec, started_at=100)
    assert not ready.result and ready.next_at == 105
    assert not ready.observe(True, 105) and not ready.result  # one success of two
    assert ready.observe(True, 107) and ready.result
    assert not ready.observe(False, 109) and not ready.observe(False, 111) and ready.result
    assert not ready.observe(True, 113)  # a success resets the failure count
    assert not ready.observe(False, 115) and not ready.observe(False, 117)
    assert ready.observe(False, 119) and not ready.result and ready.next_at == 121
    live = ProbeState.start(ProbeKind.LIVENESS, ProbeSpec.from_obj({"httpGet": {"port": 80}}), started_at=0)
    assert live.result and live.spec.period == 10 and live.spec.failure_threshold == 3
    assert ProbeState.start(ProbeKind.STARTUP, spec, 0).result is False


class Script:
    """Probe outcomes by kind, consumed in order; records what was probed."""

    def __init__(self, **outcomes: list[bool]) -> None:
        self.outcomes = {ProbeKind(k): list(v) for k, v in outcomes.items()}
        self.calls: list[str] = []

    async def __call__(self, cp: ContainerProbes, state: ProbeState) -> tuple[bool, str]:
        self.calls.append(state.kind.value)
        return self.outcomes[state.kind].pop(0), "scripted"


def container(**probes: Obj) -> Obj:
    return {"name": "c", **{f"{k}Probe": {"exec": {"command": ["true"]}, **v} for k, v in probes.items()}}


async def test_startup_gates_liveness_and_readiness() -> None:
    now = [0.0]
    script = Script(startup=[False, True], readiness=[True], liveness=[True])
    changes: list[str] = []
    pm = ProbeManager(FakeRuntime(RuntimeOptions("n", Path("/nonexistent"))), on_change=changes.append,
                      clock=lambda: now[0], probe=script)
    c = container(startup={"periodSeconds": 1, "failureThreshold": 5}, readiness={"periodSeconds": 3},
                  liveness={"periodSeconds": 3})
    pm.track("ns/p", c, "cid", "10.0.0.1", run=False)
    cp = pm.tracked("cid")
    assert cp is not None and not cp.started() and not cp.ready()
    assert await pm.step(cp, 0) == 1  # only the startup probe ran (and failed)
    assert script.calls == ["startup"] and not cp.started()
    await pm.step(cp, 1)
    assert cp.started() and not cp.ready() and changes == ["ns/p"]
    await pm.step(cp, 1)  # liveness and readiness start as soon as startup succeeded
    assert sorted(script.calls[2:]) == ["liveness", "readiness"] and cp.ready()


async def test_liveness_failure_kills_and_readiness_flaps() -> None:
    killed: list[tuple[str, str, str]] = []

    async def on_kill(key: str, cid: str, msg: str) -> None:
        killed.append((key, cid, msg))

    script = Script(liveness=[True, False, False, False], readiness=[True, False])
    changes: list[str] = []
    pm = ProbeManager(FakeRuntime(RuntimeOptions("n", Path("/nonexistent"))), on_change=changes.append,
                      on_kill=on_kill, clock=lambda: 0.0, probe=script)
    c = container(liveness={"periodSeconds": 1, "failureThreshold": 3},
                  readiness={"periodSeconds": 1, "failureThreshold": 1})
    pm.track("ns/p", c, "cid", "", run=False)
    cp = pm.tracked("cid")
    assert cp is not None
    await pm.step(cp, 0)
    assert cp.ready() and changes == ["ns/p"]
    await pm.step(cp, 1)
    assert not cp.ready() and changes == ["ns/p", "ns/p"] and not killed
    script.outcomes[ProbeKind.READINESS] = [False, False]
    await pm.step(cp, 2)
    assert not killed
    assert await pm.step(cp, 3) == float("inf")
    assert killed == [("ns/p", "cid", "Liveness probe failed: scripted")]
    assert pm.tracked("cid") is None  # a killed attempt is not probed again


async def test_startup_probe_failure_kills() -> None:
    killed: list[str] = []

    async def on_kill(key: str, cid: str, msg: str) -> None:
        killed.append(msg)

    pm = ProbeManager(FakeRuntime(RuntimeOptions("n", Path("/nonexistent"))), on_kill=on_kill,
                      clock=lambda: 0.0, probe=Script(startup=[False, False]))
    pm.track("ns/p", container(startup={"failureThreshold": 2}), "cid", "", run=False)
    cp = pm.tracked("cid")
    assert cp is not None
    await pm.step(cp, 0)
    assert not killed
    await pm.step(cp, 10)
    assert killed == ["Startup probe failed: scripted"]


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/healthz" and request.headers.get("X-Probe") == "yes":
            return web.Response(text="ok")
        return web.Response(status=503, text="no")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield int(port)
    await runner.cleanup()


async def test_http_get_probe(http_server: int) -> None:
    c = {"name": "c", "ports": [{"name": "web", "containerPort": http_server}]}
    ok = {"httpGet": {"path": "/healthz", "port": "web", "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}}
    assert await run_probe(ok, pod_ip="127.0.0.1", container=c, timeout=2) == (True, "")
    bad = {"httpGet": {"path": "/healthz", "port": http_server, "host": "127.0.0.1"}}
    assert await run_probe(bad, pod_ip="", container=c, timeout=2) == (False, "HTTP probe failed with statuscode: 503")


async def test_tcp_probe() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert (await run_probe({"tcpSocket": {"port": port}}, pod_ip="127.0.0.1", container={}, timeout=2))[0]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    ok, message = await run_probe({"tcpSocket": {"port": closed}}, pod_ip="127.0.0.1", container={}, timeout=2)
    assert not ok and message


async def test_probes_of_simulated_containers_succeed_without_traffic() -> None:
    # A hollow node's pod IP routes nowhere: nothing may be sent to it, and nothing runs to fail.
    rt = FakeRuntime(RuntimeOptions("n", Path("/nonexistent")))
    for handler in ({"exec": {"command": ["false"]}}, {"httpGet": {"port": 80}}, {"tcpSocket": {"port": 81}}):
        ok, message = await run_probe(handler, pod_ip="100.64.0.9", container={}, timeout=1, runtime=rt, container_id="x")
        assert (ok, message) == (True, "")
    # An explicit host is a real endpoint: it is probed for real (here: nothing listens).
    ok, _ = await run_probe({"tcpSocket": {"host": "127.0.0.1", "port": 9}}, pod_ip="100.64.0.9", container={},
                            timeout=1, runtime=rt, container_id="x")
    assert not ok
