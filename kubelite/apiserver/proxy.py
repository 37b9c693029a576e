"""``pods/{name}/log`` and ``pods/{name}/exec``: the API server proxies them to the pod's node agent.

As kube-apiserver does, the server finds the pod's node, reads the node's InternalIP and
``status.daemonEndpoints.kubeletEndpoint.Port``, and forwards the request to the agent's
``/containerLogs/...`` or ``/exec/...`` (see ``kubelite.agent.httpserver``), streaming the answer
back as it arrives (a ``follow`` log keeps streaming until the container stops or the client goes).

Errors are Status objects: pod not found 404; no container named while the pod has several 400
("a container name must be specified for pod x, choose one of: [a b]"); the agent unreachable 503;
an agent error keeps its code, with the agent's text as the message.

``exec`` is a plain POST here (``?command=..&command=..``), answered with the agent's JSON-lines
protocol. kubectl's exec needs a SPDY/WebSocket upgrade, which kubelite does not support: use
``kubelite exec``.

The Node's ``kubelite.io/agent-scheme`` annotation says how to dial the agent. ``https`` (an agent
with bootstrapped node credentials): TLS, the agent's serving certificate verified against the
cluster CA (its SANs hold the node's addresses), and the API server presents its
``kube-apiserver-kubelet-client`` certificate, the only identity the agent serves. Otherwise
(agents of a development cluster on the insecure port) plain HTTP without authentication.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from kubelite.api.registry import by_path
from kubelite.apiserver import errors

if TYPE_CHECKING:
    from kubelite.apiserver.app import ApiServer, Target

__all__ = ["LOG_PARAMS", "pick_container", "pod_exec", "pod_log"]

Obj = dict[str, Any]

_NODES = by_path("", "v1", "nodes")
assert _NODES is not None
NODES = _NODES

# Written by the agent (kubelite.agent.node.AGENT_SCHEME_ANNOTATION); the API server does not import agent code.
AGENT_SCHEME_ANNOTATION = "kubelite.io/agent-scheme"
LOG_PARAMS = ("follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes")
_CONNECT_TIMEOUT = 5.0


def pick_container(pod: Obj, requested: str | None) -> str:
    """The container a log/exec request is for; StatusError 400 when it is missing or unknown."""
    name = str((pod.get("metadata") or {}).get("name", ""))
    spec = pod.get("spec") or {}
    main = [str(c.get("name")) for c in spec.get("containers") or []]
    init = [str(c.get("name")) for c in spec.get("initContainers") or []]
    if requested:
        if requested not in main and requested not in init:
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    default = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if default in main:
        return str(default)
    if len(main) == 1:
        return main[0]
    raise errors.bad_request(
        f"a container name must be specified for pod {name}, choose one of: [{' '.join(main)}]"
        + (f" or one of the init containers: [{' '.join(init)}]" if init else "")
    )


async def _agent_url(api: ApiServer, pod: Obj) -> tuple[str, ssl.SSLContext | None]:
    """The agent's base URL, and the TLS context to dial it with when it serves HTTPS."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    name = pod["metadata"]["name"]
    if not node_name:
        raise errors.bad_request(f'pod "{name}" is not scheduled to a node yet')
    try:
        node = await api.objects.get(NODES, None, str(node_name))
    except errors.StatusError as e:
        if e.code == 404:
            raise errors.StatusError(503, "ServiceUnavailable", f'node "{node_name}" of pod "{name}" does not exist') from None
        raise
    status = node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("ExternalIP") or addresses.get("Hostname")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not host or not isinstance(port, int) or port <= 0:
        raise errors.StatusError(503, "ServiceUnavailable", f'node "{node_name}" publishes no agent endpoint')
    if ":" in str(host):
        host = f"[{host}]"
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    if annotations.get(AGENT_SCHEME_ANNOTATION) != "https":
        return f"http://{host}:{port}", None
    pki = getattr(api, "pki", None)
    if pki is None:
        raise errors.StatusError(
            503, "ServiceUnavailable",
            f'the agent on node "{node_name}" serves HTTPS but this API server has no kubelet client certificate')
    # Built per request: logs/exec are rare, and a certificate rotated on disk is picked up by a restart.
    return f"https://{host}:{port}", pki.client_ssl_context(pki.kubelet_client)


async def _forward(
    request: web.Request, method: str, agent: tuple[str, ssl.SSLContext | None], path: str,
    params: list[tuple[str, str]], content_type: str, node: str
) -> web.StreamResponse:
    base, tls = agent
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            upstream = await session.request(method, base + path, params=params,
                                             ssl=tls if tls is not None else True)
        except (aiohttp.ClientError, OSError) as e:
            raise errors.StatusError(
                503, "ServiceUnavailable", f'cannot reach the agent on node "{node}": {e}'
            ) from None
        async with upstream:
            if upstream.status >= 400:
                text = (await upstream.text(errors="replace")).strip() or upstream.reason or "agent error"
                reason = {400: "BadRequest", 404: "NotFound", 501: "NotImplemented", 504: "Timeout"}.get(
                    upstream.status, "InternalError")
                raise errors.StatusError(upstream.status, reason, text)
            resp = web.StreamResponse(headers={"Content-Type": content_type})
            await resp.prepare(request)
            with contextlib.suppress(aiohttp.ClientPayloadError, ConnectionResetError):
                # The agent ending the stream early (it restarted) ends ours: nothing to say as a Status now.
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            await resp.write_eof()
            return resp


def _path(kind: str, pod: Obj, container: str) -> str:
    m = pod["metadata"]
    return f"/{kind}/{quote(m['namespace'], safe='')}/{quote(m['name'], safe='')}/{quote(container, safe='')}"


async def pod_log(api: ApiServer, request: web.Request, t: Target) -> web.StreamResponse:
    """``GET pods/{name}/log``: the container's log from its node's agent, streamed."""
    assert t.name is not None
    pod = await api.objects.get(t.rt, t.namespace, t.name)
    container = pick_container(pod, request.query.get("container"))
    agent = await _agent_url(api, pod)
    params = [(k, request.query[k]) for k in LOG_PARAMS if k in request.query]
    node = str(pod["spec"]["nodeName"])
    return await _forward(request, "GET", agent, _path("containerLogs", pod, container), params,
                          "text/plain; charset=utf-8", node)


async def pod_exec(api: ApiServer, request: web.Request, t: Target) -> web.StreamResponse:
    """``POST pods/{name}/exec?command=..``: run a command in the container (JSON-lines answer)."""
    assert t.name is not None
    pod = await api.objects.get(t.rt, t.namespace, t.name)
    container = pick_container(pod, request.query.get("container"))
    command = request.query.getall("command", [])
    if not command:
        raise errors.bad_request("you must specify at least one command for the container")
    if request.headers.get("Upgrade"):
        raise errors.bad_request("exec with a SPDY/WebSocket upgrade (kubectl exec) is not supported; use kubelite exec")
    agent = await _agent_url(api, pod)
    params = [("command", c) for c in command]
    if request.query.get("timeout"):
        params.append(("timeout", request.query["timeout"]))
    node = str(pod["spec"]["nodeName"])
    return await _forward(request, "POST", agent, _path("exec", pod, container), params, "application/x-ndjson", node)
