"""The agent's HTTPS endpoint (kubelet's port 10250): container logs and exec, for the API server.

With node credentials (``kubelite.agent.bootstrap``) it serves TLS with the node's serving
certificate and requires a client certificate from the cluster CA (the handshake fails without
one); only the API server's ``kube-apiserver-kubelet-client`` identity is served, any other
certificate (another node's, the admin's) gets 403. The agent advertises ``https`` in its Node's
``kubelite.io/agent-scheme`` annotation so the API server's proxy knows to dial TLS. Without
credentials (an agent on the insecure development port) it is plain HTTP with no authentication:
bind it to the node's own address on a trusted network only. One server can serve every node of
the process (hollow nodes share it); a request is routed to the node agent that runs the pod.

``GET /containerLogs/{namespace}/{pod}/{container}`` (kubelet's path) streams ``text/plain``.
Query: ``follow``, ``previous``, ``timestamps`` (true/false), ``tailLines``, ``sinceSeconds``,
``limitBytes`` (integers), ``sinceTime`` (RFC 3339). A follow stream ends when the container stops.

``POST /exec/{namespace}/{pod}/{container}?command=ls&command=-l[&timeout=SECONDS]`` runs the
command through ``Runtime.exec`` and answers ``application/x-ndjson``, one JSON object per line::

    {"stream": "stdout", "data": "..."}    zero or more, output as UTF-8 text (invalid bytes replaced)
    {"stream": "stderr", "data": "..."}
    {"exit": 0}                            always last

No stdin and no TTY: kubectl's SPDY/WebSocket exec protocol is not spoken here (``kubelite exec``
uses this one through the API server's ``pods/{name}/exec``).

Errors are ``text/plain`` with a status: 400 bad query or container not running, 404 unknown
pod/container, 501 the runtime cannot exec (the fake one), 504 the command timed out.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

import orjson
from aiohttp import web

from kubelite.agent.logs import LogOptions, read_log
from kubelite.agent.pods import PodManager
from kubelite.agent.runtime import ContainerState, NotFoundError, RuntimeFailure
from kubelite.auth import KUBELET_CLIENT_USER, AuthenticationError
from kubelite.auth.pki import identity_from_peercert

__all__ = ["AgentHttpServer", "agent_ssl_context", "parse_log_options"]

log = logging.getLogger(__name__)


class QueryError(ValueError):
    pass


def _bool(q: Mapping[str, str], key: str) -> bool:
    value = q.get(key, "false").lower()
    if value not in ("true", "false", "1", "0", ""):
        raise QueryError(f"{key} must be true or false, not {value!r}")
    return value in ("true", "1")


def _int(q: Mapping[str, str], key: str, minimum: int) -> int | None:
    raw = q.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{key} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise QueryError(f"{key} must be at least {minimum}")
    return value


def parse_log_options(q: Mapping[str, str]) -> tuple[LogOptions, bool]:
    """(options, previous) from a ``pods/log`` / ``containerLogs`` query; QueryError when invalid."""
    opts = LogOptions(
        follow=_bool(q, "follow"),
        tail_lines=_int(q, "tailLines", 0),
        timestamps=_bool(q, "timestamps"),
        since_seconds=_int(q, "sinceSeconds", 1),
        since_time=q.get("sinceTime") or None,
        limit_bytes=_int(q, "limitBytes", 1),
    )
    if opts.since_seconds is not None and opts.since_time:
        raise QueryError("at most one of sinceTime or sinceSeconds may be specified")
    return opts, _bool(q, "previous")


def agent_ssl_context(cert_file: Path, key_file: Path, ca_file: Path) -> ssl.SSLContext:
    """Serving context: the node's serving certificate; a client certificate from the CA is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cafile=ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED  # validity period checked too: an expired client fails the handshake
    return ctx


@web.middleware
async def _only_apiserver(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Serve only the API server's client identity (the handshake already proved the CA signed it)."""
    transport = request.transport
    try:
        cn, _orgs, _not_after = identity_from_peercert(
            transport.get_extra_info("peercert") if transport is not None else None)
    except AuthenticationError as e:
        raise web.HTTPUnauthorized(text=str(e)) from None
    if cn != KUBELET_CLIENT_USER:
        raise web.HTTPForbidden(text=f"{cn} may not use the agent endpoint (only {KUBELET_CLIENT_USER})")
    return await handler(request)


class AgentHttpServer:
    """Serves logs and exec for the pods of ``managers`` (node name -> PodManager).

    With ``ssl_context`` (see :func:`agent_ssl_context`) it serves HTTPS to the API server only.
    """

    def __init__(self, managers: Mapping[str, PodManager] | Callable[[], Iterable[PodManager]],
                 host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._managers = managers
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def _all(self) -> Iterable[PodManager]:
        return self._managers.values() if isinstance(self._managers, Mapping) else self._managers()

    def _find(self, key: str) -> PodManager | None:
        return next((m for m in self._all() if m.record(key) is not None), None)

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[_only_apiserver] if self.ssl_context is not None else [])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        app.router.add_post("/exec/{namespace}/{pod}/{container}", self.exec)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])  # port 0: the one the OS picked
        if self.ssl_context is not None:
            log.info("agent endpoint listening on https://%s:%d (API server client certificate only)",
                     self.host, self.port)
        else:
            log.info("agent endpoint listening on http://%s:%d (plain HTTP, no authentication)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _target(self, request: web.Request) -> tuple[PodManager, str, str]:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        key = f"{ns}/{pod}"
        manager = self._find(key)
        if manager is None:
            raise web.HTTPNotFound(text=f'pod "{pod}" in namespace "{ns}" is not running on this node')
        return manager, key, container

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        manager, key, container = self._target(request)
        try:
            opts, previous = parse_log_options(request.query)
        except QueryError as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        found = manager.container_log(key, container, previous)
        pod = key.partition("/")[2]
        if found is None:
            if previous:
                raise web.HTTPBadRequest(
                    text=f'previous terminated container "{container}" in pod "{pod}" not found')
            if manager.record(key) is not None and container in _names(manager, key):
                raise web.HTTPBadRequest(text=f'container "{container}" in pod "{pod}" is waiting to start')
            raise web.HTTPNotFound(text=f'container "{container}" is not valid for pod "{pod}"')
        path, container_id = found

        async def running() -> bool:
            if container_id is None or manager.container_id(key, container) != container_id:
                return False  # a later attempt replaced it: this one's log is complete
            try:
                st = await manager.runtime.container_status(container_id)
            except NotFoundError:
                return False
            return st.state in (ContainerState.RUNNING, ContainerState.CREATED)

        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        async for chunk in read_log(path, opts, running if opts.follow else None):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def exec(self, request: web.Request) -> web.StreamResponse:
        manager, key, container = self._target(request)
        command = request.query.getall("command", [])
        if not command:
            raise web.HTTPBadRequest(text="at least one command argument is required")
        try:
            timeout = float(request.query["timeout"]) if request.query.get("timeout") else None
        except ValueError:
            raise web.HTTPBadRequest(text="timeout must be a number of seconds") from None
        cid = manager.container_id(key, container)
        pod = key.partition("/")[2]
        if cid is None:
            raise web.HTTPBadRequest(text=f'container "{container}" in pod "{pod}" is not running')
        try:
            st = await manager.runtime.container_status(cid)
        except NotFoundError:
            st = None
        if st is None or st.state is not ContainerState.RUNNING:
            raise web.HTTPBadRequest(text=f'container "{container}" in pod "{pod}" is not running')
        try:
            result = await manager.runtime.exec(cid, command, timeout=timeout)
        except NotImplementedError as e:
            raise web.HTTPNotImplemented(text=str(e)) from None
        except TimeoutError:
            raise web.HTTPGatewayTimeout(text=f"command timed out after {timeout}s") from None
        except RuntimeFailure as e:
            raise web.HTTPInternalServerError(text=f"exec failed: {e}") from None
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for stream, data in (("stdout", result.stdout), ("stderr", result.stderr)):
            if data:
                await resp.write(orjson.dumps({"stream": stream, "data": data.decode("utf-8", "replace")}) + b"\n")
        await resp.write(orjson.dumps({"exit": result.exit_code}) + b"\n")
        await resp.write_eof()
        return resp


def _names(manager: PodManager, key: str) -> set[str]:
    rec = manager.record(key)
    return set(rec.containers) | set(rec.init) if rec is not None else set()
