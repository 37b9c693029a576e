"""The testinfra suite against a provisioned kubelite cluster: ``pytest tests/infra --cluster NAME``.

``kubelite cluster test NAME`` runs the same (and writes ``infra-report.xml`` and ``infra-report.txt``
into the cluster's state dir). Hosts come from the cluster's state dir, not from ``--hosts``: the
suite needs to know each machine's role and how to power it off, which a bare host list lacks.

A check is a plain function of ``host``, parametrized here over the cluster's machines (every one,
or only those of the roles named by ``@pytest.mark.roles("master")``); its id is the node name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testinfra.host import Host

from kubelite.provision.errors import ProvisionError
from tests.infra.cluster import Api, InfraCluster
from tests.infra.report import InfraReport
from tests.infra.workloads import Workloads, apply_workloads, remove_workloads

_CLUSTER = pytest.StashKey[InfraCluster]()
_REPORT = pytest.StashKey[InfraReport]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubelite-infra")
    group.addoption("--cluster", default=os.environ.get("KUBELITE_CLUSTER"),
                    help="The kubelite cluster to check (its state dir holds machines, key, kubeconfig)")  # fmt: skip
    group.addoption("--infra-report", default=None,
                    help="Where to write the readable summary (default: <state dir>/infra-report.txt)")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "roles(*roles): run the check only on machines of these roles")
    name = config.getoption("--cluster")
    if not name:
        raise pytest.UsageError("tests/infra checks a cluster: give --cluster NAME (or KUBELITE_CLUSTER)")
    try:
        cluster = InfraCluster.load(name)
    except ProvisionError as e:
        raise pytest.UsageError(str(e)) from None
    if not cluster.machines:
        raise pytest.UsageError(f"cluster {name} has no machines (state dir {cluster.state.dir})")
    config.stash[_CLUSTER] = cluster
    path = config.getoption("--infra-report")
    report = InfraReport(name, Path(path) if path else cluster.state.dir / "infra-report.txt")
    config.stash[_REPORT] = report
    config.pluginmanager.register(report, "kubelite-infra-report")


def pytest_unconfigure(config: pytest.Config) -> None:
    cluster = config.stash.get(_CLUSTER, None)
    if cluster is not None:
        cluster.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "host" not in metafunc.fixturenames:
        return
    cluster = metafunc.config.stash[_CLUSTER]
    marker = metafunc.definition.get_closest_marker("roles")
    roles = set(marker.args) if marker else {"master", "worker"}
    names = [m.name for m in cluster.machines if m.role in roles]
    metafunc.parametrize("host", names, ids=names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def host(request: pytest.FixtureRequest, cluster: InfraCluster) -> Host:
    """One machine of the cluster (overrides testinfra's own, which reads --hosts)."""
    return cluster.connect(str(request.param))


@pytest.fixture
def machine(host: Host) -> str:
    """The node name of ``host``."""
    return str(host.backend.get_hostname())


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> InfraCluster:
    return pytestconfig.stash[_CLUSTER]


@pytest.fixture(scope="session")
def api(cluster: InfraCluster) -> Iterator[Api]:
    client = Api(cluster.state.kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="session")
def workloads(cluster: InfraCluster, api: Api) -> Iterator[Workloads]:
    """The suite's Deployment, Service, StatefulSet, DaemonSet and tainted node, for every check that needs them."""
    w = apply_workloads(cluster, api)
    yield w
    remove_workloads(cluster, api)


@pytest.fixture
def figure(
    pytestconfig: pytest.Config, record_testsuite_property: Callable[[str, object], None]
) -> Callable[[str, str], None]:
    """Record a measured figure: shown in the summary and written into the JUnit XML."""

    def record(name: str, value: str) -> None:
        pytestconfig.stash[_REPORT].record(name, value)
        record_testsuite_property(name, value)

    return record


# -- a node added during the run (tests/infra/test_daemonsets.py) -----------------------------------
# Appended as a wrapper so this file's other sections stay as they are: pytest calls the last
# `pytest_addoption` of a conftest, which therefore chains to the one above.
_addoption_before_add_node = pytest_addoption


def pytest_addoption(parser: pytest.Parser) -> None:  # type: ignore[no-redef]
    _addoption_before_add_node(parser)
    parser.getgroup("kubelite-infra").addoption(
        "--no-add-node", action="store_true", default=bool(os.environ.get("KUBELITE_INFRA_NO_ADD_NODE")),
        help="Do not add (and remove) a worker during the run: for providers that cannot create machines (ssh)",
    )
