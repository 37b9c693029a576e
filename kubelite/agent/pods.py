"""Pod sync: make the runtime match the pods bound to a node, and report their status.

Shape (kubelet's pod workers, kopf's queueing): one informer of pods feeds one work queue of pod
keys; a key is never synced by two workers at once; all work happens in ``PodManager.sync``, which is
level-based: it reads the pod from the cache and converges the runtime to it, whatever happened
before. The informer may serve many nodes (hollow nodes share one, dispatching by
``spec.nodeName``); a real node's informer watches only ``spec.nodeName=<node>``.

The status is computed by pure functions (:func:`compute_pod_status`, :func:`pod_phase`) from the
pod and what the agent observed, and written only when it differs from the pod's current status:
with thousands of pods an agent that rewrote unchanged statuses would flood the API server.

Runtime state changes the agent did not cause (a container exiting by itself) are found by
relisting the runtime every ``Runtime.relist_period`` (kubelet's PLEG); the fake runtime has none.

Before a pod's containers start its volumes are set up (``volumes.py``); each container's
environment, ``$(VAR)``-expanded command/args, mounts and log file are resolved into one
:class:`~kubelite.agent.runtime.ContainerConfig` (``env.py``, ``logs.py``). Probes (``probes.py``)
decide readiness and kill containers whose liveness probe fails; configMap/secret/downward volumes
are refreshed every ``volume_sync_period`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubelite.agent.env import (
    ApiObjectSource,
    EnvError,
    ObjectSource,
    PodContext,
    build_env,
    resolve_command,
    service_env,
)
from kubelite.agent.logs import container_log_path, pod_log_dir
from kubelite.agent.probes import ProbeManager
from kubelite.agent.runtime import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    CreateContainerError,
    ImageNeverPullError,
    ImagePullError,
    Mount,
    NotFoundError,
    PodSandbox,
    Runtime,
    RuntimeFailure,
    SandboxState,
)
from kubelite.agent.volumes import VolumeError, VolumeManager, container_mounts
from kubelite.api.quantity import QuantityError, cpu_millis, to_int
from kubelite.api.registry import by_path, resource
from kubelite.client import ApiClient, ApiError, Informer, WorkQueue, run_workers
from kubelite.client.informer import object_key

__all__ = [
    "ContainerRecord",
    "PodDispatcher",
    "PodManager",
    "PodRecord",
    "ReadinessProber",
    "RestartBackoff",
    "RunningIsReady",
    "compute_pod_status",
    "container_config",
    "container_status_entry",
    "pod_phase",
    "status_patch",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

_PODS = by_path("", "v1", "pods")
assert _PODS is not None
PODS = _PODS
_SERVICES = resource("", "services")

TERMINAL_PHASES = ("Succeeded", "Failed")


def rfc3339(t: dt.datetime | None = None) -> str:
    return (t or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- restart backoff ----------------------------------------------------------------------------


class RestartBackoff:
    """kubelet's container restart backoff: the first restart is immediate, then 10 s doubling to 300 s.

    Keyed by (pod uid, container name). A container that ran without restarting for
    ``reset_after`` seconds starts over at no delay. Time is passed in, so the policy is testable.
    """

    def __init__(self, initial: float = 10.0, cap: float = 300.0, reset_after: float = 600.0) -> None:
        self.initial, self.cap, self.reset_after = initial, cap, reset_after
        self._entries: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (delay, last restart)

    def remaining(self, key: tuple[str, str], now: float) -> float:
        """Seconds to wait before ``key`` may restart (0: now)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        delay, last = entry
        if now - last >= self.reset_after:
            del self._entries[key]
            return 0.0
        return max(0.0, last + delay - now)

    def current(self, key: tuple[str, str]) -> float:
        """The delay that applies to ``key``'s next restart (for the CrashLoopBackOff message)."""
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def restarted(self, key: tuple[str, str], now: float) -> None:
        """Record a restart: the next one waits twice as long (capped)."""
        entry = self._entries.get(key)
        if entry is None or now - entry[1] >= self.reset_after:
            self._entries[key] = (self.initial, now)
        else:
            self._entries[key] = (min(entry[0] * 2, self.cap), now)

    def forget_pod(self, uid: str) -> None:
        for key in [k for k in self._entries if k[0] == uid]:
            del self._entries[key]


def should_restart(restart_policy: str, exit_code: int | None) -> bool:
    if restart_policy == "Never":
        return False
    if restart_policy == "OnFailure":
        return exit_code != 0
    return True  # Always


# --- what the agent knows about a pod -----------------------------------------------------------


@dataclass
class ContainerRecord:
    """One spec container across its attempts."""

    name: str
    container_id: str | None = None  # the current attempt's
    status: ContainerStatus | None = None  # the current attempt's, as last observed
    restart_count: int = 0
    last_termination: ContainerStatus | None = None  # the previous attempt's end
    waiting_reason: str = ""  # set while not running by choice or failure (CrashLoopBackOff, ErrImagePull)
    waiting_message: str = ""


@dataclass
class PodRecord:
    uid: str
    key: str
    grace: float = 30.0
    sandbox: PodSandbox | None = None
    start_time: str | None = None
    init: dict[str, ContainerRecord] = field(default_factory=dict)
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    finished: bool = False  # reached Succeeded/Failed: nothing runs again
    volume_paths: dict[str, Path] = field(default_factory=dict)  # volume name -> host path, once set up

    def records(self) -> list[ContainerRecord]:
        return [*self.init.values(), *self.containers.values()]


class ReadinessProber(Protocol):
    """Decides a running container's readiness (and whether it has started). Probes plug in here."""

    def ready(self, pod: Obj, container: Obj, record: ContainerRecord) -> bool: ...

    def started(self, pod: Obj, container: Obj, record: ContainerRecord) -> bool: ...


class RunningIsReady:
    """No probing: a running container is started and ready (kubelet without probes)."""

    def ready(self, pod: Obj, container: Obj, record: ContainerRecord) -> bool:
        return record.status is not None and record.status.state is ContainerState.RUNNING and not record.waiting_reason

    def started(self, pod: Obj, container: Obj, record: ContainerRecord) -> bool:
        return self.ready(pod, container, record)


# --- pure status computation --------------------------------------------------------------------


def _terminated(st: ContainerStatus, scheme: str) -> Obj:
    out: Obj = {
        "exitCode": st.exit_code if st.exit_code is not None else 0,
        "reason": st.reason or ("Completed" if st.exit_code == 0 else "Error"),
        "startedAt": st.started_at,
        "finishedAt": st.finished_at,
        "containerID": f"{scheme}://{st.id}",
    }
    if st.message:
        out["message"] = st.message
    return out


def container_status_entry(
    spec_container: Obj,
    record: ContainerRecord | None,
    *,
    ready: bool,
    started: bool,
    scheme: str,
    default_waiting: str = "ContainerCreating",
) -> Obj:
    """One ``containerStatuses[]`` item from what the agent observed of the container."""
    entry: Obj = {
        "name": spec_container.get("name", ""),
        "image": spec_container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": started,
        "restartCount": record.restart_count if record else 0,
        "state": {"waiting": {"reason": default_waiting}},
        "lastState": {},
    }
    if record is None:
        return entry
    st = record.status
    last = record.last_termination
    if st is not None:
        entry["imageID"] = st.image_id
        entry["containerID"] = f"{scheme}://{st.id}"
    if record.waiting_reason:
        waiting: Obj = {"reason": record.waiting_reason}
        if record.waiting_message:
            waiting["message"] = record.waiting_message
        entry["state"] = {"waiting": waiting}
        if st is not None and st.state is ContainerState.EXITED:
            last = st  # the attempt that just ended is the one we are backing off from
    elif st is not None and st.state is ContainerState.RUNNING:
        entry["state"] = {"running": {"startedAt": st.started_at}}
    elif st is not None and st.state is ContainerState.EXITED:
        entry["state"] = {"terminated": _terminated(st, scheme)}
    if last is not None:
        entry["lastState"] = {"terminated": _terminated(last, scheme)}
    return entry


def _is_sidecar(c: Obj) -> bool:
    return c.get("restartPolicy") == "Always"


def pod_phase(spec: Obj, init_statuses: list[Obj], container_statuses: list[Obj]) -> str:
    """kubelet's getPhase, from the spec and the computed container status entries."""
    restart_policy = spec.get("restartPolicy") or "Always"
    by_name = {s["name"]: s for s in init_statuses}
    for c in spec.get("initContainers") or []:
        s = by_name.get(c.get("name"))
        state = (s or {}).get("state") or {}
        if _is_sidecar(c):
            if "running" not in state:
                return "Pending"
            continue
        term = state.get("terminated")
        if term is not None and term.get("exitCode") == 0:
            continue
        last_term = ((s or {}).get("lastState") or {}).get("terminated")
        failed = (term is not None) or (last_term is not None and last_term.get("exitCode") != 0)
        if failed and restart_policy == "Never":
            return "Failed"
        return "Pending"
    by_name = {s["name"]: s for s in container_statuses}
    running = waiting = stopped = succeeded = 0
    for c in spec.get("containers") or []:
        s = by_name.get(c.get("name")) or {}
        state = s.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        else:
            last_term = (s.get("lastState") or {}).get("terminated")
            if last_term is not None:  # between attempts (CrashLoopBackOff): it has run
                stopped += 1
                succeeded += last_term.get("exitCode") == 0
            else:
                waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def qos_class(spec: Obj) -> str:
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    requests_seen = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_seen = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and str(req[r]) != str(lim[r])):
                guaranteed = False
    if not requests_seen:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _condition(type_: str, ok: bool, reason: str, message: str, old: dict[str, Obj], now: str) -> Obj:
    status = "True" if ok else "False"
    prev = old.get(type_)
    transition = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
    cond: Obj = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": transition or now}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def compute_pod_status(
    pod: Obj,
    record: PodRecord | None,
    *,
    host_ip: str,
    scheme: str,
    now: str,
    prober: ReadinessProber | None = None,
) -> Obj:
    """The pod's whole status from its spec and what the agent observed (``record``).

    Fields the agent does not own (nominatedNodeName, reason, ...) are kept from the current status;
    condition transition times are kept while a condition's status does not change, so the result
    equals the current status whenever nothing changed.
    """
    prober = prober or RunningIsReady()
    spec = pod.get("spec") or {}
    old = dict(pod.get("status") or {})
    old_conds: dict[str, Obj] = {
        str(c.get("type")): c for c in old.get("conditions") or [] if isinstance(c, dict)
    }

    init_specs = spec.get("initContainers") or []
    main_specs = spec.get("containers") or []
    init_statuses: list[Obj] = []
    for c in init_specs:
        r = record.init.get(c.get("name", "")) if record else None
        st = r.status if r is not None else None
        running = st is not None and st.state is ContainerState.RUNNING
        if _is_sidecar(c):
            ok = r is not None and prober.ready(pod, c, r)
        else:
            ok = st is not None and st.state is ContainerState.EXITED and st.exit_code == 0
        init_statuses.append(container_status_entry(c, r, ready=ok, started=running, scheme=scheme))
    initialized = pod_phase({**spec, "containers": []}, init_statuses, []) != "Pending" or not init_specs
    container_statuses: list[Obj] = []
    for c in main_specs:
        r = record.containers.get(c.get("name", "")) if record else None
        ready = r is not None and prober.ready(pod, c, r)
        started = r is not None and prober.started(pod, c, r)
        container_statuses.append(
            container_status_entry(
                c, r, ready=ready, started=started, scheme=scheme,
                default_waiting="ContainerCreating" if initialized else "PodInitializing",
            )
        )
    phase = pod_phase(spec, init_statuses, container_statuses)
    terminal = phase in TERMINAL_PHASES

    incomplete = [s["name"] for s, c in zip(init_statuses, init_specs, strict=True)
                  if not _init_done(c, s)]
    unready = [s["name"] for s in container_statuses if not s["ready"]]
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or []]
    gates_ok = all((old_conds.get(g) or {}).get("status") == "True" for g in gates)
    conditions: list[Obj] = []
    conditions.append(
        _condition("PodReadyToStartContainers", bool(record and record.sandbox and record.sandbox.state
                                                     is SandboxState.READY) and not terminal, "", "", old_conds, now)
    )
    if terminal:
        conditions.append(_condition("Initialized", True, "PodCompleted", "", old_conds, now))
        conditions.append(_condition("Ready", False, "PodCompleted", "", old_conds, now))
        conditions.append(_condition("ContainersReady", False, "PodCompleted", "", old_conds, now))
    else:
        conditions.append(_condition(
            "Initialized", not incomplete, "" if not incomplete else "ContainersNotInitialized",
            "" if not incomplete else f"containers with incomplete status: [{' '.join(incomplete)}]", old_conds, now,
        ))
        ready_msg = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
        if not unready and not gates_ok:
            conditions.append(_condition("Ready", False, "ReadinessGatesNotReady",
                                         "the status of pod readiness gates is not ready", old_conds, now))
        else:
            conditions.append(_condition("Ready", not unready, "ContainersNotReady" if unready else "",
                                         ready_msg, old_conds, now))
        conditions.append(_condition("ContainersReady", not unready, "ContainersNotReady" if unready else "",
                                     ready_msg, old_conds, now))
    # Conditions other writers own (PodScheduled from binding, readiness gates, DisruptionTarget) stay.
    ours = {c["type"] for c in conditions}
    scheduled = old_conds.get("PodScheduled") or {
        "type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now,
    }
    others = [c for t, c in old_conds.items() if t not in ours and t != "PodScheduled"]
    conditions = [scheduled, *conditions, *others]

    status = dict(old)
    status.update({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "qosClass": old.get("qosClass") or qos_class(spec),
        "containerStatuses": container_statuses,
    })
    if init_specs:
        status["initContainerStatuses"] = init_statuses
    pod_ip = record.sandbox.ip if record and record.sandbox else None
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    start_time = (record.start_time if record else None) or old.get("startTime")
    if start_time:
        status["startTime"] = start_time
    return status


def _init_done(c: Obj, s: Obj) -> bool:
    state = s.get("state") or {}
    if _is_sidecar(c):
        return "running" in state
    return (state.get("terminated") or {}).get("exitCode") == 0


def status_patch(old: Obj, new: Obj) -> Obj:
    """The merge patch turning status ``old`` into ``new`` (top-level keys; lists are replaced)."""
    patch: Obj = {}
    for k in old.keys() | new.keys():
        if old.get(k) != new.get(k):
            patch[k] = new.get(k)
    return patch


def _resource(c: Obj, kind: str, name: str, convert: Callable[[Any], int]) -> int | None:
    raw = ((c.get("resources") or {}).get(kind) or {}).get(name)
    if raw is None:
        return None
    try:
        return convert(raw)
    except (QuantityError, ValueError):
        return None  # the API server validated it; an odd value must not stop the container


def container_config(
    c: Obj, env: dict[str, str], mounts: list[Mount], log_path: Path | None
) -> ContainerConfig:
    """The runtime's view of spec container ``c`` with its resolved environment and mounts."""
    command, args = resolve_command(c, env)
    sc = c.get("securityContext") or {}

    def opt_int(v: Any) -> int | None:
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    return ContainerConfig(
        name=str(c.get("name", "")),
        image=str(c.get("image", "")),
        command=command,
        args=args,
        env=env,
        mounts=mounts,
        working_dir=str(c.get("workingDir") or ""),
        log_path=log_path,
        tty=bool(c.get("tty")),
        stdin=bool(c.get("stdin")),
        cpu_request_millis=_resource(c, "requests", "cpu", cpu_millis),
        cpu_limit_millis=_resource(c, "limits", "cpu", cpu_millis),
        memory_request_bytes=_resource(c, "requests", "memory", to_int),
        memory_limit_bytes=_resource(c, "limits", "memory", to_int),
        run_as_user=opt_int(sc.get("runAsUser")),
        run_as_group=opt_int(sc.get("runAsGroup")),
        privileged=bool(sc.get("privileged")),
        read_only_root_filesystem=bool(sc.get("readOnlyRootFilesystem")),
    )


# --- one node's pods ----------------------------------------------------------------------------


class PodManager:
    """Converges one node's runtime to the pods bound to it and reports their status."""

    def __init__(
        self,
        client: ApiClient,
        runtime: Runtime,
        node_name: str,
        host_ip: str,
        *,
        prober: ReadinessProber | None = None,
        backoff: RestartBackoff | None = None,
        data_dir: Path | None = None,
        storage_dir: Path | None = None,
        object_source: ObjectSource | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.node_name = node_name
        self.host_ip = host_ip
        # Logs, volumes and claims live under the agent's data dir; the runtime was built with it.
        self.data_dir = data_dir or _runtime_data_dir(runtime)
        self.objects = object_source or ApiObjectSource(client)
        self.volumes = VolumeManager(client, node_name, self.data_dir, storage_dir=storage_dir, source=self.objects)
        self.notify: Callable[[str], None] | None = None  # schedules a pod key's sync (set by the dispatcher)
        self.probes: ProbeManager | None = None
        if prober is None:
            self.probes = ProbeManager(runtime, on_change=self._wake, on_kill=self._probe_kill)
            prober = self.probes
        self._killing: set[str] = set()  # container ids a failed liveness probe is stopping
        self.prober = prober
        self.backoff = backoff or RestartBackoff()
        self.scheme = runtime.version.split("://", 1)[0] or "container"
        self.fenced = False
        self.status_writes = 0  # for tests and metrics: how often status was PATCHed
        self._records: dict[str, PodRecord] = {}  # pod uid -> record
        self._by_key: dict[str, str] = {}  # pod key -> uid
        self._loop = asyncio.get_running_loop()

    def record(self, key: str) -> PodRecord | None:
        uid = self._by_key.get(key)
        return self._records.get(uid) if uid else None

    def keys(self) -> list[str]:
        return list(self._by_key)

    # --- startup ---

    async def adopt(self, pods: list[Obj]) -> None:
        """Take over what the runtime already runs for ``pods``; remove everything else."""
        known = {(p.get("metadata") or {}).get("uid"): p for p in pods}
        for sb in await self.runtime.list_pod_sandboxes():
            pod = known.get(sb.pod_uid)
            existing = self._records.get(sb.pod_uid)
            if pod is None or sb.state is not SandboxState.READY or (existing and existing.sandbox):
                await self._remove_sandbox(sb.id)
                continue
            key = object_key(pod)
            self._records[sb.pod_uid] = PodRecord(
                uid=sb.pod_uid, key=key, grace=_grace(pod), sandbox=sb, start_time=sb.created_at
            )
            self._by_key[key] = sb.pod_uid
        for c in await self.runtime.list_containers():
            owner = self._records.get(c.pod_uid)
            if owner is None or owner.sandbox is None or c.sandbox_id != owner.sandbox.id:
                await self._remove_container(c.id)
                continue
            spec = known[c.pod_uid].get("spec") or {}
            is_init = any(ic.get("name") == c.container_name for ic in spec.get("initContainers") or [])
            is_main = any(mc.get("name") == c.container_name for mc in spec.get("containers") or [])
            if not (is_init or is_main):
                await self._remove_container(c.id)
                continue
            group = owner.init if is_init else owner.containers
            r = group.setdefault(c.container_name, ContainerRecord(c.container_name))
            if r.container_id is not None and r.restart_count >= c.attempt:
                await self._remove_container(c.id)  # an older attempt left behind
                continue
            if r.container_id is not None:
                await self._remove_container(r.container_id)
            r.container_id, r.restart_count = c.id, c.attempt
        await self.volumes.teardown_orphans(set(self._records) | {str(u) for u in known if u})
        if self._records:
            log.info("node %s: re-adopted %d pod(s) from the runtime", self.node_name, len(self._records))

    # --- sync ---

    async def sync(self, key: str, pod: Obj | None) -> float | None:
        """Converge pod ``key`` (None: it is gone); returns seconds after which to sync it again."""
        uid = ((pod or {}).get("metadata") or {}).get("uid")
        old_uid = self._by_key.get(key)
        if old_uid and old_uid != uid:
            # Gone from the API, or replaced by a new pod of the same name: the old one must not run.
            old_rec = self._records.pop(old_uid)
            await self._kill(old_rec)
            del self._by_key[key]
            self.backoff.forget_pod(old_uid)
            await self._cleanup(old_rec.key, old_uid)
        if pod is None or self.fenced:
            return None  # unfencing re-syncs every pod
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self._finalize(key, pod)
            return None
        found = self._records.get(uid or "")
        if found is not None:
            rec = found
        else:
            if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
                return None  # finished before this agent (re)started: it never runs again
            rec = PodRecord(uid=str(uid), key=key, grace=_grace(pod))
            self._records[rec.uid] = rec
            self._by_key[key] = rec.uid
        delay: float | None = None
        if not rec.finished:
            delay = await self._converge(pod, rec)
        status = compute_pod_status(pod, rec, host_ip=self.host_ip, scheme=self.scheme, now=rfc3339(),
                                    prober=self.prober)
        if status["phase"] in TERMINAL_PHASES and not rec.finished:
            rec.finished = True
            if rec.sandbox is not None:
                # Containers stay (for logs); the sandbox and its IP go, as kubelet does.
                await self.runtime.stop_pod_sandbox(rec.sandbox.id)
        await self._write_status(pod, status)
        return delay

    async def _write_status(self, pod: Obj, status: Obj) -> None:
        old = pod.get("status") or {}
        patch = status_patch(old, status)
        if not patch:
            return
        meta = pod["metadata"]
        try:
            await self.client.patch(PODS, meta["name"], {"status": patch}, meta.get("namespace"), subresource="status")
            self.status_writes += 1
        except ApiError as e:
            if e.code != 404:  # deleted meanwhile: its DELETED event cleans up
                raise

    async def _finalize(self, key: str, pod: Obj) -> None:
        meta = pod["metadata"]
        rec = self._records.pop(meta["uid"], None)
        self._by_key.pop(key, None)
        if rec is not None:
            await self._kill(rec, grace=float(meta.get("deletionGracePeriodSeconds") or 0))
            self.backoff.forget_pod(rec.uid)
        await self._cleanup(key, str(meta["uid"]), pod)
        try:
            await self.client.delete(
                PODS, meta["name"], meta.get("namespace"), grace_period_seconds=0, preconditions={"uid": meta["uid"]}
            )
        except ApiError as e:
            if e.code not in (404, 409):  # already gone, or a new pod took the name
                raise

    async def _converge(self, pod: Obj, rec: PodRecord) -> float | None:
        spec = pod.get("spec") or {}
        restart_policy = spec.get("restartPolicy") or "Always"
        if rec.sandbox is None or rec.sandbox.state is not SandboxState.READY:
            if rec.sandbox is not None:
                # The sandbox died: everything in it is gone; start over in a new one.
                await self._kill(rec)
                for r in rec.records():
                    r.container_id = None
            rec.sandbox = await self.runtime.run_pod_sandbox(pod)
            rec.start_time = rec.start_time or rfc3339()
        try:
            rec.volume_paths = await self.volumes.setup(pod, self._context(rec))
        except VolumeError as e:
            # kubelet's FailedMount: nothing starts until every volume is there.
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
                group = rec.init if c in (spec.get("initContainers") or []) else rec.containers
                r = group.setdefault(c["name"], ContainerRecord(c["name"]))
                if r.status is None or r.status.state is not ContainerState.RUNNING:
                    r.waiting_reason, r.waiting_message = "ContainerCreating", f"MountVolume.SetUp failed: {e}"
            log.warning("pod %s: volumes not ready: %s", rec.key, e)
            return 5.0
        for r in rec.records():
            if r.container_id is not None:
                try:
                    r.status = await self.runtime.container_status(r.container_id)
                    if r.status.state is ContainerState.RUNNING:
                        self._track_probes(pod, rec, r)  # re-adopted containers are probed too
                    elif self.probes is not None:
                        self.probes.untrack(r.container_id)
                except NotFoundError:
                    # Removed behind our back: count it as a failed attempt.
                    r.status = ContainerStatus(id=r.container_id, state=ContainerState.EXITED, exit_code=137,
                                               reason="ContainerStatusUnknown",
                                               message="The container could not be located")
                    r.container_id = None

        for c in spec.get("initContainers") or []:
            r = rec.init.setdefault(c["name"], ContainerRecord(c["name"]))
            sidecar = _is_sidecar(c)
            st = r.status
            if st is not None and st.state is ContainerState.EXITED and st.exit_code == 0 and not sidecar:
                continue
            if st is not None and st.state is ContainerState.RUNNING:
                if sidecar:
                    continue
                return None  # still initialising; the relist reports its exit
            if st is not None and st.state is ContainerState.EXITED:
                if not sidecar and restart_policy == "Never":
                    return None  # the pod has failed
                wait = self._restart_wait(pod, rec, r)
                if wait > 0:
                    return wait
            wait = await self._start(pod, rec, r, c)
            if wait:
                return wait
            st = r.status
            done = st is not None and (
                (sidecar and st.state is ContainerState.RUNNING)
                or (not sidecar and st.state is ContainerState.EXITED and st.exit_code == 0)
            )
            if not done:
                return None  # wait for it; a failure is handled on the next sync

        delays: list[float] = []
        for c in spec.get("containers") or []:
            r = rec.containers.setdefault(c["name"], ContainerRecord(c["name"]))
            st = r.status
            if st is not None and st.state is ContainerState.RUNNING:
                continue
            if st is not None and st.state is ContainerState.EXITED:
                if not should_restart(restart_policy, st.exit_code):
                    continue
                wait = self._restart_wait(pod, rec, r)
                if wait > 0:
                    delays.append(wait)
                    continue
            wait = await self._start(pod, rec, r, c)
            if wait:
                delays.append(wait)
        return min(delays) if delays else None

    def _restart_wait(self, pod: Obj, rec: PodRecord, r: ContainerRecord) -> float:
        now = self._loop.time()
        key = (rec.uid, r.name)
        wait = self.backoff.remaining(key, now)
        if wait > 0:
            meta = pod.get("metadata") or {}
            r.waiting_reason = "CrashLoopBackOff"
            r.waiting_message = (
                f"back-off {self.backoff.current(key):.0f}s restarting failed container={r.name} "
                f"pod={meta.get('name')}_{meta.get('namespace')}({rec.uid})"
            )
            return wait
        self.backoff.restarted(key, now)
        return 0.0

    async def _start(self, pod: Obj, rec: PodRecord, r: ContainerRecord, c: Obj) -> float:
        """Start the next attempt of ``c``; returns a retry delay when it could not be started."""
        assert rec.sandbox is not None
        if r.status is not None and r.status.state is ContainerState.CREATED and r.container_id:
            await self.runtime.start_container(r.container_id)  # created by an earlier, interrupted sync
            r.status = await self.runtime.container_status(r.container_id)
            return 0.0
        image = str(c.get("image", ""))
        policy = str(c.get("imagePullPolicy") or "IfNotPresent")
        try:
            if policy == "Always" or not await self.runtime.image_present(image):
                if policy == "Never":
                    raise ImageNeverPullError(f'container image "{image}" is not present with pull policy of Never')
                await self.runtime.pull_image(image)
        except ImagePullError as e:
            # A first failure is ErrImagePull; retries back off (ImagePullBackOff), as kubelet shows them.
            reason = e.reason
            if reason == "ErrImagePull" and r.waiting_reason in ("ErrImagePull", "ImagePullBackOff"):
                reason = "ImagePullBackOff"
            r.waiting_reason, r.waiting_message = reason, str(e)
            return 10.0
        attempt = r.restart_count + (1 if r.status is not None else 0)  # a previous attempt ended: a restart
        try:
            services = service_env(pod, await self._services(pod))
            env = await build_env(pod, c, self.objects, self._context(rec), services)
            mounts = container_mounts(pod, c, rec.volume_paths)
        except (EnvError, VolumeError) as e:
            r.waiting_reason, r.waiting_message = "CreateContainerConfigError", str(e)
            return 10.0
        except ApiError as e:  # the API server is unreachable or failing: a temporary error
            r.waiting_reason, r.waiting_message = "CreateContainerConfigError", f"cannot read env sources: {e}"
            return 5.0
        config = container_config(c, env, mounts, container_log_path(self.data_dir, pod, c["name"], attempt))
        if r.status is not None and r.container_id is not None:
            await self._remove_container(r.container_id)
        try:
            cid = await self.runtime.create_container(rec.sandbox.id, pod, c, attempt, env, mounts, config=config)
        except CreateContainerError as e:
            r.waiting_reason, r.waiting_message = "CreateContainerError", str(e)
            return 10.0
        if r.status is not None:
            r.last_termination = r.status
        r.container_id, r.restart_count, r.status = cid, attempt, None
        r.waiting_reason = r.waiting_message = ""
        try:
            await self.runtime.start_container(cid)
        except RuntimeFailure as e:  # kubelet's RunContainerError: show it and back off
            r.waiting_reason, r.waiting_message = "RunContainerError", str(e)
            r.status = await self.runtime.container_status(cid)
            return 10.0
        r.status = await self.runtime.container_status(cid)
        if r.status.state is ContainerState.RUNNING:
            self._track_probes(pod, rec, r)
        return 0.0

    async def _services(self, pod: Obj) -> list[Obj]:
        """The Services whose variables the pod's containers get (see env.service_env): its
        namespace's with service links on, and default/kubernetes (how in-cluster clients find the API)."""
        namespace = str(pod["metadata"].get("namespace") or "default")
        links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
        services: list[Obj] = list((await self.client.list(_SERVICES, namespace))["items"]) if links else []
        if not links or namespace != "default":
            try:
                services.append(await self.client.get(_SERVICES, "kubernetes", "default"))
            except ApiError as e:
                if e.code != 404:
                    raise
        return services

    def _context(self, rec: PodRecord) -> PodContext:
        return PodContext(pod_ip=(rec.sandbox.ip if rec.sandbox else None) or "", host_ip=self.host_ip)

    # --- probes ---

    def _track_probes(self, pod: Obj, rec: PodRecord, r: ContainerRecord) -> None:
        if self.probes is None or r.container_id is None or r.container_id in self._killing:
            return
        spec = pod.get("spec") or {}
        c = next((x for x in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
                  if x.get("name") == r.name), None)
        if c is not None:
            self.probes.track(rec.key, c, r.container_id, (rec.sandbox.ip if rec.sandbox else None) or "")

    def _wake(self, key: str) -> None:
        if self.notify is not None:
            self.notify(key)

    async def _probe_kill(self, key: str, container_id: str, message: str) -> None:
        """A liveness (or startup) probe failed: kill the container; the sync restarts it per policy."""
        rec = self.record(key)
        if rec is None or self.fenced:
            return
        if container_id in self._killing:
            return  # already being stopped: one kill per failure, however long the grace period
        log.info("pod %s: killing container %s: %s", key, container_id[:12], message)
        self._killing.add(container_id)
        try:
            with contextlib.suppress(NotFoundError):
                await self.runtime.stop_container(container_id, rec.grace)
        finally:
            self._killing.discard(container_id)
        self._wake(key)

    # --- volumes, logs ---

    async def refresh_volumes(self, pod_of: Callable[[str], Obj | None]) -> list[str]:
        """Bring configMap/secret/downward volumes of running pods up to date; the keys changed."""
        changed: list[str] = []
        for rec in list(self._records.values()):
            pod = pod_of(rec.key)
            if pod is None or rec.finished or not self.volumes.has_dynamic_volumes(pod):
                continue
            if await self.volumes.refresh(pod, self._context(rec)):
                changed.append(rec.key)
        return changed

    def container_log(self, key: str, container: str, previous: bool = False) -> tuple[Path, str | None] | None:
        """(log file, current container id) of ``container`` of pod ``key``; None if it never ran here.

        ``previous``: the attempt before the current one (its id is None: it is not running).
        """
        rec = self.record(key)
        if rec is None:
            return None
        r = rec.containers.get(container) or rec.init.get(container)
        if r is None or (r.container_id is None and r.status is None):
            return None
        ns, _, name = key.partition("/")
        pod = {"metadata": {"namespace": ns, "name": name, "uid": rec.uid}}
        if previous:
            if r.restart_count == 0:
                return None
            return container_log_path(self.data_dir, pod, container, r.restart_count - 1), None
        return container_log_path(self.data_dir, pod, container, r.restart_count), r.container_id

    def container_id(self, key: str, container: str) -> str | None:
        rec = self.record(key)
        if rec is None:
            return None
        r = rec.containers.get(container) or rec.init.get(container)
        return r.container_id if r is not None else None

    async def _cleanup(self, key: str, uid: str, pod: Obj | None = None) -> None:
        """The pod is gone: remove its volume directories and logs (claims' data stay)."""
        await self.volumes.teardown(uid)
        ns, _, name = key.partition("/")
        shutil.rmtree(pod_log_dir(self.data_dir, ns, name, uid), ignore_errors=True)

    # --- stopping ---

    async def _kill(self, rec: PodRecord, grace: float | None = None) -> None:
        grace = rec.grace if grace is None else grace
        for r in rec.records():
            if r.container_id is not None:
                if self.probes is not None:
                    self.probes.untrack(r.container_id)
                with contextlib.suppress(NotFoundError):
                    await self.runtime.stop_container(r.container_id, grace)
        if rec.sandbox is not None:
            await self._remove_sandbox(rec.sandbox.id)

    async def _remove_sandbox(self, sandbox_id: str) -> None:
        await self.runtime.stop_pod_sandbox(sandbox_id)
        await self.runtime.remove_pod_sandbox(sandbox_id)

    async def _remove_container(self, container_id: str) -> None:
        if self.probes is not None:
            self.probes.untrack(container_id)
        with contextlib.suppress(NotFoundError):
            await self.runtime.stop_container(container_id, 0)
        await self.runtime.remove_container(container_id)

    async def fence(self) -> None:
        """Stop every container of every pod (the node may be considered dead); syncs pause."""
        self.fenced = True
        for rec in list(self._records.values()):
            for r in rec.records():
                if r.container_id is not None:
                    try:
                        await self.runtime.stop_container(r.container_id, rec.grace)
                    except RuntimeFailure as e:
                        log.error("node %s: fencing could not stop %s: %s", self.node_name, r.container_id, e)

    def unfence(self) -> list[str]:
        """Resume syncing; returns the keys to sync now."""
        self.fenced = False
        return self.keys()

    # --- relist (PLEG) ---

    async def changed_keys(self) -> list[str]:
        """Pods whose containers changed state since the agent last looked (kubelet's PLEG relist)."""
        by_id = {c.id: c for c in await self.runtime.list_containers()}
        changed: list[str] = []
        for rec in self._records.values():
            for r in rec.records():
                if r.container_id is None or r.status is None:
                    continue
                now = by_id.get(r.container_id)
                if now is None or now.state != r.status.state:
                    changed.append(rec.key)
                    break
        return changed


def _runtime_data_dir(runtime: Runtime) -> Path:
    # Every runtime is built from RuntimeOptions, whose data_dir is the agent's --data-dir.
    options = getattr(runtime, "options", None)
    data_dir = getattr(options, "data_dir", None)
    return Path(data_dir) if data_dir is not None else Path("/var/lib/kubelite/agent")


def _grace(pod: Obj) -> float:
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30) or 0)


# --- the process's pods: informer -> queue -> the right node's manager ----------------------------


def _node_of(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


class PodDispatcher:
    """One pod informer and one work queue for every node agent in the process.

    A real node passes ``field_selector="spec.nodeName=<name>"``; hollow nodes share one informer
    over all pods instead of one watch per node. Keys are synced by ``workers`` workers, never
    two at once for one key.
    """

    def __init__(
        self,
        client: ApiClient,
        *,
        field_selector: str | None = None,
        workers: int = 8,
        sync_period: float = 60.0,
        volume_sync_period: float = 3.0,
    ) -> None:
        self.client = client
        self.volume_sync_period = volume_sync_period
        self.informer = Informer(client, PODS, field_selector=field_selector)
        self.informer.add_index("node", lambda p: [_node_of(p)])
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=30.0, name="pods")
        self.workers = workers
        self.sync_period = sync_period
        self.managers: dict[str, PodManager] = {}
        self._last_node: dict[str, str] = {}  # pod key -> node, to route the sync of a deleted pod
        self._tasks: list[asyncio.Task[Any]] = []
        self.informer.add_handler(self._on_change, lambda _old, new: self._on_change(new), self._on_change)

    def register(self, manager: PodManager) -> None:
        self.managers[manager.node_name] = manager
        manager.notify = self.queue.add

    def _on_change(self, pod: Obj) -> None:
        node = _node_of(pod)
        if node in self.managers:
            key = object_key(pod)
            self._last_node[key] = node
            self.queue.add(key)

    def enqueue(self, keys: list[str]) -> None:
        for key in keys:
            self.queue.add(key)

    def pods_of(self, node: str) -> list[Obj]:
        return self.informer.by_index("node", node)

    async def start(self) -> None:
        """Fill the cache, let every manager re-adopt its containers, then start syncing."""
        self._tasks.append(asyncio.create_task(self.informer.run(), name="pod-informer"))
        await self.informer.wait_synced()
        for name, manager in self.managers.items():
            await manager.adopt(self.pods_of(name))
        for key in self.informer.keys():
            pod = self.informer.get_by_key(key)
            if pod is not None:
                self._on_change(pod)
        self._tasks.append(asyncio.create_task(run_workers(self.queue, self._sync, self.workers), name="pod-workers"))
        self._tasks.append(asyncio.create_task(self._resync_loop(), name="pod-resync"))
        self._tasks.append(asyncio.create_task(self._volume_loop(), name="pod-volumes"))
        periods = {m.runtime.relist_period for m in self.managers.values()} - {None}
        if periods:
            self._tasks.append(asyncio.create_task(self._relist_loop(min(p for p in periods if p)), name="pod-relist"))

    async def stop(self) -> None:
        self.informer.stop()
        self.queue.shut_down()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for m in self.managers.values():
            if m.probes is not None:
                await m.probes.close()

    async def _sync(self, key: str) -> None:
        pod = self.informer.get_by_key(key)
        node = _node_of(pod) if pod is not None else self._last_node.get(key, "")
        manager = self.managers.get(node)
        if manager is None:
            return
        delay = await manager.sync(key, pod)
        if pod is None:
            self._last_node.pop(key, None)
        if delay:
            self.queue.add_after(key, delay)

    async def _resync_loop(self) -> None:
        # Level-based safety net: every pod is looked at again now and then, spread over the period.
        while True:
            await asyncio.sleep(self.sync_period * random.uniform(0.9, 1.1))
            for m in self.managers.values():
                self.enqueue(m.keys())

    async def _volume_loop(self) -> None:
        # kubelet rereads configMap/secret volumes on a period too (its sync loop plus a TTL cache).
        while True:
            await asyncio.sleep(self.volume_sync_period)
            for m in list(self.managers.values()):
                if m.fenced:
                    continue
                try:
                    self.enqueue(await m.refresh_volumes(self.informer.get_by_key))
                except (ApiError, OSError, RuntimeFailure) as e:
                    log.warning("node %s: volume refresh failed: %s", m.node_name, e)

    async def _relist_loop(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            for m in list(self.managers.values()):
                if m.runtime.relist_period is None or m.fenced:
                    continue
                try:
                    self.enqueue(await m.changed_keys())
                except RuntimeFailure as e:
                    log.warning("node %s: runtime relist failed: %s", m.node_name, e)

