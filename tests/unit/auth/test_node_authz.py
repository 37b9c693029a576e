"""The Node authorizer against a real in-process API server and its ObjectStore.

Objects are created through the API; the authorizer's watch caches see them as the API server's
would. Node 'a' runs pod ``pa``, node 'b' runs pod ``pb``; each pod references its own Secrets,
ConfigMaps, claim and ServiceAccount, and the tables below say what each node may touch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kubelite.api.registry import resource
from kubelite.apiserver.objects import ObjectStore
from kubelite.auth import (
    ALL_AUTHENTICATED,
    NODES_GROUP,
    SA_GROUP,
    Attributes,
    Decision,
    UserInfo,
)
from kubelite.auth.node import NodeAuthorizer, pod_references
from kubelite.client import ApiClient
from kubelite.client.rest import resource_path
from tests.helpers import eventually

Obj = dict[str, Any]
NS = "default"
ALLOW, DENY, NO_OPINION = Decision.ALLOW, Decision.DENY, Decision.NO_OPINION

PODS = resource("", "pods")
SECRETS = resource("", "secrets")
CONFIGMAPS = resource("", "configmaps")
PVCS = resource("", "persistentvolumeclaims")
PVS = resource("", "persistentvolumes")
SAS = resource("", "serviceaccounts")
LEASES = resource("coordination.k8s.io", "leases")


def node_user(name: str) -> UserInfo:
    return UserInfo(f"system:node:{name}", (NODES_GROUP, ALL_AUTHENTICATED))


def attrs(
    node: str,
    verb: str,
    res: str,
    name: str = "",
    ns: str = "",
    sub: str = "",
    group: str = "",
    user: UserInfo | None = None,
) -> Attributes:
    return Attributes(user or node_user(node), verb, True, group, "v1", res, sub, ns, name, "/")


def pod(name: str, node: str | None, suffix: str) -> Obj:
    """A pod using every kind of reference, each object named ``<kind>-<suffix>``."""
    spec: Obj = {
        "serviceAccountName": f"sa-{suffix}",
        "imagePullSecrets": [{"name": f"pull-{suffix}"}],
        "volumes": [
            {"name": "s", "secret": {"secretName": f"vol-{suffix}"}},
            {"name": "c", "configMap": {"name": f"cm-{suffix}"}},
            {"name": "d", "persistentVolumeClaim": {"claimName": f"claim-{suffix}"}},
            {"name": "p", "projected": {"sources": [
                {"secret": {"name": f"proj-{suffix}"}}, {"configMap": {"name": f"projcm-{suffix}"}},
            ]}},
        ],
        "containers": [{
            "name": "c", "image": "busybox",
            "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": f"env-{suffix}", "key": "k"}}},
                    {"name": "F", "valueFrom": {"configMapKeyRef": {"name": f"envcm-{suffix}", "key": "k"}}}],
            "envFrom": [{"secretRef": {"name": f"envfrom-{suffix}"}}],
        }],
    }  # fmt: skip
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def pv(name: str, node: str | None, claim: str | None = None) -> Obj:
    spec: Obj = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x"}}
    if node is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}  # fmt: skip
    if claim is not None:
        spec["claimRef"] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": NS,
            "name": claim,
        }
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}, "spec": spec}


def claim(name: str, volume: str | None = None) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if volume:
        spec["volumeName"] = volume
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": NS},
            "spec": spec}  # fmt: skip


async def bind(client: ApiClient, name: str, node: str) -> None:
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": NS},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}  # fmt: skip
    await client.request("POST", resource_path(PODS, NS, name, "binding"), json=body)


async def secret(client: ApiClient, name: str) -> None:
    await client.create(SECRETS, {"metadata": {"name": name, "namespace": NS}, "stringData": {"k": "v"}})


@pytest.fixture
async def cluster(inproc_api: Any) -> AsyncIterator[tuple[NodeAuthorizer, ApiClient, ObjectStore]]:
    client: ApiClient = inproc_api.client
    objects: ObjectStore = inproc_api.api.objects
    for s in ("a", "b"):
        for prefix in ("vol", "pull", "proj", "env", "envfrom"):
            await secret(client, f"{prefix}-{s}")
        for prefix in ("cm", "projcm", "envcm"):
            await client.create(CONFIGMAPS, {"metadata": {"name": f"{prefix}-{s}", "namespace": NS}})
        await client.create(SAS, {"metadata": {"name": f"sa-{s}", "namespace": NS}})
        await client.create(PVS, pv(f"pv-{s}", None, f"claim-{s}"))  # an admin's volume, no node affinity
        await client.create(PVCS, claim(f"claim-{s}", f"pv-{s}"))
        await client.create(PVS, pv(f"local-{s}", s))  # what node s's provisioner creates
        await client.create(PODS, pod(f"p{s}", s, s))
    await secret(client, "unrelated")
    authz = NodeAuthorizer(objects)
    authz.start()
    try:
        await authz.wait_synced(10)
        yield authz, client, objects
    finally:
        await authz.stop()


# (node, verb, resource, name, namespace, subresource, group) -> decision
CASES: list[tuple[tuple[str, str, str, str, str, str, str], Decision]] = [
    # Its own Node and Lease; nobody else's.
    (("a", "get", "nodes", "b", "", "", ""), ALLOW),
    (("a", "list", "nodes", "", "", "", ""), ALLOW),
    (("a", "create", "nodes", "", "", "", ""), ALLOW),  # the body's name: admit()
    (("a", "patch", "nodes", "a", "", "status", ""), ALLOW),
    (("a", "update", "nodes", "a", "", "", ""), ALLOW),
    (("a", "patch", "nodes", "b", "", "", ""), DENY),
    (("a", "patch", "nodes", "b", "", "status", ""), DENY),
    (("a", "update", "nodes", "b", "", "", ""), DENY),
    (("a", "delete", "nodes", "b", "", "", ""), DENY),
    (("a", "delete", "nodes", "a", "", "", ""), DENY),
    (("a", "get", "leases", "b", "kube-node-lease", "", "coordination.k8s.io"), ALLOW),
    (("a", "create", "leases", "", "kube-node-lease", "", "coordination.k8s.io"), ALLOW),
    (("a", "update", "leases", "a", "kube-node-lease", "", "coordination.k8s.io"), ALLOW),
    (("a", "delete", "leases", "a", "kube-node-lease", "", "coordination.k8s.io"), ALLOW),
    (("a", "update", "leases", "b", "kube-node-lease", "", "coordination.k8s.io"), DENY),
    (("a", "create", "leases", "", "kube-system", "", "coordination.k8s.io"), DENY),
    # Cluster state every node reads.
    (("a", "watch", "services", "", "", "", ""), ALLOW),
    (("a", "list", "endpoints", "", "", "", ""), ALLOW),
    (("a", "get", "namespaces", "default", "", "", ""), ALLOW),
    (("a", "delete", "services", "kubernetes", NS, "", ""), DENY),
    # Pods: read all, write only those bound to it.
    (("a", "watch", "pods", "", "", "", ""), ALLOW),
    (("a", "get", "pods", "pb", NS, "", ""), ALLOW),
    (("a", "patch", "pods", "pa", NS, "status", ""), ALLOW),
    (("a", "update", "pods", "pa", NS, "status", ""), ALLOW),
    (("a", "delete", "pods", "pa", NS, "", ""), ALLOW),
    (("a", "patch", "pods", "pb", NS, "status", ""), DENY),
    (("a", "delete", "pods", "pb", NS, "", ""), DENY),
    (("a", "patch", "pods", "pa", NS, "", ""), DENY),
    (("a", "create", "pods", "", NS, "", ""), DENY),
    (("a", "create", "pods", "pb", NS, "binding", ""), DENY),
    (("a", "create", "pods", "pb", NS, "exec", ""), DENY),
    (("a", "deletecollection", "pods", "", NS, "", ""), DENY),
    # Secrets and ConfigMaps: get, by name, only those its pods reference (every way of referencing).
    *[
        (("a", "get", "secrets", f"{p}-a", NS, "", ""), ALLOW)
        for p in ("vol", "pull", "proj", "env", "envfrom")
    ],
    *[(("a", "get", "configmaps", f"{p}-a", NS, "", ""), ALLOW) for p in ("cm", "projcm", "envcm")],
    (("a", "get", "secrets", "vol-b", NS, "", ""), DENY),
    (("a", "get", "secrets", "unrelated", NS, "", ""), DENY),
    (("a", "get", "secrets", "vol-a", "kube-system", "", ""), DENY),
    (("a", "get", "configmaps", "cm-b", NS, "", ""), DENY),
    (("a", "list", "secrets", "", NS, "", ""), DENY),
    (("a", "watch", "secrets", "", "", "", ""), DENY),
    (("a", "update", "secrets", "vol-a", NS, "", ""), DENY),
    (("a", "delete", "configmaps", "cm-a", NS, "", ""), DENY),
    # Claims and volumes.
    (("a", "get", "persistentvolumeclaims", "claim-a", NS, "", ""), ALLOW),
    (("a", "patch", "persistentvolumeclaims", "claim-a", NS, "", ""), ALLOW),
    (("a", "patch", "persistentvolumeclaims", "claim-a", NS, "status", ""), ALLOW),
    (("a", "get", "persistentvolumeclaims", "claim-b", NS, "", ""), DENY),
    (("a", "patch", "persistentvolumeclaims", "claim-b", NS, "status", ""), DENY),
    (("a", "delete", "persistentvolumeclaims", "claim-a", NS, "", ""), DENY),
    (("a", "list", "persistentvolumeclaims", "", NS, "", ""), DENY),
    (("a", "get", "persistentvolumes", "pv-a", "", "", ""), ALLOW),  # bound to its pod's claim
    (("a", "patch", "persistentvolumes", "pv-a", "", "status", ""), ALLOW),
    (("a", "patch", "persistentvolumes", "pv-a", "", "", ""), DENY),  # the spec: never
    (("a", "get", "persistentvolumes", "pv-b", "", "", ""), DENY),
    (("a", "patch", "persistentvolumes", "pv-b", "", "status", ""), DENY),
    (("a", "get", "persistentvolumes", "local-a", "", "", ""), ALLOW),  # pinned to it (its provisioner's)
    (("a", "patch", "persistentvolumes", "local-a", "", "status", ""), ALLOW),
    (("a", "patch", "persistentvolumes", "local-a", "", "", ""), DENY),  # no node writes a PV's spec
    (("a", "get", "persistentvolumes", "local-b", "", "", ""), DENY),
    (("a", "patch", "persistentvolumes", "local-b", "", "status", ""), DENY),
    (("a", "create", "persistentvolumes", "", "", "", ""), ALLOW),  # the body: admit()
    (("a", "delete", "persistentvolumes", "local-a", "", "", ""), DENY),
    (("a", "list", "persistentvolumes", "", "", "", ""), DENY),
    # ServiceAccount tokens: only for its pods' accounts.
    (("a", "create", "serviceaccounts", "sa-a", NS, "token", ""), ALLOW),
    (("a", "create", "serviceaccounts", "sa-b", NS, "token", ""), DENY),
    (("a", "get", "serviceaccounts", "sa-a", NS, "", ""), DENY),
    # Events anywhere.
    (("a", "create", "events", "", "kube-system", "", ""), ALLOW),
    (("a", "patch", "events", "x", NS, "", ""), ALLOW),
    (("a", "delete", "events", "x", NS, "", ""), DENY),
    # Everything else the API serves.
    (("a", "delete", "deployments", "web", NS, "", "apps"), DENY),
    (("a", "create", "clusterrolebindings", "", "", "", "rbac.authorization.k8s.io"), DENY),
    # Types outside the built-in table are RBAC's to grant.
    (("a", "get", "widgets", "w", NS, "", "example.com"), NO_OPINION),
]


@pytest.mark.parametrize(("request_", "expected"), CASES, ids=lambda c: "-".join(x for x in c if x) if
                         isinstance(c, tuple) else c.value)  # fmt: skip
async def test_node_rules(
    cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore],
    request_: tuple[str, str, str, str, str, str, str],
    expected: Decision,
) -> None:
    authz = cluster[0]
    node, verb, res, name, ns, sub, group = request_
    decision, reason = await authz.authorize(attrs(node, verb, res, name, ns, sub, group))
    assert decision is expected, reason
    if decision is DENY:
        assert f"node '{node}' cannot {verb} " in reason


async def test_deny_reason_names_node_and_object(
    cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore],
) -> None:
    authz = cluster[0]
    assert await authz.authorize(attrs("a", "get", "secrets", "unrelated", NS)) == (
        DENY,
        "node 'a' cannot get secret default/unrelated: no relationship found between node 'a' and this object",
    )
    decision, reason = await authz.authorize(attrs("a", "patch", "nodes", "b"))
    assert (decision, reason.split(":")[0]) == (DENY, "node 'a' cannot patch node b")


async def test_other_users_get_no_opinion(cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore]) -> None:
    authz = cluster[0]
    sa = UserInfo("system:serviceaccount:default:sa-a", (SA_GROUP, ALL_AUTHENTICATED))
    # A node name without the nodes group is not a node credential.
    impostor = UserInfo("system:node:a", (ALL_AUTHENTICATED,))
    for user in (sa, impostor, UserInfo("alice", (ALL_AUTHENTICATED,))):
        assert (await authz.authorize(attrs("a", "get", "secrets", "vol-a", NS, user=user)))[0] is NO_OPINION
    discovery = Attributes(node_user("a"), "get", False, path="/apis")
    assert (await authz.authorize(discovery))[0] is NO_OPINION


async def test_admission_checks_created_names_and_volumes(
    cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore],
) -> None:
    authz = cluster[0]

    async def admit(res: str, obj: Obj, ns: str = "", group: str = "", verb: str = "create") -> Decision:
        decision, reason = await authz.admit(attrs("a", verb, res, "", ns, "", group), obj)
        assert decision is not DENY or reason.startswith("node 'a' cannot")
        return decision

    assert await admit("nodes", {"metadata": {"name": "a"}}) is ALLOW
    assert await admit("nodes", {"metadata": {"name": "b"}}) is DENY
    assert await admit("nodes", {"metadata": {}}) is DENY
    assert await admit("nodes", {"metadata": {"name": "b"}}, verb="update") is DENY
    lease = "coordination.k8s.io"
    assert await admit("leases", {"metadata": {"name": "a"}}, "kube-node-lease", lease) is ALLOW
    assert await admit("leases", {"metadata": {"name": "b"}}, "kube-node-lease", lease) is DENY
    # The provisioner's PV: pinned to this node, pre-bound to a claim of its own pods.
    assert await admit("persistentvolumes", pv("pvc-1", "a", "claim-a")) is ALLOW
    assert await admit("persistentvolumes", pv("pvc-1", "b", "claim-a")) is DENY
    assert await admit("persistentvolumes", pv("pvc-1", None, "claim-a")) is DENY
    assert await admit("persistentvolumes", pv("pvc-1", "a", "claim-b")) is DENY
    multi = pv("pvc-1", "a", "claim-a")
    multi["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"].append(
        "b"
    )
    assert await admit("persistentvolumes", multi) is DENY
    # Not its business: other users, other types.
    assert (await authz.admit(attrs("a", "create", "nodes", user=UserInfo("admin")), {"metadata": {"name": "b"}}))[
        0] is NO_OPINION  # fmt: skip
    assert await admit("events", {"metadata": {"name": "x"}}, NS) is NO_OPINION


async def test_admission_binds_node_token_requests_to_its_pods(
    cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore],
) -> None:
    authz, client, _ = cluster
    uid = (await client.get(PODS, "pa", NS))["metadata"]["uid"]

    async def admit(sa: str, bound: Obj | None) -> Decision:
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": []},
        }
        if bound is not None:
            body["spec"]["boundObjectRef"] = {"apiVersion": "v1", **bound}
        decision, reason = await authz.admit(attrs("a", "create", "serviceaccounts", sa, NS, "token"), body)
        assert decision is not DENY or reason.startswith(
            f"node 'a' cannot create serviceaccount/token {NS}/{sa}"
        )
        return decision

    assert await admit("sa-a", {"kind": "Pod", "name": "pa", "uid": uid}) is ALLOW  # what the agent sends
    assert await admit("sa-a", {"kind": "Pod", "name": "pa"}) is ALLOW
    assert await admit("sa-a", None) is DENY  # an unbound token would outlive every pod
    assert await admit("sa-a", {"kind": "Secret", "name": "vol-a"}) is DENY
    assert await admit("sa-a", {"kind": "Pod", "name": "pa", "uid": "other"}) is DENY
    assert await admit("sa-b", {"kind": "Pod", "name": "pb"}) is DENY  # b's pod
    assert await admit("sa-b", {"kind": "Pod", "name": "pa", "uid": uid}) is DENY  # pa runs as sa-a


async def test_deleting_a_pod_revokes_access(cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore]) -> None:
    authz, client, _ = cluster
    assert (await authz.authorize(attrs("a", "get", "secrets", "vol-a", NS)))[0] is ALLOW
    await client.delete(PODS, "pa", NS, grace_period_seconds=0)

    requests = [
        attrs("a", "get", "secrets", "vol-a", NS),
        attrs("a", "get", "configmaps", "cm-a", NS),
        attrs("a", "get", "persistentvolumes", "pv-a"),
        attrs("a", "create", "serviceaccounts", "sa-a", NS, "token"),
        attrs("a", "patch", "pods", "pa", NS, "status"),
    ]

    async def revoked() -> bool:
        return [(await authz.authorize(a))[0] for a in requests] == [DENY] * len(requests)

    await eventually(revoked, 5, "node a's access to pa's objects revoked")
    assert not authz.references("a", ("secret", NS, "vol-a")) and not authz.bound_to("a", NS, "pa")
    # Node b's pod still holds its own references.
    assert (await authz.authorize(attrs("b", "get", "secrets", "vol-b", NS)))[0] is ALLOW


async def test_a_pod_shared_by_two_references_keeps_access_until_the_last_goes(
    cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore],
) -> None:
    authz, client, _ = cluster
    await client.create(PODS, pod("pa2", "a", "a"))  # a second pod on a with the same references
    await client.delete(PODS, "pa", NS, grace_period_seconds=0)
    await eventually(lambda: _pod_gone(client, "pa"), 5, "pa deleted")
    # Let the cache catch up with the deletion: its watch delivers in order, so once a change made
    # after it is visible the deletion has been applied.
    await client.create(PODS, pod("marker", "a", "m"))
    await eventually(
        _sync(lambda: authz.references("a", ("secret", NS, "vol-m"))), 5, "the graph sees the marker"
    )
    assert (await authz.authorize(attrs("a", "get", "secrets", "vol-a", NS)))[0] is ALLOW
    assert authz.references("a", ("secret", NS, "vol-a"))
    assert (await authz.authorize(attrs("a", "patch", "pods", "pa", NS, "status")))[0] is DENY


async def test_binding_a_pod_grants_access(cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore]) -> None:
    authz, client, _ = cluster
    await secret(client, "vol-new")
    await client.create(PODS, pod("new", None, "new"))
    read = attrs("a", "get", "secrets", "vol-new", NS)
    assert (await authz.authorize(read))[0] is DENY  # not scheduled yet: no node may read it
    await bind(client, "new", "a")
    assert (await authz.authorize(read))[0] is ALLOW  # at once: the store fallback, if the graph lags
    # ... and the graph itself learns the binding from its watch.
    await eventually(
        _sync(lambda: authz.references("a", ("secret", NS, "vol-new"))), 5, "the graph sees the binding"
    )
    assert authz.bound_to("a", NS, "new") and not authz.bound_to("b", NS, "new")
    assert (await authz.authorize(attrs("b", "get", "secrets", "vol-new", NS)))[0] is DENY
    assert (await authz.authorize(attrs("a", "patch", "pods", "new", NS, "status")))[0] is ALLOW


async def test_fallback_reads_the_store_when_the_graph_lags(
    cluster: tuple[NodeAuthorizer, ApiClient, ObjectStore],
) -> None:
    authz, client, _ = cluster
    await authz.pods.stop()  # freeze the graph: from here on it never sees a change
    await authz.pvcs.stop()
    await authz.pvs.stop()
    await secret(client, "vol-late")
    await client.create(PVS, pv("pv-late", None, "claim-late"))
    await client.create(PVCS, claim("claim-late", "pv-late"))
    await client.create(PODS, pod("late", None, "late"))
    await bind(client, "late", "a")
    # The frozen graph cannot know.
    assert not authz.references("a", ("secret", NS, "vol-late")) and not authz.bound_to("a", NS, "late")
    assert (await authz.authorize(attrs("a", "get", "secrets", "vol-late", NS)))[0] is ALLOW
    assert (await authz.authorize(attrs("a", "patch", "pods", "late", NS, "status")))[0] is ALLOW
    assert (await authz.authorize(attrs("a", "create", "serviceaccounts", "sa-late", NS, "token")))[
        0
    ] is ALLOW
    assert (await authz.authorize(attrs("a", "get", "persistentvolumes", "pv-late")))[0] is ALLOW
    # A PV its provisioner just created, not yet in the cache.
    await client.create(PVS, pv("local-late", "a"))
    assert (await authz.authorize(attrs("a", "patch", "persistentvolumes", "local-late", "", "status")))[
        0
    ] is ALLOW
    # The fallback finds relationships; it does not grant anything else.
    assert (await authz.authorize(attrs("b", "get", "secrets", "vol-late", NS)))[0] is DENY
    assert (await authz.authorize(attrs("b", "patch", "pods", "late", NS, "status")))[0] is DENY
    assert (await authz.authorize(attrs("a", "get", "secrets", "unrelated", NS)))[0] is DENY
    assert (await authz.authorize(attrs("b", "patch", "persistentvolumes", "local-late", "", "status")))[
        0
    ] is DENY
    assert (await authz.admit(attrs("a", "create", "persistentvolumes"), pv("pvc-2", "a", "claim-late")))[
        0
    ] is ALLOW


def test_pod_references_cover_every_kind() -> None:
    refs = pod_references(pod("x", "a", "s"))
    assert refs == {
        ("serviceaccount", NS, "sa-s"), ("secret", NS, "pull-s"), ("secret", NS, "vol-s"), ("secret", NS, "proj-s"),
        ("secret", NS, "env-s"), ("secret", NS, "envfrom-s"), ("configmap", NS, "cm-s"),
        ("configmap", NS, "projcm-s"), ("configmap", NS, "envcm-s"), ("pvc", NS, "claim-s"),
    }  # fmt: skip
    # No serviceAccountName means the namespace's default account; malformed entries are skipped.
    assert pod_references(
        {"metadata": {"namespace": "n"}, "spec": {"volumes": ["junk", {"secret": None}]}}
    ) == {("serviceaccount", "n", "default")}


async def _pod_gone(client: ApiClient, name: str) -> bool:
    names = {p["metadata"]["name"] for p in (await client.list(PODS, NS))["items"]}
    return name not in names


def _sync(fn: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return fn()

    return check
