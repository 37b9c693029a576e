"""Shared pod helpers: readiness, availability, deletion order, template hash, pods from templates,
expectations. Pure functions: tests are data in, answer out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.controllers import podutil
from kubelite.controllers.podutil import (
    Expectations,
    compute_hash,
    deletion_order,
    is_active,
    is_pod_available,
    is_pod_ready,
    pod_from_template,
    templates_equal_ignoring_hash,
)

Obj = dict[str, Any]
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def ts(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    *,
    node: str | None = None,
    phase: str | None = None,
    ready: bool | None = None,
    ready_at: float = T0,
    created: float = T0,
    deleting: bool = False,
    restarts: int = 0,
    cost: int | None = None,
) -> Obj:
    p: Obj = {
        "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": ts(created)},
        "spec": {},
        "status": {},
    }
    if node:
        p["spec"]["nodeName"] = node
    if phase:
        p["status"]["phase"] = phase
    if ready is not None:
        p["status"]["conditions"] = [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ts(ready_at)}
        ]
    if restarts:
        p["status"]["containerStatuses"] = [{"name": "c", "restartCount": restarts}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = ts(created + 100)
    if cost is not None:
        p["metadata"]["annotations"] = {podutil.POD_DELETION_COST: str(cost)}
    return p


def test_ready_needs_ready_condition_true() -> None:
    assert is_pod_ready(pod("a", phase="Running", ready=True))
    assert not is_pod_ready(pod("a", phase="Running", ready=False))
    assert not is_pod_ready(pod("a", phase="Running"))


@pytest.mark.parametrize(
    ("min_ready", "now", "expected"),
    [(0, T0, True), (10, T0 + 9, False), (10, T0 + 10, True), (10, T0 + 60, True)],
)
def test_available_after_min_ready_seconds(min_ready: int, now: float, expected: bool) -> None:
    assert is_pod_available(pod("a", phase="Running", ready=True, ready_at=T0), min_ready, now) is expected


def test_unready_pod_is_never_available() -> None:
    assert not is_pod_available(pod("a", phase="Running", ready=False), 0, T0 + 1000)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (pod("a"), True),
        (pod("a", phase="Running"), True),
        (pod("a", phase="Succeeded"), False),
        (pod("a", phase="Failed"), False),
        (pod("a", phase="Running", deleting=True), False),
    ],
)
def test_is_active(p: Obj, expected: bool) -> None:
    assert is_active(p) is expected


def names(pods: list[Obj]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_deletion_order_follows_kubernetes_ranking() -> None:
    pods = [
        pod("ready-old", node="n", phase="Running", ready=True, ready_at=T0, created=T0),
        pod("ready-recently", node="n", phase="Running", ready=True, ready_at=T0 + 50, created=T0),
        pod("running-unready", node="n", phase="Running", ready=False),
        pod("pending", node="n", phase="Pending"),
        pod("unscheduled", phase="Pending"),
        pod("unknown", node="n", phase="Unknown"),
    ]
    assert names(deletion_order(pods)) == [
        "unscheduled", "pending", "unknown", "running-unready", "ready-recently", "ready-old",
    ]  # fmt: skip


def test_deletion_order_tie_breakers() -> None:
    pods = [
        pod("older", node="n", phase="Running", ready=True, created=T0),
        pod("newer", node="n", phase="Running", ready=True, created=T0 + 5),
        pod("restarty", node="n", phase="Running", ready=True, created=T0, restarts=3),
        pod("cheap", node="n", phase="Running", ready=True, created=T0, cost=-10),
    ]
    assert names(deletion_order(pods)) == ["cheap", "restarty", "newer", "older"]


def test_deletion_order_does_not_mutate() -> None:
    pods = [pod("b", created=T0), pod("a", created=T0 + 1)]
    before = copy.deepcopy(pods)
    deletion_order(pods)
    assert pods == before


TEMPLATE: Obj = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
}


def test_hash_is_stable_and_name_safe() -> None:
    h = compute_hash(TEMPLATE)
    assert h == compute_hash(copy.deepcopy(TEMPLATE))
    # Key order does not matter (the JSON is key-sorted before hashing).
    reordered = {"spec": TEMPLATE["spec"], "metadata": TEMPLATE["metadata"]}
    assert compute_hash(reordered) == h
    assert h and set(h) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_hash_changes_with_template_and_collision_count() -> None:
    changed = copy.deepcopy(TEMPLATE)
    changed["spec"]["containers"][0]["image"] = "nginx:2"
    h = compute_hash(TEMPLATE)
    assert compute_hash(changed) != h
    assert compute_hash(TEMPLATE, 1) not in (h, compute_hash(TEMPLATE, 2))
    assert compute_hash(TEMPLATE, 0) == h  # no collisions yet is the same as none recorded


def test_hash_ignores_its_own_label() -> None:
    labelled = copy.deepcopy(TEMPLATE)
    labelled["metadata"]["labels"][podutil.POD_TEMPLATE_HASH_LABEL] = "xyz"
    assert compute_hash(labelled) == compute_hash(TEMPLATE)
    assert templates_equal_ignoring_hash(labelled, TEMPLATE)
    labelled["spec"]["containers"][0]["image"] = "nginx:2"
    assert not templates_equal_ignoring_hash(labelled, TEMPLATE)


def test_pod_from_template() -> None:
    owner: Obj = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-abc", "namespace": "prod", "uid": "u-1"},
    }  # fmt: skip
    template: Obj = {
        "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["x/y"]},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }
    p = pod_from_template(template, owner, extra_labels={"pod-template-hash": "abc"})
    m = p["metadata"]
    assert p["kind"] == "Pod" and p["apiVersion"] == "v1"
    assert m["generateName"] == "web-abc-" and "name" not in m
    assert m["namespace"] == "prod"
    assert m["labels"] == {"app": "web", "pod-template-hash": "abc"}
    assert m["annotations"] == {"a": "b"} and m["finalizers"] == ["x/y"]
    assert m["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-abc",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert p["spec"] == template["spec"] and p["spec"] is not template["spec"]
    fixed = pod_from_template(template, owner, name="web-0")
    assert fixed["metadata"]["name"] == "web-0" and "generateName" not in fixed["metadata"]
    assert template["metadata"]["labels"] == {"app": "web"}  # the template is not touched


def test_expectations_creations() -> None:
    e = Expectations()
    assert e.satisfied("ns/rs")
    e.expect_creations("ns/rs", 3)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs") and e.pending("ns/rs") == (1, 0)
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")


def test_expectations_deletions_count_each_pod_once() -> None:
    e = Expectations()
    e.expect_deletions("k", ["a", "b"])
    e.deletion_observed("k", "a")  # seen terminating ...
    e.deletion_observed("k", "a")  # ... and then gone: still one
    assert not e.satisfied("k")
    e.deletion_observed("k", "b")
    assert e.satisfied("k")


def test_expectations_expire() -> None:
    e = Expectations(ttl=0.0)
    e.expect_creations("k", 5)
    import time

    time.sleep(0.01)
    assert e.satisfied("k")  # a lost watch event must not wedge the controller
    e.forget("k")
    assert e.pending("k") == (0, 0)
