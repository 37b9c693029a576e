"""RBAC rule semantics and escalation prevention, through a real in-process API server.

RBAC objects are created through the API; the authorizer's watch caches over the server's
ObjectStore see them as the server's own authorizer would. The server has bootstrapped the default
policy (cluster-admin, admin/edit/view, discovery), which the aggregation tests rely on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from kubelite.api.registry import ResourceType, resource
from kubelite.auth import ALL_AUTHENTICATED, MASTERS, Attributes, Decision, UserInfo
from kubelite.auth.rbac import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    ROLE_BINDINGS,
    ROLES,
    RBACAuthorizer,
    bootstrap_policy,
)
from kubelite.client import ApiClient, ApiError
from tests.helpers import eventually

Obj = dict[str, Any]
ALLOW, NO_OPINION = Decision.ALLOW, Decision.NO_OPINION
NAMESPACES = resource("", "namespaces")
RBAC = "rbac.authorization.k8s.io"


def rule(
    verbs: list[str],
    groups: list[str] | None = None,
    resources: list[str] | None = None,
    names: list[str] | None = None,
    urls: list[str] | None = None,
) -> Obj:
    out: Obj = {"verbs": verbs}
    if groups is not None:
        out["apiGroups"] = groups
    if resources is not None:
        out["resources"] = resources
    if names:
        out["resourceNames"] = names
    if urls:
        out["nonResourceURLs"] = urls
    return out


def role(name: str, rules: list[Obj], ns: str | None = None, labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, **({"namespace": ns} if ns else {}), **({"labels": labels} if labels else {})}
    return {"metadata": meta, "rules": rules}


def user_subject(name: str) -> Obj:
    return {"kind": "User", "apiGroup": RBAC, "name": name}


def group_subject(name: str) -> Obj:
    return {"kind": "Group", "apiGroup": RBAC, "name": name}


def sa_subject(name: str, ns: str | None = None) -> Obj:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": ns} if ns else {})}


def binding(name: str, role_kind: str, role_name: str, subjects: list[Obj], ns: str | None = None) -> Obj:
    meta: Obj = {"name": name, **({"namespace": ns} if ns else {})}
    return {
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role_name},
        "subjects": subjects,
    }


def user(name: str, *groups: str) -> UserInfo:
    return UserInfo(name, groups)


def sa(ns: str, name: str) -> UserInfo:
    return UserInfo(
        f"system:serviceaccount:{ns}:{name}", ("system:serviceaccounts", f"system:serviceaccounts:{ns}")
    )


def req(
    who: UserInfo, verb: str, res: str, ns: str = "", name: str = "", sub: str = "", group: str = ""
) -> Attributes:
    return Attributes(who, verb, True, group, "v1", res, sub, ns, name, "")


def url(who: UserInfo, verb: str, path: str) -> Attributes:
    return Attributes(who, verb, False, path=path)


@dataclass
class Env:
    client: ApiClient
    authz: RBACAuthorizer

    async def create(self, rt: ResourceType, obj: Obj) -> Obj:
        created = await self.client.create(rt, obj)
        await self.seen(rt, created)
        return created

    async def seen(self, rt: ResourceType, obj: Obj) -> None:
        """Wait until the authorizer's cache holds this version of ``obj`` (the watch delivered it)."""
        cache = {
            c.rt: c
            for c in (
                self.authz.roles,
                self.authz.cluster_roles,
                self.authz.role_bindings,
                self.authz.cluster_role_bindings,
            )
        }[rt]
        m = obj["metadata"]

        async def current() -> bool:
            cached = cache.get(m.get("namespace"), m["name"])
            return cached is not None and cached["metadata"]["resourceVersion"] == m["resourceVersion"]

        await eventually(current, 10, f"{rt.kind} {m['name']} in the RBAC cache")

    async def decide(self, attrs: Attributes) -> Decision:
        return (await self.authz.authorize(attrs))[0]


@pytest.fixture
async def env(inproc_api: Any) -> AsyncIterator[Env]:
    client: ApiClient = inproc_api.client
    for ns in ("team-a", "team-b", "team-c"):
        await client.create(NAMESPACES, {"metadata": {"name": ns}})
    authz = RBACAuthorizer(inproc_api.api.objects)
    authz.start()
    try:
        await authz.wait_synced()
        yield Env(client, authz)
    finally:
        await authz.stop()


POLICY: list[tuple[ResourceType, Obj]] = [
    (
        ROLES,
        role(
            "pod-reader",
            [rule(["get", "list", "watch"], [""], ["pods"]), rule(["get"], [""], ["pods/log"])],
            "team-a",
        ),
    ),
    (
        ROLES,
        role("app-config", [rule(["get", "update"], [""], ["configmaps"], names=["app-config"])], "team-a"),
    ),
    (ROLES, role("all-apps", [rule(["*"], ["apps"], ["*"])], "team-a")),
    (ROLES, role("any-status", [rule(["get"], ["*"], ["*/status"])], "team-a")),
    (CLUSTER_ROLES, role("secret-reader", [rule(["get", "list"], [""], ["secrets"])])),
    (CLUSTER_ROLES, role("node-viewer", [rule(["get", "list"], [""], ["nodes"])])),
    (CLUSTER_ROLES, role("metrics", [rule(["get"], urls=["/metrics", "/logs/*"])])),
    (ROLE_BINDINGS, binding("read-pods", "Role", "pod-reader", [user_subject("alice")], "team-a")),
    (ROLE_BINDINGS, binding("config", "Role", "app-config", [group_subject("devs")], "team-a")),
    # A ServiceAccount subject without a namespace means the binding's namespace.
    (ROLE_BINDINGS, binding("builder", "Role", "all-apps", [sa_subject("builder")], "team-a")),
    (ROLE_BINDINGS, binding("status", "Role", "any-status", [user_subject("carol")], "team-a")),
    # A ClusterRole through a RoleBinding: its rules, in that namespace only.
    (ROLE_BINDINGS, binding("secrets", "ClusterRole", "secret-reader", [user_subject("alice")], "team-b")),
    # Non-resource URLs cannot be granted by a RoleBinding.
    (ROLE_BINDINGS, binding("metrics", "ClusterRole", "metrics", [user_subject("dave")], "team-a")),
    (CLUSTER_ROLE_BINDINGS, binding("nodes", "ClusterRole", "node-viewer", [user_subject("bob")])),
    (CLUSTER_ROLE_BINDINGS, binding("metrics", "ClusterRole", "metrics", [group_subject("ops")])),
    (
        CLUSTER_ROLE_BINDINGS,
        binding("robot-secrets", "ClusterRole", "secret-reader", [sa_subject("robot", "team-b")]),
    ),
]

alice, bob, carol, dave = user("alice"), user("bob"), user("carol"), user("dave")
eve = user("eve", "devs")
oscar = user("oscar", "ops")
builder, builder_b, robot = sa("team-a", "builder"), sa("team-b", "builder"), sa("team-b", "robot")

CASES: list[tuple[str, Attributes, Decision]] = [
    ("verb granted", req(alice, "get", "pods", "team-a", "p"), ALLOW),
    ("list granted", req(alice, "list", "pods", "team-a"), ALLOW),
    ("verb not granted", req(alice, "delete", "pods", "team-a", "p"), NO_OPINION),
    ("RoleBinding is namespace-scoped", req(alice, "get", "pods", "team-b", "p"), NO_OPINION),
    ("RoleBinding does not grant cluster-wide", req(alice, "list", "pods", ""), NO_OPINION),
    ("subresource granted by resource/sub", req(alice, "get", "pods", "team-a", "p", sub="log"), ALLOW),
    ("resource does not imply subresource", req(alice, "get", "pods", "team-a", "p", sub="exec"), NO_OPINION),
    ("apiGroup must match", req(alice, "get", "pods", "team-a", "p", group="apps"), NO_OPINION),
    ("ClusterRole via RoleBinding in its namespace", req(alice, "get", "secrets", "team-b", "s"), ALLOW),
    ("ClusterRole via RoleBinding elsewhere", req(alice, "get", "secrets", "team-a", "s"), NO_OPINION),
    ("ClusterRole via RoleBinding cluster-wide", req(alice, "list", "secrets", ""), NO_OPINION),
    ("group subject, named resource", req(eve, "get", "configmaps", "team-a", "app-config"), ALLOW),
    ("resourceNames with update", req(eve, "update", "configmaps", "team-a", "app-config"), ALLOW),
    ("resourceNames: other name", req(eve, "get", "configmaps", "team-a", "other"), NO_OPINION),
    ("resourceNames: list has no name", req(eve, "list", "configmaps", "team-a"), NO_OPINION),
    ("resourceNames: create has no name", req(eve, "create", "configmaps", "team-a"), NO_OPINION),
    ("group needed", req(user("eve"), "get", "configmaps", "team-a", "app-config"), NO_OPINION),
    (
        "SA subject, verb and resource wildcards",
        req(builder, "create", "deployments", "team-a", group="apps"),
        ALLOW,
    ),
    (
        "resource * covers subresources",
        req(builder, "patch", "deployments", "team-a", "d", "scale", "apps"),
        ALLOW,
    ),
    ("* resource stays within its apiGroup", req(builder, "create", "pods", "team-a"), NO_OPINION),
    ("SA of another namespace", req(builder_b, "create", "deployments", "team-a", group="apps"), NO_OPINION),
    (
        "*/status any resource's status",
        req(carol, "get", "deployments", "team-a", "d", "status", "apps"),
        ALLOW,
    ),
    (
        "*/status is not the resource",
        req(carol, "get", "deployments", "team-a", "d", group="apps"),
        NO_OPINION,
    ),
    (
        "*/status other subresource",
        req(carol, "get", "deployments", "team-a", "d", "scale", "apps"),
        NO_OPINION,
    ),
    ("ClusterRoleBinding cluster-scoped", req(bob, "get", "nodes", "", "n1"), ALLOW),
    ("ClusterRoleBinding: no subresource", req(bob, "get", "nodes", "", "n1", "status"), NO_OPINION),
    ("ClusterRoleBinding to a SA: any namespace", req(robot, "list", "secrets", "team-c"), ALLOW),
    ("ClusterRoleBinding to a SA: cluster-wide", req(robot, "list", "secrets", ""), ALLOW),
    ("nonResourceURL exact", url(oscar, "get", "/metrics"), ALLOW),
    ("nonResourceURL prefix*", url(oscar, "get", "/logs/kubelet.log"), ALLOW),
    ("nonResourceURL prefix* is a prefix of the path", url(oscar, "get", "/logsx"), NO_OPINION),
    ("nonResourceURL verb", url(oscar, "post", "/metrics"), NO_OPINION),
    ("nonResourceURL via RoleBinding never", url(dave, "get", "/metrics"), NO_OPINION),
    ("unknown user", req(user("mallory"), "get", "pods", "team-a", "p"), NO_OPINION),
    (
        "bootstrap: system:masters are cluster-admin",
        req(user("root", MASTERS), "delete", "nodes", "", "n"),
        ALLOW,
    ),
    ("bootstrap: cluster-admin non-resource", url(user("root", MASTERS), "delete", "/anything"), ALLOW),
    (
        "bootstrap: discovery for authenticated",
        url(user("x", ALL_AUTHENTICATED), "get", "/apis/apps/v1"),
        ALLOW,
    ),
    ("bootstrap: discovery is read-only", url(user("x", ALL_AUTHENTICATED), "post", "/api"), NO_OPINION),
]


async def test_rule_semantics(env: Env) -> None:
    for rt, obj in POLICY:
        await env.create(rt, obj)
    wrong = [
        (what, expected, got)
        for what, attrs, expected in CASES
        if (got := await env.decide(attrs)) != expected
    ]
    assert wrong == []
    decision, reason = await env.authz.authorize(req(alice, "get", "secrets", "team-b", "s"))
    assert (decision, reason) == (
        ALLOW,
        'RBAC: allowed by RoleBinding "secrets" in namespace "team-b" '
        'of ClusterRole "secret-reader" to alice',
    )


async def test_changes_take_effect_without_restart(env: Env) -> None:
    frank = user("frank")
    get_pod, list_pods = req(frank, "get", "pods", "team-a", "p"), req(frank, "list", "pods", "team-a")
    # A binding to a role that does not exist yet grants nothing, then everything the role says.
    rb = await env.create(ROLE_BINDINGS, binding("frank", "Role", "frank", [user_subject("frank")], "team-a"))
    assert await env.decide(get_pod) == NO_OPINION
    created = await env.create(ROLES, role("frank", [rule(["get", "list"], [""], ["pods"])], "team-a"))
    assert (await env.decide(get_pod), await env.decide(list_pods)) == (ALLOW, ALLOW)

    created["rules"] = [rule(["get"], [""], ["pods"])]
    await env.seen(ROLES, await env.client.replace(ROLES, created))
    assert (await env.decide(get_pod), await env.decide(list_pods)) == (ALLOW, NO_OPINION)

    await env.client.delete(ROLE_BINDINGS, "frank", "team-a")

    async def revoked() -> bool:
        return await env.decide(get_pod) == NO_OPINION

    await eventually(revoked, 10, "the deleted RoleBinding to stop granting")
    assert env.authz.role_bindings.get("team-a", rb["metadata"]["name"]) is None


async def test_aggregated_default_roles(env: Env) -> None:
    viewer, editor, admin = user("viewer"), user("editor"), user("ns-admin")
    for who, cr in ((viewer, "view"), (editor, "edit"), (admin, "admin")):
        await env.create(
            ROLE_BINDINGS, binding(who.name, "ClusterRole", cr, [user_subject(who.name)], "team-a")
        )
    table = [
        (req(viewer, "list", "pods", "team-a"), ALLOW),
        (req(viewer, "get", "deployments", "team-a", "d", group="apps"), ALLOW),
        (req(viewer, "get", "secrets", "team-a", "s"), NO_OPINION),
        (req(viewer, "create", "pods", "team-a"), NO_OPINION),
        (req(viewer, "list", "pods", "team-b"), NO_OPINION),
        (req(editor, "create", "deployments", "team-a", group="apps"), ALLOW),
        (req(editor, "list", "pods", "team-a"), ALLOW),  # edit includes view
        (req(editor, "get", "secrets", "team-a", "s"), ALLOW),
        (req(editor, "create", "roles", "team-a", group=RBAC), NO_OPINION),
        (req(admin, "create", "roles", "team-a", group=RBAC), ALLOW),
        (req(admin, "delete", "configmaps", "team-a", "c"), ALLOW),  # admin includes edit
        (req(admin, "get", "pods", "team-a", "p", "log"), ALLOW),  # ... and view
    ]
    assert [
        (a.user.name, a.verb, a.resource, got) for a, want in table if (got := await env.decide(a)) != want
    ] == []

    # A new ClusterRole labelled aggregate-to-view extends view, and through it edit and admin.
    widgets = req(viewer, "get", "widgets", "team-a", "w", group="example.com")
    assert await env.decide(widgets) == NO_OPINION
    await env.create(
        CLUSTER_ROLES,
        role(
            "widget-viewer",
            [rule(["get"], ["example.com"], ["widgets"])],
            labels={"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        ),
    )
    assert await env.decide(widgets) == ALLOW
    assert await env.decide(req(admin, "get", "widgets", "team-a", "w", group="example.com")) == ALLOW


ESCALATION_POLICY: list[tuple[ResourceType, Obj]] = [
    (ROLES, role("pod-reader", [rule(["get", "list"], [""], ["pods"])], "team-a")),
    (CLUSTER_ROLES, role("secret-reader", [rule(["get", "list"], [""], ["secrets"])])),
    (CLUSTER_ROLES, role("role-escalator", [rule(["escalate"], [RBAC], ["roles"])])),
    (
        CLUSTER_ROLES,
        role("secret-binder", [rule(["bind"], [RBAC], ["clusterroles"], names=["secret-reader"])]),
    ),
    (ROLE_BINDINGS, binding("alice-pods", "Role", "pod-reader", [user_subject("alice")], "team-a")),
    (
        ROLE_BINDINGS,
        binding("alice-secrets", "ClusterRole", "secret-reader", [user_subject("alice")], "team-b"),
    ),
    (ROLE_BINDINGS, binding("escalator", "ClusterRole", "role-escalator", [user_subject("esc")], "team-a")),
    (CLUSTER_ROLE_BINDINGS, binding("binder", "ClusterRole", "secret-binder", [user_subject("binder")])),
    (CLUSTER_ROLE_BINDINGS, binding("root", "ClusterRole", "cluster-admin", [user_subject("root")])),
]


def escalation_cases() -> list[tuple[str, UserInfo, ResourceType, Obj, str | None]]:
    get_pods = [rule(["get"], [""], ["pods"])]
    delete_pods = [rule(["get", "delete"], [""], ["pods"])]
    missing_delete = (
        'user "alice" (groups=[]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}'
    )
    to_bob = [user_subject("bob")]
    return [
        ("role within held rules", alice, ROLES, role("r", get_pods, "team-a"), None),
        ("role beyond held rules", alice, ROLES, role("r", delete_pods, "team-a"), missing_delete),
        ("role in another namespace", alice, ROLES, role("r", get_pods, "team-b"), "not currently held"),
        (
            "held via ClusterRole in that namespace",
            alice,
            ROLES,
            role("r", [rule(["list"], [""], ["secrets"])], "team-b"),
            None,
        ),
        (
            "resourceNames narrow what is granted",
            alice,
            ROLES,
            role("r", [rule(["get"], [""], ["pods"], names=["p"])], "team-a"),
            None,
        ),
        (
            "cluster role needs cluster-wide rules",
            alice,
            CLUSTER_ROLES,
            role("r", get_pods),
            "not currently held",
        ),
        ("escalate verb lifts the check", user("esc"), ROLES, role("r", delete_pods, "team-a"), None),
        (
            "escalate is per namespace",
            user("esc"),
            ROLES,
            role("r", delete_pods, "team-b"),
            "not currently held",
        ),
        (
            "system:masters bypass",
            user("m", MASTERS),
            CLUSTER_ROLES,
            role("r", [rule(["*"], ["*"], ["*"])]),
            None,
        ),
        (
            "aggregationRule needs cluster-admin",
            alice,
            CLUSTER_ROLES,
            {**role("agg", []), "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}},
            "must have cluster-admin privileges to use the aggregationRule",
        ),
        (
            "aggregationRule by a cluster-admin",
            user("root"),
            CLUSTER_ROLES,
            {**role("agg", []), "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}},
            None,
        ),
        (
            "bind a role whose rules are held",
            alice,
            ROLE_BINDINGS,
            binding("b", "Role", "pod-reader", to_bob, "team-a"),
            None,
        ),
        (
            "bind a ClusterRole where it is held",
            alice,
            ROLE_BINDINGS,
            binding("b", "ClusterRole", "secret-reader", to_bob, "team-b"),
            None,
        ),
        (
            "bind a ClusterRole where it is not held",
            alice,
            ROLE_BINDINGS,
            binding("b", "ClusterRole", "secret-reader", to_bob, "team-a"),
            "not currently held",
        ),
        (
            "ClusterRoleBinding needs cluster-wide",
            alice,
            CLUSTER_ROLE_BINDINGS,
            binding("b", "ClusterRole", "secret-reader", to_bob),
            "not currently held",
        ),
        (
            "bind verb on that role name",
            user("binder"),
            CLUSTER_ROLE_BINDINGS,
            binding("b", "ClusterRole", "secret-reader", to_bob),
            None,
        ),
        (
            "bind verb limited by resourceNames",
            user("binder"),
            CLUSTER_ROLE_BINDINGS,
            binding("b", "ClusterRole", "cluster-admin", to_bob),
            "not currently held",
        ),
        (
            "binding a missing role",
            alice,
            ROLE_BINDINGS,
            binding("b", "Role", "nope", to_bob, "team-a"),
            'roles.rbac.authorization.k8s.io "nope" not found',
        ),
        ("other kinds are not RBAC's business", alice, NAMESPACES, {"metadata": {"name": "x"}}, None),
    ]


async def test_escalation_prevention(env: Env) -> None:
    for rt, obj in ESCALATION_POLICY:
        await env.create(rt, obj)
    wrong = []
    for what, who, rt, obj, expected in escalation_cases():
        got = env.authz.escalation_error(who, rt, obj)
        ok = got is None if expected is None else got is not None and (got == expected or expected in got)
        if not ok:
            wrong.append((what, expected, got))
    assert wrong == []

    # An update that only touches the garbage collector's fields needs no rights over the rules.
    old = role("big", [rule(["*"], [""], ["*"])], "team-a")
    gc_only = {**old, "metadata": {**old["metadata"], "finalizers": ["example.com/x"]}}
    relabelled = {**old, "metadata": {**old["metadata"], "labels": {"a": "b"}}}
    assert env.authz.escalation_error(alice, ROLES, gc_only, old) is None
    assert "not currently held" in (env.authz.escalation_error(alice, ROLES, relabelled, old) or "")


async def test_rules_for(env: Env) -> None:
    for rt, obj in ESCALATION_POLICY:
        await env.create(rt, obj)
    as_dicts = [r.as_dict() for r in env.authz.rules_for(alice, "team-a")]
    assert as_dicts == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]
    assert env.authz.rules_for(alice, "") == []
    assert [r.as_dict() for r in env.authz.rules_for(alice, "team-b")] == [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets"]}
    ]


@pytest.mark.parametrize(
    ("rt", "obj", "message"),
    [
        (
            ROLES,
            role("r", [rule(["get"], urls=["/metrics"])], "team-a"),
            "namespaced rules cannot apply to non-resource URLs",
        ),
        (
            CLUSTER_ROLES,
            role("r", [rule(["get"], [""], ["pods"], urls=["/metrics"])]),
            "rules cannot apply to both regular resources and non-resource URLs",
        ),
        (ROLES, role("r", [rule([], [""], ["pods"])], "team-a"), "verbs must contain at least one value"),
        (
            ROLES,
            role("r", [rule(["get"], None, ["pods"])], "team-a"),
            "resource rules must supply at least one api group",
        ),
        (CLUSTER_ROLE_BINDINGS, binding("b", "Role", "r", []), 'roleRef.kind: Unsupported value: "Role"'),
        (
            ROLE_BINDINGS,
            binding("b", "ClusterRole", "r", [{"kind": "Robot", "name": "x"}], "team-a"),
            "subjects[0].kind: Unsupported value",
        ),
        (
            CLUSTER_ROLE_BINDINGS,
            binding("b", "ClusterRole", "r", [sa_subject("x")]),
            "subjects[0].namespace: Required",
        ),
    ],
)
async def test_validation(inproc_api: Any, rt: ResourceType, obj: Obj, message: str) -> None:
    client: ApiClient = inproc_api.client
    await client.create(NAMESPACES, {"metadata": {"name": "team-a"}})
    with pytest.raises(ApiError) as info:
        await client.create(rt, obj)
    assert info.value.code == 422
    assert message in str(info.value)


async def test_role_ref_is_immutable_and_colon_names_are_valid(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    created = await client.create(CLUSTER_ROLE_BINDINGS, binding("system:x", "ClusterRole", "system:y", []))
    created["roleRef"]["name"] = "other"
    with pytest.raises(ApiError) as info:
        await client.replace(CLUSTER_ROLE_BINDINGS, created)
    assert info.value.code == 422 and "cannot change roleRef" in str(info.value)


def test_bootstrap_policy_is_valid_and_labelled() -> None:
    from kubelite.api.registry import by_kind
    from kubelite.api.validation import validate

    objs = bootstrap_policy()
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for expected in (
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
    ):
        assert ("ClusterRole", expected) in names
    for expected in ("cluster-admin", "system:discovery", "system:public-info-viewer"):
        assert ("ClusterRoleBinding", expected) in names
    for obj in objs:
        rt = by_kind(obj["apiVersion"], obj["kind"])
        assert rt is not None
        assert validate(rt, obj) == [], obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert obj["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "true"
