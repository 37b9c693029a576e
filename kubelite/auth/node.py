"""The Node authorizer and NodeRestriction admission, in one: what a node credential may do.

A node authenticates as ``system:node:<name>`` in ``system:nodes``. Like kube-apiserver's Node
authorizer, this one keeps a graph of which objects a node's pods reference, fed by watch caches
of pods, PersistentVolumeClaims and PersistentVolumes, so a node reads only the Secrets,
ConfigMaps and claims its own pods need and writes only its own Node, Lease and pods' status.

What the node agent (kubelite/agent/) calls, and the rule that lets it (N = the node's name):

    caller                       | verb(s)                   | resource                       | rule
    -----------------------------+---------------------------+--------------------------------+--------------------------
    node.py NodeHeartbeat        | get, create, patch        | nodes/N                        | own Node only (+ admit)
    node.py                      | patch                     | nodes/N/status                 | own Node only
    routes.py (podCIDR)          | get, patch                | nodes/N                        | own Node only
    node.py lease loop           | get, create, update       | leases kube-node-lease/N       | own Lease only (+ admit)
    pods.py PodDispatcher        | list, watch               | pods (spec.nodeName=N; hollow  | read-only, all pods
                                 |                           | nodes: all pods)               |
    pods.py status sync          | patch                     | pods/status                    | pod bound to N
    pods.py graceful delete      | delete                    | pods                           | pod bound to N
    routes.py / dns.py / proxy.py| list, watch               | nodes, services, endpoints     | read-only, all
    env.py / volumes.py          | get                       | secrets, configmaps            | referenced by a pod on N
    volumes.py claims            | get, patch                | persistentvolumeclaims (+status)| referenced by a pod on N
    volumes.py claims            | get                       | persistentvolumes              | bound to such a claim, or
                                 |                           |                                | node affinity includes N
    volumes.py provisioner       | create                    | persistentvolumes              | admit: affinity pins N,
                                 |                           |                                | claimRef is N's claim
    volumes.py provisioner       | patch                     | persistentvolumes/status       | pinned to N, or bound to
                                 |                           |                                | a claim of N's pods
    volumes.py ServiceAccount-   | create                    | serviceaccounts/token          | SA of a pod on N; admit:
      TokenManager               |                           |                                | bound to that pod
    (event recorder, none yet)   | create, patch             | events                         | any namespace

Also read-only for every node: namespaces (get/list/watch), leases in kube-node-lease.

Decisions. A request on a type the API server serves (kubelite.api.registry) that the table does
not allow is DENY, with a reason naming the node and the object: the union authorizer stops there,
so an RBAC binding (say, to ``system:authenticated``) cannot widen a node's rights by accident.
Requests on types outside the registry and non-resource paths (discovery, /version) are
NO_OPINION, so an admin may grant those to ``system:nodes`` through RBAC. (kube-apiserver's Node
authorizer answers NO_OPINION where this one denies; with its default RBAC the end result is the
same 403.)

Creates carry the object's name in the body, not the path, so the authorizer cannot see it:
:meth:`NodeAuthorizer.admit` is the NodeRestriction half, run by the API server on the decoded
body of every create/update by a node (a Node or Lease named after another node, a PV that is
not pinned to the node, a TokenRequest not bound to one of its pods, is refused).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kubelite.api.registry import RESOURCES, ResourceType, resource
from kubelite.api.selectors import parse_field_selector
from kubelite.auth import Attributes, Decision, node_name_of
from kubelite.auth.cache import LocalCache

if TYPE_CHECKING:
    from kubelite.apiserver.objects import ObjectStore

__all__ = ["NODE_LEASE_NAMESPACE", "NodeAuthorizer", "pod_references"]

Obj = dict[str, Any]
Ref = tuple[str, str, str]  # (kind, namespace, name); kind: secret, configmap, pvc, serviceaccount
PodKey = tuple[str, str]

NODE_LEASE_NAMESPACE = "kube-node-lease"
HOSTNAME_LABEL = "kubernetes.io/hostname"

PODS = resource("", "pods")
PVCS = resource("", "persistentvolumeclaims")
PVS = resource("", "persistentvolumes")

READ = frozenset({"get", "list", "watch"})
WRITE = frozenset({"update", "patch"})
# Kinds of reference a pod makes, keyed by the plural the request names.
REF_KIND = {"secrets": "secret", "configmaps": "configmap", "persistentvolumeclaims": "pvc",
            "serviceaccounts": "serviceaccount"}  # fmt: skip


def pod_references(pod: Mapping[str, Any]) -> frozenset[Ref]:
    """Every Secret, ConfigMap, claim and ServiceAccount a pod's node needs to run it."""
    ns = str((pod.get("metadata") or {}).get("namespace") or "")
    spec = pod.get("spec") or {}
    refs: set[Ref] = set()

    def add(kind: str, name: Any) -> None:
        if isinstance(name, str) and name:
            refs.add((kind, ns, name))

    # An unset serviceAccountName means "default", as the ServiceAccount admission sets it.
    add("serviceaccount", spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    for s in _dicts(spec.get("imagePullSecrets")):
        add("secret", s.get("name"))
    for vol in _dicts(spec.get("volumes")):
        add("secret", (vol.get("secret") or {}).get("secretName"))
        add("configmap", (vol.get("configMap") or {}).get("name"))
        add("pvc", (vol.get("persistentVolumeClaim") or {}).get("claimName"))
        for src in _dicts((vol.get("projected") or {}).get("sources")):
            add("secret", (src.get("secret") or {}).get("name"))
            add("configmap", (src.get("configMap") or {}).get("name"))
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dicts(spec.get(field)):
            for env in _dicts(c.get("env")):
                value_from = env.get("valueFrom") or {}
                add("secret", (value_from.get("secretKeyRef") or {}).get("name"))
                add("configmap", (value_from.get("configMapKeyRef") or {}).get("name"))
            for env_from in _dicts(c.get("envFrom")):
                add("secret", (env_from.get("secretRef") or {}).get("name"))
                add("configmap", (env_from.get("configMapRef") or {}).get("name"))
    return frozenset(refs)


def _dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    """The mappings in a list field; anything malformed is skipped (validation is not our job)."""
    if isinstance(value, list):
        yield from (v for v in value if isinstance(v, Mapping))


_POD_SPEC_KEPT = ("nodeName", "serviceAccountName", "serviceAccount", "volumes", "imagePullSecrets")
_CONTAINER_KEPT = ("env", "envFrom")


def _slim_pod(pod: Obj) -> Obj:
    """What the graph and the token admission read of a pod: its identity, node and references."""
    m = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    slim_spec: Obj = {k: spec[k] for k in _POD_SPEC_KEPT if k in spec}
    for field in ("initContainers", "containers", "ephemeralContainers"):
        if field in spec:
            slim_spec[field] = [{k: c[k] for k in _CONTAINER_KEPT if k in c} for c in _dicts(spec[field])]
    return {"metadata": {k: m[k] for k in ("name", "namespace", "uid") if k in m}, "spec": slim_spec}


def _node_of(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _affinity_nodes(pv: Mapping[str, Any]) -> set[str] | None:
    """The hostnames a PV's required node affinity allows; None when it does not restrict hostnames.

    A term without a hostname expression admits any node, so it makes the PV unrestricted."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    terms = list(_dicts(required.get("nodeSelectorTerms")))
    if not terms:
        return None
    names: set[str] = set()
    for term in terms:
        exprs = _dicts(term.get("matchExpressions"))
        hosts = [e for e in exprs if e.get("key") == HOSTNAME_LABEL and e.get("operator") == "In"]
        if not hosts:
            return None
        for expr in hosts:
            names.update(str(v) for v in expr.get("values") or [])
    return names


def _pinned_to(pv: Mapping[str, Any] | None, node: str) -> bool:
    return pv is not None and _affinity_nodes(pv) == {node}


class NodeAuthorizer:
    """``authorize`` for node credentials; NO_OPINION for every other user."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self.pods = LocalCache(objects, PODS, self._on_pod, transform=_slim_pod)
        self.pvcs = LocalCache(objects, PVCS, self._on_pvc)
        self.pvs = LocalCache(objects, PVS)
        self._pod_info: dict[PodKey, tuple[str, frozenset[Ref]]] = {}
        self._pods_on: dict[str, set[PodKey]] = {}
        self._ref_nodes: dict[Ref, Counter[str]] = {}  # how many pods of each node reference it
        self._claims_of_pv: dict[str, set[PodKey]] = {}  # PV name -> claims whose spec.volumeName names it

    def start(self) -> None:
        for cache in (self.pods, self.pvcs, self.pvs):
            cache.start()

    async def wait_synced(self, timeout: float = 30) -> None:
        for cache in (self.pods, self.pvcs, self.pvs):
            await cache.wait_synced(timeout)

    async def stop(self) -> None:
        for cache in (self.pods, self.pvcs, self.pvs):
            await cache.stop()

    # ---- the graph ---------------------------------------------------------------------------

    def _on_pod(self, _type: str, old: Obj | None, new: Obj | None) -> None:
        key = LocalCache.key_of(new or old or {})
        before = self._pod_info.pop(key, None)
        if before is not None:
            node, refs = before
            on_node = self._pods_on.get(node, set())
            on_node.discard(key)
            if not on_node:
                self._pods_on.pop(node, None)
            for ref in refs:
                counts = self._ref_nodes.get(ref)
                if counts is not None:
                    counts[node] -= 1
                    if counts[node] <= 0:
                        del counts[node]
                    if not counts:
                        del self._ref_nodes[ref]
        node = _node_of(new) if new is not None else ""
        if new is None or not node:  # deleted, or not scheduled yet: no node may use it
            return
        refs = pod_references(new)
        self._pod_info[key] = (node, refs)
        self._pods_on.setdefault(node, set()).add(key)
        for ref in refs:
            self._ref_nodes.setdefault(ref, Counter())[node] += 1

    def _on_pvc(self, _type: str, old: Obj | None, new: Obj | None) -> None:
        key = LocalCache.key_of(new or old or {})
        for obj, present in ((old, False), (new, True)):
            volume = str(((obj or {}).get("spec") or {}).get("volumeName") or "")
            if not volume:
                continue
            claims = self._claims_of_pv.setdefault(volume, set())
            if present:
                claims.add(key)
            else:
                claims.discard(key)
                if not claims:
                    del self._claims_of_pv[volume]

    def references(self, node: str, ref: Ref) -> bool:
        """Whether a pod bound to ``node`` references ``ref``, by the graph alone (no store read)."""
        return self._ref_nodes.get(ref, Counter())[node] > 0

    def bound_to(self, node: str, namespace: str, name: str) -> bool:
        """Whether pod namespace/name is bound to ``node``, by the graph alone (no store read)."""
        return (namespace, name) in self._pods_on.get(node, set())

    def _pv_of_node_claim(self, node: str, pv_name: str) -> bool:
        return any(self.references(node, ("pvc", ns, c)) for ns, c in self._claims_of_pv.get(pv_name, ()))

    # ---- the store, when the graph says no (a pod bound a moment ago, a PV just created) -----

    async def _store_pods_on(self, node: str, namespace: str | None) -> list[Obj]:
        from kubelite.apiserver.objects import ListOptions

        selector = parse_field_selector(f"spec.nodeName={node}")
        listed = await self.objects.list(PODS, namespace, ListOptions(field_selector=selector))
        items: list[Obj] = listed["items"]
        return items

    async def _store_get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        from kubelite.apiserver.errors import StatusError

        try:
            return await self.objects.get(rt, namespace, name)
        except StatusError as e:
            if e.code == 404:
                return None
            raise

    async def _store_references(self, node: str, ref: Ref) -> bool:
        return any(ref in pod_references(p) for p in await self._store_pods_on(node, ref[1]))

    async def _store_bound_here(self, node: str, namespace: str, name: str) -> bool:
        pod = await self._store_get(PODS, namespace, name)
        return pod is not None and _node_of(pod) == node

    async def _store_pv_of_node_claim(self, node: str, pv_name: str) -> bool:
        claims = {(ns, n) for p in await self._store_pods_on(node, None)
                  for kind, ns, n in pod_references(p) if kind == "pvc"}  # fmt: skip
        for ns, name in claims:
            claim = await self._store_get(PVCS, ns, name)
            if claim is not None and (claim.get("spec") or {}).get("volumeName") == pv_name:
                return True
        return False

    # ---- authorization -----------------------------------------------------------------------

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        node = node_name_of(attrs.user)
        if node is None:
            return Decision.NO_OPINION, ""
        if not attrs.resource_request:
            return Decision.NO_OPINION, f"node '{node}': no node rule for path {attrs.path}"
        rt = next((r for r in RESOURCES if r.group == attrs.api_group and r.plural == attrs.resource), None)
        if rt is None:  # not a built-in type: left to RBAC (see the module docstring)
            return Decision.NO_OPINION, f"node '{node}': no node rule for {attrs.resource}"
        why = await self._decide(node, rt, attrs)
        if why is None:
            return Decision.ALLOW, ""
        return Decision.DENY, f"node '{node}' cannot {attrs.verb} {self._describe(rt, attrs)}: {why}"

    @staticmethod
    def _describe(rt: ResourceType, a: Attributes) -> str:
        """``secret ns/name``, ``pod/status ns/name``, ``secrets in namespace ns``."""
        if a.name:
            kind = rt.singular + (f"/{a.subresource}" if a.subresource else "")
            return f"{kind} {a.namespace + '/' if a.namespace else ''}{a.name}"
        return rt.plural + (f" in namespace {a.namespace}" if a.namespace else "")

    async def _decide(self, node: str, rt: ResourceType, a: Attributes) -> str | None:
        """None to allow, else why not."""
        verb, sub = a.verb, a.subresource
        no_relation = f"no relationship found between node '{node}' and this object"
        match (rt.group, rt.plural):
            case ("", "nodes"):
                if verb in READ and sub in ("", "status"):
                    return None
                if verb == "create" and sub == "" and a.name in ("", node):
                    return None  # the body's name is checked by admit()
                if verb in WRITE and sub in ("", "status"):
                    return None if a.name == node else "a node may only modify its own Node object"
                return "a node may only read Nodes and write its own"
            case ("", "services" | "endpoints" | "namespaces"):
                return None if verb in READ and sub == "" else f"{rt.plural} are read-only for nodes"
            case ("", "pods"):
                if verb in READ and sub in ("", "status"):
                    return None
                if (verb in WRITE and sub == "status") or (verb == "delete" and sub == ""):
                    if self.bound_to(node, a.namespace, a.name) or await self._store_bound_here(
                        node, a.namespace, a.name
                    ):
                        return None
                    return no_relation
                return "a node may only read pods, and update the status of or delete pods bound to it"
            case ("", "secrets" | "configmaps" | "persistentvolumeclaims" | "serviceaccounts"):
                return await self._decide_referenced(node, a, no_relation)
            case ("", "persistentvolumes"):
                return await self._decide_pv(node, a, no_relation)
            case ("coordination.k8s.io", "leases"):
                if a.namespace != NODE_LEASE_NAMESPACE:
                    return f"a node may only use leases in {NODE_LEASE_NAMESPACE}"
                if verb in READ and sub == "":
                    return None
                if verb == "create" and sub == "" and a.name in ("", node):
                    return None  # the body's name is checked by admit()
                if verb in WRITE | {"delete"} and sub == "":
                    return None if a.name == node else "a node may only modify its own Lease"
                return "a node may only read leases and write its own"
            case ("", "events"):
                return (
                    None
                    if verb in ("create", "patch") and sub == ""
                    else "a node may only create and patch events"
                )
        return f"a node has no access to {rt.plural}"

    async def _decide_referenced(self, node: str, a: Attributes, no_relation: str) -> str | None:
        """Secrets, ConfigMaps, claims, ServiceAccounts: only by name, only those its pods use."""
        kind = REF_KIND[a.resource]
        if kind == "serviceaccount":
            if not (a.verb == "create" and a.subresource == "token" and a.name):
                return "a node may only create tokens of the ServiceAccounts its pods use"
        elif kind == "pvc":
            if not (
                (a.verb == "get" and a.subresource == "")
                or (a.verb == "patch" and a.subresource in ("", "status"))
            ):
                return "a node may only get and patch the claims its pods use, by name"
        elif a.verb != "get" or a.subresource or not a.name:
            return f"a node may only get the {a.resource} its pods use, by name"
        ref: Ref = (kind, a.namespace, a.name)
        if self.references(node, ref) or await self._store_references(node, ref):
            return None
        return no_relation

    async def _decide_pv(self, node: str, a: Attributes, no_relation: str) -> str | None:
        """Read, and mark bound (status), the volumes of its pods' claims and the ones it provisions.

        The agent never writes a PV's spec, so no node may: re-pinning a volume to another node
        would hand that node's pods this one's data."""
        verb, sub = a.verb, a.subresource
        if verb == "create" and sub == "":
            return None  # the body (affinity, claimRef) is checked by admit()
        if not (verb == "get" and sub in ("", "status")) and not (verb == "patch" and sub == "status"):
            return "a node may only get the volumes its pods use, create local ones and patch their status"
        pv = self.pvs.get(None, a.name) or await self._store_get(PVS, None, a.name)  # just created?
        if pv is not None and (
            _pinned_to(pv, node) or (verb == "get" and node in (_affinity_nodes(pv) or ()))
        ):
            return None
        if self._pv_of_node_claim(node, a.name) or await self._store_pv_of_node_claim(node, a.name):
            return None
        return no_relation

    # ---- NodeRestriction admission -----------------------------------------------------------

    async def admit(self, attrs: Attributes, obj: Mapping[str, Any]) -> tuple[Decision, str]:
        """Check the body of a node's create/update: DENY (403) with a reason, or ALLOW.

        The API server calls this after :meth:`authorize` allowed the request, with the decoded
        request body; NO_OPINION for users that are not nodes and requests it does not restrict."""
        node = node_name_of(attrs.user)
        if node is None or attrs.verb not in ("create", "update"):
            return Decision.NO_OPINION, ""
        m = obj.get("metadata") or {}
        name = str(m.get("name") or "") if isinstance(m, Mapping) else ""
        why: str | None = None
        match (attrs.api_group, attrs.resource, attrs.subresource):
            case ("", "nodes", ""):
                if name != node:
                    why = f"node '{node}' cannot {attrs.verb} node {name!r}: a node may only register itself"
            case ("coordination.k8s.io", "leases", ""):
                if name != node:
                    why = f"node '{node}' cannot {attrs.verb} lease {attrs.namespace}/{name}: not its own"
            case ("", "persistentvolumes", ""):
                why = await self._admit_pv(node, attrs.verb, name, obj)
            case ("", "serviceaccounts", "token"):
                why = await self._admit_token(node, attrs, obj)
            case _:
                return Decision.NO_OPINION, ""
        return (Decision.ALLOW, "") if why is None else (Decision.DENY, why)

    async def _admit_token(self, node: str, attrs: Attributes, request: Mapping[str, Any]) -> str | None:
        """A node's TokenRequest must be bound to a pod on that node that runs as this account,
        so the token dies with the pod (kube-apiserver's NodeRestriction rule)."""
        prefix = f"node '{node}' cannot create serviceaccount/token {attrs.namespace}/{attrs.name}"
        ref = (request.get("spec") or {}).get("boundObjectRef") or {}
        if not isinstance(ref, Mapping) or ref.get("kind") != "Pod" or not ref.get("name"):
            return f"{prefix}: a node may only request tokens bound to one of its pods"
        pod = self.pods.get(attrs.namespace, str(ref["name"]))
        if pod is None or _node_of(pod) != node:
            pod = await self._store_get(PODS, attrs.namespace, str(ref["name"]))
        if pod is None or _node_of(pod) != node:
            return f"{prefix}: no relationship found between node '{node}' and pod {attrs.namespace}/{ref['name']}"
        if ref.get("uid") and ref["uid"] != (pod.get("metadata") or {}).get("uid"):
            return f"{prefix}: pod {attrs.namespace}/{ref['name']} has another uid"
        if ("serviceaccount", attrs.namespace, attrs.name) not in pod_references(pod):
            return f"{prefix}: pod {attrs.namespace}/{ref['name']} does not run as this ServiceAccount"
        return None

    async def _admit_pv(self, node: str, verb: str, name: str, pv: Mapping[str, Any]) -> str | None:
        prefix = f"node '{node}' cannot {verb} persistentvolume {name}"
        if not _pinned_to(pv, node):
            return f"{prefix}: its node affinity must pin it to {HOSTNAME_LABEL}={node}"
        claim = (pv.get("spec") or {}).get("claimRef")
        if verb == "create" and claim is not None:  # pre-bound: only to a claim of its own pods
            ref: Ref = ("pvc", str(claim.get("namespace") or ""), str(claim.get("name") or ""))
            if not (self.references(node, ref) or await self._store_references(node, ref)):
                return f"{prefix}: no relationship found between node '{node}' and claim {ref[1]}/{ref[2]}"
        return None
