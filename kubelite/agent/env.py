"""A container's environment, and ``$(VAR)`` expansion in env values, command and args.

Kubernetes semantics (kubelet's ``makeEnvironmentVariables`` and ``third_party/forked/golang/expansion``):

* ``envFrom`` sources come first, in order, each key prefixed; keys that are not valid variable
  names are skipped; their values are never expanded;
* ``env`` entries come next and override; a ``value`` is expanded against the variables defined
  *before* it; ``valueFrom`` reads a ConfigMap/Secret key, a pod field, or a resource limit;
* a missing ConfigMap/Secret (or key) is an error unless ``optional: true`` — the container then
  waits with reason ``CreateContainerConfigError`` (:class:`EnvError` carries kubelet's message);
* expansion: ``$(VAR)`` is replaced when VAR is defined and left as is otherwise; ``$$`` is an
  escaped ``$`` (so ``$$(VAR)`` yields the literal ``$(VAR)``); any other ``$`` stays.
* Service links (:func:`service_env`): ``<NAME>_SERVICE_HOST``/``_PORT`` and the Docker-link style
  ``<NAME>_PORT_*`` variables of the pod's namespace's Services (with ``enableServiceLinks``), and
  always those of ``default/kubernetes`` — how in-cluster clients find the API. They come last and
  never override ``env``/``envFrom``, but ``$(VAR)`` may refer to them.

ConfigMaps and Secrets are read through an :class:`ObjectSource` (the agent's ApiClient; tests
may pass a dict-backed one), one GET per object per container start.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING
from typing import Any, Protocol

from kubelite.api.quantity import QuantityError, parse_quantity
from kubelite.api.registry import by_path
from kubelite.client import ApiClient, ApiError

__all__ = [
    "ApiObjectSource",
    "EnvError",
    "ObjectSource",
    "PodContext",
    "build_env",
    "expand",
    "field_value",
    "resolve_command",
    "resource_value",
    "secret_data",
    "service_env",
]

Obj = dict[str, Any]

_CONFIGMAPS = by_path("", "v1", "configmaps")
_SECRETS = by_path("", "v1", "secrets")
assert _CONFIGMAPS is not None and _SECRETS is not None
CONFIGMAPS, SECRETS = _CONFIGMAPS, _SECRETS

# The C identifier rule Kubernetes applied to envFrom keys before 1.30 (still what most runtimes accept).
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class EnvError(Exception):
    """The environment cannot be built; the message is the container's waiting message."""


class ObjectSource(Protocol):
    """Where ConfigMaps and Secrets come from; None when the object does not exist."""

    async def configmap(self, namespace: str, name: str) -> Obj | None: ...

    async def secret(self, namespace: str, name: str) -> Obj | None: ...


class ApiObjectSource:
    """Reads ConfigMaps and Secrets from the API server (one GET each)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def _get(self, kind: str, namespace: str, name: str) -> Obj | None:
        rt = CONFIGMAPS if kind == "configmap" else SECRETS
        try:
            return await self.client.get(rt, name, namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        return await self._get("configmap", namespace, name)

    async def secret(self, namespace: str, name: str) -> Obj | None:
        return await self._get("secret", namespace, name)


@dataclass(frozen=True, slots=True)
class PodContext:
    """What fieldRef may read that is not in the pod object the agent holds (its IPs)."""

    pod_ip: str = ""
    host_ip: str = ""
    node_allocatable: Mapping[str, str] | None = None  # resourceFieldRef without a limit falls back to it


def secret_data(secret: Obj) -> dict[str, bytes]:
    """A Secret's ``data`` decoded (base64), with ``stringData`` (if a server left it) on top."""
    out: dict[str, bytes] = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[str(k)] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            raise EnvError(f"secret {secret.get('metadata', {}).get('name')!r} key {k!r} is not valid base64") from None
    for k, v in (secret.get("stringData") or {}).items():
        out[str(k)] = str(v).encode()
    return out


def configmap_data(cm: Obj) -> dict[str, bytes]:
    out = {str(k): str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        out[str(k)] = base64.b64decode(str(v))
    return out


# --- expansion ------------------------------------------------------------------------------------


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of ``text``; ``lookup`` returns None for an undefined name."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":  # escaped: "$$" -> "$", and what follows is not an operator
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:  # unterminated: literal
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            value = lookup(name) if name else None
            out.append(value if value is not None else text[i : end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def resolve_command(container: Obj, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The container's ``command`` and ``args`` with ``$(VAR)`` expanded against its final env."""
    command = [expand(str(a), env.get) for a in container.get("command") or []]
    args = [expand(str(a), env.get) for a in container.get("args") or []]
    return command, args


# --- valueFrom ------------------------------------------------------------------------------------

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def field_value(pod: Obj, path: str, ctx: PodContext) -> str:
    """A downward-API ``fieldRef.fieldPath`` of ``pod``; EnvError for an unsupported path."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple: dict[str, Callable[[], Any]] = {
        "metadata.name": lambda: meta.get("name"),
        "metadata.namespace": lambda: meta.get("namespace"),
        "metadata.uid": lambda: meta.get("uid"),
        "spec.nodeName": lambda: spec.get("nodeName"),
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName") or "default",
        "status.podIP": lambda: ctx.pod_ip,
        "status.podIPs": lambda: ctx.pod_ip,
        "status.hostIP": lambda: ctx.host_ip,
        "status.hostIPs": lambda: ctx.host_ip,
    }
    if path in simple:
        return str(simple[path]() or "")
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise EnvError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(pod: Obj, container_name: str, ref: Obj, ctx: PodContext) -> str:
    """``resourceFieldRef``: a limit/request in units of ``divisor`` (rounded up, as kubelet does).

    An unset limit falls back to the node's allocatable, the value the container is actually capped by.
    """
    target = str(ref.get("containerName") or container_name)
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise EnvError(f"unsupported resourceFieldRef resource {resource!r}")
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    spec_c = next((c for c in containers if c.get("name") == target), None)
    if spec_c is None:
        raise EnvError(f"resourceFieldRef names unknown container {target!r}")
    res = spec_c.get("resources") or {}
    raw = (res.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (res.get("limits") or {}).get(name)  # a request defaults to the limit
    if raw is None:
        raw = (ctx.node_allocatable or {}).get(name)
    if raw is None:
        return "0" if kind == "requests" else ""
    try:
        value = parse_quantity(raw)
        divisor = parse_quantity(ref.get("divisor") or "1")
    except QuantityError as e:
        raise EnvError(f"resourceFieldRef {resource}: {e}") from None
    if divisor <= 0:
        raise EnvError(f"resourceFieldRef {resource}: divisor must be positive")
    return str(int((value / divisor).to_integral_value(rounding=ROUND_CEILING)))


# --- the whole environment ------------------------------------------------------------------------


class _Objects:
    """Per-call cache: a container's env names the same ConfigMap many times."""

    def __init__(self, source: ObjectSource, namespace: str) -> None:
        self.source, self.namespace = source, namespace
        self._cache: dict[tuple[str, str], dict[str, bytes] | None] = {}

    async def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        key = (kind, name)
        if key not in self._cache:
            if kind == "configmap":
                cm = await self.source.configmap(self.namespace, name)
                self._cache[key] = configmap_data(cm) if cm is not None else None
            else:
                s = await self.source.secret(self.namespace, name)
                self._cache[key] = secret_data(s) if s is not None else None
        return self._cache[key]


_KIND_NAMES = {"configmap": "ConfigMap", "secret": "Secret"}


async def _key_ref(objs: _Objects, kind: str, ref: Obj) -> str | None:
    """The value of a configMapKeyRef/secretKeyRef; None when optional and missing."""
    name, key, optional = str(ref.get("name", "")), str(ref.get("key", "")), bool(ref.get("optional"))
    data = await objs.data(kind, name)
    if data is None:
        if optional:
            return None
        raise EnvError(f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise EnvError(f"couldn't find key {key} in {_KIND_NAMES[kind]} {objs.namespace}/{name}")
    return data[key].decode("utf-8", "replace")


def service_env(pod: Obj, services: Iterable[Obj]) -> dict[str, str]:
    """kubelet's service environment for ``pod`` from ``services`` (any namespaces; the irrelevant
    ones are ignored): a pod's own namespace only with ``enableServiceLinks`` (default true), the
    master Service ``default/kubernetes`` always; Services without a ClusterIP have no variables."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
    chosen: dict[str, Obj] = {}
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        name, ns = str(meta.get("name") or ""), str(meta.get("namespace") or "")
        if spec.get("clusterIP") in (None, "", "None"):
            continue
        if (links and ns == namespace) or (ns == "default" and name == "kubernetes" and name not in chosen):
            chosen[name] = svc  # a pod namespace's own "kubernetes" Service wins over the master one
    env: dict[str, str] = {}
    for name, svc in sorted(chosen.items()):
        spec = svc["spec"]
        ip, prefix = str(spec["clusterIP"]), name.upper().replace("-", "_")
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("port")]
        env[f"{prefix}_SERVICE_HOST"] = ip
        for i, p in enumerate(ports):
            proto, port = str(p.get("protocol") or "TCP"), str(p["port"])
            url = f"{proto.lower()}://{ip}:{port}"
            if i == 0:
                env[f"{prefix}_SERVICE_PORT"], env[f"{prefix}_PORT"] = port, url
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{str(p['name']).upper().replace('-', '_')}"] = port
            base = f"{prefix}_PORT_{port}_{proto.upper()}"
            env.update({base: url, f"{base}_PROTO": proto.lower(), f"{base}_PORT": port, f"{base}_ADDR": ip})
    return env


async def build_env(
    pod: Obj, container: Obj, source: ObjectSource, ctx: PodContext, services: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The container's environment, in definition order; EnvError when it cannot be built.

    ``services`` is the pod's :func:`service_env`: a fallback for ``$(VAR)``, added last."""
    services = services or {}
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    objs = _Objects(source, namespace)
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        kind, ref = ("configmap", src["configMapRef"]) if src.get("configMapRef") else ("secret", src.get("secretRef"))
        if not ref:
            continue
        name = str(ref.get("name", ""))
        data = await objs.data(kind, name)
        if data is None:
            if ref.get("optional"):
                continue
            raise EnvError(f'{kind} "{name}" not found')
        for k, v in data.items():
            if _ENV_NAME.match(prefix + k):
                env[prefix + k] = v.decode("utf-8", "replace")
    for e in container.get("env") or []:
        name = str(e.get("name", ""))
        if not name:
            continue
        vf = e.get("valueFrom")
        if not vf:
            env[name] = expand(str(e.get("value") or ""), lambda k: env.get(k, services.get(k)))
            continue
        value: str | None
        if vf.get("configMapKeyRef"):
            value = await _key_ref(objs, "configmap", vf["configMapKeyRef"])
        elif vf.get("secretKeyRef"):
            value = await _key_ref(objs, "secret", vf["secretKeyRef"])
        elif vf.get("fieldRef"):
            value = field_value(pod, str(vf["fieldRef"].get("fieldPath", "")), ctx)
        elif vf.get("resourceFieldRef"):
            value = resource_value(pod, str(container.get("name", "")), vf["resourceFieldRef"], ctx)
        else:
            raise EnvError(f"env {name}: valueFrom names no source")
        if value is not None:
            env[name] = value
    return {**env, **{k: v for k, v in services.items() if k not in env}}
