"""Strategic merge patch, table-driven, mirroring k8s.io/apimachinery/pkg/util/strategicpatch tests
and the patches kubectl apply (three-way diff) really sends."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client import models as k8s_models

from kubelite.api.registry import ResourceType, by_path
from kubelite.api.strategic import PATCH_META, StrategicPatchError, _field, strategic_merge_patch


def _rt(group: str, plural: str) -> ResourceType:
    rt = by_path(group, "v1", plural)
    assert rt is not None
    return rt


POD = _rt("", "pods")
NODE = _rt("", "nodes")
SVC = _rt("", "services")
CM = _rt("", "configmaps")
NS = _rt("", "namespaces")
DEPLOY = _rt("apps", "deployments")
# A type without a schema: everything merges as plain maps, lists replace.
NOSCHEMA = ResourceType("example.com", "v1", "widgets", "Widget", True)


def c(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, **kw}


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def deploy(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "replicas": 1,
            **spec,
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}},
        },
    }


def tmpl(patch_spec: dict[str, Any]) -> dict[str, Any]:
    """A Deployment patch touching only spec.template.spec, as kubectl nests it."""
    return {"spec": {"template": {"spec": patch_spec}}}


# Server-defaulted container, as a real GET would return it (fields kubectl apply never sent).
SERVER_APP = c(
    "app",
    image="nginx:1.25",
    imagePullPolicy="IfNotPresent",
    terminationMessagePath="/dev/termination-log",
    env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    ports=[{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
    resources={},
)

CASES: list[tuple[str, ResourceType, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # --- merge by key -------------------------------------------------------------------------
    (
        "merge-by-key-updates-matching-item",
        POD,
        pod(containers=[c("a", image="a:1", args=["x"]), c("b", image="b:1")]),
        {"spec": {"containers": [c("b", image="b:2")]}},
        pod(containers=[c("a", image="a:1", args=["x"]), c("b", image="b:2")]),
    ),
    (
        # kubectl patch docs: a new container lands before the existing ones (mergeSortedSlice).
        "merge-by-key-new-item-goes-first",
        POD,
        pod(containers=[c("a", image="a:1")]),
        {"spec": {"containers": [c("b", image="b:1")]}},
        pod(containers=[c("b", image="b:1"), c("a", image="a:1")]),
    ),
    (
        "merge-by-key-patch-order-wins-over-server-order",
        POD,
        pod(containers=[c("a"), c("b"), c("x")]),
        {"spec": {"containers": [c("b", image="b"), c("a", image="a")]}},
        pod(containers=[c("b", image="b"), c("a", image="a"), c("x")]),
    ),
    (
        "merge-by-key-volume-mounts-by-mountPath",
        POD,
        pod(containers=[c("a", volumeMounts=[{"name": "v", "mountPath": "/x", "readOnly": True}])]),
        {"spec": {"containers": [c("a", volumeMounts=[{"name": "w", "mountPath": "/x"}])]}},
        pod(containers=[c("a", volumeMounts=[{"name": "w", "mountPath": "/x", "readOnly": True}])]),
    ),
    (
        "merge-by-key-image-pull-secrets-and-host-aliases",
        POD,
        pod(imagePullSecrets=[{"name": "r1"}], hostAliases=[{"ip": "1.1.1.1", "hostnames": ["a"]}]),
        {"spec": {"imagePullSecrets": [{"name": "r2"}], "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}]}},
        pod(imagePullSecrets=[{"name": "r2"}, {"name": "r1"}], hostAliases=[{"ip": "1.1.1.1", "hostnames": ["b"]}]),
    ),
    (
        "merge-by-key-owner-references-by-uid",
        CM,
        {"metadata": {"name": "m", "ownerReferences": [{"uid": "u1", "name": "x", "kind": "Pod"}]}},
        {"metadata": {"ownerReferences": [{"uid": "u1", "name": "y"}]}},
        {"metadata": {"name": "m", "ownerReferences": [{"uid": "u1", "name": "y", "kind": "Pod"}]}},
    ),
    (
        "merge-by-key-service-ports-by-port",
        SVC,
        {"spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443, "name": "https"}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 9090, "name": "http"}, {"port": 443, "name": "https"}]}},
    ),
    (
        "merge-by-key-pod-status-conditions-by-type",
        POD,
        {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}},
    ),
    (
        "merge-by-key-node-addresses-and-conditions",
        NODE,
        {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}},
        {"status": {"addresses": [{"type": "Hostname", "address": "n1"}],
                    "conditions": [{"type": "Ready", "status": "False"}]}},
        {"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}],
                    "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletReady"}]}},
    ),
    (
        "merge-by-key-deployment-status-conditions",
        DEPLOY,
        {"status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Available", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]}},
    ),
    (
        "merge-by-key-namespace-status-conditions",
        NS,
        {"status": {"phase": "Active", "conditions": [{"type": "A", "status": "True"}]}},
        {"status": {"conditions": [{"type": "A", "status": "False"}]}},
        {"status": {"phase": "Active", "conditions": [{"type": "A", "status": "False"}]}},
    ),
    # --- $patch: delete / replace -------------------------------------------------------------
    (
        "delete-directive-in-merging-list",
        POD,
        pod(containers=[c("a"), c("b"), c("c")]),
        {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}},
        pod(containers=[c("a"), c("c")]),
    ),
    (
        "delete-directive-of-absent-item-is-a-no-op",
        POD,
        pod(containers=[c("a")]),
        {"spec": {"containers": [{"name": "zz", "$patch": "delete"}]}},
        pod(containers=[c("a")]),
    ),
    (
        "replace-directive-in-merging-list",
        POD,
        pod(containers=[c("a", image="a"), c("b", image="b")]),
        {"spec": {"containers": [{"$patch": "replace"}, c("b", args=["new"])]}},
        pod(containers=[c("b", args=["new"])]),
    ),
    (
        "replace-directive-on-map",
        DEPLOY,
        {"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}},
        {"spec": {"selector": {"matchLabels": {"$patch": "replace", "c": "3"}}}},
        {"spec": {"selector": {"matchLabels": {"c": "3"}}}},
    ),
    (
        "delete-directive-on-map-empties-it",
        CM,
        {"metadata": {"name": "m", "labels": {"a": "1"}}, "data": {"k": "v"}},
        {"metadata": {"labels": {"$patch": "delete", "b": "2"}}},
        {"metadata": {"name": "m", "labels": {}}, "data": {"k": "v"}},
    ),
    (
        "merge-directive-on-map-is-a-plain-merge",
        CM,
        {"data": {"a": "1"}},
        {"data": {"$patch": "merge", "b": "2"}},
        {"data": {"a": "1", "b": "2"}},
    ),
    (
        "replace-directive-in-primitive-list",
        CM,
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": [{"$patch": "replace"}, "c"]}},
        {"metadata": {"finalizers": ["c"]}},
    ),
    # --- $setElementOrder ---------------------------------------------------------------------
    (
        "set-element-order-reorders",
        POD,
        pod(containers=[c("a"), c("b"), c("c")]),
        {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
                  "containers": [c("b", image="new")]}},
        pod(containers=[c("c"), c("b", image="new"), c("a")]),
    ),
    (
        "set-element-order-places-new-item-server-only-after",
        POD,
        pod(containers=[c("a"), c("b"), c("sidecar")]),
        {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "new"}],
                  "containers": [c("new", image="n")]}},
        pod(containers=[c("a"), c("b"), c("new", image="n"), c("sidecar")]),
    ),
    (
        "set-element-order-without-list-in-patch-only-reorders",
        POD,
        pod(containers=[c("a"), c("b")]),
        {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}},
        pod(containers=[c("b"), c("a")]),
    ),
    (
        "set-element-order-for-list-absent-from-original",
        POD,
        pod(containers=[c("a")]),
        {"spec": {"$setElementOrder/initContainers": [{"name": "i2"}, {"name": "i1"}],
                  "initContainers": [c("i2"), c("i1")]}},
        pod(containers=[c("a")], initContainers=[c("i2"), c("i1")]),
    ),
    (
        "set-element-order-primitive-list",
        CM,
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c"]}},
        {"metadata": {"finalizers": ["a", "b", "c"]}},
    ),
    # --- $retainKeys --------------------------------------------------------------------------
    (
        "retain-keys-deployment-strategy",
        DEPLOY,
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}},
        {"spec": {"strategy": {"type": "Recreate"}}},
    ),
    (
        "retain-keys-without-explicit-null",
        DEPLOY,
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        {"spec": {"strategy": {"type": "Recreate"}}},
    ),
    (
        "retain-keys-volume-source-switch",
        POD,
        pod(volumes=[{"name": "v", "configMap": {"name": "cm", "defaultMode": 420}}, {"name": "w", "emptyDir": {}}]),
        {"spec": {"$setElementOrder/volumes": [{"name": "v"}, {"name": "w"}],
                  "volumes": [{"$retainKeys": ["name", "secret"], "name": "v", "secret": {"secretName": "s"}}]}},
        pod(volumes=[{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "emptyDir": {}}]),
    ),
    # --- $deleteFromPrimitiveList / primitive union -------------------------------------------
    (
        "delete-from-primitive-list",
        CM,
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}},
        {"metadata": {"finalizers": ["a", "c"]}},
    ),
    (
        "delete-from-primitive-list-with-additions-and-order",
        CM,
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"$setElementOrder/finalizers": ["a", "c", "d"],
                      "$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["d"]}},
        {"metadata": {"finalizers": ["a", "c", "d"]}},
    ),
    (
        # Union; like apimachinery, patch values lead server-only ones when no order is given.
        "primitive-list-union-finalizers",
        CM,
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["b", "c"]}},
        {"metadata": {"finalizers": ["a", "b", "c"]}},
    ),
    (
        "primitive-list-union-new-value-first",
        CM,
        {"metadata": {"finalizers": ["a"]}},
        {"metadata": {"finalizers": ["z"]}},
        {"metadata": {"finalizers": ["z", "a"]}},
    ),
    (
        "primitive-list-union-node-pod-cidrs",
        NODE,
        {"spec": {"podCIDRs": ["10.0.0.0/24"]}},
        {"spec": {"podCIDRs": ["10.0.0.0/24"]}},
        {"spec": {"podCIDRs": ["10.0.0.0/24"]}},
    ),
    # --- null deletion ------------------------------------------------------------------------
    (
        "null-deletes-keys",
        DEPLOY,
        {"metadata": {"name": "d", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 2, "paused": True}},
        {"metadata": {"labels": {"a": None, "zz": None}}, "spec": {"paused": None}},
        {"metadata": {"name": "d", "labels": {"b": "2"}}, "spec": {"replicas": 2}},
    ),
    (
        "null-deletes-whole-list",
        POD,
        pod(containers=[c("a", env=[{"name": "A"}])]),
        {"spec": {"containers": [c("a", env=None)]}},
        pod(containers=[c("a")]),
    ),
    (
        "nulls-inside-new-values-are-dropped",
        CM,
        {"metadata": {"name": "m"}},
        {"metadata": {"labels": {"a": "1", "b": None}}},
        {"metadata": {"name": "m", "labels": {"a": "1"}}},
    ),
    # --- atomic lists -------------------------------------------------------------------------
    (
        "atomic-tolerations-replaced",
        POD,
        pod(tolerations=[{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]),
        {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}},
        pod(tolerations=[{"key": "c", "operator": "Exists"}]),
    ),
    (
        "atomic-args-command-replaced",
        POD,
        pod(containers=[c("a", command=["sh", "-c"], args=["x", "y"])]),
        {"spec": {"containers": [c("a", command=["bash"], args=["z"])]}},
        pod(containers=[c("a", command=["bash"], args=["z"])]),
    ),
    (
        "atomic-node-taints-replaced",
        NODE,
        {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}},
        {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}},
        {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}},
    ),
    (
        "atomic-container-statuses-replaced",
        POD,
        {"status": {"containerStatuses": [{"name": "a", "ready": True}, {"name": "b", "ready": True}]}},
        {"status": {"containerStatuses": [{"name": "a", "ready": False}]}},
        {"status": {"containerStatuses": [{"name": "a", "ready": False}]}},
    ),
    (
        "atomic-readiness-gates-replaced",
        POD,
        pod(readinessGates=[{"conditionType": "x"}]),
        {"spec": {"readinessGates": [{"conditionType": "y"}]}},
        pod(readinessGates=[{"conditionType": "y"}]),
    ),
    # --- nested containers in a Deployment template -------------------------------------------
    (
        "deployment-template-nested-env-merge",
        DEPLOY,
        deploy([c("app", image="x", env=[{"name": "A", "value": "1"}]), c("side", image="s")]),
        tmpl({"containers": [c("app", env=[{"name": "A", "value": "2"}, {"name": "B", "value": "3"}])]}),
        deploy([c("app", image="x", env=[{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]),
                c("side", image="s")]),
    ),
    # --- unknown fields / no schema -----------------------------------------------------------
    (
        "unknown-field-map-merges-list-replaces",
        POD,
        pod(containers=[c("a")], x={"a": 1, "l": [{"name": "p"}, {"name": "q"}]}),
        {"spec": {"x": {"b": 2, "l": [{"name": "q", "v": 1}]}}},
        pod(containers=[c("a")], x={"a": 1, "b": 2, "l": [{"name": "q", "v": 1}]}),
    ),
    (
        "no-schema-lists-replace",
        NOSCHEMA,
        {"spec": {"containers": [{"name": "a"}], "m": {"a": 1}}},
        {"spec": {"containers": [{"name": "b"}], "m": {"b": 2}}},
        {"spec": {"containers": [{"name": "b"}], "m": {"a": 1, "b": 2}}},
    ),
    (
        "configmap-data-map-merge",
        CM,
        {"data": {"a": "1", "b": "2"}},
        {"data": {"b": "3", "c": "4"}},
        {"data": {"a": "1", "b": "3", "c": "4"}},
    ),
    (
        "scalar-replaces-map-and-map-replaces-scalar",
        CM,
        {"data": {"a": "1"}, "x": 5},
        {"data": "s", "x": {"k": {"$patch": "delete"}}},
        {"data": "s", "x": {"k": {}}},
    ),
    # --- kubectl apply three-way patches (as kubectl 1.2x generates them) ---------------------
    (
        "kubectl-apply-change-image",
        DEPLOY,
        deploy([SERVER_APP]),
        tmpl({"$setElementOrder/containers": [{"name": "app"}], "containers": [c("app", image="nginx:1.26")]}),
        deploy([{**SERVER_APP, "image": "nginx:1.26"}]),
    ),
    (
        "kubectl-apply-add-env-var",
        DEPLOY,
        deploy([SERVER_APP]),
        tmpl({"$setElementOrder/containers": [{"name": "app"}],
              "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
                              "env": [{"name": "C", "value": "3"}], "name": "app"}]}),
        deploy([{**SERVER_APP, "env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"},
                                       {"name": "B", "value": "2"}]}]),
    ),
    (
        "kubectl-apply-remove-env-var",
        DEPLOY,
        deploy([SERVER_APP]),
        tmpl({"$setElementOrder/containers": [{"name": "app"}],
              "containers": [{"$setElementOrder/env": [{"name": "B"}],
                              "env": [{"$patch": "delete", "name": "A"}], "name": "app"}]}),
        deploy([{**SERVER_APP, "env": [{"name": "B", "value": "2"}]}]),
    ),
    (
        "kubectl-apply-remove-container-port",
        DEPLOY,
        deploy([SERVER_APP]),
        tmpl({"$setElementOrder/containers": [{"name": "app"}],
              "containers": [{"$setElementOrder/ports": [{"containerPort": 80}], "name": "app",
                              "ports": [{"$patch": "delete", "containerPort": 443}]}]}),
        deploy([{**SERVER_APP, "ports": [{"containerPort": 80, "protocol": "TCP"}]}]),
    ),
    (
        "kubectl-apply-change-replicas",
        DEPLOY,
        deploy([SERVER_APP]),
        {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}"}},
         "spec": {"replicas": 3}},
        {**deploy([SERVER_APP]),
         "metadata": {"name": "d", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}"}},
         "spec": {**deploy([SERVER_APP])["spec"], "replicas": 3}},
    ),
    (
        "kubectl-apply-add-second-container",
        DEPLOY,
        deploy([SERVER_APP]),
        tmpl({"$setElementOrder/containers": [{"name": "app"}, {"name": "log"}],
              "containers": [c("log", image="busybox")]}),
        deploy([SERVER_APP, c("log", image="busybox")]),
    ),
    (
        "kubectl-apply-remove-all-env",
        DEPLOY,
        deploy([SERVER_APP]),
        tmpl({"$setElementOrder/containers": [{"name": "app"}], "containers": [c("app", env=None)]}),
        deploy([{k: v for k, v in SERVER_APP.items() if k != "env"}]),
    ),
]


@pytest.mark.parametrize(("rt", "original", "patch", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_strategic_merge_patch(
    rt: ResourceType, original: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    before_original, before_patch = copy.deepcopy(original), copy.deepcopy(patch)
    result = strategic_merge_patch(rt, original, patch)
    assert result == expected
    assert _directive_keys(result) == []
    # Never mutates its inputs (callers keep the stored object and the request body).
    assert original == before_original
    assert patch == before_patch


def _directive_keys(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("$"):
                found.append(f"{path}.{k}")
            found.extend(_directive_keys(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_directive_keys(v, f"{path}[{i}]"))
    return found


def test_directives_never_stored_when_list_is_new() -> None:
    # The list is missing from the original, so apimachinery would copy the patch value verbatim.
    patch = {"spec": {"containers": [c("a", env=[{"name": "X", "$patch": "delete"}, {"name": "Y"}],
                                       ports=[{"$patch": "replace"}, {"containerPort": 1}])],
                      "volumes": [{"$retainKeys": ["name", "emptyDir"], "name": "v", "emptyDir": {}}],
                      "tolerations": [{"$patch": "delete", "key": "k"}, {"key": "t"}]}}
    result = strategic_merge_patch(POD, {"metadata": {"name": "p"}}, patch)
    assert _directive_keys(result) == []
    assert result["spec"] == {
        "containers": [c("a", env=[{"name": "Y"}], ports=[{"containerPort": 1}])],
        "volumes": [{"name": "v", "emptyDir": {}}],
        "tolerations": [{"key": "t"}],
    }


def test_result_does_not_alias_inputs() -> None:
    original = pod(containers=[c("a", env=[{"name": "A"}])])
    patch = {"spec": {"containers": [c("b", env=[{"name": "B"}])]}}
    result = strategic_merge_patch(POD, original, patch)
    result["spec"]["containers"][0]["env"].append({"name": "Z"})
    result["spec"]["containers"][1]["env"].append({"name": "Z"})
    assert patch["spec"]["containers"][0]["env"] == [{"name": "B"}]
    assert original["spec"]["containers"][0]["env"] == [{"name": "A"}]


INVALID: list[tuple[str, ResourceType, dict[str, Any], Any, str]] = [
    ("non-dict-patch-list", POD, {}, [{"op": "add"}], "must be a JSON object"),
    ("non-dict-patch-string", POD, {}, "x", "must be a JSON object"),
    ("non-dict-patch-null", POD, {}, None, "must be a JSON object"),
    ("unknown-patch-directive-on-map", CM, {"data": {"a": "1"}}, {"data": {"$patch": "frobnicate"}},
     r"data: unknown \$patch directive 'frobnicate'"),
    ("unknown-patch-directive-in-list", POD, pod(containers=[c("a")]),
     {"spec": {"containers": [{"name": "a", "$patch": "bogus"}]}}, r"spec.containers: unknown \$patch directive 'bogus'"),
    ("item-lacks-merge-key", POD, pod(containers=[c("a")]),
     {"spec": {"containers": [{"image": "x"}]}}, "spec.containers: list item .* lacks the merge key 'name'"),
    ("nested-item-lacks-merge-key", DEPLOY, deploy([c("a")]),
     tmpl({"containers": [c("a", ports=[{"name": "http"}])]}), "ports: list item .* lacks the merge key 'containerPort'"),
    ("delete-item-lacks-merge-key", POD, pod(containers=[c("a")]),
     {"spec": {"containers": [{"$patch": "delete"}]}}, "lacks the merge key 'name'"),
    ("keyed-list-of-scalars", POD, pod(containers=[c("a")]),
     {"spec": {"containers": ["a"]}}, "expected a list of objects merged by 'name'"),
    ("set-element-order-not-a-list", POD, pod(containers=[c("a")]),
     {"spec": {"$setElementOrder/containers": {"name": "a"}}}, "must be a list"),
    ("set-element-order-mismatch", POD, pod(containers=[c("a"), c("b")]),
     {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
               "containers": [c("b", image="1"), c("a", image="2")]}}, "doesn't match"),
    ("set-element-order-items-lack-merge-key", POD, pod(containers=[c("a")]),
     {"spec": {"$setElementOrder/containers": ["a"]}}, "needs the merge key 'name'"),
    ("retain-keys-not-a-list", DEPLOY, {"spec": {"strategy": {}}},
     {"spec": {"strategy": {"$retainKeys": "type"}}}, "must be a list of field names"),
    ("retain-keys-contradicts-patch", DEPLOY, {"spec": {"strategy": {}}},
     {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, "patch sets 'rollingUpdate'"),
    ("delete-from-primitive-list-not-a-list", CM, {"metadata": {"finalizers": ["a"]}},
     {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, "must be a list of primitive values"),
    ("primitive-list-with-object", CM, {"metadata": {"finalizers": ["a"]}},
     {"metadata": {"finalizers": [{"x": 1}]}}, "list of primitives"),
]


@pytest.mark.parametrize(("rt", "original", "patch", "message"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_patch(rt: ResourceType, original: dict[str, Any], patch: Any, message: str) -> None:
    with pytest.raises(StrategicPatchError, match=message):
        strategic_merge_patch(rt, original, patch)


def test_error_is_a_value_error() -> None:
    assert issubclass(StrategicPatchError, ValueError)


def test_schema_walk_reaches_template_containers() -> None:
    spec = _field("V1Deployment", "spec").type_name
    template = _field(spec, "template").type_name
    pod_spec = _field(template, "spec").type_name
    containers = _field(pod_spec, "containers")
    assert (spec, template, pod_spec) == ("V1DeploymentSpec", "V1PodTemplateSpec", "V1PodSpec")
    assert (containers.strategy, containers.merge_key, containers.elem_type) == ("merge", "name", "V1Container")
    env = _field(containers.elem_type, "env")
    assert (env.strategy, env.merge_key) == ("merge", "name")
    assert _field("V1PodSpec", "tolerations").strategy == ""
    assert _field("V1DeploymentSpec", "strategy").strategy == ""  # retainKeys only: a recursive map
    assert _field("V1ObjectMeta", "labels").type_name == "Dict[str, str]"
    assert _field("V1PodSpec", "noSuchField").type_name is None


@pytest.mark.parametrize(("model", "json_field"), sorted(PATCH_META))
def test_patch_meta_names_real_fields(model: str, json_field: str) -> None:
    cls = getattr(k8s_models, model)
    assert json_field in cls.attribute_map.values(), f"{model} has no field {json_field}"
    strategy, merge_key = PATCH_META[(model, json_field)]
    py_name = next(py for py, js in cls.attribute_map.items() if js == json_field)
    field_type: str = cls.openapi_types[py_name]
    if "merge" in strategy.split(","):
        elem = field_type.removeprefix("List[").removesuffix("]")
        # Lists of objects need a merge key; lists of primitives must not have one.
        assert bool(merge_key) == hasattr(k8s_models, elem), (model, json_field, field_type)
        if merge_key:
            assert merge_key in getattr(k8s_models, elem).attribute_map.values()
