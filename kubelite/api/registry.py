"""The table of served resource types: one entry per (group, version, plural).

Everything that needs to know "what is a Deployment" (the API server's routes, discovery, the
CLI's kind lookup, validation) reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "binding", "log"
    categories: tuple[str, ...] = ()
    # The kubernetes client model class name that describes the schema (e.g. "V1Pod").
    model: str = ""
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def key_prefix(self, namespace: str | None = None) -> str:
        """Storage prefix: /registry/<group>/<plural>/[<namespace>/] (core group spelled 'core')."""
        base = f"/registry/{self.group or 'core'}/{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.key_prefix(namespace)}{name}"
        return f"{self.key_prefix()}{name}"


_ALL = ("all",)
_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",), (), "V1Namespace",
                 ("create", "delete", "get", "list", "patch", "update", "watch")),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), ("status",), (), "V1Node"),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), ("status", "binding", "log", "exec"), _ALL, "V1Pod"),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("status",), _ALL, "V1Service",
                 ("create", "delete", "get", "list", "patch", "update", "watch")),
    ResourceType("", "v1", "endpoints", "Endpoints", True, ("ep",), (), (), "V1Endpoints"),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",), (), (), "V1ConfigMap"),
    ResourceType("", "v1", "secrets", "Secret", True, (), (), (), "V1Secret"),
    ResourceType("", "v1", "events", "Event", True, ("ev",), (), (), "CoreV1Event"),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",),
                 ("status",), (), "V1PersistentVolumeClaim"),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",), (),
                 "V1PersistentVolume"),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), _ALL,
                 "V1Deployment"),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), _ALL,
                 "V1ReplicaSet"),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), _ALL, "V1DaemonSet"),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), _ALL,
                 "V1StatefulSet"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, (), (), (), "V1Lease"),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), ("token",), (), "V1ServiceAccount"),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), (), (), "V1Role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (), (), (), "V1RoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, (), (), (), "V1ClusterRole"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, (), (), (),
                 "V1ClusterRoleBinding"),
)

GROUP_VERSIONS: tuple[tuple[str, str], ...] = tuple(
    dict.fromkeys((r.group, r.version) for r in RESOURCES)
)


class UnknownResourceError(LookupError):
    pass


def by_path(group: str, version: str, plural: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.api_version == api_version and r.kind == kind:
            return r
    return None


def kinds_named(kind: str) -> list[ResourceType]:
    """Every served type whose kind is ``kind``, whatever its apiVersion (for 'wrong apiVersion' errors)."""
    return [r for r in RESOURCES if r.kind == kind]


def lookup(name: str) -> ResourceType:
    """Resolve what a CLI user typed: plural, singular, kind, short name, or 'plural.group'."""
    wanted = name.lower()
    group_hint = None
    if "." in wanted:
        wanted, group_hint = wanted.split(".", 1)
    for r in RESOURCES:
        if group_hint is not None and r.group != group_hint:
            continue
        if wanted in (r.plural, r.singular, r.kind.lower(), *r.short_names):
            return r
    raise UnknownResourceError(f'the server doesn\'t have a resource type "{name}"')


def resource(group: str, plural: str, version: str = "v1") -> ResourceType:
    """A served type the code depends on by name (raises if the table lacks it)."""
    rt = by_path(group, version, plural)
    if rt is None:
        raise UnknownResourceError(f"{plural}.{group or 'core'}/{version} is not served")
    return rt
