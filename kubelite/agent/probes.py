"""Container probes: startup, liveness and readiness (kubelet's prober).

Each probe of each running container attempt has a :class:`ProbeState`, a small state machine fed
with probe outcomes: ``successThreshold`` consecutive successes make the result True,
``failureThreshold`` consecutive failures make it False. Initial results follow kubelet: liveness
starts True, readiness and startup start False. A startup probe gates the other two: until it has
succeeded they are not run.

:class:`ProbeManager` runs one asyncio task per container attempt (kubelet's probe workers), and
implements the pod sync's ``ReadinessProber`` seam:

* readiness drives the container's ``ready`` (and so the pod's Ready/ContainersReady conditions and
  Endpoints); a result change asks for a pod sync through ``on_change``;
* a liveness failure, or a startup probe that fails ``failureThreshold`` times, kills the container
  through ``on_kill``; the pod sync then restarts it per restartPolicy (restartCount + 1).

Probe handlers: ``exec`` (``Runtime.exec``), ``httpGet`` and ``tcpSocket`` (from the node to
``host`` or, as in Kubernetes, the pod IP; a named port is looked up in the container's ports).
The clock and the probe function are parameters, so the state machine is testable without time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from kubelite.agent.runtime import ContainerState, Runtime, RuntimeFailure

if TYPE_CHECKING:
    from kubelite.agent.pods import ContainerRecord

__all__ = [
    "ContainerProbes",
    "ProbeKind",
    "ProbeManager",
    "ProbeSpec",
    "ProbeState",
    "run_probe",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class ProbeKind(enum.StrEnum):
    STARTUP = "startup"
    LIVENESS = "liveness"
    READINESS = "readiness"


_FIELDS = {ProbeKind.STARTUP: "startupProbe", ProbeKind.LIVENESS: "livenessProbe",
           ProbeKind.READINESS: "readinessProbe"}


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A container's probe with Kubernetes' defaults applied."""

    handler: Obj
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_obj(cls, probe: Obj) -> ProbeSpec:
        def num(key: str, default: int) -> int:
            v = probe.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else default

        handler = {k: v for k, v in probe.items() if k in ("exec", "httpGet", "tcpSocket", "grpc")}
        return cls(
            handler=handler,
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=float(num("periodSeconds", 10)),
            timeout=float(num("timeoutSeconds", 1)),
            success_threshold=num("successThreshold", 1),
            failure_threshold=num("failureThreshold", 3),
        )


@dataclass
class ProbeState:
    """One probe of one container attempt: counts outcomes into a result."""

    kind: ProbeKind
    spec: ProbeSpec
    next_at: float  # when the next probe is due (clock seconds)
    result: bool = False
    successes: int = 0
    failures: int = 0
    message: str = ""

    @classmethod
    def start(cls, kind: ProbeKind, spec: ProbeSpec, started_at: float) -> ProbeState:
        return cls(kind, spec, next_at=started_at + spec.initial_delay, result=kind is ProbeKind.LIVENESS)

    def observe(self, ok: bool, now: float, message: str = "") -> bool:
        """Record one outcome at ``now``; returns whether the result changed."""
        before = self.result
        self.message = message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.spec.success_threshold:
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.spec.failure_threshold:
                self.result = False
        self.next_at = now + self.spec.period
        return self.result != before


@dataclass
class ContainerProbes:
    """The probes of one container attempt."""

    pod_key: str
    container_name: str
    container_id: str
    container: Obj
    pod_ip: str
    states: dict[ProbeKind, ProbeState] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, pod_key: str, container: Obj, container_id: str, pod_ip: str, now: float) -> ContainerProbes:
        cp = cls(pod_key, str(container.get("name", "")), container_id, container, pod_ip)
        for kind, fld in _FIELDS.items():
            if isinstance(container.get(fld), dict):
                cp.states[kind] = ProbeState.start(kind, ProbeSpec.from_obj(container[fld]), now)
        return cp

    def started(self) -> bool:
        s = self.states.get(ProbeKind.STARTUP)
        return s is None or s.result

    def ready(self) -> bool:
        r = self.states.get(ProbeKind.READINESS)
        return self.started() and (r is None or r.result)

    def active(self) -> list[ProbeState]:
        """The probes that run now: only the startup probe until it succeeded, then the others."""
        startup = self.states.get(ProbeKind.STARTUP)
        if startup is not None and not startup.result:
            return [startup]
        return [s for k, s in self.states.items() if k is not ProbeKind.STARTUP]

    def kill_reason(self) -> str | None:
        """Why the container must be killed now, or None."""
        live = self.states.get(ProbeKind.LIVENESS)
        if live is not None and self.started() and not live.result:
            return f"Liveness probe failed: {live.message}"
        startup = self.states.get(ProbeKind.STARTUP)
        if startup is not None and not startup.result and startup.failures >= startup.spec.failure_threshold:
            return f"Startup probe failed: {startup.message}"
        return None


ProbeFn = Callable[[ContainerProbes, ProbeState], Awaitable[tuple[bool, str]]]


# --- the handlers -----------------------------------------------------------------------------------


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text and isinstance(p.get("containerPort"), int):
            return int(p["containerPort"])
    raise ValueError(f"port {text!r} is not a number or a named port of the container")


async def run_probe(
    handler: Obj, *, pod_ip: str, container: Obj, timeout: float, runtime: Runtime | None = None,
    container_id: str = "",
) -> tuple[bool, str]:
    """Run one probe handler; (success, message)."""
    if runtime is not None and runtime.simulated:
        target = handler.get("httpGet") or handler.get("tcpSocket") or {}
        if not (isinstance(target, dict) and target.get("host")):
            # Nothing runs behind a simulated container, and its pod IP must never receive traffic.
            return True, ""
    try:
        if "exec" in handler:
            if runtime is None:
                return False, "exec probes need a runtime"
            command = [str(a) for a in (handler["exec"] or {}).get("command") or []]
            try:
                res = await runtime.exec(container_id, command, timeout=timeout)
            except NotImplementedError as e:
                return False, str(e)
            if res.exit_code == 0:
                return True, ""
            out = (res.stdout + res.stderr).decode(errors="replace").strip()
            return False, f"command {command} exited with {res.exit_code}: {out}"
        if "httpGet" in handler:
            h = handler["httpGet"] or {}
            host = str(h.get("host") or pod_ip)
            port = _port(h.get("port"), container)
            scheme = str(h.get("scheme") or "HTTP").lower()
            path = str(h.get("path") or "/")
            if not path.startswith("/"):
                path = "/" + path
            url = f"{scheme}://{host}:{port}{path}"
            headers = {"User-Agent": "kube-probe/kubelite", "Accept": "*/*"}
            for hd in h.get("httpHeaders") or []:
                headers[str(hd.get("name", ""))] = str(hd.get("value", ""))
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                    session.get(url, headers=headers, ssl=False) as resp:
                await resp.read()
                if 200 <= resp.status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {resp.status}"
        if "tcpSocket" in handler:
            t = handler["tcpSocket"] or {}
            host = str(t.get("host") or pod_ip)
            port = _port(t.get("port"), container)
            async with asyncio.timeout(timeout):
                _reader, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
        if "grpc" in handler:
            return False, "grpc probes are not supported by kubelite"
        return False, "the probe has no handler"
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except (OSError, aiohttp.ClientError, ValueError, RuntimeFailure) as e:
        return False, str(e) or type(e).__name__


# --- the manager ------------------------------------------------------------------------------------


class ProbeManager:
    """Probe workers for a node's containers, and the ``ReadinessProber`` the pod sync consults."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        on_change: Callable[[str], None] | None = None,
        on_kill: Callable[[str, str, str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe: ProbeFn | None = None,
    ) -> None:
        self.runtime = runtime
        self.on_change = on_change  # pod key -> schedule a sync
        self.on_kill = on_kill  # (pod key, container id, message) -> kill the container
        self.clock = clock
        self.probe: ProbeFn = probe or self._default_probe
        self._by_id: dict[str, ContainerProbes] = {}

    async def _default_probe(self, cp: ContainerProbes, state: ProbeState) -> tuple[bool, str]:
        return await run_probe(state.spec.handler, pod_ip=cp.pod_ip, container=cp.container,
                               timeout=state.spec.timeout, runtime=self.runtime, container_id=cp.container_id)

    # --- the ReadinessProber seam ---

    def _running(self, record: ContainerRecord) -> bool:
        return record.status is not None and record.status.state is ContainerState.RUNNING and not record.waiting_reason

    def ready(self, pod: Obj, container: Obj, record: ContainerRecord) -> bool:
        if not self._running(record):
            return False
        cp = self._by_id.get(record.container_id or "")
        return cp.ready() if cp is not None else not _has_probes(container, (ProbeKind.READINESS, ProbeKind.STARTUP))

    def started(self, pod: Obj, container: Obj, record: ContainerRecord) -> bool:
        if not self._running(record):
            return False
        cp = self._by_id.get(record.container_id or "")
        return cp.started() if cp is not None else not _has_probes(container, (ProbeKind.STARTUP,))

    # --- workers ---

    def track(self, pod_key: str, container: Obj, container_id: str, pod_ip: str, *, run: bool = True) -> None:
        """Start probing a just-started container attempt (no-op without probes or when tracked)."""
        if container_id in self._by_id or not _has_probes(container, tuple(ProbeKind)):
            return
        cp = ContainerProbes.build(pod_key, container, container_id, pod_ip, self.clock())
        self._by_id[container_id] = cp
        if run:
            cp.task = asyncio.create_task(self._worker(cp), name=f"probe-{cp.container_name}-{container_id[:12]}")

    def untrack(self, container_id: str) -> None:
        cp = self._by_id.pop(container_id, None)
        if cp is not None and cp.task is not None and cp.task is not asyncio.current_task():
            cp.task.cancel()

    def tracked(self, container_id: str) -> ContainerProbes | None:
        return self._by_id.get(container_id)

    async def step(self, cp: ContainerProbes, now: float) -> float:
        """Run every probe of ``cp`` due at ``now``; returns when the next one is due.

        Result changes call ``on_change``; a failed liveness/startup probe calls ``on_kill`` and stops probing.
        """
        changed = False
        for state in cp.active():
            if state.next_at > now:
                continue
            ok, message = await self.probe(cp, state)
            if state.observe(ok, now, message):
                changed = True
                log.info("%s %s: %s probe %s%s", cp.pod_key, cp.container_name, state.kind,
                         "succeeded" if state.result else "failed", f" ({message})" if message else "")
            if state.kind is ProbeKind.STARTUP and state.result:
                changed = True  # the other probes start now
                for other in cp.active():
                    other.next_at = max(other.next_at, now)
        reason = cp.kill_reason()
        if changed and self.on_change is not None:
            self.on_change(cp.pod_key)
        if reason is not None:
            self.untrack(cp.container_id)
            if self.on_kill is not None:
                await self.on_kill(cp.pod_key, cp.container_id, reason)
            return float("inf")
        return min((s.next_at for s in cp.active()), default=float("inf"))

    async def _worker(self, cp: ContainerProbes) -> None:
        while cp.container_id in self._by_id:
            try:
                due = await self.step(cp, self.clock())
            except Exception:  # a probe bug must not end probing silently
                log.exception("%s %s: probe worker error", cp.pod_key, cp.container_name)
                due = self.clock() + 1.0
            if due == float("inf"):
                return
            await asyncio.sleep(max(0.0, due - self.clock()))

    async def close(self) -> None:
        tasks = [cp.task for cp in self._by_id.values() if cp.task is not None]
        self._by_id.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _has_probes(container: Obj, kinds: tuple[ProbeKind, ...]) -> bool:
    return any(isinstance(container.get(_FIELDS[k]), dict) for k in kinds)
