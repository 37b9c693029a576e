"""The HTTP layer: Kubernetes paths and verbs on aiohttp.

aiohttp was chosen over starlette/uvicorn because one library gives both the server and the
async client (informers, agent, proxying logs to agents), streams chunked watch responses
natively, and has no ASGI layer between a request and our handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from kubelite import KUBE_VERSION, __version__
from kubelite.api import patch as api_patch
from kubelite.api import printers, strategic
from kubelite.api.registry import ResourceType, by_path
from kubelite.api.selectors import (
    SUPPORTED_FIELDS,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from kubelite.apiserver import discovery, errors, openapi, proxy, ssa
from kubelite.apiserver.config import ServerConfig
from kubelite.apiserver.meta import Obj, deepcopy, meta
from kubelite.apiserver.objects import DeleteOptions, ListOptions, ObjectStore, WriteOptions
from kubelite.auth import (
    ALL_UNAUTHENTICATED,
    ANONYMOUS,
    MASTERS,
    Attributes,
    AuthenticationError,
    Authorizer,
    Decision,
    UserInfo,
)
from kubelite.auth.authn import INSECURE_USER, Authenticator
from kubelite.storage import StorageError, Store, UnavailableError

log = logging.getLogger(__name__)

JSON = "application/json"
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
BODY_TYPES = (JSON, "application/yaml")
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass
class Target:
    """What a resource path names."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def wants_table(request: web.Request) -> bool:
    """kubectl asks for server-side printing with ``Accept: application/json;as=Table;...;g=meta.k8s.io``."""
    return "as=table" in request.headers.get("Accept", "").lower().replace(" ", "")


def to_table(rt: ResourceType, objs: list[Obj], list_meta: Obj, include: str = "PartialObjectMetadata") -> Obj:
    """A meta.k8s.io/v1 Table with kubectl's columns for the kind (rows carry the object's metadata)."""
    now = dt.datetime.now(dt.UTC)
    rows = []
    for obj in objs:
        row: Obj = {"cells": printers.row(rt, obj, now)}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [c.as_table_column() for c in printers.columns(rt)],
        "rows": rows,
    }


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def status_response(err: errors.StatusError) -> web.Response:
    """The Status body and code for ``err`` (429s carry Retry-After)."""
    status = err.to_status()
    headers = {"Retry-After": str(err.retry_after)} if isinstance(err, errors.TooManyRequests) else None
    try:
        return _json(status, status=err.code, headers=headers)
    except TypeError:  # a message echoing invalid text (lone surrogates): say it without them
        status["message"] = status["message"].encode("utf-8", "replace").decode("utf-8")
        status.pop("details", None)
        return _json(status, status=err.code, headers=headers)


# Answered without credentials (kube-apiserver's system:public-info-viewer paths).
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
# The join flow authenticates itself with the join token (kubelite.auth.bootstrap).
BOOTSTRAP_PATHS = frozenset({"/cacerts", "/kubelite/v1/node-credentials"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "apiserver_request_total",
            "API requests by verb, resource and HTTP code",
            ["verb", "resource", "subresource", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "apiserver_request_duration_seconds",
            "API request latency by verb and resource (watches: time to first byte)",
            ["verb", "resource", "subresource"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.watches = Counter(
            "apiserver_watch_events_total", "Watch events sent", ["resource"], registry=self.registry
        )


class ApiServer:
    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self.objects = ObjectStore(store, config)
        self.metrics = Metrics()
        self.ready = False
        self.stopping = asyncio.Event()
        # Security (wired by server.start_server): PKI, who is asking, who may do what, limits.
        self.pki: Any = None  # kubelite.auth.pki.ClusterPKI
        self.authenticator = Authenticator()
        self.authorizers: list[Authorizer] = []
        self.bootstrap: Any = None  # kubelite.auth.bootstrap.NodeBootstrap
        self.sa_tokens: Any = None  # kubelite.auth.serviceaccount.ServiceAccountTokens
        self.rbac: Any = None  # kubelite.auth.rbac.RBACAuthorizer (escalation checks)
        self.node_authz: Any = None  # kubelite.auth.node.NodeAuthorizer (NodeRestriction admission)
        self.rate_limiter: Any = None  # kubelite.apiserver.limits.RateLimiter
        self.watch_limiter: Any = None  # kubelite.apiserver.limits.WatchLimiter

    # ---- routing -----------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body_bytes,
            middlewares=[self._middleware],
        )
        r = app.router
        for path, handler in (
            ("/version", self.version),
            ("/healthz", self.healthz),
            ("/livez", self.healthz),
            ("/readyz", self.readyz),
            ("/metrics", self.metrics_handler),
            ("/openapi/v2", self.openapi_v2),
            ("/openapi/v3", self.openapi_v3),
            ("/api", self.api_root),
            ("/apis", self.apis_root),
        ):
            r.add_get(path, handler)
            r.add_get(path + "/", handler)
        r.add_get("/openapi/v3/{gv:.+}", self.openapi_v3_group)
        r.add_get("/cacerts", self._bootstrap_cacerts)
        r.add_post("/kubelite/v1/node-credentials", self._bootstrap_node_credentials)
        r.add_route("*", "/api/{tail:.+}", self.resource_handler)
        r.add_route("*", "/apis/{tail:.+}", self.resource_handler)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start = time.perf_counter()
        labels = request.get("metric_labels") or ("", "", "")
        try:
            await self._admit(request)
            encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("identity", "") and request.body_exists:
                raise errors.StatusError(
                    415, "UnsupportedMediaType", f'request bodies must not be encoded; Content-Encoding "{encoding}" is not supported'
                )
            resp = await handler(request)
        except errors.StatusError as e:
            resp = status_response(e)
        except web.HTTPRequestEntityTooLarge:
            resp = status_response(
                errors.StatusError(
                    413, "RequestEntityTooLarge", f"the request body is larger than {self.config.max_body_bytes} bytes"
                )
            )
        except web.HTTPException as e:
            resp = status_response(errors.StatusError(e.status, e.reason.replace(" ", ""), e.text or e.reason))
        except UnavailableError as e:
            resp = status_response(errors.StatusError(503, "ServiceUnavailable", f"storage unavailable: {e}"))
        except StorageError as e:
            log.exception("storage error on %s %s", request.method, request.path)
            resp = status_response(errors.StatusError(500, "InternalError", f"storage error: {e}"))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:  # a bug: say so as a Status, and log it for us
            log.exception("internal error on %s %s", request.method, request.path_qs)
            resp = status_response(errors.StatusError(500, "InternalError", f"internal error: {e!r}"))
        if request.body_exists and not request.get("is_watch"):
            # Drain a body the handler never read (a GET with a body, an early 404), so the
            # keep-alive connection stays usable for the client's next request.
            with contextlib.suppress(Exception):
                await request.read()
        labels = request.get("metric_labels") or labels
        self.metrics.requests.labels(*labels, str(resp.status)).inc()
        if not request.get("is_watch"):
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
        return resp

    # ---- authentication, limits, authorization -------------------------------------------------

    async def _admit(self, request: web.Request) -> None:
        """Authenticate, rate-limit, and authorize non-resource paths (resource requests are
        authorized in resource_handler, once the path is parsed)."""
        if not request.secure:
            # The insecure port listens on loopback only (server.start_server): development access.
            request["user"] = INSECURE_USER
            return
        path = request.path
        if path in BOOTSTRAP_PATHS:
            # These check the join token themselves (it is a bearer token, but not an identity).
            request["user"] = UserInfo(ANONYMOUS, (ALL_UNAUTHENTICATED,))
            return
        try:
            user = await self.authenticator.authenticate(request)
        except AuthenticationError as e:
            raise errors.unauthorized(str(e)) from None
        if user is None:
            if request.method in ("GET", "HEAD") and path.rstrip("/") in PUBLIC_PATHS:
                request["user"] = UserInfo(ANONYMOUS, (ALL_UNAUTHENTICATED,))
                return
            raise errors.unauthorized()
        request["user"] = user
        if self.rate_limiter is not None:
            wait = self.rate_limiter.check(user)
            if wait is not None:
                raise errors.TooManyRequests(f'too many requests from "{user.name}", retry later', wait)
        if not path.startswith(("/api/", "/apis/")):
            await self.authorize(Attributes(user, request.method.lower(), False, path=path))

    async def authorize(self, attrs: Attributes) -> None:
        """Raise 403 unless some authorizer allows: masters always; then Node, then RBAC."""
        if MASTERS in attrs.user.groups:
            return
        reason = ""
        for authorizer in self.authorizers:
            decision, why = await authorizer.authorize(attrs)
            if decision is Decision.ALLOW:
                return
            if decision is Decision.DENY:
                raise errors.forbidden(attrs, why)
            reason = reason or why
        raise errors.forbidden(attrs, reason)

    async def _admit_body(self, request: web.Request, body: Any) -> None:
        """NodeRestriction: what a node may write is decided by the body too (a Node it creates
        must be itself, a token it asks for must be bound to one of its pods)."""
        attrs: Attributes | None = request.get("attrs")
        if attrs is None or self.node_authz is None or not isinstance(body, dict):
            return
        decision, why = await self.node_authz.admit(attrs, body)
        if decision is Decision.DENY:
            raise errors.forbidden(attrs, why)

    def _no_escalation(self, request: web.Request, rt: ResourceType, new: Any, old: Obj | None) -> None:
        """RBAC escalation prevention: a Role or binding may grant only what its writer holds
        (or may "escalate"/"bind"), as in Kubernetes."""
        if rt.group != RBAC_GROUP or self.rbac is None or not isinstance(new, dict):
            return
        why = self.rbac.escalation_error(request["user"], rt, new, old)
        if why:
            name = str(meta(new).get("name") or "")
            raise errors.StatusError(
                403, "Forbidden", f'{errors.qualified(rt)} "{name}" is forbidden: {why}', {"name": name, "group": rt.group, "kind": rt.plural}
            )

    async def _bootstrap_cacerts(self, request: web.Request) -> web.StreamResponse:
        if self.bootstrap is None:
            raise errors.StatusError(404, "NotFound", "this server has no cluster CA (insecure mode)")
        resp: web.StreamResponse = await self.bootstrap.cacerts(request)
        return resp

    async def _bootstrap_node_credentials(self, request: web.Request) -> web.StreamResponse:
        if self.bootstrap is None:
            raise errors.StatusError(404, "NotFound", "this server has no cluster CA (insecure mode)")
        resp: web.StreamResponse = await self.bootstrap.node_credentials(request)
        return resp

    # ---- non-resource endpoints ---------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        major, minor, _ = KUBE_VERSION.lstrip("v").split(".")
        return _json(
            {
                "major": major,
                "minor": minor,
                "gitVersion": f"{KUBE_VERSION}+kubelite-{__version__}",
                "gitCommit": "",
                "gitTreeState": "clean",
                "buildDate": "",
                "goVersion": "python",
                "compiler": "cpython",
                "platform": "linux/amd64",
            }
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(text="not ready", status=503)
        try:
            await asyncio.wait_for(self.store.current_revision(), 2)
        except (TimeoutError, StorageError) as e:
            return web.Response(text=f"storage not ready: {e}", status=503)
        return web.Response(text="ok")

    async def metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi_v2(self, request: web.Request) -> web.Response:
        if openapi.wants_json(request.headers.get("Accept", "")):
            return web.Response(body=openapi.v2_document(), content_type=JSON)
        # Asked for protobuf only (kubectl apply's validation): the empty protobuf document passes it.
        return web.Response(body=b"", content_type="application/octet-stream")

    async def openapi_v3(self, request: web.Request) -> web.Response:
        return _json(openapi.v3_discovery())

    async def openapi_v3_group(self, request: web.Request) -> web.Response:
        body = openapi.v3_document(request.match_info["gv"])
        if body is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
        return web.Response(body=body, content_type=JSON)

    async def api_root(self, request: web.Request) -> web.Response:
        return _json(discovery.api_versions(f"{request.host}"))

    async def apis_root(self, request: web.Request) -> web.Response:
        return _json(discovery.api_group_list())

    # ---- resources ---------------------------------------------------------------------------

    def _parse_path(self, request: web.Request) -> tuple[str, str, list[str]]:
        # Split the raw path before unquoting, so an encoded '/' stays inside its segment (and is refused).
        raw = request.raw_path.split("?", 1)[0]
        parts = [unquote(p) for p in raw.split("/") if p]
        if parts[0] == "api":
            if len(parts) < 2:
                raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
            return "", parts[1], parts[2:]
        if len(parts) < 3:
            if len(parts) == 2:
                raise errors.StatusError(404, "NotFound", f"the server could not find the requested resource (group {parts[1]})")
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
        return parts[1], parts[2], parts[3:]

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        not_found = errors.StatusError(404, "NotFound", "the server could not find the requested resource")
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            rt = by_path(group, version, rest[2])
            if rt is not None and rt.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = by_path(group, version, rest[0])
        if rt is None:
            raise not_found
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub is not None and sub not in rt.subresources):
            raise not_found
        for value, what in ((namespace, "namespace"), (name, "name")):
            if value is not None and (value in (".", "..") or "/" in value or "%" in value or not value.strip()):
                raise errors.bad_request(f"invalid {what} {value!r}")
        return Target(rt, namespace, name, sub)

    async def resource_handler(self, request: web.Request) -> web.StreamResponse:
        group, version, rest = self._parse_path(request)
        user: UserInfo = request["user"]
        if not rest:
            await self.authorize(Attributes(user, request.method.lower(), False, path=request.path))
            if request.method != "GET":
                raise errors.StatusError(405, "MethodNotAllowed", f"{request.method} is not allowed here")
            doc = discovery.resource_list(group, version)
            if doc is None:
                raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
            return _json(doc)
        t = self._target(group, version, rest)
        method = request.method
        q = request.query
        watch = q.get("watch") in ("true", "1") or (len(rest) > 1 and rest[0] == "watch")
        verb = {
            "GET": "watch" if watch else ("get" if t.name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if t.name else "deletecollection",
        }.get(method)
        request["metric_labels"] = (verb or method.lower(), t.rt.plural, t.subresource or "")
        if verb is None:
            raise errors.StatusError(405, "MethodNotAllowed", f"method {method} is not supported")
        if verb in ("update", "patch") and t.name is None:
            raise errors.StatusError(405, "MethodNotAllowed", f"{method} needs an object name in the path")
        # As in Kubernetes, a request on a namespace object is "in" that namespace for authorization
        # (so a RoleBinding to view lets its subject read its own namespace).
        in_namespace = t.name if t.rt.plural == "namespaces" and t.name else t.namespace
        attrs = Attributes(
            user, verb, True, t.rt.group, t.rt.version, t.rt.plural, t.subresource or "",
            in_namespace or "", t.name or "", request.path,
        )  # fmt: skip
        await self.authorize(attrs)
        request["attrs"] = attrs
        if t.rt.namespaced and t.namespace is None and verb in ("create",):
            raise errors.bad_request("a namespace is required to create a namespaced resource")
        if t.subresource is not None:
            return await self._subresource(request, t, verb)
        if verb not in t.rt.verbs:
            raise errors.StatusError(405, "MethodNotAllowed", f"{verb} is not supported on {t.rt.plural}")
        include = q.get("includeObject", "PartialObjectMetadata")
        if verb == "get":
            assert t.name is not None
            obj = await self.objects.get(t.rt, t.namespace, t.name)
            if wants_table(request):
                return _json(to_table(t.rt, [obj], {"resourceVersion": meta(obj).get("resourceVersion", "")}, include))
            return _json(obj)
        if verb == "list":
            list_opts = self._list_options(t.rt, q)
            if wants_table(request):
                listed = await self.objects.list(t.rt, t.namespace, list_opts)
                return _json(to_table(t.rt, listed["items"], listed["metadata"], include))
            body = await self.objects.list_json(t.rt, t.namespace, list_opts)
            return web.Response(body=body, content_type=JSON)
        if verb == "watch":
            request["is_watch"] = True
            if self.watch_limiter is None:
                return await self._watch(request, t)
            with self.watch_limiter.slot(user):  # 429 beyond --max-watches-per-user
                return await self._watch(request, t)
        if verb == "create":
            if t.name is not None:
                raise errors.StatusError(405, "MethodNotAllowed", "POST to a named object is not allowed")
            opts = self._write_options(request)
            obj = await self._read_body(request)
            await self._admit_body(request, obj)
            self._no_escalation(request, t.rt, obj, None)
            created = await self.objects.create(t.rt, t.namespace, obj, opts)
            return _json(created, 201, self._warning_headers(opts))
        assert t.name is not None or verb == "deletecollection"
        if verb == "update":
            assert t.name is not None
            opts = self._write_options(request)
            obj = await self._read_body(request)
            await self._admit_body(request, obj)
            if t.rt.group == RBAC_GROUP:
                try:
                    old = await self.objects.get(t.rt, t.namespace, t.name)
                except errors.StatusError:
                    old = None  # objects.update answers the 404
                self._no_escalation(request, t.rt, obj, old)
            return _json(await self.objects.update(t.rt, t.namespace, t.name, obj, None, opts), 200, self._warning_headers(opts))
        if verb == "patch":
            assert t.name is not None
            return await self._patch(request, t)
        if verb == "delete":
            assert t.name is not None
            obj, gone = await self.objects.delete(t.rt, t.namespace, t.name, await self._delete_options(request))
            return _json(obj, 200 if gone or meta(obj).get("deletionTimestamp") else 202)
        # deletecollection
        listed = await self.objects.delete_collection(
            t.rt, t.namespace, self._list_options(t.rt, q), await self._delete_options(request)
        )
        return _json(listed)

    async def _subresource(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        assert t.name is not None
        sub = t.subresource
        if sub == "status":
            if verb == "get":
                return _json(await self.objects.get(t.rt, t.namespace, t.name))
            if verb == "update":
                opts = self._write_options(request)
                obj = await self._read_body(request)
                await self._admit_body(request, obj)
                return _json(await self.objects.update(t.rt, t.namespace, t.name, obj, "status", opts))
            if verb == "patch":
                return await self._patch(request, t)
        elif sub == "binding" and verb == "create":
            return await self._bind(request, t)
        elif sub == "scale":
            return await self._scale(request, t, verb)
        elif sub == "log" and verb == "get":
            return await proxy.pod_log(self, request, t)
        elif sub == "exec" and verb == "create":
            return await proxy.pod_exec(self, request, t)
        elif sub == "token" and verb == "create" and self.sa_tokens is not None:
            from kubelite.auth.serviceaccount import token_request

            await self._admit_body(request, await self._read_body(request))  # (the body stays readable)
            return await token_request(self, request, t)
        raise errors.StatusError(405, "MethodNotAllowed", f"{request.method} is not supported on {t.rt.plural}/{sub}")

    # ---- request parsing ---------------------------------------------------------------------

    async def _read_body(self, request: web.Request, content_type: str | None = None) -> Any:
        ctype = (content_type or request.headers.get("Content-Type") or JSON).split(";")[0].strip().lower()
        raw = await request.read()
        if not raw:
            raise errors.bad_request("the request body is empty")
        if ctype in ("application/json", "*/*", "text/plain", "") or (ctype in PATCH_TYPES and ctype.endswith("json")):
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise errors.bad_request(f"the request body is not valid JSON: {e}") from None
        if ctype in ("application/yaml", "application/apply-patch+yaml", "text/yaml", "application/x-yaml"):
            try:
                loaded = yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise errors.bad_request(f"the request body is not valid YAML: {e}") from None
            try:
                orjson.dumps(loaded)  # YAML admits what JSON cannot store: lone surrogates, odd keys
            except TypeError as e:
                raise errors.bad_request(f"the request body cannot be represented as JSON: {e}") from None
            return loaded
        supported = ", ".join(BODY_TYPES)
        raise errors.StatusError(
            415, "UnsupportedMediaType", f'the body of the request was in an unknown format "{ctype}"; accepted media types include: {supported}'
        )

    def _list_options(self, rt: ResourceType, q: Any) -> ListOptions:
        opts = ListOptions(
            limit=_parse_int_param(q.get("limit") or "0", "limit"),
            continue_token=q.get("continue", ""),
            resource_version=q.get("resourceVersion", ""),
        )
        if opts.limit < 0:
            raise errors.bad_request("limit must not be negative")
        try:
            if q.get("labelSelector"):
                opts.label_selector = parse_label_selector(q["labelSelector"])
            if q.get("fieldSelector"):
                fs = parse_field_selector(q["fieldSelector"])
                allowed = SUPPORTED_FIELDS.get(rt.plural, set()) | {"metadata.name", "metadata.namespace"}
                for fld, _op, _value in fs.requirements:
                    if fld not in allowed:
                        raise errors.bad_request(
                            f'field label not supported: "{fld}" (supported for {rt.plural}: {", ".join(sorted(allowed))})'
                        )
                opts.field_selector = fs
        except SelectorError as e:
            raise errors.bad_request(f"unable to parse selector: {e}") from None
        return opts

    def _write_options(self, request: web.Request) -> WriteOptions:
        q = request.query
        fv = q.get("fieldValidation", "Warn")
        if fv not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(f'fieldValidation must be Strict, Warn or Ignore, not "{fv}"')
        manager = q.get("fieldManager") or ssa.manager_from_user_agent(request.headers.get("User-Agent", ""))
        if len(manager) > 128:
            raise errors.bad_request("fieldManager must be at most 128 characters long")
        return WriteOptions(dry_run=q.get("dryRun") == "All", field_validation=fv, field_manager=manager)

    def _warning_headers(self, opts: WriteOptions) -> dict[str, str] | None:
        if not opts.warnings:
            return None
        # RFC 7234 warning format, as kube-apiserver sends it; kubectl prints these.
        text = "; ".join(opts.warnings).replace('"', "'")
        # Field names come from the request: escape anything that is not printable ASCII.
        text = "".join(c if " " <= c <= "~" else f"\\u{ord(c):04x}" for c in text)
        return {"Warning": f'299 - "{text}"'}

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        q = request.query
        body: Obj = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError as e:
                    raise errors.bad_request(f"invalid DeleteOptions body: {e}") from None
                if not isinstance(body, dict):
                    raise errors.bad_request("DeleteOptions must be a JSON object")
        grace = body.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
        policy = body.get("propagationPolicy", q.get("propagationPolicy"))
        if body.get("orphanDependents") is True and not policy:
            policy = "Orphan"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.bad_request(f'propagationPolicy must be Background, Foreground or Orphan, not "{policy}"')
        if grace is not None:
            try:
                grace = int(grace)
            except (TypeError, ValueError):
                raise errors.bad_request(f"gracePeriodSeconds must be an integer, not {grace!r}") from None
        pre = body.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise errors.bad_request("preconditions must be an object")
        dry = body.get("dryRun") or q.getall("dryRun", [])
        return DeleteOptions(
            propagation_policy=policy,
            grace_period_seconds=grace,
            precondition_uid=pre.get("uid"),
            precondition_rv=pre.get("resourceVersion"),
            dry_run="All" in (dry if isinstance(dry, list) else [dry]),
        )

    # ---- verbs with more to them -------------------------------------------------------------

    async def _patch(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        kind = PATCH_TYPES.get(ctype)
        if kind is None:
            raise errors.StatusError(
                415,
                "UnsupportedMediaType",
                f'the body of the request was in an unknown format "{ctype}"; accepted media types include: '
                + ", ".join(PATCH_TYPES),
            )
        body = await self._read_body(request, ctype)
        opts = self._write_options(request)
        rt = t.rt
        if kind == "apply":
            return await self._server_side_apply(request, t, body, opts)

        def apply(old: Obj) -> Obj:
            try:
                if kind == "json":
                    if not isinstance(body, list):
                        raise errors.bad_request("a JSON patch must be a list of operations")
                    return api_patch.json_patch(old, body)
                if not isinstance(body, dict):
                    raise errors.bad_request("the patch must be a JSON object")
                if kind == "merge":
                    return api_patch.merge_patch(old, body)
                return strategic.strategic_merge_patch(rt, old, body)
            except (api_patch.PatchError, strategic.StrategicPatchError) as e:
                raise errors.StatusError(422, "Invalid", f"the patch could not be applied: {e}") from None

        def guarded(old: Obj) -> Obj:
            new = apply(old)
            self._no_escalation(request, rt, new, old)
            return new

        result = await self.objects.patch(rt, t.namespace, t.name, guarded, t.subresource, opts)
        return _json(result, 200, self._warning_headers(opts))

    async def _server_side_apply(self, request: web.Request, t: Target, body: Any, opts: WriteOptions) -> web.Response:
        """PATCH application/apply-patch+yaml: merge, track and check ownership (ssa.py); create if missing."""
        assert t.name is not None
        rt, name = t.rt, t.name
        if not request.query.get("fieldManager"):
            raise errors.StatusError(
                422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
            )
        force_param = request.query.get("force", "false")
        if force_param not in ("true", "false", "1", "0"):
            raise errors.bad_request(f'force must be true or false, not "{force_param}"')
        force = force_param in ("true", "1")
        if not isinstance(body, dict):
            raise errors.bad_request("the applied configuration must be an object")
        for required in ("apiVersion", "kind"):
            if not body.get(required):
                raise errors.bad_request(f"{required} must be set in an applied configuration")
        self.objects._check_type(rt, body)
        if meta(body).get("name", name) != name:
            raise errors.bad_request(f"the name of the object ({meta(body)['name']}) does not match the name on the URL ({name})")
        self.objects._handle_unknown(rt, body, opts)
        opts.apply = True
        manager = opts.field_manager
        for _attempt in range(3):
            try:
                def applied(live: Obj) -> Obj:
                    new = ssa.apply(rt, live, deepcopy(body), manager, force, t.subresource)
                    self._no_escalation(request, rt, new, live)
                    return new

                result = await self.objects.patch(rt, t.namespace, name, applied, t.subresource, opts)
                return _json(result, 200, self._warning_headers(opts))
            except errors.StatusError as e:
                if e.code != 404 or t.subresource:
                    raise
            obj = ssa.apply(rt, None, deepcopy(body), manager, force)
            meta(obj)["name"] = name
            self._no_escalation(request, rt, obj, None)
            try:
                created = await self.objects.create(rt, t.namespace, obj, opts)
            except errors.StatusError as e:
                if e.reason != "AlreadyExists":
                    raise
                continue  # created meanwhile: apply to it
            return _json(created, 201, self._warning_headers(opts))
        raise errors.conflict(rt, name, "the object kept being created and deleted; try again")

    async def _bind(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        body = await self._read_body(request)
        if not isinstance(body, dict):
            raise errors.bad_request("a Binding must be a JSON object")
        target = body.get("target") or {}
        node = target.get("name") if isinstance(target, dict) else None
        if not node or not isinstance(node, str):
            raise errors.StatusError(422, "Invalid", "Binding.target.name: Required value")
        name = t.name

        def bind(pod: Obj) -> Obj:
            spec = pod.setdefault("spec", {})
            if meta(pod).get("deletionTimestamp"):
                raise errors.conflict(t.rt, name, "pod is being deleted, cannot be assigned to a host")
            if spec.get("nodeName"):
                raise errors.conflict(t.rt, name, f"pod {name} is already assigned to node \"{spec['nodeName']}\"")
            spec["nodeName"] = node
            return pod

        from kubelite.apiserver.meta import rfc3339

        def bind_status(pod: Obj) -> Obj:
            pod = bind(pod)
            status = pod.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": rfc3339()})
            status["conditions"] = conds
            return pod

        await self.objects.patch_internal(t.rt, t.namespace, name, bind_status)
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)

    async def _scale(self, request: web.Request, t: Target, verb: str) -> web.Response:
        assert t.name is not None

        def to_scale(obj: Obj) -> Obj:
            m = meta(obj)
            spec = obj.get("spec") or {}
            status = obj.get("status") or {}
            selector = ""
            sel = spec.get("selector") or {}
            if isinstance(sel, dict):
                selector = ",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items())
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m},
                "spec": {"replicas": spec.get("replicas", 0)},
                "status": {"replicas": status.get("replicas", 0), "selector": selector},
            }

        if verb == "get":
            return _json(to_scale(await self.objects.get(t.rt, t.namespace, t.name)))
        if verb not in ("update", "patch"):
            raise errors.StatusError(405, "MethodNotAllowed", f"{verb} is not supported on {t.rt.plural}/scale")
        if verb == "update":
            body = await self._read_body(request)
        else:
            ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype not in PATCH_TYPES:
                raise errors.StatusError(415, "UnsupportedMediaType", f'unsupported patch type "{ctype}"')
            patch_body = await self._read_body(request, ctype)
            current = to_scale(await self.objects.get(t.rt, t.namespace, t.name))
            try:
                if PATCH_TYPES[ctype] == "json":
                    body = api_patch.json_patch(current, patch_body)
                else:
                    body = api_patch.merge_patch(current, patch_body)
            except api_patch.PatchError as e:
                raise errors.StatusError(422, "Invalid", f"the patch could not be applied: {e}") from None
        if not isinstance(body, dict):
            raise errors.bad_request("a Scale must be a JSON object")
        spec_body = body.get("spec") or {}
        meta_body = body.get("metadata") or {}
        if not isinstance(spec_body, dict) or not isinstance(meta_body, dict):
            raise errors.bad_request("a Scale's spec and metadata must be objects")
        replicas = spec_body.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            cause = {"reason": "FieldValueInvalid", "field": "spec.replicas", "message": f"Invalid value: {replicas!r}: must be greater than or equal to 0"}
            raise errors.invalid(t.rt, t.name, [cause])
        wanted_rv = meta_body.get("resourceVersion")

        def set_replicas(obj: Obj) -> Obj:
            if verb == "update" and wanted_rv and wanted_rv != meta(obj)["resourceVersion"]:
                raise errors.conflict(t.rt, t.name or "", "the object has been modified; please apply your changes to the latest version and try again")
            obj.setdefault("spec", {})["replicas"] = replicas
            return obj

        updated = await self.objects.patch(t.rt, t.namespace, t.name, set_replicas, None, self._write_options(request))
        return _json(to_scale(updated))

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        opts = self._list_options(t.rt, q)
        if t.name:
            from kubelite.api.selectors import parse_field_selector as pfs

            opts.field_selector = pfs(f"metadata.name={t.name}")
        timeout = float(self.config.max_watch_seconds)
        if q.get("timeoutSeconds"):
            timeout = min(float(_parse_int_param(q["timeoutSeconds"], "timeoutSeconds")), timeout)
        allow_bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        events = self.objects.watch(t.rt, t.namespace if t.rt.namespaced else None, opts, allow_bookmarks, timeout)
        if opts.resource_version:
            _parse_int_param(opts.resource_version, "resourceVersion")  # a Status now, before the 200 is sent
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Transfer-Encoding": "chunked"})
        await resp.prepare(request)
        counter = self.metrics.watches.labels(t.rt.plural)
        table = wants_table(request)
        include = q.get("includeObject", "PartialObjectMetadata")
        from kubelite.apiserver.limits import WatchBuffer

        # Events go to a buffer drained by a writer task, never straight to the socket: a client
        # that stops reading then costs at most watch_buffer_bytes, where an inline write would
        # stall the pump and leave the store watch queueing whole objects for it.
        out = WatchBuffer(resp.write, self.config.watch_buffer_bytes)

        async def pump() -> bool:
            """Queue every event; False once the client has fallen too far behind."""
            async for event in events:
                if table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    obj = event["object"]
                    event = {**event, "object": to_table(t.rt, [obj], {"resourceVersion": meta(obj).get("resourceVersion", "")}, include)}
                if not await out.send(orjson.dumps(event) + b"\n"):
                    return False
                counter.inc()
            out.finish()
            return True

        # A watch ends when its stream ends (after the client has what was queued), its client
        # goes or falls too far behind, or the server stops (clients re-watch).
        streaming = asyncio.ensure_future(pump())
        writing = asyncio.ensure_future(out.run())
        stopping = asyncio.ensure_future(self.stopping.wait())
        overflowed = False
        try:
            done, _ = await asyncio.wait({streaming, writing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if streaming in done:
                overflowed = not streaming.result()
                if not overflowed:
                    await asyncio.wait({writing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if writing.done():
                writing.result()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for task in (streaming, writing, stopping):
                task.cancel()
            await asyncio.gather(streaming, writing, stopping, return_exceptions=True)
            await events.aclose()  # type: ignore[attr-defined]  # closes the store watch
        if overflowed:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            log.warning(
                "dropping watch on %s%s from %s: the client stopped reading (%d bytes queued, limit %d)",
                errors.qualified(t.rt), f" in namespace {t.namespace}" if t.namespace else "",
                peer or request.remote, out.pending, out.limit,
            )  # fmt: skip
            # Like kube-apiserver, close the connection: the stalled socket could not take the
            # end of the chunked stream anyway, and abort() frees what the transport buffers.
            if request.transport is not None:
                request.transport.abort()
        return resp


def _parse_int_param(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"invalid {what} {value!r}: must be an integer") from None
