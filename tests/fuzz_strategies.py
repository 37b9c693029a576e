"""Hypothesis strategies for fuzzing the API server, and the authenticated fuzz harness.

Two users: tests/integration/test_bad_input.py (the plain-HTTP port: ``CM``, ``DEPLOY``,
``json_values``, ``paths``, ``manifest_like``) and the authenticated fuzz of issue #10, run by
tests/integration/test_auth_fuzz.py (CI, a few thousand requests) and bench/fuzz_bench.py (10,000+).

The authenticated fuzz sends random requests to the HTTPS port with random credentials and judges
every answer:

- no answer is >= 500, and no connection with a credential the TLS layer accepts is dropped;
- a request with wrong credentials (expired certificate, garbage or forged bearer token, malformed
  ``Authorization``) is answered 401, and so is one without credentials, except on the public
  paths (GET /healthz /livez /readyz /version) and the bootstrap paths (/cacerts,
  /kubelite/v1/node-credentials, which check the join token themselves);
- a certificate from another CA gets no answer at all (the handshake is refused);
- every error an application handler answers is a Kubernetes Status with the same code;
- the seeded objects are byte-identical afterwards (resourceVersion included). Only admin can
  write them, and admin's writes are confined to its own namespace (``ADMIN_NS``) and to fresh
  cluster-scoped names, so any change is a rejected request that changed the store.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import ssl
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubelite.api.registry import RESOURCES, ResourceType
from kubelite.auth.pki import CertKey, issue, make_csr, new_ca, new_key

if TYPE_CHECKING:
    from tests.conftest import ServerProcess

# -- the plain-port strategies (test_bad_input.py) -------------------------------------------------

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
paths = st.sampled_from(
    [
        CM, CM + "/fz", DEPLOY, DEPLOY + "/fz", DEPLOY + "/fz/scale", DEPLOY + "/fz/status",
        "/api/v1/namespaces", "/api/v1/nodes", "/api/v1/nodes/fz", "/api/v1/namespaces/default/pods",
        "/api/v1/namespaces/default/pods/fz/binding", "/api/v1/namespaces/default/services",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases", "/api/v1/namespaces/default/secrets",
    ]
)  # fmt: skip
manifest_like = st.fixed_dictionaries(
    {"metadata": st.fixed_dictionaries({"name": st.sampled_from(["fz", "FZ", "", "a.b", "-x"])}, optional={"labels": json_values})},
    optional={"spec": json_values, "data": json_values, "status": json_values, "kind": st.text(max_size=12), "apiVersion": st.text(max_size=12)},
)

# -- what the authenticated fuzz works on --------------------------------------------------------

SEED_NS = "fz-seed"  # the seeded objects; only ever written by requests that must be rejected
ADMIN_NS = "fz-admin"  # admin's playground: every admin write lands here or on a fresh cluster name
NODE = "n1"  # the node credential's node (never seeded: what it may write is its own)
GHOST = "ghost"  # the only pod name admin's log/exec requests use; never created, so never proxied
# Namespaces whose every object (Events aside: nodes may record them anywhere) is compared.
SNAPSHOT_NAMESPACES = (SEED_NS, "default", "kube-system", "kube-node-lease")
# Cluster-scoped kinds admin may create fresh objects of; RBAC kinds are never written by anyone.
ADMIN_CLUSTER_WRITES = ("namespaces", "nodes", "persistentvolumes")

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
BOOTSTRAP_PATHS = ("/cacerts", "/kubelite/v1/node-credentials")

CredentialKind = Literal["valid", "invalid", "anonymous", "refused"]


@dataclass(frozen=True)
class Credential:
    """One way of presenting oneself: a client certificate (``client`` names the connection pool)
    and/or an ``Authorization`` header drawn per request from ``headers``."""

    name: str
    kind: CredentialKind
    client: str  # key into Fuzzer.clients: "none" or a certificate's name
    headers: tuple[str, ...] = ()  # Authorization values to draw from (empty: none sent)


@dataclass(frozen=True)
class FuzzRequest:
    credential: str
    authorization: str | None
    method: str
    path: str  # with its query string
    headers: tuple[tuple[str, str], ...]
    body: bytes | None

    def describe(self) -> str:
        headers = {k: v if len(v) < 80 else v[:80] + "..." for k, v in self.headers}
        auth = f" Authorization={self.authorization[:60]!r}" if self.authorization else ""
        return f"[{self.credential}]{auth} {self.method} {self.path} headers={headers} body={(self.body or b'')[:200]!r}"


# -- seeded objects -----------------------------------------------------------------------------


def _meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _pod_spec() -> dict[str, Any]:
    return {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}


def seed_objects() -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) for everything the fuzz must leave alone, in creation order."""
    ns = f"/api/v1/namespaces/{SEED_NS}"
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    return [
        ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(SEED_NS, labels={"fz": "seed"})}),
        ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ADMIN_NS)}),
        (f"{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("cm-a", SEED_NS), "data": {"k": "v", "other": "x"}}),
        (f"{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("cm-b", SEED_NS, labels={"app": "web"}), "data": {"conf": "a=1\n"}}),
        (f"{ns}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": _meta("sec-a", SEED_NS), "type": "Opaque",
                           "data": {"password": _b64("hunter2")}}),
        ("/api/v1/namespaces/default/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": _meta("sec-default", "default"),
                                                "stringData": {"token": "unrelated"}}),
        ("/api/v1/namespaces/kube-system/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("cm-sys", "kube-system"),
                                                       "data": {"a": "b"}}),
        (f"/apis/apps/v1/namespaces/{SEED_NS}/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("web", SEED_NS),
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": _pod_spec()}}}),
        (f"{ns}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": _meta("pod-a", SEED_NS), "spec": _pod_spec()}),
        (f"{ns}/services", {"apiVersion": "v1", "kind": "Service", "metadata": _meta("svc-a", SEED_NS),
                            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        (f"{ns}/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("fuzzer", SEED_NS)}),
        (f"{rbac}/namespaces/{SEED_NS}/roles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta("cm-reader", SEED_NS),
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        (f"{rbac}/namespaces/{SEED_NS}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta("bob-reads", SEED_NS),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]}),
        (f"{rbac}/namespaces/{SEED_NS}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta("fuzzer-view", SEED_NS),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "fuzzer", "namespace": SEED_NS}]}),
        (f"{rbac}/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta("fz-pod-reader"),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
        (f"{rbac}/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta("fz-pod-reader"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "fz-pod-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]}),
        ("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": _meta("n2", labels={"kubernetes.io/hostname": "n2"})}),
        ("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": _meta("n2", "kube-node-lease"),
            "spec": {"holderIdentity": "n2", "leaseDurationSeconds": 40}}),
    ]  # fmt: skip


def seed(http: httpx.Client) -> list[tuple[str, dict[str, Any]]]:
    """Create the seeded objects; (object path, object as stored) for each."""
    stored = []
    for collection, obj in seed_objects():
        resp = http.post(collection, json=obj)
        if resp.status_code != 201:
            raise RuntimeError(f"seeding {collection} {obj['metadata']['name']}: {resp.status_code} {resp.text}")
        stored.append((f"{collection}/{obj['metadata']['name']}", resp.json()))
    return stored


def _collection(rt: ResourceType, namespace: str | None = None) -> str:
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    return f"{base}/namespaces/{namespace}/{rt.plural}" if namespace else f"{base}/{rt.plural}"


def snapshot(http: httpx.Client) -> dict[str, str]:
    """Every object of every type in SNAPSHOT_NAMESPACES (Events aside) and every cluster-scoped
    object, keyed "plural/namespace/name", as its exact JSON from a LIST."""
    objects: dict[str, str] = {}
    for rt in RESOURCES:
        if rt.plural == "events":
            continue
        for namespace in SNAPSHOT_NAMESPACES if rt.namespaced else (None,):
            resp = http.get(_collection(rt, namespace))
            resp.raise_for_status()
            for item in resp.json()["items"]:
                objects[f"{rt.plural}/{namespace or ''}/{item['metadata']['name']}"] = json.dumps(item)
    return objects


def snapshot_changes(before: Mapping[str, str], after: Mapping[str, str], registered_nodes: Sequence[str]) -> list[str]:
    """What changed that no accepted request could have changed; empty when nothing did."""
    problems = [f"changed: {key}\n  before {value}\n  after  {after[key]}" for key, value in before.items()
                if key in after and after[key] != value]  # fmt: skip
    problems += [f"deleted: {key}" for key in before if key not in after]
    allowed_new = {f"leases/kube-node-lease/{NODE}"}  # the node's own Lease
    # A node registered with the join token leaves its password hash in kube-system.
    allowed_new |= {f"secrets/kube-system/{name}.node-password.kubelite" for name in registered_nodes}
    for key in after.keys() - before.keys():
        plural, namespace, _ = key.split("/", 2)
        if (namespace and key not in allowed_new) or (not namespace and plural not in ADMIN_CLUSTER_WRITES):
            problems.append(f"created: {key}: {after[key]}")
    return problems


# -- credentials --------------------------------------------------------------------------------


def _forged_tokens(real: str) -> list[str]:
    """Bearer tokens that look like a ServiceAccount token but must not authenticate."""
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    other_key = new_key()
    head, payload, signature = real.split(".")
    tampered = dict(claims, sub="system:serviceaccount:kube-system:admin")
    tampered_payload = base64.urlsafe_b64encode(json.dumps(tampered).encode()).rstrip(b"=").decode()
    return [
        jwt.encode(claims, other_key, algorithm="ES256", headers={"kid": header.get("kid", "")}),  # another key
        jwt.encode(tampered, other_key, algorithm="ES256"),
        jwt.encode(claims, "", algorithm="none"),  # unsigned
        f"{head}.{tampered_payload}.{signature}",  # the real signature over another payload
        f"{head}.{payload}.{signature[:-4]}",  # truncated signature
        f"{head}.{payload}",
        real + "x",
        jwt.encode(dict(claims, exp=int(dt.datetime.now(dt.UTC).timestamp()) - 3600), other_key, algorithm="ES256"),
    ]


def mint_credentials(tls_dir: Path, https_url: str, join_token: str, workdir: Path) -> tuple[dict[str, Credential], list[str]]:
    """Every credential the fuzz draws from, their certificates written to ``workdir``; and notes
    on what could not be made (the ServiceAccount token if the server does not issue one)."""
    ca = CertKey((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    certs = {
        "node": issue(ca, f"system:node:{NODE}", ["system:nodes"], client=True),
        "bob": issue(ca, "bob", client=True),
        "expired": issue(ca, "admin", ["system:masters"], client=True, days=1, now=past),  # a master, expired
        "other-ca": issue(new_ca("kubelite-ca"), "admin", ["system:masters"], client=True),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    for name, pair in certs.items():
        (workdir / f"{name}.crt").write_bytes(pair.cert_pem)
        (workdir / f"{name}.key").write_bytes(pair.key_pem)
    secret = join_token.partition("::server:")[2]
    creds = [
        Credential("none", "anonymous", "none"),
        Credential("admin", "valid", "admin"),
        Credential("node", "valid", "node"),
        Credential("bob", "valid", "bob"),
        Credential("expired", "invalid", "expired"),
        Credential("other-ca", "refused", "other-ca"),
        Credential("garbage-bearer", "invalid", "none"),  # the values are drawn per request
        Credential("malformed-auth", "invalid", "none"),
        # Read only by the join flow (BOOTSTRAP_PATHS); anywhere else a bearer token that is no identity.
        Credential("join-token", "invalid", "none", (f"Bearer {secret}", f"Bearer {join_token}")),
    ]
    notes = []
    ctx = client_context(tls_dir, (tls_dir / "admin.crt", tls_dir / "admin.key"))
    with httpx.Client(base_url=https_url, verify=ctx, timeout=10) as admin:
        resp = admin.post(f"/api/v1/namespaces/{SEED_NS}/serviceaccounts/fuzzer/token",
                          json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})  # fmt: skip
    if resp.status_code == 201:
        token = resp.json()["status"]["token"]
        creds.append(Credential("sa", "valid", "none", (f"Bearer {token}",)))
        creds.append(Credential("forged-sa", "invalid", "none", tuple(f"Bearer {t}" for t in _forged_tokens(token))))
    else:
        notes.append(f"no ServiceAccount token (TokenRequest answered {resp.status_code}): the sa credential is skipped")
    return {c.name: c for c in creds}, notes


def client_context(tls_dir: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


# -- the request strategy -----------------------------------------------------------------------

printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
# HTTP/1.1 strips the whitespace around a header value (h11 refuses to send it), so none is drawn.
header_values = st.text(printable, max_size=40).map(str.strip)

GOOD_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Known to the HTTP parser but not routed (405 after authentication), and ones it rejects itself.
ODD_METHODS = ("HEAD", "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "PURGE", "FOO", "get", "WATCH")
SAFE_METHODS = ("GET", "HEAD")

FAKE_PREFIXES = ("/api/v2", "/apis/apps/v2", "/apis/apps/v1beta1", "/apis/evil.example.com/v1", "/apis/v1", "/apis/apps")
FAKE_PLURALS = ("widgets", "Pods", "pods.", "configmap", "bindings", "tokenreviews", "selfsubjectaccessreviews", "%2e%2e", "-")
NAMES = ("cm-a", "cm-b", "sec-a", "sec-default", "cm-sys", "web", "pod-a", "svc-a", "fuzzer", "default", "cm-reader",
         "bob-reads", "fuzzer-view", "fz-pod-reader", "n1", "n2", "kube-root-ca.crt", "kubernetes", "view",
         "cluster-admin", "system:node", "fz", "fz-new")  # fmt: skip
ODD_NAMES = ("..%2F..%2Fsecrets", "%2e%2e", "%2E", "a%20b", "x%00y", "%ff%fe", "%C3%BC", "a" * 300, "UPPER", "-x",
             "x;y", "x%3Fy%3D1", "%252F", "a%2Fb", "%", "'%22<>", "\u00e9t\u00e9", "%0d%0aX-Evil:%201")  # fmt: skip
NAMESPACES = (SEED_NS, "default", "kube-system", "kube-node-lease", "nope", "%2e%2e", "UPPER", "a%2Fb")
SUBRESOURCES = ("status", "scale", "log", "exec", "token", "binding", "eviction", "proxy", "bogus", "status/extra")
QUERIES = ("", "", "", "?dryRun=All", "?labelSelector=a%20in%20(", "?labelSelector=app%3Dweb", "?fieldSelector=spec.nodeName%3Dn1",
           "?fieldSelector=metadata.name%3D%3D", "?limit=1", "?limit=-1", "?limit=abc", "?continue=bm90LWpzb24",
           "?resourceVersion=0", "?resourceVersion=xyz", "?fieldManager=fz", "?pretty=true", "?command=sh&container=c",
           "?propagationPolicy=Foreground", "?gracePeriodSeconds=-5", "?timeoutSeconds=1&limit=2", "?%zz=%zz")  # fmt: skip
NON_RESOURCE_PATHS = ("/", "/api", "/api/", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1", "/apis/rbac.authorization.k8s.io/v1",
                      "/version", "/healthz", "/livez", "/readyz", "/healthz/", "/metrics", "/openapi/v2", "/openapi/v3",
                      "/openapi/v3/api/v1", "/openapi/v3/apis/apps/v1", "/openapi/v3/nope", "/cacerts", "/cacerts/",
                      "/kubelite/v1/node-credentials", "/kubelite/v1/nope", "/logs", "/debug/pprof", "/%2e%2e/etc/passwd",
                      "/api/v1/%2e%2e", "/apis/%00", "/api/v1/namespaces/%2e%2e/secrets", "//api//v1//pods")  # fmt: skip
CONTENT_TYPES = (None, "application/json", "application/merge-patch+json", "application/json-patch+json",
                 "application/strategic-merge-patch+json", "application/apply-patch+yaml", "application/yaml",
                 "application/vnd.kubernetes.protobuf", "text/plain", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1", "application/x-www-form-urlencoded")  # fmt: skip
ACCEPTS = (None, "application/json", "application/yaml", "application/json;as=Table;v=v1;g=meta.k8s.io",
           "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
           "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io", "application/vnd.kubernetes.protobuf",
           "*/*", "text/html", "application/json;as=Table;v=v9;g=nope")  # fmt: skip
# Headers that must change nothing: impersonation and front-proxy identity are not features here.
ODD_HEADERS = ("Impersonate-User", "Impersonate-Group", "Impersonate-Uid", "X-Remote-User", "X-Remote-Group",
               "X-Forwarded-For", "X-Forwarded-Proto", "Origin", "Cookie", "Content-Encoding", "Accept-Encoding",
               "If-Match", "Range", "X-Http-Method-Override", "User-Agent", "Expect")  # fmt: skip
ODD_HEADER_VALUES = ("system:masters", "admin", "system:admin", "gzip", "deflate", "100-continue", "bytes=0-1", "DELETE",
                     "*", "", "x" * 2000)  # fmt: skip


def valid_object(rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
    """A plausible object of ``rt`` (valid for most kinds; the server is the judge)."""
    obj: dict[str, Any] = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": _meta(name, namespace)}
    extra: dict[str, dict[str, Any]] = {
        "configmaps": {"data": {"k": "v"}},
        "secrets": {"data": {"k": _b64("v")}, "stringData": {"s": "t"}},
        "pods": {"spec": _pod_spec()},
        "services": {"spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}},
        "deployments": {"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                                 "template": {"metadata": {"labels": {"app": "x"}}, "spec": _pod_spec()}}},
        "roles": {"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
        "rolebindings": {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "fz-nobody"}]},
        "leases": {"spec": {"holderIdentity": name, "leaseDurationSeconds": 40}},
        "events": {"involvedObject": {"kind": "Pod", "name": "pod-a", "namespace": namespace}, "reason": "Fuzz", "message": "m"},
        "persistentvolumes": {"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/fz"}}},
    }  # fmt: skip
    obj.update(extra.get(rt.plural, {}))
    return obj


SUBRESOURCE_BODIES: dict[str, dict[str, Any]] = {
    "binding": {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "pod-a"}, "target": {"kind": "Node", "name": NODE}},
    "scale": {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 9}},
    "token": {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    "eviction": {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "pod-a"}},
}


@st.composite
def _mutated(draw: st.DrawFn, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with one to three fields set to random values, deleted, or renamed."""
    out = copy.deepcopy(obj)
    for _ in range(draw(st.integers(1, 3))):
        # Paths to every dict entry up to three levels down.
        spots: list[tuple[dict[str, Any], str]] = []
        stack: list[tuple[dict[str, Any], int]] = [(out, 0)]
        while stack:
            node, depth = stack.pop()
            for key, value in node.items():
                spots.append((node, key))
                if isinstance(value, dict) and depth < 2:
                    stack.append((value, depth + 1))
        if not spots:
            break
        node, key = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["set", "delete", "name"]))
        if action == "set":
            node[key] = draw(json_values)
        elif action == "delete":
            del node[key]
        else:
            node[key] = draw(st.sampled_from(NAMES) | st.text(max_size=12))
    return out


def _body_bytes(draw: st.DrawFn, structured: st.SearchStrategy[Any]) -> bytes | None:
    kind = draw(st.sampled_from(["json", "json", "json", "none", "garbage", "yaml", "patch"]))
    if kind == "none":
        return None
    if kind == "garbage":
        return draw(st.binary(max_size=64))
    if kind == "yaml":
        return draw(st.sampled_from([b"metadata: [unclosed", b"a: b\n---\nc: d\n", b"!!python/object:os.system ls", b"{}"]))
    if kind == "patch":
        ops = st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "x"]),
                                     "path": st.sampled_from(["/metadata/labels", "/data/k", "/spec/replicas", "/", "", "/~2"])},
                                    optional={"value": json_values, "from": st.text(max_size=8)})  # fmt: skip
        return json.dumps(draw(st.lists(ops, max_size=3))).encode()
    return json.dumps(draw(structured)).encode()


@dataclass
class _Target:
    path: str
    safe_for_admin_writes: bool
    rt: ResourceType | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


@st.composite
def _resource_target(draw: st.DrawFn, admin: bool) -> _Target:
    rt: ResourceType = draw(st.sampled_from(RESOURCES))
    prefix = _collection(rt).rsplit("/", 1)[0]
    plural = rt.plural
    if draw(st.integers(0, 9)) == 0:
        prefix = draw(st.sampled_from(FAKE_PREFIXES))
    if draw(st.integers(0, 9)) == 0:
        plural = draw(st.sampled_from(FAKE_PLURALS))
    real = plural == rt.plural and prefix == _collection(rt).rsplit("/", 1)[0]
    # Usually the kind's own scope; sometimes the wrong one (a namespaced kind across all namespaces).
    namespaced = rt.namespaced if draw(st.integers(0, 7)) else not rt.namespaced
    namespace = None
    if namespaced:
        namespace = ADMIN_NS if admin else draw(st.sampled_from(NAMESPACES))
    name = draw(st.none() | st.sampled_from(NAMES) | st.sampled_from(ODD_NAMES))
    sub = None
    if name is not None and draw(st.integers(0, 2)) == 0:
        sub = draw(st.sampled_from(SUBRESOURCES if real else (*rt.subresources, "bogus")))
    if admin and sub in ("log", "exec", "proxy"):
        name = GHOST  # never created, so admin's log/exec never reach the (absent) agent
    path = prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    path += f"/{name}" if name is not None else ""
    path += f"/{sub}" if sub else ""
    path += draw(st.sampled_from(QUERIES))
    if not real:
        safe = True  # nothing is served there
    elif rt.namespaced:
        safe = namespace == ADMIN_NS
    else:
        # Fresh cluster-scoped names only ("fz-new" is never seeded), or a create in the collection.
        safe = plural in ADMIN_CLUSTER_WRITES and not namespaced and name in (None, "fz-new")
    return _Target(path, safe, rt, namespace, name, sub)


def _fitting_content_type(method: str) -> st.SearchStrategy[str]:
    return st.sampled_from(CONTENT_TYPES[1:5]) if method == "PATCH" else st.just("application/json")


def _as_admins(obj: dict[str, Any]) -> dict[str, Any]:
    """A seeded object moved into admin's namespace (cluster-scoped ones as they are)."""
    if not obj["metadata"].get("namespace"):
        return obj
    return dict(obj, metadata=dict(obj["metadata"], namespace=ADMIN_NS))


FRESH_NAMES = ("fz-new", "fz-0")  # never seeded: admin may write them anywhere
ADMIN_WRITABLE = tuple(rt for rt in RESOURCES if rt.namespaced or rt.plural in ADMIN_CLUSTER_WRITES)
PATCHES = ({"metadata": {"labels": {"fz": "patched"}}}, {"data": {"k": "patched"}}, {"spec": {"replicas": 0}},
           [{"op": "add", "path": "/metadata/labels", "value": {"fz": "patched"}}], {"metadata": {"finalizers": ["fz/x"]}},
           {"metadata": {"namespace": SEED_NS}}, {"metadata": {"resourceVersion": "1"}})  # fmt: skip


@st.composite
def _well_formed(
    draw: st.DrawFn, admin: bool, seeded: Sequence[tuple[str, dict[str, Any]]]
) -> tuple[str, str, bytes | None, str | None]:
    """A request a client might really send: admin on its own objects, anyone else on the seeded ones."""
    # Creates twice as often, so later updates, patches and deletes find something.
    method = draw(st.sampled_from(("POST", *GOOD_METHODS)))
    obj: dict[str, Any]
    if admin:
        rt = draw(st.sampled_from(ADMIN_WRITABLE))
        name = draw(st.sampled_from(FRESH_NAMES))
        obj = valid_object(rt, ADMIN_NS if rt.namespaced else None, name)
        item = _collection(rt, ADMIN_NS if rt.namespaced else None) + f"/{name}"
    else:
        item, obj = draw(st.sampled_from(seeded))
    if draw(st.integers(0, 3)) == 0:
        obj = draw(_mutated(obj))
    path = item.rsplit("/", 1)[0] if method == "POST" else item
    if method in ("PUT", "PATCH") and draw(st.integers(0, 3)) == 0:
        path += "/status"
    body: Any = draw(st.sampled_from(PATCHES)) if method == "PATCH" else obj if method in ("POST", "PUT") else None
    ctype = draw(_fitting_content_type(method))
    if isinstance(body, list):
        ctype = "application/json-patch+json"
    path += draw(st.sampled_from(("", "", "?dryRun=All", "?fieldManager=fz", "?propagationPolicy=Background")))
    return method, path, None if body is None else json.dumps(body).encode(), ctype


def _anything(
    draw: st.DrawFn, admin: bool, seeded: Sequence[tuple[str, dict[str, Any]]]
) -> tuple[str, str, bytes | None, str | None]:
    """Any verb, on any path, with any body and content type (within admin's fence)."""
    method = draw(st.sampled_from(GOOD_METHODS) if draw(st.integers(0, 7)) else st.sampled_from(ODD_METHODS))
    target: _Target
    if draw(st.integers(0, 5)) == 0:
        path = draw(st.sampled_from(NON_RESOURCE_PATHS))
        # Paths under /api might still reach a resource handler: admin only reads those.
        target = _Target(path, safe_for_admin_writes=not path.startswith(("/api", "//")))
    elif not admin and draw(st.integers(0, 3)) == 0:
        # Straight at a seeded object (or its collection) with a wrong-rights credential.
        path, _ = draw(st.sampled_from(seeded))
        if draw(st.booleans()):
            path = path.rsplit("/", 1)[0]
        target = _Target(path + draw(st.sampled_from(QUERIES)), safe_for_admin_writes=False)
    else:
        target = draw(_resource_target(admin))
    if admin and method not in SAFE_METHODS and not target.safe_for_admin_writes:
        method = "GET"  # admin may write anything: keep its writes off the seeded objects
    # Bodies: what the path is about, a seeded object (as is or mutated), or anything.
    structured: list[st.SearchStrategy[Any]] = [manifest_like, json_values]
    if target.rt is not None:
        name = target.name if target.name in NAMES else "fz-new"
        structured.append(st.just(valid_object(target.rt, target.namespace, name)))
    if target.subresource in SUBRESOURCE_BODIES:
        structured.append(st.just(SUBRESOURCE_BODIES[target.subresource]))
    if target.path.startswith("/kubelite/v1/node-credentials"):
        structured += [node_credential_bodies] * 2
    seeded_obj = st.sampled_from([_as_admins(obj) if admin else obj for _, obj in seeded])
    structured += [seeded_obj, seeded_obj.flatmap(_mutated)]
    body = _body_bytes(draw, st.one_of(structured))
    ctype = draw(_fitting_content_type(method) if draw(st.booleans()) else st.sampled_from(CONTENT_TYPES) | header_values)
    return method, target.path, body, ctype


def fuzz_requests(credentials: Mapping[str, Credential], seeded: Sequence[tuple[str, dict[str, Any]]]) -> st.SearchStrategy[FuzzRequest]:
    """Random requests: a credential x a method x a path x headers x a body."""
    garbage_bearer = st.builds(lambda t: f"Bearer {t}".strip(), st.text(printable, min_size=1, max_size=60))
    jwt_like = st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}", *(st.text("abcdefXYZ0123456789-_", min_size=1, max_size=20),) * 3)
    malformed = st.sampled_from(["Basic YWRtaW46YWRtaW4=", "Bearer", "bearer", "Token abc", "Negotiate x",
                                 "Bearer a b c", "Digest username=admin"]) | st.builds(
        lambda first, rest: (first + rest).strip(), st.characters(min_codepoint=0x21, max_codepoint=0x7E), st.text(printable, max_size=30)
    )  # fmt: skip
    drawn_headers: dict[str, st.SearchStrategy[str]] = {
        "garbage-bearer": garbage_bearer | jwt_like,
        "malformed-auth": malformed,
    }

    # Admin three times as often: its requests are the ones that get past authorization into the handlers.
    names = [*sorted(credentials), "admin", "admin"]

    @st.composite
    def one(draw: st.DrawFn) -> FuzzRequest:
        cred = credentials[draw(st.sampled_from(names))]
        admin = cred.name == "admin"
        authorization = None
        if cred.name in drawn_headers:
            authorization = draw(drawn_headers[cred.name])
        elif cred.headers:
            authorization = draw(st.sampled_from(cred.headers))
        headers: dict[str, str] = {}
        if draw(st.integers(0, 2)) == 0:
            method, path, body, ctype = draw(_well_formed(admin, seeded))
        else:
            method, path, body, ctype = _anything(draw, admin, seeded)
        if ctype is not None:
            headers["Content-Type"] = ctype
        accept = draw(st.sampled_from(ACCEPTS))
        if accept is not None:
            headers["Accept"] = accept
        for _ in range(draw(st.integers(0, 2))):
            header = draw(st.sampled_from(ODD_HEADERS) | st.from_regex(r"X-[A-Za-z0-9-]{1,16}", fullmatch=True))
            headers[header] = draw(st.sampled_from(ODD_HEADER_VALUES) | header_values)
        return FuzzRequest(cred.name, authorization, method, path, tuple(headers.items()), body)

    return one()


def _node_csr(name: str) -> str:
    return make_csr(new_key(), f"system:node:{name}", ["system:nodes"]).decode()


_CSRS = {name: _node_csr(name) for name in ("fz-join", NODE)}
node_credential_bodies = st.fixed_dictionaries(
    {"nodeName": st.sampled_from(["fz-join", NODE, "n2", "", "UPPER", "a" * 300]) | st.text(max_size=12),
     "password": st.sampled_from(["pw", ""]) | st.text(max_size=12),
     "clientCSR": st.sampled_from([*_CSRS.values(), "", "-----BEGIN CERTIFICATE REQUEST-----\nzz\n"]) | st.text(max_size=12),
     "servingCSR": st.sampled_from([*_CSRS.values(), ""]) | st.text(max_size=12)},
    optional={"addresses": st.lists(st.sampled_from(["10.0.0.1", "::1", "n1", "bad name", ""]) | json_values, max_size=3)},
)  # fmt: skip


# -- sending and judging ------------------------------------------------------------------------


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "401", ..., "refused"
    by_credential: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[tuple[str, str]] = field(default_factory=Counter)  # (credential, status)
    server_errors: list[str] = field(default_factory=list)  # responses >= 500
    violations: list[str] = field(default_factory=list)  # everything else that broke a rule
    registered_nodes: list[str] = field(default_factory=list)

    @property
    def responses(self) -> int:
        return self.requests - self.statuses["refused"]


class Fuzzer:
    """Sends FuzzRequests over one keep-alive connection pool per certificate and judges the answers."""

    def __init__(self, https_url: str, tls_dir: Path, workdir: Path, credentials: Mapping[str, Credential]) -> None:
        self.credentials = credentials
        certs = {"admin": (tls_dir / "admin.crt", tls_dir / "admin.key")}
        certs |= {c.client: (workdir / f"{c.client}.crt", workdir / f"{c.client}.key") for c in credentials.values() if c.client not in ("none", "admin")}
        self.clients = {name: httpx.Client(base_url=https_url, verify=client_context(tls_dir, cert), timeout=5) for name, cert in certs.items()}
        self.clients["none"] = httpx.Client(base_url=https_url, verify=client_context(tls_dir), timeout=5)
        self.report = FuzzReport()
        self.previous: dict[str, FuzzRequest] = {}  # the last request on each pool, to explain a dropped connection

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def __enter__(self) -> Fuzzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, req: FuzzRequest) -> None:
        cred = self.credentials[req.credential]
        report = self.report
        report.requests += 1
        report.by_credential[req.credential] += 1
        headers = dict(req.headers)
        if req.authorization is not None:
            headers["Authorization"] = req.authorization
        try:
            resp = self.clients[cred.client].request(req.method, req.path, content=req.body, headers=headers)
        except httpx.TransportError as e:
            report.statuses["refused"] += 1
            report.by_outcome[req.credential, "refused"] += 1
            if cred.kind != "refused":
                before = self.previous.get(cred.client)
                after = f"\n  after {before.describe()}" if before else ""
                report.violations.append(f"{req.describe()} -> connection failed: {e!r}{after}")
            return
        finally:
            self.previous[cred.client] = req
        report.statuses[str(resp.status_code)] += 1
        report.by_outcome[req.credential, str(resp.status_code)] += 1
        for problem in judge(req, cred, resp):
            (report.server_errors if resp.status_code >= 500 else report.violations).append(problem)
        if resp.status_code == 200 and req.path == "/kubelite/v1/node-credentials" and req.body:
            report.registered_nodes.append(str(json.loads(req.body)["nodeName"]))


def judge(req: FuzzRequest, cred: Credential, resp: httpx.Response) -> Iterator[str]:
    """The rules of the module docstring, for one answer."""
    code = resp.status_code
    said = f"{req.describe()} -> {code} {resp.text[:300]}"
    if code >= 500:
        yield said
    if cred.kind == "refused":
        yield f"{said} (a certificate from another CA must not get an answer)"
        return
    # aiohttp's HTTP layer answers what it cannot parse (an unknown method, a body that does not
    # decode as its Content-Encoding says: 400) and an Expect it does not support (417) in plain
    # text, before any handler or authentication runs.
    parser_rejected = code in (400, 417) and resp.headers.get("content-type", "").startswith("text/plain")
    path = req.path.split("?", 1)[0]
    # The bootstrap paths skip API authentication whatever is presented: they judge the join token.
    exempt = cred.kind == "valid" or parser_rejected or path in BOOTSTRAP_PATHS
    if cred.kind == "anonymous":
        exempt = exempt or (req.method in SAFE_METHODS and path.rstrip("/") in PUBLIC_PATHS)
    if not exempt and code != 401:
        yield f"{said} (wanted 401 for credential {cred.name})"
    if path == "/kubelite/v1/node-credentials" and code < 300 and cred.name != "join-token":
        yield f"{said} (node credentials without the join token)"
    if code >= 400 and req.method != "HEAD" and not parser_rejected:
        try:
            status = resp.json()
            ok = status.get("kind") == "Status" and status.get("code") == code
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            yield f"{said} (an error that is not a Status with code {code})"


def run(fuzzer: Fuzzer, strategy: st.SearchStrategy[FuzzRequest], count: int, *, derandomize: bool) -> FuzzReport:
    """Send ``count`` generated requests. Failures are collected, not raised: no shrinking, and
    every offending request is in the report."""

    @settings(max_examples=count, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def one(req: FuzzRequest) -> None:
        fuzzer.send(req)

    one()
    return fuzzer.report


@dataclass
class FuzzOutcome:
    report: FuzzReport
    changes: list[str]  # seeded objects changed (snapshot_changes)
    ready: bool  # the server is still running and its /readyz answers 200
    seconds: float  # spent sending
    credentials: list[str]
    notes: list[str]


def fuzz_server(server: ServerProcess, workdir: Path, count: int, *, derandomize: bool) -> FuzzOutcome:
    """The whole fuzz against a fresh server (controllers off): seed, mint the credentials,
    snapshot, send ``count`` requests, snapshot again, check the server is still up."""
    with httpx.Client(base_url=server.url, timeout=10) as insecure:  # admin, for seeding and snapshots
        seeded = seed(insecure)
        credentials, notes = mint_credentials(server.tls_dir, server.https_url, server.token, workdir)
        before = snapshot(insecure)
        t0 = time.perf_counter()
        with Fuzzer(server.https_url, server.tls_dir, workdir, credentials) as fuzzer:
            report = run(fuzzer, fuzz_requests(credentials, seeded), count, derandomize=derandomize)
        seconds = time.perf_counter() - t0
        after = snapshot(insecure)
    ready = server.proc.poll() is None
    if ready:
        with httpx.Client(verify=client_context(server.tls_dir), timeout=10) as anonymous:
            ready = anonymous.get(f"{server.https_url}/readyz").status_code == 200
    changes = snapshot_changes(before, after, report.registered_nodes)
    return FuzzOutcome(report, changes, ready, seconds, sorted(credentials), notes)


def summary(report: FuzzReport) -> str:
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(report.statuses.items()))
    lines = [f"{report.requests} requests, {report.responses} responses ({statuses}); {len(report.server_errors)} >= 500"]
    for cred, total in sorted(report.by_credential.items()):
        outcomes = ", ".join(f"{status}: {n}" for (c, status), n in sorted(report.by_outcome.items()) if c == cred)
        lines.append(f"  {cred:<15} {total:>6}  ({outcomes})")
    return "\n".join(lines)
