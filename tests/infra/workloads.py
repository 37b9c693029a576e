"""The suite's own workloads, applied before the checks and removed after them.

In the namespace ``kubelite-infra``: a Deployment ``web`` (busybox httpd, a memory limit) behind a
Service, a StatefulSet ``data`` with a volume claim (local storage: its data lives on one node), and
a DaemonSet ``infra-ds`` without tolerations. The first master gets the taint
``kubelite.test/infra=suite:NoSchedule`` first, so the DaemonSet must leave it out and the other
workloads land on the workers (the failover test powers one of those off).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from kubelite.client import ApiError
from kubelite.controllers.base import (
    DAEMONSETS,
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    PODS,
    PVCS,
    PVS,
    SERVICES,
    STATEFULSETS,
)
from tests.infra.cluster import Api, InfraCluster, is_terminating

__all__ = ["NAMESPACE", "TAINT", "Workloads", "apply_workloads", "remove_workloads"]

NAMESPACE = "kubelite-infra"
TAINT = {"key": "kubelite.test/infra", "value": "suite", "effect": "NoSchedule"}
IMAGE = "busybox:latest"
MEMORY_LIMIT = "64Mi"
READY_TIMEOUT = 120.0


@dataclass
class Workloads:
    namespace: str
    tainted_node: str
    web_replicas: int
    service_ip: str


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": {"kubelite.test/infra": "suite"}}


def _manifests(web_replicas: int) -> list[tuple[Any, dict[str, Any]]]:
    web = {"metadata": _meta("web"), "spec": {
        "replicas": web_replicas, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "httpd", "image": IMAGE, "command": [
                "sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                "resources": {"limits": {"memory": MEMORY_LIMIT}}}]}}}}  # fmt: skip
    service = {"metadata": _meta("web"), "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    data = {"metadata": _meta("data"), "spec": {
        "replicas": 1, "serviceName": "data", "selector": {"matchLabels": {"app": "data"}},
        "template": {"metadata": {"labels": {"app": "data"}}, "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "1000000"],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}}}]}}  # fmt: skip
    ds = {"metadata": _meta("infra-ds"), "spec": {
        "selector": {"matchLabels": {"app": "infra-ds"}},
        "template": {"metadata": {"labels": {"app": "infra-ds"}}, "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "1000000"]}]}}}}  # fmt: skip
    return [(DEPLOYMENTS, web), (SERVICES, service), (STATEFULSETS, data), (DAEMONSETS, ds)]


def _set_taint(api: Api, node: str, present: bool) -> None:
    taints = [t for t in api.get(NODES, node).get("spec", {}).get("taints") or [] if t.get("key") != TAINT["key"]]
    if present:
        taints.append(TAINT)
    api.run(api.client.patch(NODES, node, {"spec": {"taints": taints}}, patch_type="merge"))


def _wait(what: str, done: Any, timeout: float = READY_TIMEOUT, left: Any = None) -> None:
    """Until ``done()``; else an AssertionError naming ``what`` and, from ``left()``, what was still in the way."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            still = f": {left()}" if left is not None else ""
            raise AssertionError(f"suite setup: {what} not reached within {timeout:.0f} s{still}")
        time.sleep(1)


def _pods_left(api: Api) -> str:
    return "; ".join(
        f"{p['metadata']['name']} on {p['spec'].get('nodeName') or '-'} {p.get('status', {}).get('phase')}"
        + (" (deleting)" if p["metadata"].get("deletionTimestamp") else "")
        for p in api.objects(PODS, NAMESPACE)
    )


def apply_workloads(cluster: InfraCluster, api: Api) -> Workloads:
    remove_workloads(cluster, api)  # a previous run that was interrupted leaves them behind
    tainted = cluster.names("master")[0]
    _set_taint(api, tainted, True)
    with contextlib.suppress(ApiError):
        api.run(api.client.create(NAMESPACES, {"metadata": {"name": NAMESPACE}}))
    replicas = 2 * max(1, len(cluster.names("worker")))
    for rt, obj in _manifests(replicas):
        api.run(api.client.create(rt, obj, NAMESPACE))
    service_ip = str(api.get(SERVICES, "web", NAMESPACE)["spec"]["clusterIP"])

    def settled() -> bool:
        pods = [p for p in api.objects(PODS, NAMESPACE) if not is_terminating(p)]
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running" and all(
            c.get("ready") for c in p["status"].get("containerStatuses") or [{}])]  # fmt: skip
        ds = api.get(DAEMONSETS, "infra-ds", NAMESPACE).get("status", {})
        want_ds = ds.get("desiredNumberScheduled")
        return (
            sum(p["metadata"]["name"].startswith("web-") for p in running) == replicas
            and any(p["metadata"]["name"] == "data-0" for p in running)
            and want_ds is not None and want_ds == ds.get("numberReady")
        )

    _wait("the suite's workloads Running (web, data-0, infra-ds)", settled)
    return Workloads(NAMESPACE, tainted, replicas, service_ip)


def remove_workloads(cluster: InfraCluster, api: Api) -> None:
    for rt, obj in reversed(_manifests(0)):
        with contextlib.suppress(ApiError):
            api.run(api.client.delete(rt, obj["metadata"]["name"], NAMESPACE, propagation_policy="Background"))
    for claim in api.objects(PVCS, NAMESPACE) if _namespace_exists(api) else []:
        with contextlib.suppress(ApiError):
            api.run(api.client.delete(PVCS, claim["metadata"]["name"], NAMESPACE))
        volume = claim.get("spec", {}).get("volumeName")
        if volume:
            with contextlib.suppress(ApiError):
                api.run(api.client.delete(PVS, volume))
    for node in cluster.names("master"):
        with contextlib.suppress(ApiError):
            _set_taint(api, node, False)
    if _namespace_exists(api):
        # Generous: after a master failover the agents may first have to leave a dead server's watch.
        _wait("the suite's pods gone", lambda: not api.objects(PODS, NAMESPACE), timeout=180,
              left=lambda: _pods_left(api))  # fmt: skip


def _namespace_exists(api: Api) -> bool:
    try:
        api.get(NAMESPACES, NAMESPACE)
    except ApiError as e:
        if e.code == 404:
            return False
        raise
    return True
