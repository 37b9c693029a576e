"""HA checks (datastore etcd): etcd healthy on every master, and master failover.

* etcd: on each master the member unit runs, ``etcdctl endpoint health`` (with the member's
  client certificate) answers healthy, and the members are exactly the cluster's masters.
* master failover: the machine of the master that holds the controller leader Lease
  (``kube-system/kubelite-controller-manager``, holder ``<hostname>_<uuid>``) is powered off (an ssh
  host: its kubelite and etcd units stopped). The API must keep answering through the other masters
  (the suite's client has every server of the kubeconfig), another master must take the Lease, and a
  new Deployment must still be scheduled and Running; then the machine comes back and rejoins.
  Figures: the longest gap between two answers of the API, the time until the new leader holds the
  Lease, until the new Deployment runs, and until the master is Ready again.

A cluster with one master (sqlite) has neither: these checks skip, saying so.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from testinfra.host import Host

from kubelite.client import ApiError
from kubelite.client.rest import ApiConnectionError
from kubelite.controllers.base import DEPLOYMENTS, LEASES, PODS
from kubelite.controllers.leaderelection import LeaderElectionConfig
from kubelite.provision.credentials import ETCD_TLS, SERVER_TLS
from kubelite.provision.deployer import API_PORT
from kubelite.provision.providers.base import wait_for_ssh
from tests.infra.cluster import Api, InfraCluster, node_ready, retry
from tests.infra.workloads import IMAGE, Workloads

ETCD_CLIENT_PORT = 2379
ETCD_UNIT = "kubelite-etcd"
TAKEOVER_TIMEOUT = 60.0  # the Lease lasts 15 s by default; a busy 2-core machine needs slack
SCHEDULE_TIMEOUT = 90.0
REJOIN_TIMEOUT = 120.0
LEASE = LeaderElectionConfig()  # its name and namespace: the defaults every server uses


def _needs_etcd(cluster: InfraCluster) -> None:
    if cluster.spec.datastore != "etcd":
        pytest.skip(f"cluster {cluster.name} has one master on {cluster.spec.datastore}: no etcd")


def etcdctl(address: str, *args: str) -> str:
    """The etcdctl command line for the member at ``address``, with the member's client certificate."""
    certs = f"--cacert {ETCD_TLS}/ca.crt --cert {ETCD_TLS}/client.crt --key {ETCD_TLS}/client.key"
    return f"ETCDCTL_API=3 etcdctl --endpoints https://{address}:{ETCD_CLIENT_PORT} {certs} --command-timeout 5s " + " ".join(
        shlex.quote(a) for a in args
    )


def _etcd_problems(cluster: InfraCluster, host: Host, machine: str) -> list[str]:
    problems = []
    service = host.service(ETCD_UNIT)
    if not service.is_running:
        problems.append(f"{ETCD_UNIT}.service is not running")
    if not service.is_enabled:
        problems.append(f"{ETCD_UNIT}.service is not enabled")
    address = cluster.machine(machine).address
    health = host.run(etcdctl(address, "endpoint", "health"))
    said = (health.stdout + health.stderr).strip()  # etcdctl 3.4 reports health on stderr
    if health.rc != 0 or f"https://{address}:{ETCD_CLIENT_PORT} is healthy" not in said:
        problems.append(f"etcd at {address}:{ETCD_CLIENT_PORT} is not healthy: {said[-300:]}")
        return problems
    members = host.run(etcdctl(address, "member", "list", "-w", "simple"))
    names = sorted(line.split(", ")[2] for line in members.stdout.splitlines() if line.count(", ") >= 3)
    if names != sorted(cluster.names("master")):
        problems.append(f"etcd members are {names or members.stderr.strip()}, the masters are {sorted(cluster.names('master'))}")
    return problems


@pytest.mark.roles("master")
def test_etcd_healthy(host: Host, machine: str, cluster: InfraCluster) -> None:
    _needs_etcd(cluster)
    problems = retry(lambda: _etcd_problems(cluster, host, machine), 30.0, interval=2.0)
    assert not problems, f"{machine}: {'; '.join(problems)}"


# -- master failover -----------------------------------------------------------------------------


@dataclass
class MasterFailover:
    victim: str
    holder_before: str
    answers_while_off: int = 0
    errors_while_off: list[str] = field(default_factory=list)  # "<error> after <s> s", per failed request
    longest_gap: float = 0.0  # seconds between two answers of the API after the power-off
    holder_after: str = ""
    takeover_after: float | None = None
    running_after: float | None = None  # the new Deployment's pods Running, seconds after the power-off
    scheduled_on: list[str] | None = None
    rejoined_after: float | None = None
    problems_after: list[str] | None = None


def _holder(api: Api) -> str:
    lease = api.get(LEASES, LEASE.name, LEASE.namespace)
    return str(lease.get("spec", {}).get("holderIdentity") or "")


def _machine_of(cluster: InfraCluster, holder: str) -> str:
    """The master whose hostname starts the holder identity ``<hostname>_<uuid>``."""
    hostname = holder.rsplit("_", 1)[0]
    for name in cluster.names("master"):
        if name == hostname or cluster.connect(name).check_output("hostname") == hostname:
            return name
    raise AssertionError(f"the leader Lease holder {holder!r} is none of the masters {cluster.names('master')}")


def deployment_avoiding(victim: str, name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"metadata": {"name": name, "labels": {"kubelite.test/infra": "suite"}}, "spec": {
        "replicas": 2, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "terminationGracePeriodSeconds": 1,
            # Off the stopped master: its node is still Ready for the API until the grace period ends.
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [victim]}]}]}}},
            # The default pull policy: a node that never ran the image pulls it from a registry on
            # a master that is still up.
            "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "1000000"]}]}}}}  # fmt: skip


def _running(api: Api, namespace: str, app: str) -> list[dict[str, Any]]:
    return [p for p in api.objects(PODS, namespace, label_selector=f"app={app}")
            if p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]  # fmt: skip


def _stop(cluster: InfraCluster, name: str) -> None:
    if cluster.powers_machines:
        cluster.power_off(name)
    else:  # never the power of someone's host: its control plane and etcd member only
        cluster.connect(name).run(f"systemctl stop kubelite-agent kubelite-server {ETCD_UNIT}")


def _start(cluster: InfraCluster, name: str) -> None:
    if cluster.powers_machines:
        cluster.power_on(name)
        wait_for_ssh(cluster.machine(name).address, 60)
    else:
        cluster.connect(name).run(f"systemctl start {ETCD_UNIT} kubelite-server kubelite-agent")


def _master_back(cluster: InfraCluster, api: Api, name: str) -> list[str]:
    host = cluster.connect(name)
    problems = _etcd_problems(cluster, host, name)
    ready = host.run(
        f"python3 -c \"import ssl, urllib.request as u; ctx = ssl.create_default_context(cafile='{SERVER_TLS}/ca.crt'); "
        f"print(u.urlopen('https://127.0.0.1:{API_PORT}/readyz', timeout=3, context=ctx).status)\""
    )
    if ready.stdout.strip() != "200":
        problems.append(f"its API server is not ready: {(ready.stderr or ready.stdout).strip()[-200:]}")
    node = api.nodes().get(name)
    if node is None or not node_ready(node):
        problems.append(f"Node {name} is not Ready")
    return problems


@pytest.fixture(scope="module")
def master_failover(cluster: InfraCluster, api: Api, workloads: Workloads) -> Iterator[MasterFailover]:
    _needs_etcd(cluster)
    if len(cluster.names("master")) < 3:
        pytest.skip("master failover needs 3 masters: etcd keeps its quorum with one of them down")
    holder = _holder(api)
    assert holder, f"no server holds the leader Lease {LEASE.namespace}/{LEASE.name}"
    run = MasterFailover(_machine_of(cluster, holder), holder)
    app = f"ha-{secrets.token_hex(3)}"
    t0 = time.monotonic()
    _stop(cluster, run.victim)
    try:
        last_answer = t0
        created = False
        while time.monotonic() - t0 < TAKEOVER_TIMEOUT + SCHEDULE_TIMEOUT:
            asked = time.monotonic()
            try:
                holder_now = _holder(api)
                if created:
                    running = _running(api, workloads.namespace, app)
                    if len(running) == 2 and run.running_after is None:
                        run.running_after = time.monotonic() - t0
                        run.scheduled_on = sorted(p["spec"]["nodeName"] for p in running)
            except (ApiError, ApiConnectionError, TimeoutError, OSError) as e:
                run.errors_while_off.append(f"{type(e).__name__} after {time.monotonic() - asked:.1f} s")
            else:
                now = time.monotonic()
                run.answers_while_off += 1
                run.longest_gap = max(run.longest_gap, now - last_answer)
                last_answer = now
                if run.takeover_after is None and holder_now and holder_now != holder:
                    run.takeover_after = now - t0
                    run.holder_after = holder_now
                if run.takeover_after is not None and not created:
                    # Scheduled by the new leader's scheduler, created through a surviving server.
                    api.run(api.client.create(DEPLOYMENTS, deployment_avoiding(run.victim, app), workloads.namespace))
                    created = True
                if run.running_after is not None:
                    break
            if run.takeover_after is None and time.monotonic() - t0 > TAKEOVER_TIMEOUT:
                break
            time.sleep(0.25)
    finally:
        _start(cluster, run.victim)
    t1 = time.monotonic()
    problems = retry(lambda: _master_back(cluster, api, run.victim), REJOIN_TIMEOUT, interval=2.0)
    if not problems:
        run.rejoined_after = time.monotonic() - t1
    run.problems_after = problems
    yield run
    with contextlib.suppress(ApiError, ApiConnectionError):
        api.run(api.client.delete(DEPLOYMENTS, app, workloads.namespace, propagation_policy="Background"))


def test_api_answers_with_the_leader_master_off(master_failover: MasterFailover, figure: Any) -> None:
    f = master_failover
    failed = f"{len(f.errors_while_off)} failed request(s)" + (f": {', '.join(f.errors_while_off[:3])}" if f.errors_while_off else "")
    figure("master_failover_api_gap_seconds", f"{f.longest_gap:.1f} ({f.victim} off; {failed})")
    assert f.answers_while_off > 0, f"{f.victim} powered off: no other master answered the API"


def test_new_leader_takes_the_lease(master_failover: MasterFailover, cluster: InfraCluster, figure: Any) -> None:
    f = master_failover
    assert f.takeover_after is not None, (
        f"{f.victim} (the leader, {f.holder_before}) powered off: no other server took the Lease "
        f"{LEASE.namespace}/{LEASE.name} within {TAKEOVER_TIMEOUT:.0f} s"
    )
    figure("leader_takeover_seconds", f"{f.takeover_after:.1f} (lease duration {LEASE.lease_duration:.0f} s)")
    assert _machine_of(cluster, f.holder_after) != f.victim, f"the new holder {f.holder_after} runs on the stopped {f.victim}"


def test_scheduling_continues_with_the_leader_master_off(master_failover: MasterFailover, figure: Any) -> None:
    f = master_failover
    assert f.takeover_after is not None, "no new leader: nothing could schedule"
    assert f.running_after is not None, (
        f"with {f.victim} off, a new Deployment's 2 pods were not Running within {SCHEDULE_TIMEOUT:.0f} s of the takeover"
    )
    figure("master_failover_deployment_running_seconds", f"{f.running_after:.1f} (on {', '.join(f.scheduled_on or [])})")


def test_leader_master_rejoins(master_failover: MasterFailover, figure: Any) -> None:
    f = master_failover
    assert f.rejoined_after is not None, f"{f.victim} back on: {'; '.join(f.problems_after or [])}"
    figure("master_rejoin_seconds", f"{f.rejoined_after:.1f} ({f.victim}: etcd healthy, API ready, Node Ready)")
