"""Container checks: what the API says runs on a node really runs there, isolated and limited, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from testinfra.host import Host

from kubelite.api.quantity import parse_quantity
from kubelite.controllers.base import PODS
from tests.infra.cluster import Api, InfraCluster, is_terminating, retry
from tests.infra.machine import NAMESPACES, Container, running_containers, snapshot
from tests.infra.workloads import Workloads

SETTLE = 15.0  # a pod just bound or just deleted takes the agent a moment


@pytest.fixture(autouse=True)
def _runtime(cluster: InfraCluster, workloads: Workloads) -> None:
    if cluster.spec.runtime == "fake":
        pytest.skip("the fake runtime runs no containers to look at")
    if cluster.spec.runtime != "runc":
        pytest.skip(f"the {cluster.spec.runtime} runtime is not inspected yet (runc only)")


def _running_per_api(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(container name, runtime id) of the containers the API reports running."""
    out = []
    for status in pod.get("status", {}).get("containerStatuses") or []:
        cid = str(status.get("containerID") or "")
        if "running" in (status.get("state") or {}) and cid:
            out.append((str(status["name"]), cid.split("://", 1)[-1]))
    return out


def test_api_pods_run_on_their_machine(host: Host, machine: str, api: Api) -> None:
    def check() -> list[str]:
        on_machine = {c.id: c for c in running_containers(host, machine)}
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

    problems = retry(check, SETTLE)
    assert not problems, "; ".join(problems)


def test_containers_isolated_and_limited(host: Host, machine: str, api: Api) -> None:
    snap = snapshot(host, machine)
    pods = {p["metadata"]["uid"]: p for p in api.pods_on(machine)}
    problems = []
    for c in snap.containers:
        if not c.alive or c.ns is None:
            continue
        shared = [n for n in NAMESPACES if c.ns.get(n) == snap.host_ns.get(n)]
        if shared:
            problems.append(f"container {c.container} of {c.pod} shares the host's {', '.join(shared)} namespace(s)")
        pod = pods.get(c.pod_uid)
        spec = next((s for s in (pod or {}).get("spec", {}).get("containers") or [] if s.get("name") == c.container), None)
        limit = ((spec or {}).get("resources") or {}).get("limits", {}).get("memory")
        if limit is not None and str(int(parse_quantity(limit))) != (c.memory_limit or ""):
            problems.append(f"container {c.container} of {c.pod}: cgroup memory limit {c.memory_limit}, pod asks {limit}")
    assert not problems, f"{machine}: " + "; ".join(problems)


def test_no_container_without_a_pod_bound_here(host: Host, machine: str, api: Api) -> None:
    def check() -> list[str]:
        running = running_containers(host, machine)
        pods = {p["metadata"]["uid"]: p for p in api.objects(PODS)} if running else {}
        return [_stray(c, pods, machine) for c in running if pods.get(c.pod_uid, {}).get("spec", {}).get("nodeName") != machine]

    problems = retry(check, SETTLE)
    assert not problems, "; ".join(problems)


def _stray(c: Container, pods: dict[str, dict[str, Any]], machine: str) -> str:
    pod = pods.get(c.pod_uid)
    where = "no such pod in the API" if pod is None else f"the API binds it to {pod['spec'].get('nodeName') or 'no node'}"
    return f"container {c.container} ({c.id}) of pod {c.pod} runs on {machine}: {where}"
