"""The per-kind table printers: pure functions of (kind, object, now)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelite.api import printers
from kubelite.api.registry import RESOURCES, lookup
from kubelite.cli.get import TableSpec, render_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ts(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells(kind: str, obj: dict[str, Any], wide: bool = False) -> dict[str, Any]:
    """Column name -> cell, for readable assertions."""
    rt = lookup(kind)
    cols = printers.columns(rt)
    row = printers.row(rt, obj, NOW)
    assert len(row) == len(cols), "a row must have one cell per column"
    return {c.name.upper(): v for c, v in zip(cols, row, strict=True) if wide or c.priority == 0}


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 7 * 60, "5h7m"),
        (30 * 3600, "30h"),
        (2 * 86400, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (100 * 86400, "100d"),
        (3 * 365 * 86400, "3y"),
        (3 * 365 * 86400 + 5 * 86400, "3y5d"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_human_duration_matches_kubectl(seconds: int, expected: str) -> None:
    assert printers.human_duration(seconds) == expected


def test_age_of_missing_timestamp_is_unknown() -> None:
    assert printers.age(None, NOW) == "<unknown>"
    assert printers.age("not a time", NOW) == "<unknown>"


def _pod(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": ts(timedelta(minutes=5))},
        "spec": {"nodeName": "node-a", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": status,
    }


def test_pod_row_running() -> None:
    pod = _pod(
        phase="Running",
        podIP="10.42.0.7",
        containerStatuses=[
            {"name": "a", "ready": True, "restartCount": 1, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ts(timedelta(seconds=30))}}},
            {"name": "b", "ready": False, "restartCount": 2, "state": {"running": {}}},
        ],
    )
    assert cells("pods", pod) == {
        "NAME": "web-1", "READY": "1/2", "STATUS": "Running", "RESTARTS": "3 (30s ago)", "AGE": "5m",
    }
    wide = cells("pods", pod, wide=True)
    assert wide["IP"] == "10.42.0.7"
    assert wide["NODE"] == "node-a"


def test_pod_status_prefers_container_waiting_reason() -> None:
    pod = _pod(phase="Pending", containerStatuses=[
        {"name": "a", "ready": False, "state": {"waiting": {"reason": "ImagePullBackOff"}}},
        {"name": "b", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}},
    ])
    # kubectl walks containers from the last one, so the first container's reason wins.
    assert cells("pods", pod)["STATUS"] == "ImagePullBackOff"


def test_pod_status_init_and_terminating() -> None:
    pod = _pod(phase="Pending", initContainerStatuses=[{"name": "i", "state": {"running": {}}}])
    pod["spec"]["initContainers"] = [{"name": "i"}]
    assert cells("pods", pod)["STATUS"] == "Init:0/1"
    pod = _pod(phase="Running")
    pod["metadata"]["deletionTimestamp"] = ts(timedelta(0))
    assert cells("pods", pod)["STATUS"] == "Terminating"


def test_pod_without_status_shows_placeholders() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    row = cells("pods", pod, wide=True)
    assert row["READY"] == "0/1"
    assert row["STATUS"] == "Pending"
    assert row["IP"] == "<none>"
    assert row["NODE"] == "<none>"
    assert row["AGE"] == "<unknown>"


def test_deployment_row() -> None:
    d = {
        "metadata": {"name": "web", "creationTimestamp": ts(timedelta(days=2))},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "httpd", "image": "busybox:latest"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("deploy", d) == {"NAME": "web", "READY": "2/3", "UP-TO-DATE": 3, "AVAILABLE": 2, "AGE": "2d"}
    wide = cells("deploy", d, wide=True)
    assert (wide["CONTAINERS"], wide["IMAGES"], wide["SELECTOR"]) == ("httpd", "busybox:latest", "app=web")


def test_replicaset_statefulset_daemonset_rows() -> None:
    rs = {"metadata": {"name": "web-abc"}, "spec": {"replicas": 3}, "status": {"replicas": 3, "readyReplicas": 1}}
    assert cells("rs", rs) == {"NAME": "web-abc", "DESIRED": 3, "CURRENT": 3, "READY": 1, "AGE": "<unknown>"}
    sts = {"metadata": {"name": "db"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    assert cells("sts", sts)["READY"] == "1/2"
    ds = {
        "metadata": {"name": "agent"},
        "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                   "updatedNumberScheduled": 2, "numberAvailable": 1},
    }
    assert cells("ds", ds) == {
        "NAME": "agent", "DESIRED": 2, "CURRENT": 2, "READY": 1, "UP-TO-DATE": 2, "AVAILABLE": 1,
        "NODE SELECTOR": "kubernetes.io/os=linux", "AGE": "<unknown>",
    }


def test_service_rows() -> None:
    svc = {"metadata": {"name": "web"},
           "spec": {"clusterIP": "10.43.0.10", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}
    assert cells("svc", svc) == {
        "NAME": "web", "TYPE": "ClusterIP", "CLUSTER-IP": "10.43.0.10", "EXTERNAL-IP": "<none>",
        "PORT(S)": "80/TCP,53/UDP", "AGE": "<unknown>",
    }
    np = {"metadata": {"name": "np"},
          "spec": {"type": "NodePort", "clusterIP": "10.43.0.11", "ports": [{"port": 80, "nodePort": 30080}]}}
    assert cells("svc", np)["PORT(S)"] == "80:30080/TCP"
    lb = {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.12"}}
    assert cells("svc", lb)["EXTERNAL-IP"] == "<pending>"
    headless = {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 7000}]}}
    assert cells("svc", headless)["CLUSTER-IP"] == "None"


def test_endpoints_row_truncates_like_kubectl() -> None:
    ep = {"metadata": {"name": "web"},
          "subsets": [{"addresses": [{"ip": f"10.42.0.{i}"} for i in range(1, 6)], "ports": [{"port": 8080}]}]}
    assert cells("ep", ep)["ENDPOINTS"] == "10.42.0.1:8080,10.42.0.2:8080,10.42.0.3:8080 + 2 more..."
    assert cells("ep", {"metadata": {"name": "x"}})["ENDPOINTS"] == "<none>"


def test_node_row() -> None:
    node: dict[str, Any] = {
        "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "x": "y"}},
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "nodeInfo": {"kubeletVersion": "v1.31.0"},
                   "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}]},
    }
    row = cells("nodes", node, wide=True)
    assert row["STATUS"] == "Ready,SchedulingDisabled"
    assert row["ROLES"] == "control-plane"
    assert row["VERSION"] == "v1.31.0"
    assert row["INTERNAL-IP"] == "192.168.1.5"
    node["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    node["spec"] = {}
    assert cells("nodes", node)["STATUS"] == "NotReady"
    assert cells("nodes", {"metadata": {"name": "n2"}})["ROLES"] == "<none>"


def test_small_kinds() -> None:
    assert cells("ns", {"metadata": {"name": "a"}, "status": {"phase": "Terminating"}})["STATUS"] == "Terminating"
    assert cells("cm", {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}})["DATA"] == 3
    assert cells("secret", {"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}) == {
        "NAME": "s", "TYPE": "kubernetes.io/tls", "DATA": 1, "AGE": "<unknown>",
    }
    assert cells("lease", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-1"}})["HOLDER"] == "node-1"


def test_event_row_has_no_name_column_by_default() -> None:
    ev = {"metadata": {"name": "web.1"}, "type": "Warning", "reason": "BackOff", "message": "Back-off\n",
          "involvedObject": {"kind": "Pod", "name": "web-1"}, "lastTimestamp": ts(timedelta(seconds=42)),
          "count": 4}
    assert cells("events", ev) == {
        "LAST SEEN": "42s", "TYPE": "Warning", "REASON": "BackOff", "OBJECT": "pod/web-1", "MESSAGE": "Back-off",
    }
    assert cells("events", ev, wide=True)["COUNT"] == 4
    assert printers.name_column_index(lookup("events")) is None


def test_pvc_and_pv_rows() -> None:
    pvc = {"metadata": {"name": "data-db-0"}, "spec": {"volumeName": "pv-1", "storageClassName": "local"},
           "status": {"phase": "Bound", "capacity": {"storage": "64Mi"}, "accessModes": ["ReadWriteOnce"]}}
    assert cells("pvc", pvc) == {
        "NAME": "data-db-0", "STATUS": "Bound", "VOLUME": "pv-1", "CAPACITY": "64Mi", "ACCESS MODES": "RWO",
        "STORAGECLASS": "local", "AGE": "<unknown>",
    }
    assert cells("pvc", {"metadata": {"name": "p"}, "spec": {}})["STATUS"] == "Pending"
    pv = {"metadata": {"name": "pv-1"},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadOnlyMany"],
                   "claimRef": {"namespace": "default", "name": "data-db-0"}},
          "status": {"phase": "Bound"}}
    row = cells("pv", pv)
    assert (row["CAPACITY"], row["ACCESS MODES"], row["CLAIM"], row["STATUS"]) == (
        "1Gi", "RWX,ROX", "default/data-db-0", "Bound"
    )


@pytest.mark.parametrize("rt", RESOURCES, ids=lambda r: r.plural)
def test_every_kind_prints_an_empty_object(rt: Any) -> None:
    """No printer may crash on a bare object (a watch can deliver one without spec/status)."""
    row = printers.row(rt, {"metadata": {"name": "x"}}, NOW)
    cols = printers.columns(rt)
    assert len(row) == len(cols)
    assert all(c.type in ("string", "integer", "date") for c in cols)


def test_table_spec_adds_namespace_and_kind_prefix() -> None:
    spec = TableSpec(lookup("deploy"), wide=False, with_namespace=True, with_kind=True)
    d = {"metadata": {"name": "web", "namespace": "prod"}, "spec": {"replicas": 1}}
    assert spec.header() == ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert spec.cells(d, NOW)[:2] == ["prod", "deployment.apps/web"]
    # Cluster-scoped kinds never get a NAMESPACE column.
    assert TableSpec(lookup("nodes"), False, True, False).header()[0] == "NAME"


def test_render_table_is_plain_and_aligned_without_a_tty() -> None:
    out = render_table(["NAME", "DATA"], [["a", "1"], ["long-name", "[b]"]], tty=False)
    lines = out.splitlines()
    assert lines == ["NAME        DATA", "a           1", "long-name   [b]"]
    assert "\x1b" not in out
