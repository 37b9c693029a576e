"""Defaulting: Kubernetes' defaults are filled, explicit values kept, malformed input survived."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.defaults import apply_defaults, image_pull_policy
from kubelite.api.registry import RESOURCES, lookup

Obj = dict[str, Any]


def defaulted(plural: str, obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    apply_defaults(lookup(plural), out)
    return out


def pod_spec(**extra: Any) -> Obj:
    return {"containers": [{"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}], **extra}


def test_pod_defaults() -> None:
    pod = defaulted("pods", {"metadata": {"name": "p"}, "spec": pod_spec()})
    spec = pod["spec"]
    assert {k: v for k, v in spec.items() if k != "containers"} == {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
        "securityContext": {},
        "enableServiceLinks": True,
        "serviceAccountName": "default",
        "serviceAccount": "default",
    }
    assert spec["containers"][0] == {
        "name": "app",
        "image": "nginx:1.25",
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
    }
    assert "clusterIP" not in str(pod) and "status" not in pod


def test_pod_defaults_keep_explicit_values() -> None:
    spec = pod_spec(restartPolicy="Never", dnsPolicy="Default", terminationGracePeriodSeconds=0,
                    serviceAccountName="builder", enableServiceLinks=False)
    spec["containers"][0].update(imagePullPolicy="Never", ports=[{"containerPort": 53, "protocol": "UDP"}])
    out = defaulted("pods", {"spec": spec})["spec"]
    assert out["restartPolicy"] == "Never"
    assert out["dnsPolicy"] == "Default"
    assert out["terminationGracePeriodSeconds"] == 0  # falsy but set: must survive
    assert out["serviceAccountName"] == "builder"
    assert out["enableServiceLinks"] is False
    assert out["containers"][0]["imagePullPolicy"] == "Never"
    assert out["containers"][0]["ports"][0]["protocol"] == "UDP"


def test_null_counts_as_unset() -> None:
    out = defaulted("pods", {"spec": pod_spec(restartPolicy=None)})["spec"]
    assert out["restartPolicy"] == "Always"


def test_deprecated_service_account_alias() -> None:
    out = defaulted("pods", {"spec": pod_spec(serviceAccount="legacy")})["spec"]
    assert out["serviceAccountName"] == "legacy"


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/nginx", "Always"),  # the port is not a tag
    ("localhost:5000/nginx:latest", "Always"),
    ("localhost:5000/team/nginx:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy
    spec = pod_spec()
    spec["containers"][0]["image"] = image
    assert defaulted("pods", {"spec": spec})["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_init_containers_probes_env_volumes_resources() -> None:
    spec = pod_spec(
        initContainers=[{"name": "init", "image": "busybox"}],
        volumes=[{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}},
                 {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}}],
    )
    c = spec["containers"][0]
    c["livenessProbe"] = {"httpGet": {"port": 80}}
    c["env"] = [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    c["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}}
    out = defaulted("pods", {"spec": spec})["spec"]
    init = out["initContainers"][0]
    assert init["imagePullPolicy"] == "Always" and init["terminationMessagePolicy"] == "File"
    c = out["containers"][0]
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    # requests default to limits per resource, without overriding stated requests
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "1Gi"}
    assert out["volumes"] == [
        {"name": "scratch", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
    ]


def test_limits_only_creates_requests() -> None:
    spec = pod_spec()
    spec["containers"][0]["resources"] = {"limits": {"cpu": "500m"}}
    out = defaulted("pods", {"spec": spec})["spec"]
    assert out["containers"][0]["resources"]["requests"] == {"cpu": "500m"}


def _workload(kind: str, **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": pod_spec()}, **spec}}


def _template_is_defaulted(obj: Obj) -> None:
    tspec = obj["spec"]["template"]["spec"]
    assert tspec["restartPolicy"] == "Always"
    assert tspec["dnsPolicy"] == "ClusterFirst"
    assert tspec["schedulerName"] == "default-scheduler"
    assert tspec["terminationGracePeriodSeconds"] == 30
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert tspec["containers"][0]["ports"][0]["protocol"] == "TCP"
    # Only pods get a service account filled in (admission does it upstream), not templates.
    assert "serviceAccountName" not in tspec


def test_deployment_defaults() -> None:
    out = defaulted("deployments", _workload("Deployment"))
    spec = out["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    _template_is_defaulted(out)


def test_deployment_recreate_gets_no_rolling_update() -> None:
    out = defaulted("deployments", _workload("Deployment", strategy={"type": "Recreate"}, replicas=0))
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert out["spec"]["replicas"] == 0


def test_deployment_partial_rolling_update() -> None:
    out = defaulted("deployments", _workload("Deployment", strategy={"rollingUpdate": {"maxSurge": 1}}))
    assert out["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}


def test_replicaset_defaults() -> None:
    out = defaulted("replicasets", _workload("ReplicaSet"))
    assert out["spec"]["replicas"] == 1
    _template_is_defaulted(out)


def test_daemonset_defaults() -> None:
    out = defaulted("daemonsets", _workload("DaemonSet"))
    assert out["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert out["spec"]["revisionHistoryLimit"] == 10
    assert "replicas" not in out["spec"]
    _template_is_defaulted(out)


def test_daemonset_on_delete() -> None:
    out = defaulted("daemonsets", _workload("DaemonSet", updateStrategy={"type": "OnDelete"}))
    assert out["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_statefulset_defaults() -> None:
    vct = [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                   "resources": {"requests": {"storage": "1Gi"}}}}]
    out = defaulted("statefulsets", _workload("StatefulSet", serviceName="db", volumeClaimTemplates=vct))
    spec = out["spec"]
    assert spec["replicas"] == 1
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    _template_is_defaulted(out)


def test_service_defaults() -> None:
    svc = {"metadata": {"name": "s"}, "spec": {"selector": {"a": "b"},
                                               "ports": [{"port": 80}, {"port": 53, "protocol": "UDP",
                                                                        "targetPort": "dns"}]}}
    spec = defaulted("services", svc)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80},
                             {"port": 53, "protocol": "UDP", "targetPort": "dns"}]
    assert "clusterIP" not in spec and "clusterIPs" not in spec  # the server allocates it


def test_service_nodeport_and_affinity_defaults() -> None:
    svc = {"spec": {"type": "NodePort", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}
    spec = defaulted("services", svc)["spec"]
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert "nodePort" not in spec["ports"][0]


def test_external_name_service() -> None:
    spec = defaulted("services", {"spec": {"type": "ExternalName", "externalName": "x.example.com"}})["spec"]
    assert "internalTrafficPolicy" not in spec


def test_namespace_secret_pvc_pv_endpoints() -> None:
    assert defaulted("namespaces", {"metadata": {"name": "n"}})["status"] == {"phase": "Active"}
    assert defaulted("namespaces", {"status": {"phase": "Terminating"}})["status"]["phase"] == "Terminating"
    assert defaulted("secrets", {"data": {}})["type"] == "Opaque"
    assert defaulted("secrets", {"type": "kubernetes.io/tls"})["type"] == "kubernetes.io/tls"
    pvc = defaulted("persistentvolumeclaims", {"spec": {"accessModes": ["ReadWriteOnce"]}})
    assert pvc["spec"]["volumeMode"] == "Filesystem" and pvc["status"] == {"phase": "Pending"}
    pv = defaulted("persistentvolumes", {"spec": {"hostPath": {"path": "/x"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem" and pv["status"] == {"phase": "Pending"}
    ep = defaulted("endpoints", {"subsets": [{"ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"


@pytest.mark.parametrize("plural", ["configmaps", "leases", "events", "nodes"])
def test_kinds_without_defaults_are_untouched(plural: str) -> None:
    obj = {"metadata": {"name": "x"}, "data": {"a": "b"}}
    assert defaulted(plural, obj) == obj


def test_defaulting_is_idempotent() -> None:
    once = defaulted("deployments", _workload("Deployment"))
    assert defaulted("deployments", once) == once


@pytest.mark.parametrize("rt", RESOURCES, ids=lambda r: r.plural)
@pytest.mark.parametrize("garbage", [
    {"spec": "x"}, {"spec": [1]}, {"spec": {"containers": "x", "template": 3, "ports": {"a": 1}}},
    {"spec": {"containers": [None, 3, {"image": 5, "ports": "80", "resources": {"limits": [1]}}],
              "volumes": [1], "strategy": "fast", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": "x"},
              "template": {"spec": {"containers": [{"env": [{"valueFrom": "x"}]}]}}}},
    {"status": "x", "subsets": "x"}, {"subsets": [{"ports": [1]}]},
])
def test_malformed_input_does_not_crash(rt: Any, garbage: Obj) -> None:
    apply_defaults(rt, copy.deepcopy(garbage))
