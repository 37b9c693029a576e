"""Strategic merge patch (``application/strategic-merge-patch+json``).

Both ``kubectl apply`` (client-side) and the official Python client (for every dict-bodied patch)
send this. The algorithm follows k8s.io/apimachinery/pkg/util/strategicpatch (``mergeMap`` /
``mergeSlice`` and their helpers), including its list-ordering rules, so a kubectl three-way patch
gives the same object here as on a real API server.

Kubernetes reads list strategies from Go struct tags (``patchStrategy`` / ``patchMergeKey``). The
Python client models do not carry those, so the field *types* come from walking the client's
``openapi_types`` / ``attribute_map`` and the strategies from :data:`PATCH_META`, transcribed from
k8s.io/api types.go. Fields that are not in the schema merge as plain maps and replace as lists.

Differences from apimachinery, all so that no directive is ever stored: a value whose key is
missing from the original (or whose type differs) is merged into an empty value instead of being
copied verbatim; ``$patch: merge`` on a map is accepted as a plain merge; a ``{"$patch": "replace"}``
item also works in a list of primitives.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kubernetes.client import models as _k8s_models

from kubelite.api.registry import ResourceType

__all__ = ["PATCH_META", "StrategicPatchError", "strategic_merge_patch"]

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"


class StrategicPatchError(ValueError):
    """The patch is malformed; the API server answers 400/422 with this message."""


# (client model, JSON field) -> (patchStrategy, patchMergeKey), from the struct tags in
# k8s.io/api/{core,apps}/v1/types.go and apimachinery's ObjectMeta. A strategy of "" documents a
# list that is deliberately atomic (no tag); fields not listed are atomic too.
PATCH_META: dict[tuple[str, str], tuple[str, str]] = {
    ("V1ObjectMeta", "finalizers"): ("merge", ""),
    ("V1ObjectMeta", "ownerReferences"): ("merge", "uid"),
    ("V1PodSpec", "volumes"): ("merge,retainKeys", "name"),
    ("V1PodSpec", "initContainers"): ("merge", "name"),
    ("V1PodSpec", "containers"): ("merge", "name"),
    ("V1PodSpec", "ephemeralContainers"): ("merge", "name"),
    ("V1PodSpec", "imagePullSecrets"): ("merge", "name"),
    ("V1PodSpec", "hostAliases"): ("merge", "ip"),
    ("V1PodSpec", "topologySpreadConstraints"): ("merge", "topologyKey"),
    ("V1PodSpec", "resourceClaims"): ("merge,retainKeys", "name"),
    ("V1PodSpec", "schedulingGates"): ("merge", "name"),
    ("V1PodSpec", "tolerations"): ("", ""),
    ("V1PodSpec", "readinessGates"): ("", ""),
    ("V1Container", "ports"): ("merge", "containerPort"),
    ("V1Container", "env"): ("merge", "name"),
    ("V1Container", "volumeMounts"): ("merge", "mountPath"),
    ("V1Container", "volumeDevices"): ("merge", "devicePath"),
    ("V1Container", "resizePolicy"): ("", ""),
    ("V1EphemeralContainer", "ports"): ("merge", "containerPort"),
    ("V1EphemeralContainer", "env"): ("merge", "name"),
    ("V1EphemeralContainer", "volumeMounts"): ("merge", "mountPath"),
    ("V1EphemeralContainer", "volumeDevices"): ("merge", "devicePath"),
    ("V1EphemeralContainer", "resizePolicy"): ("", ""),
    ("V1PodStatus", "conditions"): ("merge", "type"),
    ("V1PodStatus", "podIPs"): ("merge", "ip"),
    ("V1PodStatus", "hostIPs"): ("merge", "ip"),
    ("V1PodStatus", "resourceClaimStatuses"): ("merge,retainKeys", "name"),
    ("V1PodStatus", "containerStatuses"): ("", ""),
    ("V1NodeSpec", "podCIDRs"): ("merge", ""),
    ("V1NodeSpec", "taints"): ("", ""),
    ("V1NodeStatus", "conditions"): ("merge", "type"),
    ("V1NodeStatus", "addresses"): ("merge", "type"),
    ("V1ServiceSpec", "ports"): ("merge", "port"),
    ("V1ServiceStatus", "conditions"): ("merge", "type"),
    ("V1EndpointSubset", "addresses"): ("", ""),
    ("V1EndpointSubset", "notReadyAddresses"): ("", ""),
    ("V1EndpointSubset", "ports"): ("", ""),
    ("V1PersistentVolumeClaimStatus", "conditions"): ("merge", "type"),
    ("V1NamespaceStatus", "conditions"): ("merge", "type"),
    ("V1DeploymentSpec", "strategy"): ("retainKeys", ""),
    ("V1DeploymentStatus", "conditions"): ("merge", "type"),
    ("V1ReplicaSetStatus", "conditions"): ("merge", "type"),
    ("V1StatefulSetStatus", "conditions"): ("merge", "type"),
    ("V1DaemonSetStatus", "conditions"): ("merge", "type"),
}


@dataclass(frozen=True)
class _Field:
    type_name: str | None  # client type string ("V1PodSpec", "List[V1Container]"), None if unknown
    strategy: str  # "merge", "replace" or "" (atomic lists / recursive maps)
    merge_key: str

    @property
    def elem_type(self) -> str | None:
        return _list_elem(self.type_name)


_UNKNOWN = _Field(None, "", "")
_MISSING: Any = object()
_LIST_RE = re.compile(r"^(?:List|list)\[(.+)\]$")
_DICT_RE = re.compile(r"^(?:Dict\[str, (.+)\]|dict\(str, (.+)\))$")


def _list_elem(type_name: str | None) -> str | None:
    m = _LIST_RE.match(type_name or "")
    return m.group(1) if m else None


@lru_cache(maxsize=4096)
def _field(type_name: str | None, key: str) -> _Field:
    """Type and patch strategy of JSON field ``key`` inside a value of client type ``type_name``."""
    if not type_name:
        return _UNKNOWN
    dm = _DICT_RE.match(type_name)
    if dm:  # map[string]X: every key has the value type
        return _Field(dm.group(1) or dm.group(2), "", "")
    cls = getattr(_k8s_models, type_name, None)
    attribute_map: dict[str, str] | None = getattr(cls, "attribute_map", None)
    openapi_types: dict[str, str] | None = getattr(cls, "openapi_types", None)
    if attribute_map is None or openapi_types is None:
        return _UNKNOWN
    py_name = next((py for py, js in attribute_map.items() if js == key), None)
    if py_name is None:
        return _UNKNOWN
    strategies, merge_key = PATCH_META.get((type_name, key), ("", ""))
    # "retainKeys" is data-driven ($retainKeys in the patch); only the other strategy matters here.
    strategy = next((s for s in strategies.split(",") if s and s != "retainKeys"), "")
    return _Field(openapi_types[py_name], strategy, merge_key)


def strategic_merge_patch(rt: ResourceType, original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply strategic merge ``patch`` to ``original`` (an object of type ``rt``); inputs are not mutated."""
    if not isinstance(patch, dict):
        raise StrategicPatchError(
            f"strategic merge patch must be a JSON object, got {type(patch).__name__}"
        )
    if not isinstance(original, dict):
        raise StrategicPatchError(f"cannot patch a {type(original).__name__}: the object must be a JSON object")
    return _merge_map(copy.deepcopy(original), patch, rt.model or None, "")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _same(a: Any, b: Any) -> bool:
    # JSON equality: True must not equal 1 (Python says it does, Go does not).
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: str | None, path: str) -> dict[str, Any]:
    """Merge ``patch`` into ``original``, which this call owns and may mutate."""
    patch = dict(patch)  # shallow copy: directives are popped off as they are handled
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == "replace":
            return _merge_map({}, patch, schema, path)  # through the merge so nested directives go
        if directive == "delete":
            return {}  # apimachinery: the map becomes empty, the key stays
        if directive != "merge":
            raise StrategicPatchError(
                f"{path or 'patch'}: unknown $patch directive {directive!r} (want replace, delete or merge)"
            )

    if RETAIN_KEYS in patch:
        _apply_retain_keys(original, patch, patch.pop(RETAIN_KEYS), path)

    # $setElementOrder/<list> goes first, together with its list, like mergePatchIntoOriginal.
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        name = _directive_field(key, SET_ELEMENT_ORDER, path)
        if not isinstance(order, list):
            raise StrategicPatchError(f"{_join(path, key)}: must be a list")
        if name in patch and patch[name] is None:
            continue  # the list is being deleted; the order is moot
        _merge_ordered_list(original, patch, name, order, _field(schema, name), _join(path, name))

    deletions: list[tuple[str, Any]] = []
    for key, pv in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            deletions.append((_directive_field(key, DELETE_FROM_PRIMITIVE_LIST, path), pv))
            continue
        if pv is None:
            original.pop(key, None)
            continue
        field = _field(schema, key)
        ov = original.get(key, _MISSING)
        sub = _join(path, key)
        if isinstance(pv, dict):
            if isinstance(ov, dict) and field.strategy != "replace":
                original[key] = _merge_map(ov, pv, field.type_name, sub)
            else:
                original[key] = _merge_map({}, pv, field.type_name, sub)
        elif isinstance(pv, list):
            original[key] = _merge_list(ov if isinstance(ov, list) else [], pv, field, sub)
        else:
            original[key] = pv

    # After additions, as apimachinery's result does not depend on which comes first.
    for name, values in deletions:
        sub = _join(path, DELETE_FROM_PRIMITIVE_LIST + name)
        if not isinstance(values, list) or any(isinstance(v, dict | list) for v in values):
            raise StrategicPatchError(f"{sub}: must be a list of primitive values")
        ov = original.get(name)
        if isinstance(ov, list):
            if any(isinstance(v, dict | list) for v in ov):
                raise StrategicPatchError(f"{sub}: {_join(path, name)} is not a list of primitives")
            original[name] = [v for v in ov if not any(_same(v, d) for d in values)]
    return original


def _directive_field(key: str, prefix: str, path: str) -> str:
    name = key[len(prefix):]
    if not name:
        raise StrategicPatchError(f"{_join(path, key)}: directive names no field")
    return name


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any], retain: Any, path: str) -> None:
    """Drop every key of ``original`` not listed (kubectl sends it for volume sources, strategy)."""
    where = _join(path, RETAIN_KEYS)
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise StrategicPatchError(f"{where}: must be a list of field names")
    keep = set(retain)
    for k, v in patch.items():
        # Like apimachinery: a field the patch sets but $retainKeys would drop is a contradiction.
        if v is None or k.startswith("$") or k in keep:
            continue
        raise StrategicPatchError(f"{where}: patch sets {k!r}, which is not in {sorted(keep)}")
    for k in [k for k in original if k not in keep]:
        del original[k]


def _merge_ordered_list(
    original: dict[str, Any], patch: dict[str, Any], name: str, order: list[Any], field: _Field, path: str
) -> None:
    """Merge ``patch[name]`` into ``original[name]`` and sort the result by ``$setElementOrder``."""
    ov = original.get(name, _MISSING)
    pv = patch.pop(name, _MISSING)
    if ov is not _MISSING and not isinstance(ov, list):
        ov = _MISSING  # the patch replaces a non-list value
    if pv is not _MISSING and not isinstance(pv, list):
        raise StrategicPatchError(f"{path}: must be a list when $setElementOrder/{name} is given")
    if ov is _MISSING and pv is _MISSING:
        return
    server: list[Any] = ov if ov is not _MISSING else []
    if pv is _MISSING:
        merged = server
    else:
        _validate_set_order(pv, order, field.merge_key, path)
        merged = _merge_list(list(server), pv, field, path)
    if field.strategy != "merge":
        original[name] = merged  # ordering directives only mean something for merging lists
        return
    key = field.merge_key
    if key and not all(isinstance(o, dict) and key in o for o in order):
        raise StrategicPatchError(f"{path}: every $setElementOrder item needs the merge key {key!r}")
    in_order = [m for m in merged if _index(order, m, key) >= 0]
    server_only = [m for m in merged if _index(order, m, key) < 0]
    original[name] = _normalize_order(in_order, server_only, order, server, key)


def _validate_set_order(patch_list: list[Any], order: list[Any], key: str, path: str) -> None:
    """The patch's (non-delete) items must appear in $setElementOrder, in the same relative order."""
    items = [p for p in patch_list if not (isinstance(p, dict) and DIRECTIVE in p)]
    if not items or not order:
        return
    pos = 0
    for item in items:
        want = item.get(key, _MISSING) if key and isinstance(item, dict) else item
        while pos < len(order):
            got = order[pos].get(key, _MISSING) if key and isinstance(order[pos], dict) else order[pos]
            pos += 1
            if want is not _MISSING and _same(want, got):
                break
        else:
            raise StrategicPatchError(
                f"{path}: the order in the patch list {patch_list!r} doesn't match "
                f"$setElementOrder list {order!r}"
            )


def _merge_list(original: list[Any], patch: list[Any], field: _Field, path: str) -> list[Any]:
    """Merge per the field's strategy; ``original`` is owned by the caller's result."""
    if field.strategy != "merge":
        # Atomic list: the patch replaces it. Directive items mean nothing here, so they are dropped.
        return [
            _clean(item, field.elem_type, path)
            for item in patch
            if not (isinstance(item, dict) and DIRECTIVE in item)
        ]
    if not field.merge_key:
        return _merge_primitive_list(original, patch, path)
    return _merge_keyed_list(original, patch, field, path)


def _clean(value: Any, schema: str | None, path: str) -> Any:
    """A fresh copy of a patch value with directives applied to nothing (and nulls dropped)."""
    if isinstance(value, dict):
        return _merge_map({}, value, schema, path)
    if isinstance(value, list):
        return [_clean(v, _list_elem(schema), path) for v in value]
    return value


def _merge_primitive_list(original: list[Any], patch: list[Any], path: str) -> list[Any]:
    """Union (e.g. metadata.finalizers); ``{"$patch": "replace"}`` in the patch replaces instead."""
    replace = False
    values: list[Any] = []
    for item in patch:
        if isinstance(item, dict):
            if item.get(DIRECTIVE) == "replace" and len(item) == 1:
                replace = True
                continue
            raise StrategicPatchError(
                f"{path}: a list of primitives may only carry {{\"$patch\": \"replace\"}}, got {item!r}"
            )
        if isinstance(item, list):
            raise StrategicPatchError(f"{path}: lists of lists cannot be merged")
        values.append(item)
    if replace:
        return _dedupe(values)
    if any(isinstance(v, dict | list) for v in original):
        raise StrategicPatchError(f"{path}: cannot merge primitive values into a list of objects")
    merged = _dedupe(original + values)
    in_patch = [m for m in merged if _index(values, m, "") >= 0]
    server_only = [m for m in merged if _index(values, m, "") < 0]
    return _normalize_order(in_patch, server_only, values, original, "")


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(_same(v, o) for o in out):
            out.append(v)
    return out


def _merge_keyed_list(original: list[Any], patch: list[Any], field: _Field, path: str) -> list[Any]:
    """Merge lists of objects by merge key (mergeSliceWithSpecialElements + ...WithoutSpecialElements)."""
    key = field.merge_key
    if any(not isinstance(v, dict) for v in patch):
        raise StrategicPatchError(f"{path}: expected a list of objects merged by {key!r}, got {patch!r}")
    if any(not isinstance(v, dict) for v in original):
        original = []  # the stored value was not a list of objects; treat it as absent
    replace = False
    plain: list[dict[str, Any]] = []
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if key not in item:
                raise StrategicPatchError(
                    f"{path}: $patch: delete item {item!r} lacks the merge key {key!r}"
                )
            original = [o for o in original if not (key in o and _same(o[key], item[key]))]
        elif directive == "replace":
            replace = True  # keep going: the other special items are still pruned
        elif directive == "merge":
            plain.append({k: v for k, v in item.items() if k != DIRECTIVE})
        else:
            raise StrategicPatchError(
                f"{path}: unknown $patch directive {directive!r} in list item (want replace, delete or merge)"
            )
    for item in plain:
        if key not in item:
            raise StrategicPatchError(f"{path}: list item {item!r} lacks the merge key {key!r}")
    elem = field.elem_type
    if replace:
        return [_merge_map({}, item, elem, f"{path}[{key}={item[key]!r}]") for item in plain]

    server_order = list(original)
    merged = list(original)
    for item in plain:
        sub = f"{path}[{key}={item[key]!r}]"
        idx = next((i for i, o in enumerate(merged) if key in o and _same(o[key], item[key])), -1)
        if idx >= 0:
            merged[idx] = _merge_map(merged[idx], item, elem, sub)
        else:
            merged.append(_merge_map({}, item, elem, sub))
    in_patch = [m for m in merged if _index(plain, m, key) >= 0]
    server_only = [m for m in merged if _index(plain, m, key) < 0]
    return _normalize_order(in_patch, server_only, plain, server_order, key)


def _index(items: list[Any], item: Any, key: str) -> int:
    """Position of ``item`` in ``items``, comparing merge-key values (or values, for primitives)."""
    if key:
        if not isinstance(item, dict) or key not in item:
            return -1
        for i, other in enumerate(items):
            if isinstance(other, dict) and key in other and _same(other[key], item[key]):
                return i
        return -1
    for i, other in enumerate(items):
        if _same(other, item):
            return i
    return -1


def _normalize_order(
    patch_items: list[Any], server_only: list[Any], patch_order: list[Any], server_order: list[Any], key: str
) -> list[Any]:
    """apimachinery's normalizeElementOrder: patch items in patch order, server-only items
    woven back in where they stood on the server."""
    patch_items = sorted(patch_items, key=lambda v: _index(patch_order, v, key))
    server_only = sorted(server_only, key=lambda v: _index(server_order, v, key))
    return _merge_sorted(server_only, patch_items, server_order, key)


def _merge_sorted(left: list[Any], right: list[Any], server_order: list[Any], key: str) -> list[Any]:
    """mergeSortedSlice: take ``left`` (server-only) first only when both items are on the server
    and it stood earlier there; otherwise the patch item comes first (so new items lead)."""
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], key)
            ri = _index(server_order, right[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out
