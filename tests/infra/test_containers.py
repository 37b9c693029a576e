"""Container checks: what the API says runs on a node really runs there, isolated and limited, and nothing else.

Seen from the machine, for the runtime its agent uses: runc (``runc list``) or Docker (``docker ps``,
``docker inspect``), then the container's init process in ``/proc`` (the logic is in containers.py).
"""

from __future__ import annotations

import pytest
from testinfra.host import Host

from tests.infra.cluster import Api, InfraCluster, retry
from tests.infra.containers import isolation_problems, missing_container_problems, stray_container_problems
from tests.infra.workloads import Workloads

SETTLE = 15.0  # a pod just bound or just deleted takes the agent a moment


@pytest.fixture(autouse=True)
def _runtime(cluster: InfraCluster, workloads: Workloads) -> None:
    if cluster.spec.runtime == "fake":
        pytest.skip("the fake runtime runs no containers to look at")


def test_api_pods_run_on_their_machine(host: Host, machine: str, api: Api) -> None:
    problems = retry(lambda: missing_container_problems(host, machine, api), SETTLE)
    assert not problems, "; ".join(problems)


def test_containers_isolated_and_limited(host: Host, machine: str, api: Api) -> None:
    problems = isolation_problems(host, machine, api)
    assert not problems, f"{machine}: " + "; ".join(problems)


def test_no_container_without_a_pod_bound_here(host: Host, machine: str, api: Api) -> None:
    problems = retry(lambda: stray_container_problems(host, machine, api), SETTLE)
    assert not problems, "; ".join(problems)
