"""Validation: each rule has a failing case (exact field path and cause type) and a passing case."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.api import validation as v
from kubelite.api.defaults import apply_defaults
from kubelite.api.quantity import QuantityError, cpu_millis, parse_quantity, to_int
from kubelite.api.registry import RESOURCES, ResourceType, by_kind, lookup
from kubelite.api.validation import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TYPE_INVALID,
    FieldError,
    ValidationOptions,
    model_schema,
    selector_matches,
    unknown_fields,
    validate,
)

Obj = dict[str, Any]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

# ---------------------------------------------------------------------------------------------
# Valid base manifests (before defaulting), one per served kind
# ---------------------------------------------------------------------------------------------


def _meta(name: str, **extra: Any) -> Obj:
    return {"name": name, "namespace": "default", **extra}


POD_SPEC: Obj = {
    "initContainers": [{"name": "init", "image": "busybox:1.36", "command": ["true"]}],
    "containers": [{
        "name": "app",
        "image": "registry.local:5000/team/app:v1.2",
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "MODE", "value": "prod"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                      "limits": {"cpu": 1, "memory": 134217728}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5},
        "readinessProbe": {"tcpSocket": {"port": 8080}, "successThreshold": 2},
        "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "failureThreshold": 30},
        "volumeMounts": [{"name": "data", "mountPath": "/data"},
                         {"name": "config", "mountPath": "/etc/app", "readOnly": True}],
    }],
    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "config", "configMap": {"name": "settings"}}],
    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                     "effect": "NoExecute", "tolerationSeconds": 300}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
}

POD: Obj = {"apiVersion": "v1", "kind": "Pod",
            "metadata": _meta("app-1", labels={"app": "web", "app.kubernetes.io/part-of": "shop"},
                              annotations={"example.com/Note": "anything goes here: {}"}),
            "spec": POD_SPEC}


def _template(labels: Obj) -> Obj:
    return {"metadata": {"labels": labels}, "spec": copy.deepcopy(POD_SPEC)}


DEPLOYMENT: Obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("web"),
                   "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                            "template": _template({"app": "web", "tier": "front"})}}
REPLICASET: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": _meta("web-abc12"),
                   "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                            "template": _template({"app": "web"})}}
DAEMONSET: Obj = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta("agent"),
                  "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": _template({"app": "agent"})}}
STATEFULSET: Obj = {
    "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta("db"),
    "spec": {"serviceName": "db", "replicas": 2, "selector": {"matchLabels": {"app": "db"}},
             "template": _template({"app": "db"}),
             "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                       "spec": {"accessModes": ["ReadWriteOnce"],
                                                "resources": {"requests": {"storage": "1Gi"}}}}]},
}
SERVICE: Obj = {"apiVersion": "v1", "kind": "Service", "metadata": _meta("web"),
                "spec": {"selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                   {"name": "metrics", "port": 9090, "targetPort": 9090}]}}
CONFIGMAP: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("settings"),
                  "data": {"app.properties": "a=b\n", "LOG_LEVEL": "info"},
                  "binaryData": {"logo.png": "iVBORw0KGgo="}}
SECRET: Obj = {"apiVersion": "v1", "kind": "Secret", "metadata": _meta("db"),
               "data": {"password": "c2VjcmV0"}, "stringData": {"user": "admin"}}
NAMESPACE: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
NODE: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1.example.com",
                                                              "labels": {"kubernetes.io/hostname": "node-1"}},
             "spec": {"podCIDR": "10.244.1.0/24",
                      "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
             "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": 110},
                        "allocatable": {"cpu": "3800m", "memory": "7.5Gi", "pods": "110"},
                        "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}]}}
LEASE: Obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": _meta("kube-scheduler"),
              "spec": {"holderIdentity": "node-1_abc", "leaseDurationSeconds": 15, "leaseTransitions": 0}}
ENDPOINTS: Obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": _meta("web"),
                  "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": "node-1"}],
                               "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]}]}
EVENT: Obj = {"apiVersion": "v1", "kind": "Event", "metadata": _meta("app-1.17a8b9c0d1e2f3a4"),
              "involvedObject": {"kind": "Pod", "name": "app-1", "namespace": "default"},
              "reason": "Scheduled", "message": "assigned", "type": "Normal", "count": 1}
PVC: Obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta("data"),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
                     "storageClassName": "local-path"}}
PV: Obj = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1"},
           "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                    "hostPath": {"path": "/srv/pv-1"}}}

BASES: dict[str, Obj] = {
    "pods": POD, "deployments": DEPLOYMENT, "replicasets": REPLICASET, "daemonsets": DAEMONSET,
    "statefulsets": STATEFULSET, "services": SERVICE, "configmaps": CONFIGMAP, "secrets": SECRET,
    "namespaces": NAMESPACE, "nodes": NODE, "leases": LEASE, "endpoints": ENDPOINTS, "events": EVENT,
    "persistentvolumeclaims": PVC, "persistentvolumes": PV,
    "serviceaccounts": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("builder"),
                        "automountServiceAccountToken": False},
    "roles": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta("reader"),
              "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]},
    "rolebindings": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta("read"),
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
                     "subjects": [{"kind": "ServiceAccount", "name": "builder", "namespace": "default"}]},
    "clusterroles": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "nodes-reader"},
                     "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
                               {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
    "clusterrolebindings": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                            "metadata": {"name": "ops-nodes"},
                            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "nodes-reader"},
                            "subjects": [{"kind": "Group", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"}]},
}


def rt_of(plural: str) -> ResourceType:
    return lookup(plural)


def defaulted(plural: str, obj: Obj | None = None) -> Obj:
    out = copy.deepcopy(BASES[plural] if obj is None else obj)
    apply_defaults(rt_of(plural), out)
    return out


# A tiny path language for mutations: "spec.containers[0].image"; use a callable for keys with dots.
_SEG = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
DELETE = object()


def set_path(obj: Obj, path: str, value: Any) -> None:
    segs: list[str | int] = [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _SEG.finditer(path)]
    cur: Any = obj
    for seg in segs[:-1]:
        cur = cur[seg]
    if value is DELETE:
        del cur[segs[-1]]
    else:
        cur[segs[-1]] = value


Mutation = dict[str, Any] | Callable[[Obj], None]


def mutate(plural: str, mutation: Mutation, *, default: bool = True) -> Obj:
    obj = copy.deepcopy(BASES[plural])
    if default:
        apply_defaults(rt_of(plural), obj)
    if callable(mutation):
        mutation(obj)
    else:
        for path, value in mutation.items():
            set_path(obj, path, value)
    return obj


def errors_of(plural: str, obj: Obj, old: Obj | None = None, **kw: Any) -> list[FieldError]:
    return validate(rt_of(plural), obj, old, **kw)


# ---------------------------------------------------------------------------------------------
# Clean manifests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("plural", sorted(BASES))
def test_base_manifests_are_valid_after_defaulting(plural: str) -> None:
    obj = defaulted(plural)
    assert errors_of(plural, obj) == []
    assert unknown_fields(rt_of(plural), obj) == []


def test_every_served_kind_has_a_base_manifest() -> None:
    assert {r.plural for r in RESOURCES} == set(BASES)


def _example_docs() -> list[tuple[str, Obj]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                docs.append((f"{path.name}#{i}", doc))
    return docs


@pytest.mark.parametrize(("name", "doc"), _example_docs())
def test_shipped_examples_validate_clean(name: str, doc: Obj) -> None:
    rt = by_kind(doc["apiVersion"], doc["kind"])
    assert rt is not None, name
    if rt.namespaced:  # the server fills it from the URL
        doc["metadata"].setdefault("namespace", "default")
    apply_defaults(rt, doc)
    assert validate(rt, doc) == [], name
    assert unknown_fields(rt, doc) == [], name


def test_examples_exist() -> None:
    assert len(_example_docs()) >= 4


# ---------------------------------------------------------------------------------------------
# Failing cases: (id, plural, mutation, expected field, expected type)
# ---------------------------------------------------------------------------------------------


def _labels(labels: Obj) -> Callable[[Obj], None]:
    return lambda o: o["metadata"].__setitem__("labels", labels)


def _annotations(ann: Obj) -> Callable[[Obj], None]:
    return lambda o: o["metadata"].__setitem__("annotations", ann)


C0 = "spec.containers[0]"
T = "spec.template.spec"

BAD: list[tuple[str, str, Mutation, str, str]] = [
    # --- schema: types and model-required fields ---
    ("replicas-string", "deployments", {"spec.replicas": "3"}, "spec.replicas", TYPE_INVALID),
    ("replicas-bool", "deployments", {"spec.replicas": True}, "spec.replicas", TYPE_INVALID),
    ("containers-not-list", "pods", {"spec.containers": {"name": "x"}}, "spec.containers", TYPE_INVALID),
    ("container-not-object", "pods", {"spec.containers[0]": "nginx"}, "spec.containers[0]", TYPE_INVALID),
    ("port-string", "pods", {f"{C0}.ports[0].containerPort": "80"}, f"{C0}.ports[0].containerPort", TYPE_INVALID),
    ("label-value-int", "pods", _labels({"app": 1}), "metadata.labels[app]", TYPE_INVALID),
    ("bool-field-string", "pods", {"spec.enableServiceLinks": "yes"}, "spec.enableServiceLinks", TYPE_INVALID),
    ("args-not-strings", "pods", {f"{C0}.args": [1, 2]}, f"{C0}.args[0]", TYPE_INVALID),
    ("metadata-not-object", "pods", {"metadata": "x"}, "metadata", TYPE_INVALID),
    ("targetPort-list", "services", {"spec.ports[0].targetPort": [80]}, "spec.ports[0].targetPort", TYPE_INVALID),
    ("maxSurge-float", "deployments", {"spec.strategy.rollingUpdate.maxSurge": 1.5},
     "spec.strategy.rollingUpdate.maxSurge", TYPE_INVALID),
    ("quantity-bool", "pods", {f"{C0}.resources.limits.cpu": True}, f"{C0}.resources.limits[cpu]", TYPE_INVALID),
    ("quantity-garbage", "pods", {f"{C0}.resources.limits.cpu": "lots"}, f"{C0}.resources.limits[cpu]", INVALID),
    ("sizeLimit-garbage", "pods", {"spec.volumes[0].emptyDir.sizeLimit": "1 GB"},
     "spec.volumes[0].emptyDir.sizeLimit", INVALID),
    ("node-capacity-garbage", "nodes", {"status.capacity.memory": "8GB"}, "status.capacity[memory]", INVALID),
    ("container-name-missing", "pods", {f"{C0}.name": DELETE}, f"{C0}.name", REQUIRED),
    ("service-port-missing", "services", {"spec.ports[0].port": DELETE}, "spec.ports[0].port", REQUIRED),
    ("event-involved-missing", "events", {"involvedObject": DELETE}, "involvedObject", REQUIRED),
    ("taint-effect-missing", "nodes", {"spec.taints[0].effect": DELETE}, "spec.taints[0].effect", REQUIRED),
    ("mount-path-missing", "pods", {f"{C0}.volumeMounts[0].mountPath": DELETE},
     f"{C0}.volumeMounts[0].mountPath", REQUIRED),
    # --- metadata ---
    ("name-missing", "pods", {"metadata.name": DELETE}, "metadata.name", REQUIRED),
    ("name-empty", "configmaps", {"metadata.name": ""}, "metadata.name", REQUIRED),
    ("name-uppercase", "pods", {"metadata.name": "App"}, "metadata.name", INVALID),
    ("name-slash", "configmaps", {"metadata.name": "a/b"}, "metadata.name", INVALID),
    ("name-dotdot", "secrets", {"metadata.name": ".."}, "metadata.name", INVALID),
    ("name-percent", "pods", {"metadata.name": "a%2fb"}, "metadata.name", INVALID),
    ("name-double-dot", "deployments", {"metadata.name": "a..b"}, "metadata.name", INVALID),
    ("name-too-long-subdomain", "pods", {"metadata.name": "a" * 254}, "metadata.name", INVALID),
    ("namespace-name-dot", "namespaces", {"metadata.name": "team.a"}, "metadata.name", INVALID),
    ("namespace-name-too-long", "namespaces", {"metadata.name": "a" * 64}, "metadata.name", INVALID),
    ("service-name-dot", "services", {"metadata.name": "web.v1"}, "metadata.name", INVALID),
    ("service-name-leading-digit", "services", {"metadata.name": "1web"}, "metadata.name", INVALID),
    ("generateName-bad", "pods", {"metadata.generateName": "Web-"}, "metadata.generateName", INVALID),
    ("namespace-bad", "pods", {"metadata.namespace": "Default"}, "metadata.namespace", INVALID),
    ("namespace-traversal", "pods", {"metadata.namespace": "../kube-system"}, "metadata.namespace", INVALID),
    ("namespace-on-cluster-scoped", "nodes", {"metadata.namespace": "default"}, "metadata.namespace", FORBIDDEN),
    ("label-key-bad", "pods", _labels({"-app": "x"}), "metadata.labels", INVALID),
    ("label-key-two-slashes", "pods", _labels({"a/b/c": "x"}), "metadata.labels", INVALID),
    ("label-key-prefix-bad", "pods", _labels({"Example.com/app": "x"}), "metadata.labels", INVALID),
    ("label-key-name-too-long", "pods", _labels({"x" * 64: "v"}), "metadata.labels", INVALID),
    ("label-value-too-long", "pods", _labels({"app": "v" * 64}), "metadata.labels", INVALID),
    ("label-value-bad-char", "pods", _labels({"app": "a b"}), "metadata.labels", INVALID),
    ("annotation-key-bad", "pods", _annotations({"bad key": "x"}), "metadata.annotations", INVALID),
    ("annotations-too-big", "pods", _annotations({"big": "x" * (256 * 1024)}), "metadata.annotations", TOO_LONG),
    ("finalizer-unqualified", "pods", {"metadata.finalizers": ["my-finalizer"]}, "metadata.finalizers[0]", INVALID),
    ("two-controllers", "pods", {"metadata.ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": n, "uid": n, "controller": True} for n in "ab"]},
     "metadata.ownerReferences", INVALID),
    ("owner-ref-missing-uid", "pods", {"metadata.ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a"}]}, "metadata.ownerReferences[0].uid", REQUIRED),
    # --- pod spec ---
    ("containers-empty", "pods", {"spec.containers": []}, "spec.containers", REQUIRED),
    ("container-name-bad", "pods", {f"{C0}.name": "App_1"}, f"{C0}.name", INVALID),
    ("container-name-dup-init", "pods", {f"{C0}.name": "init"}, f"{C0}.name", DUPLICATE),
    ("image-missing", "pods", {f"{C0}.image": DELETE}, f"{C0}.image", REQUIRED),
    ("image-whitespace", "pods", {f"{C0}.image": " nginx"}, f"{C0}.image", INVALID),
    ("pull-policy-bad", "pods", {f"{C0}.imagePullPolicy": "Sometimes"}, f"{C0}.imagePullPolicy", NOT_SUPPORTED),
    ("container-port-zero", "pods", {f"{C0}.ports[0].containerPort": 0}, f"{C0}.ports[0].containerPort", INVALID),
    ("container-port-high", "pods", {f"{C0}.ports[0].containerPort": 65536}, f"{C0}.ports[0].containerPort", INVALID),
    ("host-port-high", "pods", {f"{C0}.ports[0].hostPort": 70000}, f"{C0}.ports[0].hostPort", INVALID),
    ("port-protocol-bad", "pods", {f"{C0}.ports[0].protocol": "HTTP"}, f"{C0}.ports[0].protocol", NOT_SUPPORTED),
    ("port-name-not-iana", "pods", {f"{C0}.ports[0].name": "8080"}, f"{C0}.ports[0].name", INVALID),
    ("port-name-dup", "pods", lambda o: o["spec"]["containers"][0]["ports"].append(
        {"name": "http", "containerPort": 8081, "protocol": "TCP"}), f"{C0}.ports[1].name", DUPLICATE),
    ("restart-policy-bad", "pods", {"spec.restartPolicy": "Sometimes"}, "spec.restartPolicy", NOT_SUPPORTED),
    ("dns-policy-bad", "pods", {"spec.dnsPolicy": "Google"}, "spec.dnsPolicy", NOT_SUPPORTED),
    ("grace-negative", "pods", {"spec.terminationGracePeriodSeconds": -1},
     "spec.terminationGracePeriodSeconds", INVALID),
    ("active-deadline-zero", "pods", {"spec.activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds", INVALID),
    ("cpu-request-over-limit", "pods", {f"{C0}.resources.requests.cpu": "1500m"},
     f"{C0}.resources.requests[cpu]", INVALID),
    ("memory-request-over-limit", "pods", {f"{C0}.resources.requests.memory": "129Mi"},
     f"{C0}.resources.requests[memory]", INVALID),
    ("quantity-negative", "pods", {f"{C0}.resources.requests.cpu": "-1"}, f"{C0}.resources.requests[cpu]", INVALID),
    ("resource-name-nonstandard", "pods", {f"{C0}.resources.requests.gpu": "1"},
     f"{C0}.resources.requests[gpu]", INVALID),
    ("volume-name-dup", "pods", {"spec.volumes[1].name": "data", f"{C0}.volumeMounts[1].name": "data"},
     "spec.volumes[1].name", DUPLICATE),
    ("volume-name-bad", "pods", {"spec.volumes[0].name": "Data", f"{C0}.volumeMounts[0].name": "Data"},
     "spec.volumes[0].name", INVALID),
    ("volume-no-source", "pods", {"spec.volumes[0].emptyDir": DELETE}, "spec.volumes[0]", REQUIRED),
    ("volume-two-sources", "pods", {"spec.volumes[0].hostPath": {"path": "/x"}}, "spec.volumes[0].hostPath",
     FORBIDDEN),
    ("configmap-volume-no-name", "pods", {"spec.volumes[1].configMap.name": ""}, "spec.volumes[1].configMap.name",
     REQUIRED),
    ("mount-unknown-volume", "pods", {f"{C0}.volumeMounts[0].name": "nope"}, f"{C0}.volumeMounts[0].name", NOT_FOUND),
    ("mount-path-dup", "pods", {f"{C0}.volumeMounts[1].mountPath": "/data"},
     f"{C0}.volumeMounts[1].mountPath", INVALID),
    ("subpath-escape", "pods", {f"{C0}.volumeMounts[0].subPath": "../etc"}, f"{C0}.volumeMounts[0].subPath", INVALID),
    ("env-name-bad", "pods", {f"{C0}.env[0].name": "1BAD"}, f"{C0}.env[0].name", INVALID),
    ("env-name-equals", "pods", {f"{C0}.env[0].name": "A=B"}, f"{C0}.env[0].name", INVALID),
    ("env-value-and-from", "pods", {f"{C0}.env[1].value": "x"}, f"{C0}.env[1].valueFrom", INVALID),
    ("env-from-empty", "pods", {f"{C0}.env[1].valueFrom": {}}, f"{C0}.env[1].valueFrom", INVALID),
    ("env-from-two", "pods", {f"{C0}.env[1].valueFrom.configMapKeyRef": {"name": "c", "key": "k"}},
     f"{C0}.env[1].valueFrom", INVALID),
    ("envFrom-none", "pods", {f"{C0}.envFrom[0]": {"prefix": "X_"}}, f"{C0}.envFrom[0]", INVALID),
    ("probe-no-handler", "pods", {f"{C0}.livenessProbe": {"periodSeconds": 5}}, f"{C0}.livenessProbe", REQUIRED),
    ("probe-two-handlers", "pods", {f"{C0}.livenessProbe.tcpSocket": {"port": 80}},
     f"{C0}.livenessProbe.tcpSocket", FORBIDDEN),
    ("probe-port-bad", "pods", {f"{C0}.livenessProbe.httpGet.port": 0}, f"{C0}.livenessProbe.httpGet.port", INVALID),
    ("probe-port-name-bad", "pods", {f"{C0}.readinessProbe.tcpSocket.port": "8080"},
     f"{C0}.readinessProbe.tcpSocket.port", INVALID),
    ("probe-negative", "pods", {f"{C0}.livenessProbe.periodSeconds": -5}, f"{C0}.livenessProbe.periodSeconds",
     INVALID),
    ("liveness-success-threshold", "pods", {f"{C0}.livenessProbe.successThreshold": 2},
     f"{C0}.livenessProbe.successThreshold", INVALID),
    ("init-container-probe", "pods", {"spec.initContainers[0].readinessProbe": {"exec": {"command": ["true"]}}},
     "spec.initContainers[0].readinessProbe", FORBIDDEN),
    ("toleration-exists-with-value", "pods", {"spec.tolerations[0].value": "x"}, "spec.tolerations[0].operator",
     INVALID),
    ("toleration-empty-key-equal", "pods", {"spec.tolerations[0].key": "", "spec.tolerations[0].operator": "Equal"},
     "spec.tolerations[0].operator", INVALID),
    ("toleration-effect-bad", "pods", {"spec.tolerations[0].effect": "Never"}, "spec.tolerations[0].effect",
     NOT_SUPPORTED),
    ("toleration-seconds-not-noexecute", "pods", {"spec.tolerations[0].effect": "NoSchedule"},
     "spec.tolerations[0].effect", INVALID),
    ("node-selector-bad", "pods", {"spec.nodeSelector": {"a b": "c"}}, "spec.nodeSelector", INVALID),
    ("service-account-bad", "pods", {"spec.serviceAccountName": "Bad_SA"}, "spec.serviceAccountName", INVALID),
    ("hostname-bad", "pods", {"spec.hostname": "a.b"}, "spec.hostname", INVALID),
    # --- workloads ---
    ("deploy-selector-missing", "deployments", {"spec.selector": DELETE}, "spec.selector", REQUIRED),
    ("deploy-selector-empty", "deployments", {"spec.selector": {}}, "spec.selector", INVALID),
    ("deploy-selector-mismatch", "deployments", {"spec.selector.matchLabels": {"app": "api"}},
     "spec.template.metadata.labels", INVALID),
    ("rs-expression-mismatch", "replicasets", {"spec.selector.matchExpressions[0].operator": "NotIn"},
     "spec.template.metadata.labels", INVALID),
    ("rs-expression-op-bad", "replicasets", {"spec.selector.matchExpressions[0].operator": "Like"},
     "spec.selector.matchExpressions[0].operator", NOT_SUPPORTED),
    ("rs-expression-in-no-values", "replicasets", {"spec.selector.matchExpressions[0].values": []},
     "spec.selector.matchExpressions[0].values", REQUIRED),
    ("rs-template-missing", "replicasets", {"spec.template": DELETE}, "spec.template", REQUIRED),
    ("deploy-replicas-negative", "deployments", {"spec.replicas": -1}, "spec.replicas", INVALID),
    ("deploy-template-image-missing", "deployments", {f"{T}.containers[0].image": ""},
     f"{T}.containers[0].image", REQUIRED),
    ("deploy-template-no-containers", "deployments", {f"{T}.containers": []}, f"{T}.containers", REQUIRED),
    ("deploy-template-restart-never", "deployments", {f"{T}.restartPolicy": "Never"}, f"{T}.restartPolicy",
     NOT_SUPPORTED),
    ("deploy-template-deadline", "deployments", {f"{T}.activeDeadlineSeconds": 10}, f"{T}.activeDeadlineSeconds",
     FORBIDDEN),
    ("deploy-strategy-bad", "deployments", {"spec.strategy.type": "BlueGreen"}, "spec.strategy.type", NOT_SUPPORTED),
    ("deploy-recreate-with-rolling", "deployments", {"spec.strategy.type": "Recreate"},
     "spec.strategy.rollingUpdate", FORBIDDEN),
    ("deploy-max-unavailable-pct-bad", "deployments", {"spec.strategy.rollingUpdate.maxUnavailable": "25"},
     "spec.strategy.rollingUpdate.maxUnavailable", INVALID),
    ("deploy-max-unavailable-over-100", "deployments", {"spec.strategy.rollingUpdate.maxUnavailable": "150%"},
     "spec.strategy.rollingUpdate.maxUnavailable", INVALID),
    ("deploy-both-zero", "deployments", {"spec.strategy.rollingUpdate.maxUnavailable": 0,
                                         "spec.strategy.rollingUpdate.maxSurge": "0%"},
     "spec.strategy.rollingUpdate.maxUnavailable", INVALID),
    ("deploy-max-surge-negative", "deployments", {"spec.strategy.rollingUpdate.maxSurge": -1},
     "spec.strategy.rollingUpdate.maxSurge", INVALID),
    ("deploy-progress-deadline", "deployments", {"spec.minReadySeconds": 700}, "spec.progressDeadlineSeconds",
     INVALID),
    ("deploy-template-label-bad", "deployments", {"spec.template.metadata.labels.tier": "a b"},
     "spec.template.metadata.labels", INVALID),
    ("ds-strategy-bad", "daemonsets", {"spec.updateStrategy.type": "Recreate"}, "spec.updateStrategy.type",
     NOT_SUPPORTED),
    ("ds-max-unavailable-zero", "daemonsets", {"spec.updateStrategy.rollingUpdate.maxUnavailable": 0},
     "spec.updateStrategy.rollingUpdate.maxUnavailable", INVALID),
    ("sts-pod-policy-bad", "statefulsets", {"spec.podManagementPolicy": "Random"}, "spec.podManagementPolicy",
     NOT_SUPPORTED),
    ("sts-partition-negative", "statefulsets", {"spec.updateStrategy.rollingUpdate.partition": -1},
     "spec.updateStrategy.rollingUpdate.partition", INVALID),
    ("sts-strategy-bad", "statefulsets", {"spec.updateStrategy.type": "Recreate"}, "spec.updateStrategy.type",
     NOT_SUPPORTED),
    ("sts-service-name-bad", "statefulsets", {"spec.serviceName": "DB"}, "spec.serviceName", INVALID),
    ("sts-retention-bad", "statefulsets", {"spec.persistentVolumeClaimRetentionPolicy.whenDeleted": "Keep"},
     "spec.persistentVolumeClaimRetentionPolicy.whenDeleted", NOT_SUPPORTED),
    ("sts-vct-no-access-modes", "statefulsets", {"spec.volumeClaimTemplates[0].spec.accessModes": []},
     "spec.volumeClaimTemplates[0].spec.accessModes", REQUIRED),
    ("sts-vct-no-storage", "statefulsets", {"spec.volumeClaimTemplates[0].spec.resources": {}},
     "spec.volumeClaimTemplates[0].spec.resources[storage]", REQUIRED),
    ("sts-vct-no-name", "statefulsets", {"spec.volumeClaimTemplates[0].metadata": {}},
     "spec.volumeClaimTemplates[0].metadata.name", REQUIRED),
    ("sts-selector-mismatch", "statefulsets", {"spec.template.metadata.labels": {"app": "web"}},
     "spec.template.metadata.labels", INVALID),
    # --- services ---
    ("svc-type-bad", "services", {"spec.type": "Internal"}, "spec.type", NOT_SUPPORTED),
    ("svc-ports-empty", "services", {"spec.ports": []}, "spec.ports", REQUIRED),
    ("svc-port-zero", "services", {"spec.ports[0].port": 0}, "spec.ports[0].port", INVALID),
    ("svc-port-high", "services", {"spec.ports[0].port": 65536}, "spec.ports[0].port", INVALID),
    ("svc-port-name-missing", "services", {"spec.ports[1].name": DELETE}, "spec.ports[1].name", REQUIRED),
    ("svc-port-name-dup", "services", {"spec.ports[1].name": "http"}, "spec.ports[1].name", DUPLICATE),
    ("svc-port-name-bad", "services", {"spec.ports[1].name": "Metrics"}, "spec.ports[1].name", INVALID),
    ("svc-port-dup", "services", {"spec.ports[1].port": 80}, "spec.ports[1]", DUPLICATE),
    ("svc-protocol-bad", "services", {"spec.ports[0].protocol": "ICMP"}, "spec.ports[0].protocol", NOT_SUPPORTED),
    ("svc-target-port-high", "services", {"spec.ports[1].targetPort": 70000}, "spec.ports[1].targetPort", INVALID),
    ("svc-target-port-name-bad", "services", {"spec.ports[0].targetPort": "http_port"}, "spec.ports[0].targetPort",
     INVALID),
    ("svc-target-port-numeric-string", "services", {"spec.ports[0].targetPort": "8080"}, "spec.ports[0].targetPort",
     INVALID),
    ("svc-node-port-on-clusterip", "services", {"spec.ports[0].nodePort": 30080}, "spec.ports[0].nodePort",
     FORBIDDEN),
    ("svc-node-port-range", "services", {"spec.type": "NodePort", "spec.ports[0].nodePort": 8080},
     "spec.ports[0].nodePort", INVALID),
    ("svc-node-port-dup", "services", {"spec.type": "NodePort", "spec.ports[0].nodePort": 30080,
                                       "spec.ports[1].nodePort": 30080}, "spec.ports[1].nodePort", DUPLICATE),
    ("svc-cluster-ip-bad", "services", {"spec.clusterIP": "10.0.0.300"}, "spec.clusterIP", INVALID),
    ("svc-headless-nodeport", "services", {"spec.type": "NodePort", "spec.clusterIP": "None"}, "spec.clusterIP",
     INVALID),
    ("svc-external-name-missing", "services", {"spec.type": "ExternalName"}, "spec.externalName", REQUIRED),
    ("svc-external-name-bad", "services", {"spec.type": "ExternalName", "spec.externalName": "Not_A_Host"},
     "spec.externalName", INVALID),
    ("svc-affinity-bad", "services", {"spec.sessionAffinity": "Cookie"}, "spec.sessionAffinity", NOT_SUPPORTED),
    ("svc-selector-bad", "services", {"spec.selector": {"app": "a b"}}, "spec.selector", INVALID),
    ("svc-etp-on-clusterip", "services", {"spec.externalTrafficPolicy": "Local"}, "spec.externalTrafficPolicy",
     INVALID),
    ("svc-external-ip-bad", "services", {"spec.externalIPs": ["example.com"]}, "spec.externalIPs[0]", INVALID),
    # --- configmaps / secrets ---
    ("cm-key-bad", "configmaps", {"data": {"a/b": "x"}}, "data[a/b]", INVALID),
    ("cm-key-dotdot", "configmaps", {"data": {"..data": "x"}}, "data[..data]", INVALID),
    ("cm-key-too-long", "configmaps", {"data": {"k" * 254: "x"}}, f"data[{'k' * 254}]", INVALID),
    ("cm-key-in-both", "configmaps", {"binaryData": {"LOG_LEVEL": "aW5mbw=="}}, "binaryData[LOG_LEVEL]", INVALID),
    ("cm-binary-not-base64", "configmaps", {"binaryData": {"logo.png": "not base64!"}}, "binaryData[logo.png]",
     INVALID),
    ("cm-too-big", "configmaps", {"data": {"big": "x" * (1024 * 1024 + 1)}}, "data", TOO_LONG),
    ("secret-not-base64", "secrets", {"data.password": "secret!"}, "data[password]", INVALID),
    ("secret-key-bad", "secrets", {"stringData": {"a b": "x"}}, "stringData[a b]", INVALID),
    ("secret-too-big", "secrets", {"stringData": {"big": "x" * (1024 * 1024 + 1)}}, "data", TOO_LONG),
    ("secret-tls-missing-key", "secrets", {"type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA=="}},
     "data[tls.key]", REQUIRED),
    ("secret-dockerconfig-missing", "secrets", {"type": "kubernetes.io/dockerconfigjson"},
     "data[.dockerconfigjson]", REQUIRED),
    # --- other kinds ---
    ("ns-finalizer-bad", "namespaces", {"spec": {"finalizers": ["custom"]}}, "spec.finalizers[0]", INVALID),
    ("ns-phase-bad", "namespaces", {"status.phase": "Gone"}, "status.phase", NOT_SUPPORTED),
    ("node-cidr-bad", "nodes", {"spec.podCIDR": "10.244.1.0"}, "spec.podCIDR", INVALID),
    ("node-taint-effect-bad", "nodes", {"spec.taints[0].effect": "NoRun"}, "spec.taints[0].effect", NOT_SUPPORTED),
    ("node-taint-key-bad", "nodes", {"spec.taints[0].key": "a b"}, "spec.taints[0].key", INVALID),
    ("node-taint-dup", "nodes", lambda o: o["spec"]["taints"].append(dict(o["spec"]["taints"][0])),
     "spec.taints[1]", DUPLICATE),
    ("node-capacity-negative", "nodes", {"status.capacity.cpu": "-1"}, "status.capacity[cpu]", INVALID),
    ("node-address-bad", "nodes", {"status.addresses[0].address": "node-1"}, "status.addresses[0].address", INVALID),
    ("lease-duration-zero", "leases", {"spec.leaseDurationSeconds": 0}, "spec.leaseDurationSeconds", INVALID),
    ("lease-transitions-negative", "leases", {"spec.leaseTransitions": -1}, "spec.leaseTransitions", INVALID),
    ("ep-ip-bad", "endpoints", {"subsets[0].addresses[0].ip": "10.244.1"}, "subsets[0].addresses[0].ip", INVALID),
    ("ep-ip-missing", "endpoints", {"subsets[0].addresses[0].ip": DELETE}, "subsets[0].addresses[0].ip", REQUIRED),
    ("ep-port-bad", "endpoints", {"subsets[0].ports[0].port": 0}, "subsets[0].ports[0].port", INVALID),
    ("ep-port-name-missing", "endpoints", {"subsets[0].ports[1].name": DELETE}, "subsets[0].ports[1].name",
     REQUIRED),
    ("ep-protocol-bad", "endpoints", {"subsets[0].ports[0].protocol": "tcp"}, "subsets[0].ports[0].protocol",
     NOT_SUPPORTED),
    ("event-ns-mismatch", "events", {"involvedObject.namespace": "other"}, "involvedObject.namespace", INVALID),
    ("event-type-bad", "events", {"type": "Error"}, "type", NOT_SUPPORTED),
    ("event-count-negative", "events", {"count": -1}, "count", INVALID),
    ("pvc-no-access-modes", "persistentvolumeclaims", {"spec.accessModes": []}, "spec.accessModes", REQUIRED),
    ("pvc-access-mode-bad", "persistentvolumeclaims", {"spec.accessModes": ["ReadWriteSometimes"]},
     "spec.accessModes[0]", NOT_SUPPORTED),
    ("pvc-rwop-mixed", "persistentvolumeclaims", {"spec.accessModes": ["ReadWriteOncePod", "ReadWriteOnce"]},
     "spec.accessModes", FORBIDDEN),
    ("pvc-no-storage", "persistentvolumeclaims", {"spec.resources.requests": {}}, "spec.resources[storage]",
     REQUIRED),
    ("pvc-storage-zero", "persistentvolumeclaims", {"spec.resources.requests.storage": "0"},
     "spec.resources[storage]", INVALID),
    ("pvc-volume-mode-bad", "persistentvolumeclaims", {"spec.volumeMode": "Raw"}, "spec.volumeMode", NOT_SUPPORTED),
    ("pvc-storage-class-bad", "persistentvolumeclaims", {"spec.storageClassName": "Fast_SSD"},
     "spec.storageClassName", INVALID),
    ("pv-no-capacity", "persistentvolumes", {"spec.capacity": DELETE}, "spec.capacity", REQUIRED),
    ("pv-capacity-extra", "persistentvolumes", {"spec.capacity.cpu": "1"}, "spec.capacity", NOT_SUPPORTED),
    ("pv-no-access-modes", "persistentvolumes", {"spec.accessModes": DELETE}, "spec.accessModes", REQUIRED),
    ("pv-no-source", "persistentvolumes", {"spec.hostPath": DELETE}, "spec", REQUIRED),
    ("pv-two-sources", "persistentvolumes", {"spec.nfs": {"server": "nfs", "path": "/x"}}, "spec.nfs", FORBIDDEN),
    ("pv-local-no-affinity", "persistentvolumes", {"spec.hostPath": DELETE, "spec.local": {"path": "/mnt"}},
     "spec.nodeAffinity", REQUIRED),
    ("pv-reclaim-bad", "persistentvolumes", {"spec.persistentVolumeReclaimPolicy": "Keep"},
     "spec.persistentVolumeReclaimPolicy", NOT_SUPPORTED),
]


@pytest.mark.parametrize(("plural", "mutation", "field", "cause"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_invalid(plural: str, mutation: Mutation, field: str, cause: str) -> None:
    errs = errors_of(plural, mutate(plural, mutation))
    assert (field, cause) in {(e.field, e.type) for e in errs}, errs


def test_bad_case_ids_unique() -> None:
    ids = [c[0] for c in BAD]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------------------------------------
# Passing variants: edge cases that look suspicious but are valid Kubernetes
# ---------------------------------------------------------------------------------------------

GOOD: list[tuple[str, str, Mutation]] = [
    ("integral-float-replicas", "deployments", {"spec.replicas": 3.0}),
    ("quantity-int-and-float", "pods", {f"{C0}.resources.limits.cpu": 2.5, f"{C0}.resources.requests.cpu": 0.5}),
    ("quantity-exponent", "pods", {f"{C0}.resources.limits.memory": "1e9", f"{C0}.resources.requests.memory": "5e8"}),
    ("requests-equal-limits", "pods", {f"{C0}.resources.requests.cpu": "1000m"}),
    ("extended-resource", "pods",
     lambda o: o["spec"]["containers"][0]["resources"]["limits"].__setitem__("nvidia.com/gpu", 1)),
    ("hugepages", "pods", lambda o: o["spec"]["containers"][0]["resources"]["limits"].__setitem__("hugepages-2Mi", "0")),
    ("name-subdomain-dots", "pods", {"metadata.name": "app.v1.example"}),
    ("name-max-subdomain", "configmaps", {"metadata.name": ("a" * 63 + ".") * 3 + "a" * 61}),
    ("namespace-name-63", "namespaces", {"metadata.name": "a" * 63}),
    ("generate-name-trailing-dash", "pods", {"metadata.generateName": "app-"}),
    ("label-prefixed-key", "pods", _labels({"app.kubernetes.io/name": "web", "Tier": "Front_1.x"})),
    ("label-empty-value", "pods", _labels({"canary": ""})),
    ("label-value-63", "pods", _labels({"app": "v" * 63})),
    ("annotation-uppercase-key", "pods", _annotations({"Example.COM/Key": "v", "note": "free text / with: anything"})),
    ("annotations-just-under-limit", "pods", _annotations({"big": "x" * (256 * 1024 - 3)})),
    ("standard-finalizer", "namespaces", {"spec": {"finalizers": ["kubernetes"]}}),
    ("qualified-finalizer", "pods", {"metadata.finalizers": ["example.com/cleanup"]}),
    ("env-name-dotted", "pods", {f"{C0}.env[0].name": "my.env-name"}),
    ("unnamed-single-port", "services", lambda o: o["spec"].update(ports=[{"port": 80, "protocol": "TCP",
                                                                           "targetPort": 80}])),
    ("same-port-different-protocol", "services", {"spec.ports[1].port": 80, "spec.ports[1].protocol": "UDP"}),
    ("nodeport-in-range", "services", {"spec.type": "NodePort", "spec.ports[0].nodePort": 32767}),
    ("nodeport-unset", "services", {"spec.type": "NodePort"}),
    ("headless-no-ports", "services", {"spec.clusterIP": "None", "spec.ports": []}),
    ("external-name-no-ports", "services", lambda o: o["spec"].update(
        type="ExternalName", externalName="db.example.com.", ports=[])),
    ("cluster-ip-v6", "services", {"spec.clusterIP": "fd00::10"}),
    ("load-balancer-local", "services", {"spec.type": "LoadBalancer", "spec.externalTrafficPolicy": "Local"}),
    ("sts-no-service-name", "statefulsets", {"spec.serviceName": ""}),
    ("sts-parallel", "statefulsets", {"spec.podManagementPolicy": "Parallel"}),
    ("sts-on-delete", "statefulsets", lambda o: o["spec"].update(updateStrategy={"type": "OnDelete"})),
    ("deploy-recreate", "deployments", lambda o: o["spec"].update(strategy={"type": "Recreate"})),
    ("deploy-int-surge", "deployments", {"spec.strategy.rollingUpdate.maxSurge": 0,
                                         "spec.strategy.rollingUpdate.maxUnavailable": 1}),
    ("deploy-zero-replicas", "deployments", {"spec.replicas": 0}),
    ("deploy-selector-expressions", "deployments", {"spec.selector": {"matchExpressions": [
        {"key": "tier", "operator": "Exists"}, {"key": "canary", "operator": "DoesNotExist"}]}}),
    ("ds-ondelete", "daemonsets", lambda o: o["spec"].update(updateStrategy={"type": "OnDelete"})),
    ("ds-surge-instead", "daemonsets", {"spec.updateStrategy.rollingUpdate.maxUnavailable": 0,
                                        "spec.updateStrategy.rollingUpdate.maxSurge": 1}),
    ("sidecar-init-with-probe", "pods", lambda o: o["spec"]["initContainers"][0].update(
        restartPolicy="Always", readinessProbe={"exec": {"command": ["true"]}})),
    ("cm-binary-only", "configmaps", {"data": DELETE}),
    ("cm-dotfile-key", "configmaps", {"data": {".env": "A=1"}}),
    ("secret-tls-complete", "secrets", {"type": "kubernetes.io/tls",
                                        "stringData": {"tls.crt": "c", "tls.key": "k"}}),
    ("secret-custom-type", "secrets", {"type": "example.com/custom"}),
    ("pv-nfs", "persistentvolumes", {"spec.hostPath": DELETE, "spec.nfs": {"server": "10.0.0.2", "path": "/x"}}),
    ("pvc-rwx", "persistentvolumeclaims", {"spec.accessModes": ["ReadWriteMany", "ReadOnlyMany"]}),
    ("event-cluster-object", "events", {"involvedObject": {"kind": "Node", "name": "node-1"}}),
    ("node-unschedulable", "nodes", {"spec.unschedulable": True}),
    ("null-optional-fields", "pods", {"spec.nodeSelector": None, f"{C0}.args": None}),
]


@pytest.mark.parametrize(("plural", "mutation"), [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_valid_variants(plural: str, mutation: Mutation) -> None:
    assert errors_of(plural, mutate(plural, mutation)) == []


# ---------------------------------------------------------------------------------------------
# Messages, options, schema behaviour
# ---------------------------------------------------------------------------------------------


def test_messages_follow_kubernetes_wording() -> None:
    errs = errors_of("deployments", mutate("deployments", {"spec.replicas": -1, f"{T}.containers[0].image": ""}))
    by_field = {e.field: e for e in errs}
    assert by_field["spec.replicas"].message == "Invalid value: -1: must be greater than or equal to 0"
    assert by_field[f"{T}.containers[0].image"].message == "Required value"
    assert str(by_field["spec.replicas"]) == "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    errs = errors_of("pods", mutate("pods", {"spec.restartPolicy": "Sometimes"}))
    assert errs[0].message == 'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'
    errs = errors_of("deployments", mutate("deployments", {"spec.replicas": "3"}))
    assert errs == [FieldError("spec.replicas", TYPE_INVALID,
                               'Invalid value: "3": must be of type integer, not string')]
    mismatch = errors_of("deployments", mutate("deployments", {"spec.selector.matchLabels": {"app": "api"}}))
    assert [e.message for e in mismatch if e.field == "spec.template.metadata.labels"] == [
        'Invalid value: {"app": "web", "tier": "front"}: `selector` does not match template `labels`']


def test_type_errors_stop_before_semantic_checks() -> None:
    # A wrong type would crash semantic checks; like a decode error it is reported alone.
    obj = mutate("pods", {"spec.containers[0].ports": "80", "metadata.name": "BAD"})
    errs = errors_of("pods", obj)
    assert [(e.field, e.type) for e in errs] == [(f"{C0}.ports", TYPE_INVALID)]


def test_each_missing_field_reported_once() -> None:
    errs = errors_of("pods", mutate("pods", {f"{C0}.name": DELETE}))
    assert [e.field for e in errs].count(f"{C0}.name") == 1


def test_not_an_object() -> None:
    errs = validate(rt_of("pods"), "pod")  # type: ignore[arg-type]
    assert errs[0].type == TYPE_INVALID and errs[0].field == ""


def test_node_port_range_is_configurable() -> None:
    obj = mutate("services", {"spec.type": "NodePort", "spec.ports[0].nodePort": 8080})
    assert errors_of("services", obj, options=ValidationOptions(node_port_range=(8000, 9000))) == []
    errs = errors_of("services", obj)
    assert errs[0].message == ("Invalid value: 8080: provided port is not in the valid range. "
                               "The range of valid ports is 30000-32767")


def test_validation_does_not_mutate_input() -> None:
    obj = defaulted("pods")
    before = copy.deepcopy(obj)
    old = copy.deepcopy(obj)
    set_path(obj, f"{C0}.image", "app:v2")
    before_update = copy.deepcopy(obj)
    validate(rt_of("pods"), obj)
    validate(rt_of("pods"), obj, old)
    assert obj == before_update and old == before


def test_unknown_fields_paths() -> None:
    obj = defaulted("deployments")
    obj["spec"]["replica"] = 3
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    obj["metadata"]["labels"] = {"x.y/z": "ok"}  # map keys are data, never unknown fields
    obj["status"] = {"readyReplicas": 1, "bogus": True}
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["example.com/foo"] = "1"
    assert unknown_fields(rt_of("deployments"), obj) == [
        "spec.template.spec.containers[0].imagePullPolice",
        "spec.replica",
        "status.bogus",
    ]
    # Unknown fields are not validation errors (fieldValidation=Ignore is the default).
    assert errors_of("deployments", obj) == []


def test_unknown_fields_in_nested_map_and_list_values() -> None:
    obj = defaulted("pods")
    obj["spec"]["volumes"][0]["emptyDir"]["size"] = "1Gi"
    obj["spec"]["containers"][0]["env"][0]["valueFromm"] = {}
    assert unknown_fields(rt_of("pods"), obj) == [
        "spec.containers[0].env[0].valueFromm", "spec.volumes[0].emptyDir.size"]


def test_schema_derived_from_client_models() -> None:
    pod_spec = model_schema("V1PodSpec")
    assert pod_spec.fields["containers"].kind == v.LIST
    assert pod_spec.fields["containers"].item == v.SchemaType(v.MODEL, model="V1Container")
    assert "containers" in pod_spec.required
    assert model_schema("V1Container").required == ("name",)
    assert model_schema("V1Probe").fields["exec"].model == "V1ExecAction"  # python attr is _exec
    assert model_schema("V1ServicePort").fields["targetPort"].kind == v.INT_OR_STRING
    assert model_schema("V1ResourceRequirements").fields["limits"].item == v.SchemaType(v.QUANTITY)
    assert model_schema("V1ObjectMeta").fields["labels"].item == v.SchemaType(v.STR)
    assert model_schema("V1ManagedFieldsEntry").fields["fieldsV1"].kind == v.ANY
    assert model_schema("V1ObjectMeta").required == ()
    assert set(model_schema("CoreV1Event").required) == {"involvedObject", "metadata"}
    assert model_schema("V1Pod") is model_schema("V1Pod")  # cached


def test_required_fields_from_legacy_generator_source() -> None:
    # The pre-pydantic client only states required fields in its setters; that path must work too.
    class V1Legacy:
        openapi_types = {"name": "str", "container_port": "int"}
        attribute_map = {"name": "name", "container_port": "containerPort"}

        @property
        def container_port(self) -> int:
            return 0

        @container_port.setter
        def container_port(self, value: int) -> None:
            if value is None:
                raise ValueError("Invalid value for `container_port`, must not be `None`")

    assert v._required_attrs(V1Legacy) == ["container_port"]


def test_managed_fields_are_free_form() -> None:
    obj = defaulted("pods")
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply",
                                         "fieldsV1": {"f:spec": {"f:containers": {}}}}]
    assert errors_of("pods", obj) == []
    assert unknown_fields(rt_of("pods"), obj) == []


# ---------------------------------------------------------------------------------------------
# Updates
# ---------------------------------------------------------------------------------------------

UPDATE_BAD: list[tuple[str, str, Mutation, str, str]] = [
    ("name-changed", "configmaps", {"metadata.name": "other"}, "metadata.name", INVALID),
    ("namespace-changed", "configmaps", {"metadata.namespace": "other"}, "metadata.namespace", INVALID),
    ("uid-changed", "configmaps", {"metadata.uid": "u-2"}, "metadata.uid", INVALID),
    ("deploy-selector", "deployments", {"spec.selector.matchLabels": {"app": "web", "tier": "front"}},
     "spec.selector", INVALID),
    ("rs-selector", "replicasets", {"spec.selector": {"matchLabels": {"app": "web"}}}, "spec.selector", INVALID),
    ("ds-selector", "daemonsets", {"spec.selector.matchLabels": {"app": "agent", "tier": "front"}},
     "spec.selector", INVALID),
    ("sts-selector", "statefulsets", {"spec.selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
     "spec.selector", INVALID),
    ("sts-service-name", "statefulsets", {"spec.serviceName": "db2"}, "spec", FORBIDDEN),
    ("sts-vct", "statefulsets", {"spec.volumeClaimTemplates[0].spec.resources.requests.storage": "2Gi"}, "spec",
     FORBIDDEN),
    ("sts-pod-policy", "statefulsets", {"spec.podManagementPolicy": "Parallel"}, "spec", FORBIDDEN),
    ("svc-cluster-ip", "services", {"spec.clusterIP": "10.96.0.11"}, "spec.clusterIP", INVALID),
    ("svc-cluster-ip-unset", "services", {"spec.clusterIP": DELETE}, "spec.clusterIP", INVALID),
    ("pod-command", "pods", {f"{C0}.command": ["sh"]}, "spec", FORBIDDEN),
    ("pod-add-container", "pods", lambda o: o["spec"]["containers"].append({"name": "b", "image": "b"}), "spec",
     FORBIDDEN),
    ("pod-restart-policy", "pods", {"spec.restartPolicy": "Never"}, "spec", FORBIDDEN),
    ("pod-node-name", "pods", {"spec.nodeName": "node-2"}, "spec", FORBIDDEN),
    ("pod-remove-toleration", "pods", {"spec.tolerations": []}, "spec.tolerations", FORBIDDEN),
    ("pod-deadline-increase", "pods", {"spec.activeDeadlineSeconds": 600}, "spec.activeDeadlineSeconds", INVALID),
    ("pod-deadline-unset", "pods", {"spec.activeDeadlineSeconds": DELETE}, "spec.activeDeadlineSeconds", INVALID),
    ("pvc-access-modes", "persistentvolumeclaims", {"spec.accessModes": ["ReadWriteMany"]}, "spec", FORBIDDEN),
    ("pvc-storage-class", "persistentvolumeclaims", {"spec.storageClassName": "fast"}, "spec", FORBIDDEN),
    ("pvc-volume-name-rebind", "persistentvolumeclaims", {"spec.volumeName": "pv-2"}, "spec", FORBIDDEN),
    ("pvc-shrink-below-capacity", "persistentvolumeclaims", {"spec.resources.requests.storage": "1Gi"},
     "spec.resources.requests.storage", FORBIDDEN),
    ("secret-type", "secrets", {"type": "kubernetes.io/basic-auth", "data.username": "dQ=="}, "type", INVALID),
    ("immutable-secret-data", "secrets", {"data.password": "b3RoZXI="}, "data", FORBIDDEN),
    ("immutable-cm-unset", "configmaps", {"immutable": False}, "immutable", FORBIDDEN),
    ("node-pod-cidr", "nodes", {"spec.podCIDR": "10.244.2.0/24"}, "spec.podCIDR", FORBIDDEN),
    ("pv-source", "persistentvolumes", {"spec.hostPath.path": "/elsewhere"}, "spec.persistentvolumesource", FORBIDDEN),
]


def _stored(plural: str) -> Obj:
    """The object as the server stored it: defaulted, with server-set fields."""
    obj = defaulted(plural)
    obj["metadata"].update(uid="u-1", resourceVersion="5")
    if plural == "services":
        obj["spec"]["clusterIP"] = "10.96.0.10"
    if plural == "pods":
        obj["spec"].update(nodeName="node-1", activeDeadlineSeconds=300)
    if plural in ("secrets", "configmaps"):
        obj["immutable"] = True
    if plural == "persistentvolumeclaims":
        obj["spec"]["volumeName"] = "pv-1"
        obj["status"] = {"phase": "Bound", "capacity": {"storage": "5Gi"}}
    return obj


def _update(plural: str, mutation: Mutation) -> tuple[Obj, Obj]:
    old = _stored(plural)
    new = copy.deepcopy(old)
    if callable(mutation):
        mutation(new)
    else:
        for path, value in mutation.items():
            set_path(new, path, value)
    return new, old


@pytest.mark.parametrize(("plural", "mutation", "field", "cause"), [c[1:] for c in UPDATE_BAD],
                         ids=[c[0] for c in UPDATE_BAD])
def test_invalid_updates(plural: str, mutation: Mutation, field: str, cause: str) -> None:
    new, old = _update(plural, mutation)
    errs = errors_of(plural, new, old)
    assert (field, cause) in {(e.field, e.type) for e in errs}, errs


UPDATE_GOOD: list[tuple[str, str, Mutation]] = [
    ("unchanged", "pods", {}),
    ("labels-and-annotations", "pods", _labels({"app": "web", "version": "2"})),
    ("uid-omitted", "configmaps", {"metadata.uid": DELETE}),
    ("pod-image", "pods", {f"{C0}.image": "registry.local:5000/team/app:v1.3",
                           "spec.initContainers[0].image": "busybox:1.37"}),
    ("pod-image-pull-policy-follows", "pods", {f"{C0}.image": "app:latest", f"{C0}.imagePullPolicy": "Always"}),
    ("pod-add-toleration", "pods", lambda o: o["spec"]["tolerations"].append(
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"})),
    ("pod-deadline-decrease", "pods", {"spec.activeDeadlineSeconds": 100}),
    ("pod-status", "pods", {"status": {"phase": "Running", "podIP": "10.244.1.7"}}),
    ("deploy-scale-and-template", "deployments", {"spec.replicas": 5, f"{T}.containers[0].image": "app:v2"}),
    ("sts-mutable-fields", "statefulsets", {"spec.replicas": 5, "spec.minReadySeconds": 3,
                                            "spec.updateStrategy.rollingUpdate.partition": 2,
                                            "spec.persistentVolumeClaimRetentionPolicy.whenScaled": "Delete",
                                            f"{T}.containers[0].image": "db:2"}),
    ("svc-ports-change", "services", {"spec.ports[0].port": 8080}),
    ("svc-to-external-name", "services", lambda o: o["spec"].update(
        type="ExternalName", externalName="web.example.com", clusterIP="")),
    ("pvc-expand", "persistentvolumeclaims", {"spec.resources.requests.storage": "10Gi"}),
    ("immutable-secret-labels", "secrets", _labels({"rotated": "no"})),
    ("node-labels", "nodes", _labels({"kubernetes.io/hostname": "node-1", "zone": "a"})),
]


@pytest.mark.parametrize(("plural", "mutation"), [c[1:] for c in UPDATE_GOOD], ids=[c[0] for c in UPDATE_GOOD])
def test_valid_updates(plural: str, mutation: Mutation) -> None:
    new, old = _update(plural, mutation)
    assert errors_of(plural, new, old) == []


def test_pvc_binding_sets_volume_name_once() -> None:
    old = defaulted("persistentvolumeclaims")
    new = copy.deepcopy(old)
    new["spec"]["volumeName"] = "pv-1"
    assert errors_of("persistentvolumeclaims", new, old) == []


def test_mutable_cm_can_change_data() -> None:
    old = defaulted("configmaps")
    new = copy.deepcopy(old)
    new["data"]["LOG_LEVEL"] = "debug"
    assert errors_of("configmaps", new, old) == []


# ---------------------------------------------------------------------------------------------
# Selector matching and quantities
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ({}, {"a": "1"}, True),
])
def test_selector_matches(selector: Obj, labels: Obj, expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("1", "1"), ("0", "0"), ("100m", "0.1"), ("1.5", "1.5"), ("250m", "0.25"), (".5", "0.5"), ("5.", "5"),
    ("1Ki", "1024"), ("1Mi", "1048576"), ("1.5Gi", "1610612736"), ("1Ti", str(1024 ** 4)),
    ("1Pi", str(1024 ** 5)), ("1Ei", str(1024 ** 6)),
    ("1k", "1000"), ("1M", "1000000"), ("2G", "2000000000"), ("1T", "1e12"), ("1P", "1e15"), ("1E", "1e18"),
    ("1n", "1e-9"), ("1u", "1e-6"), ("1e3", "1000"), ("1E3", "1000"), ("1.5e-3", "0.0015"), ("+2", "2"),
    ("-1", "-1"), (3, "3"), (0.1, "0.1"), (2.5, "2.5"),
])
def test_parse_quantity(text: str | int | float, expected: str) -> None:
    assert parse_quantity(text) == Decimal(expected)


@pytest.mark.parametrize("text", ["", " 1", "1 ", "1Kb", "1KiB", "Mi", "1.2.3", "1e", "1mi", "abc", "1/2",
                                  "0x10", "1_000", True, None, [], float("nan"), float("inf")])
def test_parse_quantity_rejects(text: Any) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_quantity_helpers_round_up() -> None:
    assert cpu_millis("100m") == 100
    assert cpu_millis("1n") == 1
    assert cpu_millis(2) == 2000
    assert to_int("1.5Gi") == 1610612736
    assert to_int("0.5") == 1
    assert parse_quantity("0.1") + parse_quantity("200m") == parse_quantity("300m")


# ---------------------------------------------------------------------------------------------
# Robustness: any value anywhere yields errors, never an exception
# ---------------------------------------------------------------------------------------------

GARBAGE: list[Any] = [None, "", "x", "-1", 0, -1, 70000, 1.5, True, [], {}, [None], [1], {"a": None}, {"a": [1]}]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, val in node.items():
            out += _paths(val, (*prefix, k))
    elif isinstance(node, list):
        for i, val in enumerate(node):
            out += _paths(val, (*prefix, i))
    return out


@pytest.mark.parametrize("plural", sorted(BASES))
def test_garbage_at_every_path_never_raises(plural: str) -> None:
    base = defaulted(plural)
    rt = rt_of(plural)
    for path in _paths(base):
        for junk in GARBAGE:
            obj = copy.deepcopy(base)
            cur: Any = obj
            for seg in path[:-1]:
                cur = cur[seg]
            cur[path[-1]] = junk
            errs = validate(rt, obj)
            validate(rt, obj, base)
            validate(rt, base, obj)
            unknown_fields(rt, obj)
            assert all(isinstance(e, FieldError) for e in errs)
