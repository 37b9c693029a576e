"""The container checks' logic: each function returns the problems it finds on one machine.

``test_containers.py`` runs them per machine of the cluster; the test of the suite runs them against
a Docker node on the CI machine itself. Both runtimes are judged from the machine (``runc list`` or
``docker ps``/``docker inspect``, then ``/proc/<pid>``), never from the agent's own report.
"""

from __future__ import annotations

from typing import Any

from testinfra.host import Host

from kubelite.api.quantity import parse_quantity
from kubelite.controllers.base import PODS
from tests.infra.cluster import Api, is_terminating
from tests.infra.machine import AGENT_ENV, NAMESPACES, Container, running_containers, snapshot

__all__ = ["isolation_problems", "missing_container_problems", "stray_container_problems"]

Obj = dict[str, Any]
# A pod may ask for a namespace of the host: then sharing it is what it asked for.
_HOST_NAMESPACE_FIELDS = {"net": "hostNetwork", "pid": "hostPID", "ipc": "hostIPC"}


def _running_per_api(pod: Obj) -> list[tuple[str, str]]:
    """(container name, runtime id) of the containers the API reports running."""
    out = []
    for status in pod.get("status", {}).get("containerStatuses") or []:
        cid = str(status.get("containerID") or "")
        if "running" in (status.get("state") or {}) and cid:
            out.append((str(status["name"]), cid.split("://", 1)[-1]))
    return out


def missing_container_problems(host: Host, machine: str, api: Api, agent_env: str = AGENT_ENV) -> list[str]:
    """Every container the API reports running on ``machine`` runs there, as a container of that pod."""
    on_machine = {c.id: c for c in running_containers(host, machine, agent_env)}
    problems = []
    for pod in api.pods_on(machine):
        if is_terminating(pod) or pod.get("status", {}).get("phase") != "Running":
            continue
        name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        for cname, cid in _running_per_api(pod):
            c = on_machine.get(cid)
            if c is None:
                problems.append(f"pod {name} container {cname} ({cid}) is running per the API but not on {machine}")
            elif c.pod_uid != pod["metadata"]["uid"]:
                problems.append(f"container {cid} on {machine} belongs to pod uid {c.pod_uid}, not {name}")
    return problems


def isolation_problems(host: Host, machine: str, api: Api, agent_env: str = AGENT_ENV) -> list[str]:
    """Containers (Docker sandboxes too) have namespaces of their own and the cgroup memory limit their pod asks."""
    snap = snapshot(host, machine, agent_env)
    pods = {p["metadata"]["uid"]: p for p in api.pods_on(machine)}
    problems = []
    for c in snap.containers:
        if not c.alive or c.ns is None:
            continue
        pod_spec = (pods.get(c.pod_uid) or {}).get("spec", {})
        shared = [n for n in NAMESPACES if c.ns.get(n) == snap.host_ns.get(n) and not pod_spec.get(_HOST_NAMESPACE_FIELDS.get(n, ""))]
        if shared:
            what = "sandbox" if c.role == "sandbox" else f"container {c.container}"
            problems.append(f"{what} of {c.pod} shares the host's {', '.join(shared)} namespace(s)")
        spec = next((s for s in pod_spec.get("containers") or [] if s.get("name") == c.container), None)
        limit = ((spec or {}).get("resources") or {}).get("limits", {}).get("memory")
        if c.role == "container" and limit is not None and str(int(parse_quantity(limit))) != (c.memory_limit or ""):
            problems.append(f"container {c.container} of {c.pod}: cgroup memory limit {c.memory_limit}, pod asks {limit}")
    return problems


def stray_container_problems(host: Host, machine: str, api: Api, agent_env: str = AGENT_ENV) -> list[str]:
    """Nothing runs on ``machine`` (a Docker sandbox neither) for a pod the API does not bind to it."""
    running = [c for c in snapshot(host, machine, agent_env).containers if c.alive]
    pods = {p["metadata"]["uid"]: p for p in api.objects(PODS)} if running else {}
    return [_stray(c, pods, machine) for c in running if pods.get(c.pod_uid, {}).get("spec", {}).get("nodeName") != machine]


def _stray(c: Container, pods: dict[str, Obj], machine: str) -> str:
    pod = pods.get(c.pod_uid)
    where = "no such pod in the API" if pod is None else f"the API binds it to {pod['spec'].get('nodeName') or 'no node'}"
    what = f"sandbox ({c.id[:12]})" if c.role == "sandbox" else f"container {c.container} ({c.id})"
    return f"{what} of pod {c.pod} runs on {machine}: {where}"
