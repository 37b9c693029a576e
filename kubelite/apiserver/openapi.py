"""OpenAPI documents for the served kinds: ``/openapi/v2`` (Swagger 2.0) and ``/openapi/v3``.

The schemas come from the kubernetes client models (``openapi_types``/``attribute_map``, read
through :func:`kubelite.api.validation.model_schema`), with their descriptions and the strategic
merge extensions (``x-kubernetes-patch-strategy``/``-merge-key``) of ``PATCH_META``.
Each resource has its paths with ``x-kubernetes-group-version-kind`` and the write operations'
``fieldValidation`` parameter: kubectl >= 1.27 looks for that parameter to decide whether the
server validates fields itself.

What clients do with them (measured):
- ``kubectl apply`` (validation on) asks for /openapi/v2 as protobuf only
  (``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``). We do not encode the gnostic
  protobuf document; an empty 200 ``application/octet-stream`` body is the empty protobuf document,
  which kubectl accepts (a JSON body there is a decode error). ``Accept: application/json`` gets
  the JSON document.
- ``kubectl explain`` >= 1.27 reads /openapi/v3 (JSON) and works; older kubectl (1.20) reads
  /openapi/v2 as protobuf, gets the empty document, and reports the resource as not found.
"""

from __future__ import annotations

import hashlib
from collections import deque
from functools import lru_cache
from typing import Any

import orjson

from kubelite import KUBE_VERSION
from kubelite.api import validation as v
from kubelite.api.registry import GROUP_VERSIONS, RESOURCES, ResourceType
from kubelite.api.strategic import PATCH_META

__all__ = ["PROTOBUF_ACCEPT", "v2_document", "v3_discovery", "v3_document", "wants_json"]

PROTOBUF_ACCEPT = "protobuf"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# Types that live in apimachinery's meta/v1 rather than in an API group's package.
_META_MODELS = {
    "V1ObjectMeta", "V1ListMeta", "V1LabelSelector", "V1LabelSelectorRequirement", "V1OwnerReference",
    "V1ManagedFieldsEntry", "V1Condition", "V1Status", "V1StatusDetails", "V1StatusCause",
}  # fmt: skip
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_FIXED_DEFINITIONS: dict[str, dict[str, Any]] = {
    _QUANTITY: {"type": "string", "description": "Quantity is a fixed-point number, e.g. 100m or 1Gi."},
    _INT_OR_STRING: {"type": "string", "format": "int-or-string",
                     "description": "IntOrString holds an int32 or a string."},
}


def wants_json(accept: str) -> bool:
    """JSON unless the client asks for protobuf and not for JSON (kubectl's apply validation)."""
    accept = accept.lower()
    return PROTOBUF_ACCEPT not in accept or "application/json" in accept


def _package(rt: ResourceType) -> str:
    return f"io.k8s.api.{(rt.group or 'core').split('.')[0]}.{rt.version}."


def _short_name(model: str) -> str:
    """V1PodSpec -> PodSpec, CoreV1Event -> Event."""
    for prefix in ("CoreV1", "V1"):
        if model.startswith(prefix) and model[len(prefix):][:1].isupper():
            return model[len(prefix):]
    return model


def _description(model: str) -> tuple[str, dict[str, str]]:
    """The model's and its fields' descriptions (pydantic models carry them; older clients do not)."""
    cls = getattr(v._models(), model, None)
    doc = (getattr(cls, "__doc__", "") or "").strip().split("\n\n")[0].strip()
    if doc.startswith("NOTE: This class is auto generated"):
        doc = ""
    fields: dict[str, str] = {}
    model_fields = getattr(cls, "model_fields", None)
    attribute_map: dict[str, str] = getattr(cls, "attribute_map", {}) or {}
    if isinstance(model_fields, dict):
        for attr, info in model_fields.items():
            text = getattr(info, "description", None)
            if text and attr in attribute_map:
                fields[attribute_map[attr]] = text
    return doc, fields


def _schema(t: v.SchemaType, ref: Any) -> dict[str, Any]:
    kind = t.kind
    if kind == v.MODEL:
        return {"$ref": ref(t.model)}
    if kind == v.LIST:
        assert t.item is not None
        return {"type": "array", "items": _schema(t.item, ref)}
    if kind == v.MAP:
        assert t.item is not None
        return {"type": "object", "additionalProperties": _schema(t.item, ref)}
    if kind == v.QUANTITY:
        return {"$ref": ref(_QUANTITY)}
    if kind == v.INT_OR_STRING:
        return {"$ref": ref(_INT_OR_STRING)}
    return {
        v.STR: {"type": "string"},
        v.INT: {"type": "integer", "format": "int64"},
        v.BOOL: {"type": "boolean"},
        v.FLOAT: {"type": "number", "format": "double"},
        v.DATETIME: {"type": "string", "format": "date-time"},
        v.BYTES: {"type": "string", "format": "byte"},
    }.get(kind, {"type": "object"})


def _gvk(rt: ResourceType) -> dict[str, str]:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


@lru_cache(maxsize=2)
def _definitions(ref_prefix: str) -> dict[str, dict[str, Any]]:
    """Every model the served kinds reach, named as Kubernetes names them."""
    names: dict[str, str] = {}
    queue: deque[tuple[str, str]] = deque()
    for rt in RESOURCES:
        if rt.model and rt.model not in names:
            names[rt.model] = _package(rt) + rt.kind
            queue.append((rt.model, _package(rt)))
    defs: dict[str, dict[str, Any]] = {}
    order: list[str] = []

    def ref(model: str) -> str:
        return ref_prefix + names.get(model, model)

    while queue:
        model, package = queue.popleft()
        schema = v.model_schema(model)
        for t in schema.fields.values():
            while t.item is not None:
                t = t.item
            if t.kind == v.MODEL and t.model not in names:
                names[t.model] = (_META if t.model in _META_MODELS else package) + _short_name(t.model)
                queue.append((t.model, package))
        order.append(model)
    for model in order:
        schema = v.model_schema(model)
        doc, field_docs = _description(model)
        props: dict[str, Any] = {}
        for json_name, t in schema.fields.items():
            prop = _schema(t, ref)
            if json_name in field_docs:
                prop = {**prop, "description": field_docs[json_name]} if "$ref" not in prop else prop
            strategy, key = PATCH_META.get((model, json_name), ("", ""))
            if strategy:
                prop["x-kubernetes-patch-strategy"] = strategy
            if key:
                prop["x-kubernetes-patch-merge-key"] = key
            props[json_name] = prop
        d: dict[str, Any] = {"type": "object", "properties": props}
        if doc:
            d["description"] = doc
        if schema.required:
            d["required"] = list(schema.required)
        defs[names[model]] = d
    for rt in RESOURCES:
        if rt.model:
            defs[names[rt.model]]["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    defs.update(_FIXED_DEFINITIONS)
    return defs


def _paths(rt: ResourceType, ref: str, v3: bool) -> dict[str, Any]:
    """The object path of ``rt`` with get/put/patch/delete and its collection with post/list."""
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    collection = f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    body_ref = {"$ref": ref}
    if v3:
        ok: dict[str, Any] = {"description": "OK", "content": {"application/json": {"schema": body_ref}}}
        param_type: dict[str, Any] = {"schema": {"type": "string", "uniqueItems": True}}
    else:
        ok = {"description": "OK", "schema": body_ref}
        param_type = {"type": "string", "uniqueItems": True}
    write_params = [
        {"name": name, "in": "query", **param_type} for name in ("dryRun", "fieldManager", "fieldValidation")
    ]

    def op(action: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "operationId": f"{action}{rt.kind}",
            "parameters": params,
            "responses": {"200": ok},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": _gvk(rt),
        }

    obj_ops = {"get": op("get", []), "put": op("put", write_params), "patch": op("patch", [
        *write_params, {"name": "force", "in": "query", **param_type}]), "delete": op("delete", [])}
    return {collection: {"get": op("list", []), "post": op("post", write_params)}, f"{collection}/{{name}}": obj_ops}


@lru_cache(maxsize=1)
def _v2_bytes() -> bytes:
    ref = "#/definitions/"
    paths: dict[str, Any] = {}
    for rt in RESOURCES:
        if rt.model:
            paths.update(_paths(rt, ref + _package(rt) + rt.kind, v3=False))
    doc = {"swagger": "2.0", "info": {"title": "Kubernetes", "version": KUBE_VERSION}, "paths": paths,
           "definitions": _definitions(ref)}
    return orjson.dumps(doc)


def v2_document() -> bytes:
    """The Swagger 2.0 document (JSON bytes, built once)."""
    return _v2_bytes()


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@lru_cache(maxsize=16)
def _v3_bytes(group: str, version: str) -> bytes | None:
    served = [rt for rt in RESOURCES if rt.group == group and rt.version == version and rt.model]
    if not served:
        return None
    ref = "#/components/schemas/"
    paths: dict[str, Any] = {}
    for rt in served:
        paths.update(_paths(rt, ref + _package(rt) + rt.kind, v3=True))
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "components": {"schemas": _definitions(ref)},
    }
    return orjson.dumps(doc)


def v3_document(gv_path: str) -> bytes | None:
    """/openapi/v3/<api/v1|apis/group/version> as JSON bytes, or None for an unknown group version."""
    parts = gv_path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        return _v3_bytes("", parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return _v3_bytes(parts[1], parts[2])
    return None


def v3_discovery() -> dict[str, Any]:
    """/openapi/v3: one entry per group version; the hash lets clients cache the documents."""
    paths: dict[str, Any] = {}
    for group, version in GROUP_VERSIONS:
        body = _v3_bytes(group, version)
        if body is None:
            continue
        digest = hashlib.sha512(body).hexdigest()[:32].upper()
        path = _gv_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
