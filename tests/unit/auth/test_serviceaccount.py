"""ServiceAccount tokens against a real in-process API server: issue, verify, revoke, TokenRequest, admission."""

from __future__ import annotations

import copy
import datetime as dt
import re
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubelite.agent.env import ApiObjectSource, PodContext
from kubelite.agent.volumes import ServiceAccountTokenManager, VolumeManager
from kubelite.api.registry import resource
from kubelite.apiserver.config import ServerConfig
from kubelite.apiserver.objects import ObjectStore
from kubelite.auth import ALL_AUTHENTICATED, SA_GROUP, AuthenticationError
from kubelite.auth.serviceaccount import (
    KUBELET_TOKEN_EXPIRATION_SECONDS,
    MAX_EXPIRATION_SECONDS,
    TOKEN_MOUNT_PATH,
    ServiceAccountTokens,
    admit_pod,
)
from kubelite.client import ApiClient, ApiError
from kubelite.storage import open_store

Obj = dict[str, Any]
SAS = resource("", "serviceaccounts")
PODS = resource("", "pods")
NODES = resource("", "nodes")
ISSUER = "https://kubernetes.default.svc.cluster.local"
NS = "default"


def key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
async def objects(tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """The API's object semantics on memory:// (no HTTP): what the authenticator reads in the server."""
    store = open_store("memory://")
    await store.start()
    objs = ObjectStore(store, ServerConfig(data_dir=tmp_path, datastore_endpoint="memory://"))
    await objs.bootstrap()
    try:
        yield objs
    finally:
        await objs.close()
        await store.close()


@pytest.fixture
def tokens(objects: ObjectStore) -> ServiceAccountTokens:
    return ServiceAccountTokens(key_pem(), ISSUER, objects)


class Objects:
    """Creates and deletes through either the ObjectStore or an ApiClient."""

    def __init__(self, target: ObjectStore | ApiClient) -> None:
        self.target = target

    async def create(self, rt: Any, obj: Obj) -> Obj:
        if isinstance(self.target, ApiClient):
            return await self.target.create(rt, obj)
        return await self.target.create(rt, obj["metadata"].get("namespace"), obj)

    async def delete(self, rt: Any, name: str, namespace: str | None = None) -> None:
        if isinstance(self.target, ApiClient):
            await self.target.delete(rt, name, namespace)
        else:
            from kubelite.apiserver.objects import DeleteOptions

            await self.target.delete(rt, namespace, name, DeleteOptions())


async def make_sa(target: ObjectStore | ApiClient, name: str) -> Obj:
    return await Objects(target).create(SAS, {"metadata": {"name": name, "namespace": NS}})


async def make_pod(target: ObjectStore | ApiClient, name: str, sa: str = "default") -> Obj:
    return await Objects(target).create(
        PODS,
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "serviceAccountName": sa,
                "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": "busybox"}],
            },
        },
    )


def uid(obj: Obj) -> str:
    return str(obj["metadata"]["uid"])


async def test_issue_and_authenticate_round_trip(objects: ObjectStore, tokens: ServiceAccountTokens) -> None:
    sa = await make_sa(objects, "robot")
    pod = await make_pod(objects, "p1", "robot")
    token, expires = tokens.issue(NS, "robot", uid(sa), pod=("p1", uid(pod)), expiration_seconds=1200)
    assert dt.timedelta(seconds=1190) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=1200)

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == tokens.kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["aud"] == [ISSUER]
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["exp"] - claims["iat"] == 1200 and claims["nbf"] == claims["iat"]
    assert claims["kubernetes.io"] == {
        "namespace": NS,
        "serviceaccount": {"name": "robot", "uid": uid(sa)},
        "pod": {"name": "p1", "uid": uid(pod)},
    }

    user = await tokens.authenticate(token)
    assert user is not None
    assert user.name == "system:serviceaccount:default:robot"
    assert user.groups == (SA_GROUP, f"{SA_GROUP}:default", ALL_AUTHENTICATED)
    assert user.uid == uid(sa)
    assert user.extra["authentication.kubernetes.io/pod-name"] == ("p1",)
    assert user.extra["authentication.kubernetes.io/pod-uid"] == (uid(pod),)


async def test_expired_token_is_refused(objects: ObjectStore, tokens: ServiceAccountTokens) -> None:
    sa = await make_sa(objects, "old")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token, _ = tokens.issue(NS, "old", uid(sa), expiration_seconds=3600, now=long_ago)
    with pytest.raises(AuthenticationError, match="expired"):
        await tokens.authenticate(token)


async def test_foreign_and_forged_tokens(objects: ObjectStore, tokens: ServiceAccountTokens) -> None:
    sa = await make_sa(objects, "robot")
    other_key = key_pem()
    # Another issuer's JWT, or no JWT at all: not ours, the next authenticator may know it.
    foreign = ServiceAccountTokens(other_key, "https://elsewhere.example", objects)
    token, _ = foreign.issue(NS, "robot", uid(sa))
    assert await tokens.authenticate(token) is None
    assert await tokens.authenticate("not-a-jwt") is None
    assert await tokens.authenticate("a.b.c") is None
    # Our issuer's name but another key: a forgery, refused outright.
    forger = ServiceAccountTokens(other_key, ISSUER, objects)
    forged, _ = forger.issue(NS, "robot", uid(sa))
    with pytest.raises(AuthenticationError, match="signature"):
        await tokens.authenticate(forged)
    # Tampered claims (signature no longer matches).
    good, _ = tokens.issue(NS, "robot", uid(sa))
    head, _, sig = good.split(".")
    evil_claims = jwt.decode(good, options={"verify_signature": False}) | {"sub": "system:serviceaccount:x:y"}
    evil_body = jwt.encode(evil_claims, "k" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(AuthenticationError):
        await tokens.authenticate(f"{head}.{evil_body}.{sig}")
    # HS256 with the public key as secret (the classic algorithm confusion): refused.
    confused = jwt.encode(jwt.decode(good, options={"verify_signature": False}), "s" * 32, algorithm="HS256")
    with pytest.raises(AuthenticationError):
        await tokens.authenticate(confused)


async def test_wrong_audience_is_refused(objects: ObjectStore, tokens: ServiceAccountTokens) -> None:
    sa = await make_sa(objects, "robot")
    token, _ = tokens.issue(NS, "robot", uid(sa), audiences=["vault"])
    with pytest.raises(AuthenticationError, match="audience"):
        await tokens.authenticate(token)


async def test_deleting_the_serviceaccount_or_pod_revokes(
    objects: ObjectStore, tokens: ServiceAccountTokens
) -> None:
    client = Objects(objects)
    sa = await make_sa(objects, "robot")
    pod = await make_pod(objects, "bound", "robot")
    unbound, _ = tokens.issue(NS, "robot", uid(sa))
    bound, _ = tokens.issue(NS, "robot", uid(sa), pod=("bound", uid(pod)))
    assert await tokens.authenticate(bound) is not None

    await client.delete(PODS, "bound", NS)  # not on a node: gone at once
    with pytest.raises(AuthenticationError, match="no longer exists"):
        await tokens.authenticate(bound)
    await make_pod(objects, "bound", "robot")  # same name, new uid: still revoked
    with pytest.raises(AuthenticationError, match="no longer exists"):
        await tokens.authenticate(bound)
    assert await tokens.authenticate(unbound) is not None

    await client.delete(SAS, "robot", NS)
    with pytest.raises(AuthenticationError, match="deleted"):
        await tokens.authenticate(unbound)
    await make_sa(objects, "robot")  # recreated: a new identity, the old tokens stay dead
    with pytest.raises(AuthenticationError, match="deleted"):
        await tokens.authenticate(unbound)


async def test_node_bound_token_is_revoked_with_its_node(
    objects: ObjectStore, tokens: ServiceAccountTokens
) -> None:
    client = Objects(objects)
    sa = await make_sa(objects, "robot")
    node = await client.create(NODES, {"metadata": {"name": "n1"}})
    token, _ = tokens.issue(NS, "robot", uid(sa), node=("n1", uid(node)))
    user = await tokens.authenticate(token)
    assert user is not None and user.extra["authentication.kubernetes.io/node-name"] == ("n1",)
    await client.delete(NODES, "n1")
    with pytest.raises(AuthenticationError, match="node n1"):
        await tokens.authenticate(token)


def test_key_must_be_p256(objects: ObjectStore) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="P-256"):
        ServiceAccountTokens(p384, ISSUER, objects)


# --- TokenRequest through the API server ------------------------------------------------------------


def token_path(name: str) -> str:
    return f"/api/v1/namespaces/{NS}/serviceaccounts/{name}/token"


async def test_token_request(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    sa = await make_sa(client, "robot")
    pod = await make_pod(client, "p", "robot")
    other = await make_pod(client, "q", "default")
    answer = await client.request(
        "POST",
        token_path("robot"),
        json={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": ["api", "vault"],
                "expirationSeconds": 7 * 24 * 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": uid(pod)},
            },
        },
    )
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["expirationSeconds"] == MAX_EXPIRATION_SECONDS  # shortened to the maximum
    claims = jwt.decode(answer["status"]["token"], options={"verify_signature": False})
    assert claims["aud"] == ["api", "vault"] and claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["kubernetes.io"]["serviceaccount"]["uid"] == uid(sa)
    assert claims["kubernetes.io"]["pod"] == {"name": "p", "uid": uid(pod)}
    expires = dt.datetime.fromisoformat(answer["status"]["expirationTimestamp"].replace("Z", "+00:00"))
    assert expires.timestamp() == claims["exp"]

    # The default: the server's own audience, an hour; and the token works against this server.
    plain = await client.request("POST", token_path("robot"), json={"spec": {}})
    assert plain["spec"] == {"audiences": [ISSUER], "expirationSeconds": 3600}
    user = await inproc_api.api.sa_tokens.authenticate(plain["status"]["token"])
    assert user is not None and user.name == "system:serviceaccount:default:robot"

    async def refused(name: str, body: Any) -> ApiError:
        with pytest.raises(ApiError) as e:
            await client.request("POST", token_path(name), json=body)
        return e.value

    assert (await refused("ghost", {"spec": {}})).code == 404
    e = await refused("robot", {"spec": {"expirationSeconds": 60}})
    assert e.code == 422 and "less than 10 minutes" in str(e)
    e = await refused("robot", {"spec": {"expirationSeconds": "long"}})
    assert e.code == 422 and "spec.expirationSeconds" in str(e)
    e = await refused("robot", {"spec": {"audiences": [""]}})
    assert e.code == 422 and "spec.audiences" in str(e)
    e = await refused("robot", {"spec": {"boundObjectRef": {"kind": "Secret", "name": "s"}}})
    assert e.code == 422 and "boundObjectRef.kind" in str(e)
    assert (await refused("robot", {"spec": {"boundObjectRef": {"kind": "Pod", "name": "nope"}}})).code == 404
    e = await refused("robot", {"spec": {"boundObjectRef": {"kind": "Pod", "name": "p", "uid": "stale"}}})
    assert e.code == 409
    e = await refused("robot", {"spec": {"boundObjectRef": {"kind": "Pod", "name": "q", "uid": uid(other)}}})
    assert e.code == 400 and "different serviceaccount" in str(e)
    assert (await refused("robot", ["not", "an", "object"])).code == 400
    assert (await refused("robot", {"kind": "Pod"})).code == 400


# --- admission ---------------------------------------------------------------------------------------


def a_pod(**spec: Any) -> Obj:
    return {
        "metadata": {"name": "p", "namespace": NS},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "a", "image": "busybox"},
                {
                    "name": "b",
                    "image": "busybox",
                    "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}],
                },
            ],
            "volumes": [{"name": "own", "emptyDir": {}}],
            **spec,
        },
    }


def test_admit_pod_mounts_the_token_volume() -> None:
    pod = a_pod()
    admit_pod(pod)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    vol = spec["volumes"][-1]
    assert re.fullmatch(r"kube-api-access-[a-z0-9]{5}", vol["name"])
    assert vol["projected"]["sources"] == [
        {"serviceAccountToken": {"expirationSeconds": KUBELET_TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {
            "downwardAPI": {
                "items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                ]
            }
        },
    ]
    mount = {"name": vol["name"], "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}
    assert spec["initContainers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][0]["volumeMounts"] == [mount]
    # A container with its own mount there keeps it.
    assert spec["containers"][1]["volumeMounts"] == [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]


def test_admit_pod_respects_automount_false() -> None:
    pod = a_pod(serviceAccountName="robot", automountServiceAccountToken=False)
    before = copy.deepcopy(pod)
    admit_pod(pod)
    assert pod["spec"]["volumes"] == before["spec"]["volumes"]
    assert pod["spec"]["serviceAccount"] == "robot"
    assert "volumeMounts" not in pod["spec"]["containers"][0]
    # The ServiceAccount's setting applies when the pod says nothing; the pod's wins otherwise.
    pod = a_pod()
    admit_pod(pod, {"automountServiceAccountToken": False})
    assert len(pod["spec"]["volumes"]) == 1
    pod = a_pod(automountServiceAccountToken=True)
    admit_pod(pod, {"automountServiceAccountToken": False})
    assert len(pod["spec"]["volumes"]) == 2


async def test_admitted_pod_is_valid(objects: ObjectStore) -> None:
    pod = a_pod()
    admit_pod(pod)
    created = await objects.create(PODS, NS, pod)  # validation accepts the projected volume
    assert created["spec"]["volumes"][-1]["name"].startswith("kube-api-access-")


async def test_serviceaccount_automount_false_is_honoured_on_create(objects: ObjectStore) -> None:
    objects.admit_pod = admit_pod  # as the secure server wires it
    await Objects(objects).create(SAS, {"metadata": {"name": "quiet", "namespace": NS}, "automountServiceAccountToken": False})
    quiet = await objects.create(PODS, NS, a_pod(serviceAccountName="quiet"))
    assert not any(v["name"].startswith("kube-api-access-") for v in quiet["spec"].get("volumes") or [])
    insisted = await objects.create(PODS, NS, {**a_pod(serviceAccountName="quiet", automountServiceAccountToken=True),
                                               "metadata": {"name": "p2"}})  # fmt: skip
    assert insisted["spec"]["volumes"][-1]["name"].startswith("kube-api-access-")  # the pod's own setting wins
    plain = await objects.create(PODS, NS, {**a_pod(), "metadata": {"name": "p3"}})
    assert plain["spec"]["volumes"][-1]["name"].startswith("kube-api-access-")


# --- the agent's side: a projected token volume ------------------------------------------------------


async def test_agent_projects_and_renews_the_token(inproc_api: Any, tmp_path: Path) -> None:
    client: ApiClient = inproc_api.client
    await make_sa(client, "robot")
    # The API server publishes its CA in every namespace (kube-root-ca.crt).
    ca_pem = (await client.get(resource("", "configmaps"), "kube-root-ca.crt", NS))["data"]["ca.crt"]
    assert "BEGIN CERTIFICATE" in ca_pem
    pod: Obj = {
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "image": "busybox"}]},
    }
    admit_pod(pod)  # what the API server does on create (idempotent if the server did it too)
    pod = await client.create(PODS, pod)
    offset = [0.0]
    tokens = ServiceAccountTokenManager(client, clock=lambda: time.time() + offset[0])
    vm = VolumeManager(client, "node-1", tmp_path / "agent", source=ApiObjectSource(client), tokens=tokens)
    ctx = PodContext(pod_ip="10.1.0.9", host_ip="192.168.0.1")

    paths = await vm.setup(pod, ctx)
    vol = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    d = paths[vol]
    assert (d / "ca.crt").read_text() == ca_pem and (d / "namespace").read_text() == NS
    first = (d / "token").read_text()
    assert stat.S_IMODE((d / "token").stat().st_mode) == 0o644
    assert stat.S_IMODE(d.parent.stat().st_mode) == 0o750  # only this pod's mount exposes it
    user = await inproc_api.api.sa_tokens.authenticate(first)
    assert user is not None and user.name == "system:serviceaccount:default:robot"
    assert user.extra["authentication.kubernetes.io/pod-uid"] == (pod["metadata"]["uid"],)
    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == KUBELET_TOKEN_EXPIRATION_SECONDS

    assert not await vm.refresh(pod, ctx)  # young token: reused, no new request
    assert tokens.requests == 1
    offset[0] = 0.81 * KUBELET_TOKEN_EXPIRATION_SECONDS  # past 80% of its lifetime: renewed
    assert await vm.refresh(pod, ctx)
    assert tokens.requests == 2
    second = (d / "token").read_text()
    assert second != first and await inproc_api.api.sa_tokens.authenticate(second) is not None

    await client.delete(PODS, "app", NS)  # the token is bound to the pod: deleting it revokes the token
    with pytest.raises(AuthenticationError):
        await inproc_api.api.sa_tokens.authenticate(second)
    await vm.teardown(pod["metadata"]["uid"])
    assert not d.exists()


def test_kubectl_columns() -> None:
    from kubelite.api import printers

    sa = {"metadata": {"name": "robot", "creationTimestamp": "2024-01-01T00:00:00Z"}, "secrets": [{"name": "s"}]}
    now = dt.datetime(2024, 1, 1, 0, 5, tzinfo=dt.UTC)
    assert [c.name for c in printers.columns(SAS)] == ["Name", "Secrets", "Age"]
    assert printers.row(SAS, sa, now) == ["robot", 1, "5m"]
