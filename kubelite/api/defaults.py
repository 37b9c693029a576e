"""Kubernetes' defaulting (pkg/apis/*/v1/defaults.go), applied in place to wire-format dicts.

Runs before validation, so it must survive malformed input: anything not shaped as expected is
left alone for validate() to report with a proper field path rather than crashing here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from kubelite.api.registry import ResourceType

Obj = dict[str, Any]

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


def _dict(parent: Obj, key: str, create: bool = True) -> Obj | None:
    """parent[key] as a dict, creating it when absent/null; None when it holds something else."""
    value = parent.get(key)
    if value is None and create:
        value = parent[key] = {}
    return value if isinstance(value, dict) else None


def _dicts(value: Any) -> list[Obj]:
    """The dict items of a list field (non-dict items are validation's problem)."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _setdefault(obj: Obj, key: str, value: Any) -> None:
    # JSON null means "unset" to Kubernetes, so it is defaulted like a missing key.
    if obj.get(key) is None:
        obj[key] = value


def image_pull_policy(image: str) -> str:
    """Always for ':latest' or untagged images, IfNotPresent for pinned tags/digests."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]  # a registry host:port must not be mistaken for a tag
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    _setdefault(probe, "timeoutSeconds", 1)
    _setdefault(probe, "periodSeconds", 10)
    _setdefault(probe, "successThreshold", 1)
    _setdefault(probe, "failureThreshold", 3)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        _setdefault(http, "path", "/")
        _setdefault(http, "scheme", "HTTP")


def _default_container(c: Obj) -> None:
    image = c.get("image")
    if isinstance(image, str) and image:
        _setdefault(c, "imagePullPolicy", image_pull_policy(image))
    _setdefault(c, "terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH)
    _setdefault(c, "terminationMessagePolicy", "File")
    for port in _dicts(c.get("ports")):
        _setdefault(port, "protocol", "TCP")
    for env in _dicts(c.get("env")):
        value_from = env.get("valueFrom")
        field_ref = value_from.get("fieldRef") if isinstance(value_from, dict) else None
        if isinstance(field_ref, dict):
            _setdefault(field_ref, "apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))
    resources = c.get("resources")
    if isinstance(resources, dict):
        # A container that states only limits gets requests == limits (SetDefaults_Pod), which is
        # what the scheduler then reserves.
        limits = resources.get("limits")
        if isinstance(limits, dict) and limits:
            requests = resources.get("requests")
            if requests is None:
                requests = resources["requests"] = {}
            if isinstance(requests, dict):
                for name, qty in limits.items():
                    requests.setdefault(name, qty)


def _default_volume(v: Obj) -> None:
    sources = [k for k in v if k != "name" and v[k] is not None]
    if not sources:
        v["emptyDir"] = {}  # a volume with no source is an emptyDir
    for kind in ("secret", "configMap", "downwardAPI", "projected"):
        src = v.get(kind)
        if isinstance(src, dict):
            _setdefault(src, "defaultMode", 420)  # 0644


def default_pod_spec(spec: Obj, *, is_pod: bool = True) -> None:
    """SetDefaults_PodSpec; is_pod adds what pods (not templates) get from admission."""
    _setdefault(spec, "restartPolicy", "Always")
    _setdefault(spec, "dnsPolicy", "ClusterFirst")
    _setdefault(spec, "schedulerName", "default-scheduler")
    _setdefault(spec, "terminationGracePeriodSeconds", 30)
    _setdefault(spec, "securityContext", {})
    _setdefault(spec, "enableServiceLinks", True)
    # The deprecated serviceAccount alias feeds serviceAccountName (done in conversion upstream).
    if spec.get("serviceAccountName") is None and isinstance(spec.get("serviceAccount"), str):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if is_pod:
        # The ServiceAccount admission plugin, not defaulting, does this upstream, and only for
        # pods: templates keep it unset so `kubectl apply` diffs stay clean.
        _setdefault(spec, "serviceAccountName", "default")
        if spec.get("serviceAccount") is None:
            spec["serviceAccount"] = spec["serviceAccountName"]
    for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        _default_container(c)
    for v in _dicts(spec.get("volumes")):
        _default_volume(v)


def _default_template(spec: Obj) -> None:
    template = _dict(spec, "template", create=False)
    if template is None:
        return
    pod_spec = _dict(template, "spec", create=False)
    if pod_spec is not None:
        default_pod_spec(pod_spec, is_pod=False)


def _default_pvc_spec(spec: Obj) -> None:
    _setdefault(spec, "volumeMode", "Filesystem")


def _pod(obj: Obj) -> None:
    spec = _dict(obj, "spec", create=False)
    if spec is not None:
        default_pod_spec(spec, is_pod=True)


def _deployment(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _setdefault(spec, "replicas", 1)
    strategy = _dict(spec, "strategy")
    if strategy is not None:
        _setdefault(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = _dict(strategy, "rollingUpdate")
            if ru is not None:
                _setdefault(ru, "maxUnavailable", "25%")
                _setdefault(ru, "maxSurge", "25%")
    _setdefault(spec, "revisionHistoryLimit", 10)
    _setdefault(spec, "progressDeadlineSeconds", 600)
    _default_template(spec)


def _replicaset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _setdefault(spec, "replicas", 1)
    _default_template(spec)


def _daemonset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    strategy = _dict(spec, "updateStrategy")
    if strategy is not None:
        _setdefault(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = _dict(strategy, "rollingUpdate")
            if ru is not None:
                _setdefault(ru, "maxUnavailable", 1)
                _setdefault(ru, "maxSurge", 0)
    _setdefault(spec, "revisionHistoryLimit", 10)
    _default_template(spec)


def _statefulset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _setdefault(spec, "replicas", 1)
    _setdefault(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    if strategy is not None:
        _setdefault(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = _dict(strategy, "rollingUpdate")
            if ru is not None:
                _setdefault(ru, "partition", 0)
    _setdefault(spec, "revisionHistoryLimit", 10)
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        _setdefault(retention, "whenDeleted", "Retain")
        _setdefault(retention, "whenScaled", "Retain")
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        claim_spec = _dict(claim, "spec", create=False)
        if claim_spec is not None:
            _default_pvc_spec(claim_spec)
    _default_template(spec)


def _service(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _setdefault(spec, "type", "ClusterIP")
    _setdefault(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        cfg = _dict(spec, "sessionAffinityConfig")
        client_ip = _dict(cfg, "clientIP") if cfg is not None else None
        if client_ip is not None:
            _setdefault(client_ip, "timeoutSeconds", 10800)
    if spec["type"] != "ExternalName":
        _setdefault(spec, "internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        _setdefault(spec, "externalTrafficPolicy", "Cluster")
    for port in _dicts(spec.get("ports")):
        _setdefault(port, "protocol", "TCP")
        if port.get("targetPort") is None and port.get("port") is not None:
            port["targetPort"] = port["port"]
    # clusterIP is deliberately left alone: the API server allocates it.


def _namespace(obj: Obj) -> None:
    status = _dict(obj, "status")
    if status is not None:
        _setdefault(status, "phase", "Active")


def _secret(obj: Obj) -> None:
    _setdefault(obj, "type", "Opaque")
    _merge_string_data(obj)


def _merge_string_data(obj: Obj) -> None:
    """stringData is write-only: base64 each value into data (stringData wins), then drop it.

    Kubernetes does this in v1 -> internal conversion, so validation, storage and every response
    see only ``data``. Malformed input is left in place for validation to report.
    """
    string_data = obj.get("stringData")
    if string_data is None:
        obj.pop("stringData", None)
        return
    if not isinstance(string_data, dict) or not all(isinstance(v, str) for v in string_data.values()):
        return
    if string_data:
        data = _dict(obj, "data")
        if data is None:
            return
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()
    del obj["stringData"]


def _pvc(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is not None:
        _default_pvc_spec(spec)
    status = _dict(obj, "status")
    if status is not None:
        _setdefault(status, "phase", "Pending")


def _pv(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is not None:
        _setdefault(spec, "persistentVolumeReclaimPolicy", "Retain")
        _setdefault(spec, "volumeMode", "Filesystem")
    status = _dict(obj, "status")
    if status is not None:
        _setdefault(status, "phase", "Pending")


def _endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            _setdefault(port, "protocol", "TCP")


def _rbac_binding(obj: Obj) -> None:
    """rbac/v1 defaults: roleRef's and User/Group subjects' apiGroup is the RBAC group; a
    ServiceAccount subject's is the core group."""
    ref = _dict(obj, "roleRef", create=False)
    if ref is not None and not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for subject in _dicts(obj.get("subjects")):
        if "apiGroup" not in subject or subject["apiGroup"] is None:
            subject["apiGroup"] = "" if subject.get("kind") == "ServiceAccount" else RBAC_GROUP


RBAC_GROUP = "rbac.authorization.k8s.io"

_BY_KIND: dict[tuple[str, str], Callable[[Obj], None]] = {
    (RBAC_GROUP, "RoleBinding"): _rbac_binding,
    (RBAC_GROUP, "ClusterRoleBinding"): _rbac_binding,
    ("", "Pod"): _pod,
    ("", "Service"): _service,
    ("", "Namespace"): _namespace,
    ("", "Secret"): _secret,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "PersistentVolume"): _pv,
    ("", "Endpoints"): _endpoints,
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replicaset,
    ("apps", "DaemonSet"): _daemonset,
    ("apps", "StatefulSet"): _statefulset,
}


def apply_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Fill in Kubernetes' defaults for ``rt`` in place; unknown kinds and bad shapes are left alone."""
    if not isinstance(obj, dict):
        return
    fn = _BY_KIND.get((rt.group, rt.kind))
    if fn is not None:
        fn(obj)
