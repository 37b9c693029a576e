"""RBAC (rbac.authorization.k8s.io/v1) with Kubernetes' rule semantics.

Follows k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac (``RuleAllows`` and the
``*Matches`` helpers) and pkg/registry/rbac/validation (``ConfirmNoEscalation``, ``Covers``,
``BreakdownRule``):

- ClusterRoleBindings grant their ClusterRole's rules everywhere; RoleBindings grant a Role's or a
  ClusterRole's rules inside the binding's namespace only. Non-resource URLs and cluster-scoped
  requests are therefore reachable only through ClusterRoleBindings.
- RBAC only ever ALLOWs; everything else is NO_OPINION, so the next authorizer (or the final 403)
  decides.
- A ClusterRole with an ``aggregationRule`` holds the union of the rules of every ClusterRole its
  selectors match (what k8s' aggregation controller writes into ``rules``); resolved here when the
  roles change, so ``admin``/``edit``/``view`` grow with ``aggregate-to-*`` labelled roles.

The authorizer reads four :class:`LocalCache` s and derives a subject index from them whenever a
cache's ``generation`` moves, so a request costs a few dict lookups plus the rule checks of the
bindings that name the user or one of its groups.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubelite.api.registry import ResourceType, resource
from kubelite.api.validation import selector_matches
from kubelite.auth import (
    ALL_AUTHENTICATED,
    ALL_UNAUTHENTICATED,
    MASTERS,
    SA_USER_PREFIX,
    Attributes,
    Decision,
    UserInfo,
)
from kubelite.auth.cache import LocalCache

if TYPE_CHECKING:
    from kubelite.apiserver.objects import ObjectStore

__all__ = [
    "CLUSTER_ROLES",
    "CLUSTER_ROLE_BINDINGS",
    "GROUP",
    "ROLES",
    "ROLE_BINDINGS",
    "PolicyRule",
    "RBACAuthorizer",
    "bootstrap_policy",
    "covers",
    "rule_allows",
]

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
ROLES = resource(GROUP, "roles")
ROLE_BINDINGS = resource(GROUP, "rolebindings")
CLUSTER_ROLES = resource(GROUP, "clusterroles")
CLUSTER_ROLE_BINDINGS = resource(GROUP, "clusterrolebindings")

Obj = dict[str, Any]
RoleKey = tuple[str, str, str]  # (kind "Role"|"ClusterRole", namespace or "", name)
SubjectKey = tuple[str, str]  # ("User"|"Group", name); ServiceAccounts become their user name


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class PolicyRule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, rule: Mapping[str, Any]) -> PolicyRule:
        return cls(
            _strings(rule.get("verbs")),
            _strings(rule.get("apiGroups")),
            _strings(rule.get("resources")),
            _strings(rule.get("resourceNames")),
            _strings(rule.get("nonResourceURLs")),
        )

    def as_dict(self) -> Obj:
        out: Obj = {"verbs": list(self.verbs)}
        for key, value in (
            ("apiGroups", self.api_groups),
            ("resources", self.resources),
            ("resourceNames", self.resource_names),
            ("nonResourceURLs", self.non_resource_urls),
        ):
            if value:
                out[key] = list(value)
        return out

    def compact(self) -> str:
        """Go's ``rbacv1helpers.CompactString``: ``{APIGroups:[""], Resources:["pods"], Verbs:["get"]}``."""
        parts = [
            f"{label}:{_go_quote(value)}"
            for label, value in (
                ("APIGroups", self.api_groups),
                ("Resources", self.resources),
                ("NonResourceURLs", self.non_resource_urls),
                ("ResourceNames", self.resource_names),
                ("Verbs", self.verbs),
            )
            if value
        ]
        return "{" + ", ".join(parts) + "}"


def _q(value: str) -> str:
    # fmt's %q of a string (enough of it for names and rule fields)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _go_quote(values: Sequence[str]) -> str:
    # fmt's %q of a []string: ["a" "b"]
    return "[" + " ".join(_q(v) for v in values) + "]"


# --------------------------------------------------------------------------------------------
# Rule evaluation (RuleAllows)


def _resource_matches(rule: PolicyRule, combined: str, subresource: str) -> bool:
    for r in rule.resources:
        if r in ("*", combined):
            return True
        # "*/status" grants the status subresource of every resource.
        if subresource and len(r) == len(subresource) + 2 and r.startswith("*/") and r.endswith(subresource):
            return True
    return False


def _non_resource_url_matches(rule: PolicyRule, path: str) -> bool:
    for url in rule.non_resource_urls:
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: PolicyRule) -> bool:
    """Whether one rule grants the request (k8s ``RuleAllows``)."""
    if not ("*" in rule.verbs or attrs.verb in rule.verbs):
        return False
    if not attrs.resource_request:
        return _non_resource_url_matches(rule, attrs.path)
    if not ("*" in rule.api_groups or attrs.api_group in rule.api_groups):
        return False
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if not _resource_matches(rule, combined, attrs.subresource):
        return False
    # resourceNames restrict a rule to named requests: create/list/watch/deletecollection carry no
    # name, so they never match a rule that lists names.
    return not rule.resource_names or attrs.name in rule.resource_names


# --------------------------------------------------------------------------------------------
# Covers (escalation checks)


def _breakdown(rule: PolicyRule) -> Iterator[PolicyRule]:
    """One rule per (group, resource, verb[, name]) and per (url, verb), as k8s ``BreakdownRule``."""
    for group in rule.api_groups:
        for res in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    for name in rule.resource_names:
                        yield PolicyRule((verb,), (group,), (res,), (name,))
                else:
                    yield PolicyRule((verb,), (group,), (res,))
    for url in rule.non_resource_urls:
        for verb in rule.verbs:
            yield PolicyRule((verb,), non_resource_urls=(url,))


def _resources_cover(owner: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    if "*" in owner:
        return True
    for path in wanted:
        if path in owner:
            continue
        if "/" not in path or "*/" + path.split("/", 1)[1] not in owner:
            return False
    return True


def _url_covers(owner: str, sub: str) -> bool:
    return owner == sub or (owner.endswith("*") and sub.startswith(owner.rstrip("*")))


def _rule_covers(owner: PolicyRule, sub: PolicyRule) -> bool:
    verbs = "*" in owner.verbs or set(sub.verbs) <= set(owner.verbs)
    groups = "*" in owner.api_groups or set(sub.api_groups) <= set(owner.api_groups)
    urls = all(any(_url_covers(o, s) for o in owner.non_resource_urls) for s in sub.non_resource_urls)
    if sub.resource_names:
        names = not owner.resource_names or set(sub.resource_names) <= set(owner.resource_names)
    else:
        names = not owner.resource_names
    return verbs and groups and _resources_cover(owner.resources, sub.resources) and names and urls


def covers(owner_rules: Iterable[PolicyRule], wanted: Iterable[PolicyRule]) -> list[PolicyRule]:
    """The parts of ``wanted`` that ``owner_rules`` do not grant (empty: fully covered)."""
    owners = list(owner_rules)
    return [sub for rule in wanted for sub in _breakdown(rule) if not any(_rule_covers(o, sub) for o in owners)]


def _compact_rules(rules: list[PolicyRule]) -> list[PolicyRule]:
    # Merge the verbs of broken-down rules that differ only in verb, for a readable message.
    merged: dict[tuple[Any, ...], list[str]] = {}
    for r in rules:
        key = (r.api_groups, r.resources, r.resource_names, r.non_resource_urls)
        verbs = merged.setdefault(key, [])
        verbs.extend(v for v in r.verbs if v not in verbs)
    return [PolicyRule(tuple(v), g, res, n, u) for (g, res, n, u), v in merged.items()]


FULL_AUTHORITY = (
    PolicyRule(("*",), ("*",), ("*",)),
    PolicyRule(("*",), non_resource_urls=("*",)),
)


# --------------------------------------------------------------------------------------------
# The index


@dataclass
class _Binding:
    kind: str  # "RoleBinding" | "ClusterRoleBinding"
    namespace: str
    name: str
    role: RoleKey


class _Index:
    """Derived from the caches; rebuilt as a whole when any cache changed (changes are rare)."""

    def __init__(self, roles: LocalCache, cluster_roles: LocalCache, rbs: LocalCache, crbs: LocalCache) -> None:
        self.rules: dict[RoleKey, tuple[PolicyRule, ...]] = {}
        for obj in roles.list():
            ns, name = LocalCache.key_of(obj)
            self.rules[("Role", ns, name)] = tuple(PolicyRule.from_dict(_dict(r)) for r in obj.get("rules") or [])
        self._resolve_cluster_roles(cluster_roles.list())
        # Subject -> bindings; a RoleBinding is filed under its namespace, a ClusterRoleBinding under "".
        self.bindings: dict[tuple[str, SubjectKey], list[_Binding]] = defaultdict(list)
        for obj in crbs.list():
            self._add_binding("ClusterRoleBinding", obj, "")
        for obj in rbs.list():
            self._add_binding("RoleBinding", obj, LocalCache.key_of(obj)[0])

    def _resolve_cluster_roles(self, objs: list[Obj]) -> None:
        by_name = {LocalCache.key_of(o)[1]: o for o in objs}
        resolved: dict[str, tuple[PolicyRule, ...]] = {}

        def resolve(name: str, visiting: frozenset[str]) -> tuple[PolicyRule, ...]:
            if name in resolved:
                return resolved[name]
            obj = by_name[name]
            own = tuple(PolicyRule.from_dict(_dict(r)) for r in obj.get("rules") or [])
            selectors = _dict(obj.get("aggregationRule")).get("clusterRoleSelectors")
            if not isinstance(selectors, list):
                resolved[name] = own
                return own
            # An aggregated role's own rules are whatever the controller wrote; the selection is
            # authoritative, so recompute from the matched roles (transitively, cycle-safe).
            rules: list[PolicyRule] = []
            for other, other_obj in sorted(by_name.items()):
                if other == name or other in visiting:
                    continue
                labels = _dict(_dict(other_obj.get("metadata")).get("labels"))
                if any(selector_matches(_dict(s), labels) for s in selectors if isinstance(s, dict)):
                    rules.extend(r for r in resolve(other, visiting | {name}) if r not in rules)
            resolved[name] = tuple(rules)
            return resolved[name]

        for name in by_name:
            self.rules[("ClusterRole", "", name)] = resolve(name, frozenset())

    def _add_binding(self, kind: str, obj: Obj, namespace: str) -> None:
        ref = _dict(obj.get("roleRef"))
        ref_kind = ref.get("kind")
        if ref_kind not in ("Role", "ClusterRole") or (kind == "ClusterRoleBinding" and ref_kind != "ClusterRole"):
            return
        role: RoleKey = (ref_kind, namespace if ref_kind == "Role" else "", str(ref.get("name") or ""))
        binding = _Binding(kind, namespace, LocalCache.key_of(obj)[1], role)
        for subject in obj.get("subjects") or []:
            key = _subject_key(_dict(subject), namespace)
            if key is not None:
                self.bindings[(namespace, key)].append(binding)

    def role_rules(self, role: RoleKey) -> tuple[PolicyRule, ...] | None:
        return self.rules.get(role)


def _subject_key(subject: Obj, binding_namespace: str) -> SubjectKey | None:
    kind, name = subject.get("kind"), subject.get("name")
    if not isinstance(name, str) or not name:
        return None
    if kind in ("User", "Group"):
        return (kind, name)
    if kind == "ServiceAccount":
        # A RoleBinding's ServiceAccount subject defaults to the binding's namespace.
        ns = subject.get("namespace") or binding_namespace
        return ("User", f"{SA_USER_PREFIX}{ns}:{name}") if ns else None
    return None


def _subject_keys(user: UserInfo) -> list[SubjectKey]:
    return [("User", user.name), *(("Group", g) for g in user.groups)]


# --------------------------------------------------------------------------------------------
# The authorizer


class RBACAuthorizer:
    def __init__(self, objects: ObjectStore) -> None:
        self.roles = LocalCache(objects, ROLES)
        self.cluster_roles = LocalCache(objects, CLUSTER_ROLES)
        self.role_bindings = LocalCache(objects, ROLE_BINDINGS)
        self.cluster_role_bindings = LocalCache(objects, CLUSTER_ROLE_BINDINGS)
        self._caches = (self.roles, self.cluster_roles, self.role_bindings, self.cluster_role_bindings)
        self._index: _Index | None = None
        self._built_at: tuple[int, ...] = ()

    def start(self) -> None:
        for cache in self._caches:
            cache.start()

    async def wait_synced(self, timeout: float = 30) -> None:
        for cache in self._caches:
            await cache.wait_synced(timeout)

    async def stop(self) -> None:
        for cache in self._caches:
            await cache.stop()

    def _current(self) -> _Index:
        generations = tuple(c.generation for c in self._caches)
        if self._index is None or generations != self._built_at:
            self._index = _Index(*self._caches)
            self._built_at = generations
        return self._index

    def _visit(self, user: UserInfo, namespace: str) -> Iterator[tuple[_Binding, tuple[PolicyRule, ...]]]:
        """Every binding that applies to ``user`` at ``namespace`` ("" = cluster scope only) with its rules."""
        index = self._current()
        scopes = ("", namespace) if namespace else ("",)
        for scope in scopes:
            for key in _subject_keys(user):
                for binding in index.bindings.get((scope, key), ()):
                    rules = index.role_rules(binding.role)
                    if rules is not None:
                        yield binding, rules

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        # A non-resource request has no namespace, so only ClusterRoleBindings can grant it.
        namespace = attrs.namespace if attrs.resource_request else ""
        for binding, rules in self._visit(attrs.user, namespace):
            for rule in rules:
                if rule_allows(attrs, rule):
                    where = f' in namespace "{binding.namespace}"' if binding.namespace else ""
                    return Decision.ALLOW, (
                        f'RBAC: allowed by {binding.kind} "{binding.name}"{where} '
                        f'of {binding.role[0]} "{binding.role[2]}" to {attrs.user.name}'
                    )
        return Decision.NO_OPINION, ""

    def allows(self, attrs: Attributes) -> bool:
        """Synchronous form of :meth:`authorize`, for checks made inside the write path."""
        namespace = attrs.namespace if attrs.resource_request else ""
        return any(rule_allows(attrs, r) for _b, rules in self._visit(attrs.user, namespace) for r in rules)

    def rules_for(self, user: UserInfo, namespace: str) -> list[PolicyRule]:
        """Every rule granted to ``user`` in ``namespace`` ("" = cluster-wide grants only)."""
        out: list[PolicyRule] = []
        for _binding, rules in self._visit(user, namespace):
            out.extend(rules)
        return out

    # ----------------------------------------------------------------------------------------
    # Escalation prevention (pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased)

    def escalation_error(
        self, user: UserInfo, rt: ResourceType, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None
    ) -> str | None:
        """Why ``user`` may not write this RBAC object, or None. Other kinds: always None.

        ``old`` (on update) lets an edit of only the garbage collector's fields (ownerReferences,
        finalizers) through, as k8s does. The message is the detail of k8s' Forbidden error; the
        caller prefixes it with ``<plural>.<group> "<name>" is forbidden: `` and answers 403.
        """
        if rt.group != GROUP or MASTERS in user.groups:
            return None
        if old is not None and _without_gc_fields(obj) == _without_gc_fields(old):
            return None
        meta = _dict(obj.get("metadata"))
        namespace = str(meta.get("namespace") or "") if rt.namespaced else ""
        name = str(meta.get("name") or "")
        if rt.plural in ("roles", "clusterroles"):
            return self._role_escalation(user, rt, obj, namespace, name)
        if rt.plural in ("rolebindings", "clusterrolebindings"):
            return self._binding_escalation(user, obj, namespace)
        return None

    def _may(self, user: UserInfo, verb: str, plural: str, namespace: str, name: str) -> bool:
        return self.allows(Attributes(user, verb, True, GROUP, "v1", plural, "", namespace, name))

    def _role_escalation(
        self, user: UserInfo, rt: ResourceType, obj: Mapping[str, Any], namespace: str, name: str
    ) -> str | None:
        if self._may(user, "escalate", rt.plural, namespace, name):
            return None
        rules = [PolicyRule.from_dict(_dict(r)) for r in obj.get("rules") or []]
        problem = self._no_escalation(user, namespace, rules)
        if problem is None and rt.plural == "clusterroles" and obj.get("aggregationRule") is not None:
            # An aggregation rule can gather anything, so setting one needs everything.
            if self._no_escalation(user, "", list(FULL_AUTHORITY)) is not None:
                return "must have cluster-admin privileges to use the aggregationRule"
        return problem

    def _binding_escalation(self, user: UserInfo, obj: Mapping[str, Any], namespace: str) -> str | None:
        ref = _dict(obj.get("roleRef"))
        kind, ref_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        plural = "roles" if kind == "Role" else "clusterroles"
        # "bind" on the referenced role (resourceNames honoured) lets a user grant what it lacks.
        if self._may(user, "bind", plural, namespace, ref_name):
            return None
        rules = self._current().role_rules((kind, namespace if kind == "Role" else "", ref_name))
        if rules is None:
            return f'{plural}.{GROUP} "{ref_name}" not found'
        return self._no_escalation(user, namespace, list(rules))

    def _no_escalation(self, user: UserInfo, namespace: str, rules: list[PolicyRule]) -> str | None:
        missing = covers(self.rules_for(user, namespace), rules)
        if not missing:
            return None
        listing = "\n".join(r.compact() for r in _compact_rules(missing))
        return (
            f"user {_q(user.name)} (groups={_go_quote(user.groups)}) is attempting to grant "
            f"RBAC permissions not currently held:\n{listing}"
        )


def _without_gc_fields(obj: Mapping[str, Any]) -> Obj:
    # k8s IsOnlyMutatingGCFields, plus the fields the server itself rewrites on every write.
    out = dict(obj)
    out["metadata"] = {
        k: v for k, v in _dict(obj.get("metadata")).items()
        if k not in ("ownerReferences", "finalizers", "resourceVersion", "managedFields")
    }  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go, trimmed to what
# kubelite serves plus the groups a user would expect)

_READ = ["get", "list", "watch"]
_WRITE = ["create", "update", "patch", "delete", "deletecollection"]
_RW = [*_READ, *_WRITE]
_AGG = "rbac.authorization.k8s.io/aggregate-to-"
_DEFAULT_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_DEFAULT_ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def _rule(verbs: list[str], groups: list[str], resources: list[str]) -> Obj:
    return {"verbs": verbs, "apiGroups": groups, "resources": resources}


def _urls(verbs: list[str], urls: list[str]) -> Obj:
    return {"verbs": verbs, "nonResourceURLs": urls}


def _cluster_role(name: str, rules: list[Obj], labels: Mapping[str, str] | None = None,
                  aggregate_from: str | None = None) -> Obj:
    obj: Obj = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {**_DEFAULT_LABELS, **(labels or {})},
            "annotations": dict(_DEFAULT_ANNOTATIONS),
        },
        "rules": rules,
    }
    if aggregate_from is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {_AGG + aggregate_from: "true"}}]}
    return obj


def _cluster_role_binding(name: str, role: str, groups: list[str]) -> Obj:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(_DEFAULT_LABELS), "annotations": dict(_DEFAULT_ANNOTATIONS)},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups],
    }


_DISCOVERY_URLS = [
    "/livez", "/readyz", "/healthz", "/version", "/version/",
    "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*",
]  # fmt: skip
_PUBLIC_URLS = ["/livez", "/readyz", "/healthz", "/version", "/version/"]


def bootstrap_policy() -> list[Obj]:
    """The default ClusterRoles and ClusterRoleBindings, created at server bootstrap if absent."""
    view = [
        _rule(_READ, [""], [
            "pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
            "services/status", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "configmaps",
        ]),
        _rule(_READ, [""], [
            "limitranges", "resourcequotas", "bindings", "events", "pods/status", "resourcequotas/status",
            "namespaces/status", "replicationcontrollers/status", "pods/log",
        ]),
        # Namespace-scoped read of "namespaces" means reading this namespace.
        _rule(_READ, [""], ["namespaces"]),
        _rule(_READ, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(_READ, ["apps"], [
            "controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale", "daemonsets",
            "daemonsets/status", "deployments", "deployments/status", "deployments/scale", "replicasets",
            "replicasets/status", "replicasets/scale",
        ]),
        _rule(_READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        _rule(_READ, ["batch"], ["jobs", "cronjobs", "cronjobs/status", "jobs/status"]),
        _rule(_READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        _rule(_READ, ["networking.k8s.io"], ["networkpolicies", "ingresses", "ingresses/status"]),
    ]  # fmt: skip
    edit = [
        # Reading secrets and exec-like subresources escalates, so it is edit's, not view's.
        _rule(_READ, [""], ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(_WRITE, [""], ["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
        _rule(["create"], [""], ["pods/eviction"]),
        _rule(_WRITE, [""], [
            "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
            "services/proxy", "persistentvolumeclaims", "configmaps", "secrets", "events",
        ]),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(_WRITE, ["apps"], [
            "statefulsets", "statefulsets/scale", "daemonsets", "deployments", "deployments/scale",
            "deployments/rollback", "replicasets", "replicasets/scale",
        ]),
        _rule(_WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        _rule(_WRITE, ["batch"], ["jobs", "cronjobs"]),
        _rule(_WRITE, ["policy"], ["poddisruptionbudgets"]),
        _rule(_WRITE, ["networking.k8s.io"], ["networkpolicies", "ingresses"]),
        _rule(_RW, ["coordination.k8s.io"], ["leases"]),
    ]  # fmt: skip
    admin = [
        _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
        _rule(_RW, [GROUP], ["roles", "rolebindings"]),
    ]
    return [
        _cluster_role("cluster-admin", [_rule(["*"], ["*"], ["*"]), _urls(["*"], ["*"])]),
        # admin ⊇ edit ⊇ view through aggregation, as in k8s: each aggregated role carries the
        # label its parent selects, and user roles with an aggregate-to-* label extend them.
        _cluster_role("admin", [], aggregate_from="admin"),
        _cluster_role("edit", [], {_AGG + "admin": "true"}, aggregate_from="edit"),
        _cluster_role("view", [], {_AGG + "edit": "true"}, aggregate_from="view"),
        _cluster_role("system:aggregate-to-admin", admin, {_AGG + "admin": "true"}),
        _cluster_role("system:aggregate-to-edit", edit, {_AGG + "edit": "true"}),
        _cluster_role("system:aggregate-to-view", view, {_AGG + "view": "true"}),
        _cluster_role("system:discovery", [_urls(["get"], _DISCOVERY_URLS)]),
        # k8s' basic-user grants self-reviews, which kubelite does not serve: discovery only.
        _cluster_role("system:basic-user", [_urls(["get"], _DISCOVERY_URLS)]),
        _cluster_role("system:public-info-viewer", [_urls(["get"], _PUBLIC_URLS)]),
        _cluster_role_binding("cluster-admin", "cluster-admin", [MASTERS]),
        _cluster_role_binding("system:discovery", "system:discovery", [ALL_AUTHENTICATED]),
        _cluster_role_binding("system:basic-user", "system:basic-user", [ALL_AUTHENTICATED]),
        _cluster_role_binding(
            "system:public-info-viewer", "system:public-info-viewer", [ALL_AUTHENTICATED, ALL_UNAUTHENTICATED]
        ),
    ]
