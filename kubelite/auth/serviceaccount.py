"""ServiceAccount tokens: issuing (TokenRequest), verifying (an authenticator) and pod admission.

Tokens are Kubernetes' bound service account tokens: ES256 JWTs signed with the cluster's
service-account key, carrying ``iss``, ``sub`` (``system:serviceaccount:<ns>:<name>``), ``aud``,
``exp``/``iat``/``nbf``, ``jti`` and the private ``kubernetes.io`` claim naming the namespace, the
ServiceAccount and (when bound) the pod and its node, each with its uid.

Verification is stateless except for revocation: a token whose ServiceAccount or bound pod no
longer exists, or exists again under a new uid, is refused at once (kube-apiserver's
``validator.go`` does the same lookups).

:func:`admit_pod` is kube-apiserver's ServiceAccount admission plugin: it names the pod's
ServiceAccount and projects ``kube-api-access-*`` (token, cluster CA, namespace) into every
container at ``/var/run/secrets/kubernetes.io/serviceaccount``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubelite.api.registry import ResourceType, resource
from kubelite.apiserver import errors
from kubelite.auth import ALL_AUTHENTICATED, SA_GROUP, SA_USER_PREFIX, AuthenticationError, UserInfo

if TYPE_CHECKING:
    from kubelite.apiserver.app import ApiServer, Target
    from kubelite.apiserver.objects import ObjectStore

__all__ = [
    "DEFAULT_EXPIRATION_SECONDS",
    "KUBELET_TOKEN_EXPIRATION_SECONDS",
    "MAX_EXPIRATION_SECONDS",
    "MIN_EXPIRATION_SECONDS",
    "ROOT_CA_CONFIGMAP",
    "TOKEN_MOUNT_PATH",
    "ServiceAccountTokens",
    "admit_pod",
    "token_request",
]

Obj = dict[str, Any]

SERVICEACCOUNTS: ResourceType = resource("", "serviceaccounts")
PODS: ResourceType = resource("", "pods")
NODES: ResourceType = resource("", "nodes")

ALGORITHM = "ES256"
MIN_EXPIRATION_SECONDS = 600  # TokenRequest validation: "may not specify a duration less than 10 minutes"
DEFAULT_EXPIRATION_SECONDS = 3600
MAX_EXPIRATION_SECONDS = 48 * 3600  # kube-apiserver --service-account-max-token-expiration
KUBELET_TOKEN_EXPIRATION_SECONDS = 3607  # what the admission plugin asks for (kubelet refreshes at 80%)
# Clock skew allowed between masters for nbf/iat (exp is checked exactly).
NOT_BEFORE_LEEWAY = 60

TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DEFAULT_SERVICEACCOUNT = "default"
# utilrand.String's alphabet (no vowels: generated names never spell words).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

_EXTRA = "authentication.kubernetes.io/"


def _kid(public_key: ec.EllipticCurvePublicKey) -> str:
    """Kubernetes' key id: base64url(sha256(DER SubjectPublicKeyInfo)), unpadded."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ServiceAccountTokens:
    """Issues and verifies ServiceAccount JWTs for one cluster (every master shares the key)."""

    def __init__(
        self, key_pem: bytes, issuer: str, objects: ObjectStore, audiences: Sequence[str] | None = None
    ) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("the service-account key must be an EC P-256 private key (ES256)")
        self._key = key
        self._public = key.public_key()
        self.kid = _kid(self._public)
        self.issuer = issuer
        self.objects = objects
        # What a token must be meant for to be accepted here (the API server's own audiences).
        self.audiences: tuple[str, ...] = tuple(audiences) if audiences else (issuer,)

    # ---- issuing -------------------------------------------------------------------------------

    def issue(
        self,
        namespace: str,
        sa_name: str,
        sa_uid: str,
        *,
        audiences: Sequence[str] | None = None,
        expiration_seconds: int = DEFAULT_EXPIRATION_SECONDS,
        pod: tuple[str, str] | None = None,
        node: tuple[str, str] | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[str, dt.datetime]:
        """A signed token and its expiry. ``pod``/``node`` are (name, uid) the token is bound to."""
        issued = (now or _now()).replace(microsecond=0)
        expires = issued + dt.timedelta(seconds=expiration_seconds)
        private: Obj = {"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": sa_uid}}
        if pod is not None:
            private["pod"] = {"name": pod[0], "uid": pod[1]}
        if node is not None:
            private["node"] = {"name": node[0], "uid": node[1]}
        claims: Obj = {
            "iss": self.issuer,
            "sub": f"{SA_USER_PREFIX}{namespace}:{sa_name}",
            "aud": list(audiences) if audiences else list(self.audiences),
            "exp": int(expires.timestamp()),
            "iat": int(issued.timestamp()),
            "nbf": int(issued.timestamp()),
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, expires

    # ---- verifying -----------------------------------------------------------------------------

    def _is_ours(self, token: str) -> bool:
        """A JWT claiming our issuer (unverified): only then is a failure ours to report."""
        if token.count(".") != 2:
            return False
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        return claims.get("iss") == self.issuer

    def _verify(self, token: str) -> Obj:
        try:
            claims: Obj = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                audience=list(self.audiences),
                issuer=self.issuer,
                # nbf is checked below with leeway; exp here exactly (PyJWT's leeway covers both).
                options={"require": ["exp", "iat", "sub", "aud"], "verify_nbf": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("service account token has expired") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("service account token has an invalid signature") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("service account token audiences are invalid for this server") from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationError(f"service account token is not signed with {ALGORITHM}") from None
        except jwt.PyJWTError as e:
            raise AuthenticationError(f"invalid service account token: {e}") from None
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and _now().timestamp() + NOT_BEFORE_LEEWAY < nbf:
            raise AuthenticationError("service account token is not valid yet")
        return claims

    async def _live_uid(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[str | None, Obj | None]:
        try:
            obj = await self.objects.get(rt, namespace, name)
        except errors.StatusError as e:
            if e.code == 404:
                return None, None
            raise
        return str((obj.get("metadata") or {}).get("uid") or ""), obj

    async def authenticate(self, token: str) -> UserInfo | None:
        """The ServiceAccount user a token proves, None if it is not one of our tokens.

        Raises :class:`AuthenticationError` for our tokens that are expired, forged, meant for
        another audience, or whose ServiceAccount or bound pod/node is gone (revocation).
        """
        if not self._is_ours(token):
            return None
        claims = self._verify(token)
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            raise AuthenticationError("service account token lacks the kubernetes.io claim")
        namespace = str(private.get("namespace") or "")
        sa = private.get("serviceaccount") or {}
        sa_name, sa_uid = str(sa.get("name") or ""), str(sa.get("uid") or "")
        if not namespace or not sa_name or claims.get("sub") != f"{SA_USER_PREFIX}{namespace}:{sa_name}":
            raise AuthenticationError("service account token names no service account")
        live, _ = await self._live_uid(SERVICEACCOUNTS, namespace, sa_name)
        if live is None or live != sa_uid:
            raise AuthenticationError(f"service account {namespace}/{sa_name} has been deleted")
        extra: dict[str, tuple[str, ...]] = {}
        pod = private.get("pod")
        if isinstance(pod, dict):
            pod_name, pod_uid = str(pod.get("name") or ""), str(pod.get("uid") or "")
            live, _ = await self._live_uid(PODS, namespace, pod_name)
            if live is None or live != pod_uid:
                raise AuthenticationError(f"pod {namespace}/{pod_name} the token is bound to no longer exists")
            extra[_EXTRA + "pod-name"] = (pod_name,)
            extra[_EXTRA + "pod-uid"] = (pod_uid,)
        node = private.get("node")
        if isinstance(node, dict):
            node_name, node_uid = str(node.get("name") or ""), str(node.get("uid") or "")
            # A pod-bound token only records its node; the pod check already revokes it.
            if not isinstance(pod, dict):
                live, _ = await self._live_uid(NODES, None, node_name)
                if live is None or live != node_uid:
                    raise AuthenticationError(f"node {node_name} the token is bound to no longer exists")
            extra[_EXTRA + "node-name"] = (node_name,)
            extra[_EXTRA + "node-uid"] = (node_uid,)
        if claims.get("jti"):
            extra[_EXTRA + "credential-id"] = (f"JTI={claims['jti']}",)
        return UserInfo(
            name=f"{SA_USER_PREFIX}{namespace}:{sa_name}",
            groups=(SA_GROUP, f"{SA_GROUP}:{namespace}", ALL_AUTHENTICATED),
            uid=sa_uid,
            extra=extra,
        )


# ---- TokenRequest (POST .../serviceaccounts/{name}/token) ------------------------------------------


def _invalid(name: str, field: str, value: Any, message: str) -> errors.StatusError:
    """422 naming the TokenRequest field, as kube-apiserver's validation reports it."""
    return errors.StatusError(
        422,
        "Invalid",
        f'TokenRequest.authentication.k8s.io "{name}" is invalid: {field}: Invalid value: {value!r}: {message}',
        {"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest",
         "causes": [{"reason": "FieldValueInvalid", "message": f"Invalid value: {value!r}: {message}",
                     "field": field}]},
    )


def _parse_spec(name: str, body: Any, default_audiences: Sequence[str]) -> tuple[list[str], int, Obj | None]:
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a TokenRequest object")
    if body.get("kind") not in (None, "TokenRequest"):
        raise errors.bad_request(f"expected kind TokenRequest, got {body.get('kind')!r}")
    if body.get("apiVersion") not in (None, "authentication.k8s.io/v1"):
        raise errors.bad_request(f"expected apiVersion authentication.k8s.io/v1, got {body.get('apiVersion')!r}")
    spec = body.get("spec") if body.get("spec") is not None else {}
    if not isinstance(spec, dict):
        raise _invalid(name, "spec", spec, "must be an object")
    audiences = spec.get("audiences")
    if audiences is None or audiences == []:
        audiences = list(default_audiences)
    elif not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise _invalid(name, "spec.audiences", audiences, "must be a list of non-empty strings")
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        seconds = DEFAULT_EXPIRATION_SECONDS
    elif not isinstance(seconds, int) or isinstance(seconds, bool):
        raise _invalid(name, "spec.expirationSeconds", seconds, "must be an integer")
    elif seconds < MIN_EXPIRATION_SECONDS:
        raise _invalid(name, "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")
    elif seconds > 1 << 32:
        raise _invalid(name, "spec.expirationSeconds", seconds, "may not specify a duration larger than 2^32 seconds")
    # Longer requests are shortened, not refused (kube-apiserver's max token expiration).
    seconds = min(seconds, MAX_EXPIRATION_SECONDS)
    ref = spec.get("boundObjectRef")
    if ref is not None and not isinstance(ref, dict):
        raise _invalid(name, "spec.boundObjectRef", ref, "must be an object")
    return audiences, seconds, ref


async def _bound_pod(api: ApiServer, name: str, namespace: str, ref: Obj) -> tuple[tuple[str, str], Obj]:
    kind, api_version = ref.get("kind"), ref.get("apiVersion") or "v1"
    if kind != "Pod" or api_version != "v1":
        raise _invalid(name, "spec.boundObjectRef.kind", kind, 'supported values: "Pod" (apiVersion v1)')
    pod_name = ref.get("name")
    if not isinstance(pod_name, str) or not pod_name:
        raise _invalid(name, "spec.boundObjectRef.name", pod_name, "must name the pod")
    pod = await api.objects.get(PODS, namespace, pod_name)  # 404 NotFound if there is no such pod
    uid = str(pod["metadata"]["uid"])
    if ref.get("uid") and ref["uid"] != uid:
        raise errors.StatusError(
            409, "Conflict",
            f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record ({uid}); "
            "the object might have been deleted and then recreated",
        )
    sa_of_pod = (pod.get("spec") or {}).get("serviceAccountName") or DEFAULT_SERVICEACCOUNT
    if sa_of_pod != name:
        raise errors.bad_request(
            f'cannot bind token for serviceaccount "{name}" to pod running with different serviceaccount name'
        )
    return (pod_name, uid), pod


async def token_request(api: ApiServer, request: web.Request, t: Target) -> web.Response:
    """POST .../namespaces/{ns}/serviceaccounts/{name}/token: a TokenRequest answered with a token."""
    if request.method != "POST":
        raise errors.StatusError(405, "MethodNotAllowed", f"{request.method} is not supported on serviceaccounts/token")
    assert t.name is not None and t.namespace is not None
    name, namespace = t.name, t.namespace
    raw = await request.read()
    if not raw:
        raise errors.bad_request("the request body is empty; send a TokenRequest")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(f"the request body is not valid JSON: {e}") from None
    audiences, seconds, ref = _parse_spec(name, body, api.sa_tokens.audiences)
    sa = await api.objects.get(SERVICEACCOUNTS, namespace, name)  # 404 when the ServiceAccount is missing
    if (sa.get("metadata") or {}).get("deletionTimestamp"):
        raise errors.StatusError(409, "Conflict", f'serviceaccount "{name}" is being deleted')
    pod_ref: tuple[str, str] | None = None
    node_ref: tuple[str, str] | None = None
    bound: Obj | None = None
    if ref is not None:
        pod_ref, pod = await _bound_pod(api, name, namespace, ref)
        bound = {"kind": "Pod", "apiVersion": "v1", "name": pod_ref[0], "uid": pod_ref[1]}
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            with_uid = await _node_uid(api, str(node_name))
            if with_uid:
                node_ref = (str(node_name), with_uid)
    token, expires = api.sa_tokens.issue(
        namespace, name, str(sa["metadata"]["uid"]),
        audiences=audiences, expiration_seconds=seconds, pod=pod_ref, node=node_ref,
    )
    spec: Obj = {"audiences": audiences, "expirationSeconds": seconds}
    if bound is not None:
        spec["boundObjectRef"] = bound
    answer = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace,
                     "creationTimestamp": _now().strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    return web.Response(body=orjson.dumps(answer), status=201, content_type="application/json")


async def _node_uid(api: ApiServer, node: str) -> str | None:
    try:
        obj = await api.objects.get(NODES, None, node)
    except errors.StatusError as e:
        if e.code == 404:
            return None
        raise
    return str(obj["metadata"]["uid"])


# ---- admission -------------------------------------------------------------------------------------


def token_volume(name: str) -> Obj:
    """The projected volume the admission plugin adds: token, cluster CA, namespace."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": KUBELET_TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
                ]}},
            ],
        },
    }


def pod_serviceaccount_name(spec: Mapping[str, Any]) -> Any:
    """The ServiceAccount a pod spec names: serviceAccountName, its deprecated alias, or "default"."""
    return spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICEACCOUNT


def admit_pod(pod: Obj, serviceaccount: Mapping[str, Any] | None = None) -> None:
    """kube-apiserver's ServiceAccount admission for a pod being created (mutates ``pod``).

    Names the ServiceAccount (``default`` when empty) and, unless automounting is off (the pod's
    ``automountServiceAccountToken``, else the ServiceAccount's when the caller passes it), mounts
    a ``kube-api-access-<suffix>`` projected volume read-only at :data:`TOKEN_MOUNT_PATH` into
    every container and init container that has nothing mounted there yet.
    """
    spec = pod.setdefault("spec", {})
    if not isinstance(spec, dict):
        return  # validation reports it
    sa_name = pod_serviceaccount_name(spec)
    if not isinstance(sa_name, str):
        return  # validation reports it
    spec["serviceAccountName"] = sa_name
    spec["serviceAccount"] = sa_name  # the deprecated alias, kept equal as Kubernetes does
    automount = spec.get("automountServiceAccountToken")
    if automount is None and serviceaccount is not None:
        automount = serviceaccount.get("automountServiceAccountToken")
    if automount is False:
        return
    volumes = spec.get("volumes")
    if volumes is not None and not isinstance(volumes, list):
        return
    taken = {str(v.get("name")) for v in volumes or [] if isinstance(v, dict)}
    name = ""
    while not name or name in taken:
        name = TOKEN_VOLUME_PREFIX + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
    mounted = False
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            mounts = container.setdefault("volumeMounts", [])
            if not isinstance(mounts, list):
                continue
            if any(isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                continue
            mounts.append({"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})
            mounted = True
    if mounted:
        spec["volumes"] = [*(volumes or []), token_volume(name)]
