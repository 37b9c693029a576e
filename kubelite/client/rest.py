"""The async REST client for the Kubernetes API (kubelite's or any conformant one).

Errors::

    ApiError            the server answered with an HTTP error (or a watch ERROR event);
                        .code / .reason / .message / .status come from its Status body
    ApiConnectionError  (a ConnectionError) no server could be reached, or the connection broke

aiohttp's exceptions are translated into these in ``_send`` only, so callers never see them.

One ``aiohttp.ClientSession`` per client, created on first use (inside the running loop) and
closed by ``close()`` / ``async with``. With several server URLs, a request whose connection
cannot be established moves on to the next URL and the client keeps using the one that answered;
requests that reached a server are never replayed on another (they may have taken effect).
The one exception is 429 TooManyRequests, which the server answers before doing anything: such a
request is resent after the Retry-After it names, a few times at most.
"""

from __future__ import annotations

import asyncio
import codecs
import http
import os
import ssl
import tempfile
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson

from kubelite import __version__
from kubelite.api.registry import ResourceType
from kubelite.client.kubeconfig import ClientConfig, load_kubeconfig
from kubelite.streams import chunks

__all__ = [
    "ApiClient",
    "ApiConnectionError",
    "ApiError",
    "PatchType",
    "WatchEvent",
    "build_ssl_context",
    "resource_path",
]

# Only with several servers (HA): how long connecting, or waiting for a byte of an answer, may take
# before the next server is tried.
FAILOVER_CONNECT_TIMEOUT = 3.0
FAILOVER_READ_TIMEOUT = 20.0
# A kubelite server sends a BOOKMARK at least every 10 s on a quiet watch that asked for them, so this
# much silence means the server or the path to it is gone: a powered-off master sends no RST, and the
# watch would otherwise hang until its timeoutSeconds (client-go pings HTTP/2 after 30 s for the same reason).
WATCH_IDLE_TIMEOUT = 30.0

PatchType = Literal["merge", "json", "strategic", "apply"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",  # JSON is valid YAML, so the body is sent as JSON
}

# client-go's reasons for error responses that carry no Status (k8s.io/apimachinery errors.go).
_REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# Waiting out 429 TooManyRequests: at most this many retries, and this many seconds in all.
RETRY_429_ATTEMPTS = 3
RETRY_429_MAX_WAIT = 10.0


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (k8s sends whole seconds); 1 s if absent or unreadable."""
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        return 1.0  # an HTTP-date: not what kube-apiserver sends
    return seconds if 0 <= seconds < float("inf") else 1.0


class ApiError(Exception):
    """An error answer from the API server, described by its ``Status``."""

    def __init__(self, code: int, reason: str, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.status: dict[str, Any] = status or {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }

    def __str__(self) -> str:
        return f"({self.code}) {self.reason}: {self.message}"

    @classmethod
    def from_status(cls, status: Mapping[str, Any], http_code: int | None = None) -> ApiError:
        code = status.get("code")
        code = code if isinstance(code, int) and code else (http_code or 500)
        reason = status.get("reason") or _REASONS.get(code, "Unknown")
        message = status.get("message") or f"the server responded with status code {code}"
        return cls(code, str(reason), str(message), dict(status))

    @classmethod
    def from_body(cls, http_code: int, body: bytes) -> ApiError:
        """From an error response: its Status if it is one, otherwise what the body says."""
        try:
            doc = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            return cls.from_status(doc, http_code)
        text = body.decode("utf-8", "replace").strip()[:1000]
        try:
            phrase = http.HTTPStatus(http_code).phrase.replace(" ", "")
        except ValueError:
            phrase = "Unknown"
        reason = _REASONS.get(http_code, phrase)
        message = text or f"the server responded with status code {http_code} but did not return more information"
        return cls(http_code, reason, message)


class ApiConnectionError(ConnectionError):
    """No API server could be reached, or the connection to it broke mid-request."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


def resource_path(
    rt: ResourceType, namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    """``/api/v1/[namespaces/{ns}/]{plural}[/{name}[/{sub}]]`` or the ``/apis/{group}/{version}`` form."""
    parts = ["/api/v1" if not rt.group else f"/apis/{rt.group}/{rt.version}"]
    if rt.namespaced and namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(rt.plural)
    if name:
        parts.append(name)
        if subresource:
            parts.append(subresource)
    elif subresource:
        raise ValueError("a subresource needs an object name")
    return "/".join(parts)


def build_ssl_context(config: ClientConfig) -> ssl.SSLContext:
    """TLS settings from the kubeconfig: CA (data or file), client cert/key (data or file)."""
    ctx = ssl.create_default_context(cafile=config.ca_file)
    if config.ca_data:
        ctx.load_verify_locations(cadata=config.ca_data.decode())
    if config.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert_file, key_file = config.client_cert_file, config.client_key_file
    if config.client_cert_data or config.client_key_data:
        # ssl can only load a certificate chain from files: write private temporaries and drop them.
        with tempfile.TemporaryDirectory(prefix="kubelite-tls-") as tmp:
            if config.client_cert_data:
                cert_file = _write_private(os.path.join(tmp, "cert.pem"), config.client_cert_data)
            if config.client_key_data:
                key_file = _write_private(os.path.join(tmp, "key.pem"), config.client_key_data)
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file)
    elif cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _write_private(path: str, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _params(params: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (params or {}).items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _decode(resp_body: bytes, content_type: str) -> Any:
    if "json" in content_type or (not content_type and resp_body[:1] in (b"{", b"[")):
        return orjson.loads(resp_body) if resp_body else None
    return resp_body.decode("utf-8", "replace")


class ApiClient:
    """Async Kubernetes API client; ``rt`` arguments are entries of ``kubelite.api.registry``."""

    def __init__(self, config: ClientConfig | str, timeout: float = 60.0) -> None:
        self.config = config if isinstance(config, ClientConfig) else ClientConfig(servers=[config])
        self.timeout = timeout
        self.watch_idle_timeout = WATCH_IDLE_TIMEOUT
        self._active = 0  # index of the server that last answered
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        if any(s.startswith("https:") for s in self.config.servers):
            self._ssl = build_ssl_context(self.config)
        self._headers = {"Accept": "application/json", "User-Agent": f"kubelite/{__version__}"}
        if self.config.token:
            self._headers["Authorization"] = f"Bearer {self.config.token}"

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str] | None = None, context: str | None = None) -> ApiClient:
        return cls(load_kubeconfig(path, context))

    @property
    def server(self) -> str:
        """The server URL currently in use."""
        return self.config.servers[self._active]

    @property
    def namespace(self) -> str:
        """The default namespace (the kubeconfig context's)."""
        return self.config.namespace

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- transport -----------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
                headers=self._headers,
                # Per-request totals are set in _send; connecting must be quick so failover is.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        limits: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Open a response (caller reads and releases it), waiting out 429s as Retry-After asks.

        A 429 means the server did not process the request, so even a POST is safe to resend.
        The wait is bounded (RETRY_429_ATTEMPTS, RETRY_429_MAX_WAIT); then the 429 is the answer.
        """
        kw = {"params": _params(params), "data": body, "headers": dict(headers or {}), "timeout": limits}
        waited = 0.0
        for _ in range(RETRY_429_ATTEMPTS):
            resp = await self._send_once(method, path, kw)
            if resp.status != 429:
                return resp
            delay = _retry_after(resp.headers.get("Retry-After"))
            if waited + delay > RETRY_429_MAX_WAIT:
                return resp
            try:
                await resp.read()  # so the connection can be reused
            except aiohttp.ClientError:
                pass
            finally:
                resp.release()
            await asyncio.sleep(delay)
            waited += delay
        return await self._send_once(method, path, kw)

    async def _send_once(self, method: str, path: str, kw: dict[str, Any]) -> aiohttp.ClientResponse:
        """Open a response with ``session.request(**kw)``, failing over on connection errors."""
        session = self._get_session()
        n = len(self.config.servers)
        errors: list[str] = []
        limits: aiohttp.ClientTimeout = kw["timeout"]
        if n > 1 and limits.sock_connect is None:
            # A per-request timeout replaces the session's: keep connecting short, so a server that
            # is powered off (no RST, just silence) costs seconds before the next one is tried.
            kw = {**kw, "timeout": aiohttp.ClientTimeout(
                total=limits.total, connect=limits.connect, sock_read=limits.sock_read, sock_connect=FAILOVER_CONNECT_TIMEOUT,
            )}  # fmt: skip
        for i in range(n):
            idx = (self._active + i) % n
            url = self.config.servers[idx] + path
            try:
                resp = await session.request(method, url, **kw)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
                errors.append(f"{self.config.servers[idx]}: {e}")
                continue
            except aiohttp.ClientError as e:
                raise ApiConnectionError(f"{method} {url} failed: {e}") from e
            self._active = idx
            return resp
        raise ApiConnectionError(f"cannot reach any API server ({'; '.join(errors)})")

    def _move_off(self, url: str) -> None:
        """After ``url``'s server went silent, start the next requests at the next server (HA)."""
        servers = self.config.servers
        if len(servers) > 1 and url.startswith(servers[self._active] + "/"):
            self._active = (self._active + 1) % len(servers)

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | str | None = None,
    ) -> Any:
        """Any API call: returns the decoded JSON body (or text), raises ApiError on an error status."""
        hdrs = dict(headers or {})
        body: bytes | None
        if json is not None:
            body = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        else:
            body = data.encode() if isinstance(data, str) else data
        several = len(self.config.servers) > 1
        # With several servers, a read that stalls (a server that went away mid-request) is cut
        # short, and a GET — safe to repeat — is retried on the next server.
        limits = aiohttp.ClientTimeout(total=self.timeout, sock_read=FAILOVER_READ_TIMEOUT if several else None)
        attempts = len(self.config.servers) if method == "GET" else 1
        for attempt in range(attempts):
            try:
                resp = await self._send(method, path, params, body, hdrs, limits)
                async with resp:
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise ApiError.from_body(resp.status, raw)
                    return _decode(raw, resp.headers.get("Content-Type", ""))
            except (aiohttp.ClientError, TimeoutError, ApiConnectionError) as e:
                if attempt + 1 < attempts:
                    self._active = (self._active + 1) % len(self.config.servers)
                    continue
                if isinstance(e, ApiConnectionError):
                    raise
                if isinstance(e, TimeoutError):
                    raise ApiConnectionError(f"{method} {path} timed out after {self.timeout}s") from e
                raise ApiConnectionError(f"{method} {path} failed: {e}") from e
        raise AssertionError("unreachable")

    async def stream(
        self, method: str, path: str, params: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[str, None]:
        """A text response as it arrives (``pods/x/log?follow=true``). Close it with ``aclose()``."""
        resp = await self._send(method, path, params, None, None, aiohttp.ClientTimeout(total=None))
        try:
            async with resp:
                if resp.status >= 400:
                    raise ApiError.from_body(resp.status, await resp.read())
                # charset, not get_encoding(): the latter refuses non-text types such as x-ndjson.
                decoder = codecs.getincrementaldecoder(resp.charset or "utf-8")("replace")
                async for chunk in resp.content.iter_any():
                    text = decoder.decode(chunk)
                    if text:
                        yield text
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail
        except aiohttp.ClientError as e:
            raise ApiConnectionError(f"{method} {path} stream failed: {e}") from e

    # --- typed verbs ---------------------------------------------------------------------------

    def _ns(self, rt: ResourceType, namespace: str | None, obj: Mapping[str, Any] | None = None) -> str | None:
        """The namespace of a single-object call: explicit, else the object's, else the context's."""
        if not rt.namespaced:
            return None
        if namespace:
            return namespace
        meta = (obj or {}).get("metadata") or {}
        return meta.get("namespace") or self.config.namespace

    async def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", resource_path(rt, self._ns(rt, namespace), name))
        return result

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """The List object; ``namespace=None`` on a namespaced kind lists all namespaces."""
        params = {
            "labelSelector": label_selector or None,
            "fieldSelector": field_selector or None,
            "limit": limit,
            "continue": continue_,
            "resourceVersion": resource_version,
        }
        result: dict[str, Any] = await self.request("GET", resource_path(rt, namespace), params)
        return result

    async def create(
        self, rt: ResourceType, obj: Mapping[str, Any], namespace: str | None = None,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        path = resource_path(rt, self._ns(rt, namespace, obj))
        result: dict[str, Any] = await self.request(
            "POST", path, {"fieldManager": field_manager}, json=self._with_type(rt, obj)
        )
        return result

    async def replace(self, rt: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the whole object; ``metadata.resourceVersion`` (if set) makes it compare-and-swap."""
        result: dict[str, Any] = await self.request(
            "PUT", resource_path(rt, self._ns(rt, None, obj), _name(obj)), json=self._with_type(rt, obj)
        )
        return result

    async def replace_status(self, rt: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PUT", resource_path(rt, self._ns(rt, None, obj), _name(obj), "status"), json=self._with_type(rt, obj)
        )
        return result

    async def patch(
        self,
        rt: ResourceType,
        name: str,
        body: Any,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> dict[str, Any]:
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r} (expected one of {', '.join(PATCH_CONTENT_TYPES)})")
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        result: dict[str, Any] = await self.request(
            "PATCH",
            resource_path(rt, self._ns(rt, namespace), name, subresource),
            {"fieldManager": field_manager, "force": force},
            json=body,
            headers={"Content-Type": PATCH_CONTENT_TYPES[patch_type]},
        )
        return result

    async def delete(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Returns what the server returns: the object (still terminating) or a Success Status."""
        result: dict[str, Any] = await self.request(
            "DELETE",
            resource_path(rt, self._ns(rt, namespace), name),
            json=_delete_options(propagation_policy, grace_period_seconds, preconditions),
        )
        return result

    async def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        propagation_policy: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "DELETE",
            resource_path(rt, self._ns(rt, namespace)),
            {"labelSelector": label_selector or None, "fieldSelector": field_selector or None},
            json=_delete_options(propagation_policy, None, None),
        )
        return result

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Stream watch events until the server ends the watch.

        An ERROR event raises ApiError (code 410 means "resourceVersion too old: list again").
        Use ``contextlib.aclosing`` (or ``aclose()``) to end a watch early and free its connection.
        """
        params = {
            "watch": True,
            "resourceVersion": resource_version,
            "labelSelector": label_selector or None,
            "fieldSelector": field_selector or None,
            "allowWatchBookmarks": allow_bookmarks or None,
            "timeoutSeconds": timeout_seconds,
        }
        path = resource_path(rt, namespace)
        # A quiet watch is normal; with bookmarks it is never silent for long (see WATCH_IDLE_TIMEOUT).
        sock_read = self.watch_idle_timeout if allow_bookmarks else (timeout_seconds + 30 if timeout_seconds else None)
        resp = await self._send("GET", path, params, None, None, aiohttp.ClientTimeout(total=None, sock_read=sock_read))
        try:
            async with resp:
                if resp.status >= 400:
                    raise ApiError.from_body(resp.status, await resp.read())
                # Split lines ourselves: aiohttp's readline caps line length below big objects' size.
                buf = b""
                async for chunk in chunks(resp.content, sock_read):
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _watch_event(line)
                if buf.strip():
                    yield _watch_event(buf)
        except TimeoutError as e:  # first: aiohttp's socket read timeout is a ClientError too
            self._move_off(str(resp.url))
            raise ApiConnectionError(f"watch {path}: no data for {sock_read}s") from e
        except aiohttp.ClientError as e:
            raise ApiConnectionError(f"watch {path} failed: {e}") from e

    @staticmethod
    def _with_type(rt: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
        # Servers default kind/apiVersion from the URL, but sending them keeps bodies self-describing.
        out = dict(obj)
        out.setdefault("apiVersion", rt.api_version)
        out.setdefault("kind", rt.kind)
        return out


def _name(obj: Mapping[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise ValueError("the object has no metadata.name")
    return str(name)


def _delete_options(
    propagation_policy: str | None, grace_period_seconds: int | None, preconditions: Mapping[str, str] | None
) -> dict[str, Any]:
    opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if propagation_policy:
        opts["propagationPolicy"] = propagation_policy
    if grace_period_seconds is not None:
        opts["gracePeriodSeconds"] = grace_period_seconds
    if preconditions:
        opts["preconditions"] = dict(preconditions)
    return opts


def _watch_event(line: bytes) -> WatchEvent:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ApiError(500, "InternalError", f"malformed watch event: {line[:200]!r}") from e
    if not isinstance(doc, dict) or "type" not in doc:
        raise ApiError(500, "InternalError", f"malformed watch event: {line[:200]!r}")
    obj = doc.get("object") or {}
    if doc["type"] == "ERROR":
        raise ApiError.from_status(obj if isinstance(obj, dict) else {})
    return WatchEvent(str(doc["type"]), obj)

