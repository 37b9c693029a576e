"""Node object construction and the agent's flag syntax."""

from __future__ import annotations

import pytest

from kubelite import KUBE_VERSION
from kubelite.agent.node import (
    NodeConfig,
    build_lease,
    build_node,
    conditions_differ,
    node_conditions,
    parse_labels,
    parse_taints,
)
from kubelite.api.registry import by_path
from kubelite.api.validation import validate

NOW = "2026-01-01T00:00:00Z"


def _config(**kw: object) -> NodeConfig:
    base = NodeConfig(name="n1", node_ip="10.0.0.7", labels={"zone": "a"},
                      taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}], hollow=True)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def test_build_node() -> None:
    node = build_node(_config(), node_conditions(True, "", None, NOW))
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "n1" and labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] and labels["zone"] == "a"
    assert node["spec"] == {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}
    assert "podCIDR" not in node["spec"]
    st = node["status"]
    assert st["capacity"]["cpu"] == "4" and st["capacity"]["memory"] == "8Gi" and st["capacity"]["pods"] == "110"
    assert st["allocatable"] == st["capacity"]
    assert {"type": "InternalIP", "address": "10.0.0.7"} in st["addresses"]
    assert {"type": "Hostname", "address": "n1"} in st["addresses"]
    info = st["nodeInfo"]
    assert info["kubeletVersion"] == KUBE_VERSION and info["containerRuntimeVersion"] == "fake://0.1"
    assert info["operatingSystem"] == "linux" and info["osImage"] and info["kernelVersion"] and info["architecture"]
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
    conds = {c["type"]: c for c in st["conditions"]}
    assert set(conds) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert conds["Ready"]["status"] == "True" and conds["MemoryPressure"]["status"] == "False"
    assert all(c["lastHeartbeatTime"] == NOW and c["lastTransitionTime"] == NOW for c in conds.values())
    rt = by_path("", "v1", "nodes")
    assert rt is not None
    validate(rt, node)  # the server would accept it


def test_conditions_keep_transition_time_until_status_changes() -> None:
    first = node_conditions(True, "", None, NOW)
    later = node_conditions(True, "", first, "2026-01-01T00:01:00Z")
    assert all(c["lastTransitionTime"] == NOW and c["lastHeartbeatTime"] == "2026-01-01T00:01:00Z" for c in later)
    assert not conditions_differ(first, later)
    down = node_conditions(False, "container runtime is down", later, "2026-01-01T00:02:00Z")
    ready = next(c for c in down if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["lastTransitionTime"] == "2026-01-01T00:02:00Z"
    assert ready["message"] == "container runtime is down"
    assert conditions_differ(later, down)


def test_lease() -> None:
    lease = build_lease(_config(), "uid-1")
    assert lease["metadata"] == {"name": "n1", "namespace": "kube-node-lease", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-1"}]}
    assert lease["spec"]["holderIdentity"] == "n1" and lease["spec"]["leaseDurationSeconds"] == 40
    renew = lease["spec"]["renewTime"]
    assert len(renew) == len("2026-01-01T00:00:00.000000Z") and renew.endswith("Z") and renew[19] == "."


def test_parse_labels() -> None:
    assert parse_labels("") == {}
    assert parse_labels("a=1, example.com/role=db,empty=") == {"a": "1", "example.com/role": "db", "empty": ""}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("novalue", "invalid label 'novalue': expected key=value"),
        ("bad key=x", "invalid label key 'bad key'"),
        ("=x", "invalid label key ''"),
        ("k=not valid", "invalid label value 'not valid' for k"),
    ],
)
def test_parse_labels_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")) as exc:
        parse_labels(text)
    assert "\n" not in str(exc.value)


def test_parse_taints() -> None:
    assert parse_taints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule") == [
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": "spot", "effect": "PreferNoSchedule"},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dedicated=gpu", "invalid taint 'dedicated=gpu': expected key=value:Effect or key:Effect"),
        ("k=v:Sometimes", "invalid taint effect 'Sometimes' in 'k=v:Sometimes'"),
        (":NoSchedule", "invalid taint ':NoSchedule'"),
        ("bad key:NoSchedule", "invalid taint key 'bad key'"),
        ("k=v v:NoExecute", "invalid taint value 'v v'"),
        ("k:NoSchedule,k=x:NoSchedule", "duplicate taint k:NoSchedule"),
    ],
)
def test_parse_taints_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_taints(text)
    assert str(exc.value).startswith(message)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cpu": "lots"}, "invalid --cpu/--memory quantity"),
        ({"memory": "0"}, "--cpu and --memory must be greater than 0"),
        ({"max_pods": 0}, "--max-pods must be greater than 0"),
        ({"node_ip": "host"}, "--node-ip 'host' is not an IP address"),
        ({"fencing_period": 1.0}, "--fencing-period must be longer than --heartbeat-interval"),
    ],
)
def test_config_validation(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        _config(**changes).validate()
    assert str(exc.value).startswith(message)
