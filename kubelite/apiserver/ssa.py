"""Server-side apply and ``metadata.managedFields``.

Every write records which manager set which fields, in Kubernetes' FieldsV1 format: ``f:<field>``
for a field, ``k:{"name":"c"}`` for a list item matched by its strategic merge key, ``v:<json>`` for
an item of a set of primitives, and ``.`` for "this map or item itself". A field set is kept here as
a set of paths (tuples of those elements); a path ending in ``.`` makes its node a member.

- :func:`apply` (``PATCH application/apply-patch+yaml``) merges the applied configuration into the
  live object, refuses (409) to change a field another manager owns with a different value unless
  forced (then ownership moves), and removes the fields this manager applied before but no longer
  applies, when no other manager owns them. The manager's ``Apply`` entry is the applied field set.
- :func:`record_update` (create/update/patch) gives the writer an ``Update`` entry with the fields
  it changed, and takes those fields away from the other managers, as kube-apiserver does.

Compared with structured-merge-diff this is a reduction: list items are keyed by the strategic
merge key of ``PATCH_META`` alone (Kubernetes keys container ports by port and protocol), and
struct-typed fields are atomic only where the strategic merge metadata says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from kubelite.api import strategic
from kubelite.api.registry import ResourceType
from kubelite.api.validation import identical
from kubelite.apiserver import errors
from kubelite.apiserver.meta import Obj, deepcopy, meta, rfc3339

__all__ = ["Path", "apply", "decode_fields", "encode_fields", "field_values", "manager_from_user_agent", "record_update"]

Path = tuple[str, ...]
SELF = "."
_PRESENT = object()  # the value recorded for a "." member: present or not, nothing to compare
_MISSING = object()

# Set by the server, never owned by a manager.
_SYSTEM_META = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def manager_from_user_agent(user_agent: str) -> str:
    """kube-apiserver's default manager: the User-Agent's program name ("kubectl/v1.33 (...)" -> "kubectl")."""
    name = user_agent.split("/", 1)[0].strip()
    return name[:128] or "unknown"


# ---- field sets ------------------------------------------------------------------------------


def field_values(rt: ResourceType, obj: Obj, subresource: str | None = None) -> dict[Path, Any]:
    """Every owned path of ``obj`` with its value (``_PRESENT`` for "." members).

    A main-resource write owns no ``status`` of a kind with a status subresource; a status write
    owns nothing else.
    """
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if (subresource == "status") != (key == "status") and (rt.has_status or subresource == "status"):
            continue
        if key == "metadata":
            if isinstance(value, dict):
                owned = {k: v for k, v in value.items() if k not in _SYSTEM_META}
                _walk_map(owned, "V1ObjectMeta", ("f:metadata",), out)
            continue
        _walk_value(value, strategic._field(rt.model or None, key), ("f:" + key,), out)
    return out


def _walk_map(value: dict[str, Any], type_name: str | None, path: Path, out: dict[Path, Any]) -> None:
    for key, sub in value.items():
        _walk_value(sub, strategic._field(type_name, key), (*path, "f:" + key), out)


def _is_map(type_name: str | None) -> bool:
    # A map[string]X (labels, data) or an untyped object: its keys are owned one by one, and the map itself.
    return type_name is None or bool(strategic._DICT_RE.match(type_name))


def _walk_value(value: Any, field: Any, path: Path, out: dict[Path, Any]) -> None:
    if value is None:
        return  # null is "not set": nobody owns it
    if isinstance(value, dict):
        if not value:
            out[path] = value
            return
        if _is_map(field.type_name):
            out[(*path, SELF)] = _PRESENT
        _walk_map(value, field.type_name, path, out)
        return
    if isinstance(value, list) and field.strategy == "merge":
        key = field.merge_key
        if key and all(isinstance(item, dict) and key in item for item in value):
            for item in value:
                item_path = (*path, "k:" + orjson.dumps({key: item[key]}).decode())
                out[(*item_path, SELF)] = _PRESENT
                _walk_map(item, field.elem_type, item_path, out)
            return
        if not key and all(not isinstance(item, dict | list) for item in value):
            for item in value:
                out[(*path, "v:" + orjson.dumps(item).decode())] = _PRESENT
            return
    out[path] = value  # a scalar, or an atomic list


def encode_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """A field set as FieldsV1: a trie of path elements whose leaves are ``{}``."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    return root


def decode_fields(fields: Any, prefix: Path = ()) -> set[Path]:
    """The paths of a FieldsV1 trie (tolerates junk by ignoring it)."""
    out: set[Path] = set()
    if not isinstance(fields, dict) or not fields:
        if prefix:
            out.add(prefix)
        return out
    for element, sub in fields.items():
        out |= decode_fields(sub, (*prefix, str(element)))
    return out


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b)


def describe_path(path: Path) -> str:
    """Kubernetes' spelling of a path in conflict messages: ``.spec.containers[name="c"].image``."""
    out = ""
    for element in path:
        if element.startswith("f:"):
            out += "." + element[2:]
        elif element.startswith("k:"):
            keys = orjson.loads(element[2:])
            out += "[" + ",".join(f"{k}={orjson.dumps(v).decode()}" for k, v in keys.items()) + "]"
        elif element.startswith("v:"):
            out += f"[={element[2:]}]"
    return out


# ---- managedFields entries -------------------------------------------------------------------


def _validated_entries(entries: Any) -> list[Obj]:
    """What a client sent as managedFields, checked the way kube-apiserver checks it."""
    problem = None
    if not isinstance(entries, list):
        problem = "must be a list"
    else:
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                problem = f"[{i}]: must be an object"
            elif e.get("operation") not in ("Apply", "Update"):
                problem = f'[{i}].operation: must be "Apply" or "Update"'
            elif e.get("fieldsType", "FieldsV1") != "FieldsV1":
                problem = f'[{i}].fieldsType: must be "FieldsV1"'
            elif not isinstance(e.get("fieldsV1", {}), dict):
                problem = f"[{i}].fieldsV1: must be an object"
            elif not isinstance(e.get("manager", ""), str):
                problem = f"[{i}].manager: must be a string"
            if problem:
                break
    if problem:
        raise errors.StatusError(422, "Invalid", f"metadata.managedFields{problem}")
    return deepcopy({"e": entries})["e"]


def _entry_key(entry: Obj) -> tuple[str, str, str]:
    return (str(entry.get("manager", "")), str(entry.get("operation", "")), str(entry.get("subresource", "")))


def _set_entry(
    entries: list[Obj], rt: ResourceType, manager: str, operation: str, subresource: str | None, paths: set[Path]
) -> None:
    """Replace (or add) the manager's entry; an empty field set removes it."""
    key = (manager, operation, subresource or "")
    idx = next((i for i, e in enumerate(entries) if _entry_key(e) == key), -1)
    if not paths:
        if idx >= 0:
            del entries[idx]
        return
    entry: Obj = {"manager": manager, "operation": operation, "apiVersion": rt.api_version, "time": rfc3339(),
                  "fieldsType": "FieldsV1", "fieldsV1": encode_fields(paths)}
    if subresource:
        entry["subresource"] = subresource
    if idx >= 0:
        entries[idx] = entry
    else:
        entries.append(entry)


def _set_fields(entry: Obj, paths: set[Path]) -> None:
    entry["fieldsV1"] = encode_fields(paths)
    entry["time"] = rfc3339()


# ---- writes ----------------------------------------------------------------------------------


def record_update(rt: ResourceType, old: Obj | None, new: Obj, manager: str, subresource: str | None = None) -> None:
    """Set ``new``'s managedFields after a create/update/patch by ``manager`` (mutates ``new``).

    A client may replace managedFields with a valid list (kubectl does, to move client-side apply
    ownership to server-side apply) or clear them by sending ``[]``.
    """
    nm = meta(new)
    old_entries = meta(old).get("managedFields") if old is not None else None
    incoming = nm.get("managedFields", _MISSING)
    if incoming == [] and old_entries:
        nm.pop("managedFields")  # an explicit reset, as in Kubernetes: nobody owns anything now
        return
    if incoming is _MISSING or incoming is None or incoming == old_entries:
        entries = deepcopy({"e": old_entries or []})["e"]
    else:
        entries = _validated_entries(incoming)
    # Only the fields that differ can change ownership: a heartbeat that moves one timestamp walks
    # that field, not the whole object, and decodes no entry that does not own it.
    new_part, old_part = _differing(rt, new, old) if old is not None else (new, {})
    new_values = field_values(rt, new_part, subresource)
    old_values = field_values(rt, old_part, subresource)
    changed = {p for p, v in new_values.items() if not _same(old_values.get(p, _MISSING), v)}
    gone = set(old_values) - set(new_values)
    touched = changed | gone
    mine = (manager or "unknown", "Update", subresource or "")
    for entry in entries:
        fields = entry.get("fieldsV1")
        is_mine = _entry_key(entry) == mine
        if not any(_owns(fields, p) for p in (gone if is_mine else touched)):
            continue  # kept == owned
        owned = decode_fields(fields)
        kept = owned - gone if is_mine else owned - gone - changed
        if kept != owned:
            _set_fields(entry, kept)
    entries = [e for e in entries if e.get("fieldsV1")]
    mine_entry = next((e for e in entries if _entry_key(e) == mine), None)
    if changed:
        mine_fields = mine_entry.get("fieldsV1") if mine_entry else None
        if not all(_owns(mine_fields, p) for p in changed):
            owned = decode_fields(mine_fields) if mine_entry else set()
            _set_entry(entries, rt, mine[0], "Update", subresource, owned | changed)
    if entries:
        nm["managedFields"] = entries
    else:
        nm.pop("managedFields", None)


def _differing(rt: ResourceType, new: Obj, old: Obj) -> tuple[Obj, Obj]:
    """``new`` and ``old`` cut down to the fields whose values differ: top-level fields, and inside
    metadata and struct-typed top-level fields (status) the fields one level down.

    field_values() paths are rooted at those fields, so the paths of an identical field are the same
    on both sides with the same values: they can be neither changed nor gone.
    """
    new_part: Obj = {}
    old_part: Obj = {}
    for key in new.keys() | old.keys():
        nv, ov = new.get(key, _MISSING), old.get(key, _MISSING)
        if identical(nv, ov):
            continue
        if isinstance(nv, dict) and isinstance(ov, dict) and (
            key == "metadata" or (nv and ov and not _is_map(strategic._field(rt.model or None, key).type_name))
        ):
            # metadata is walked without a "." member of its own; a struct's fields are walked one
            # by one while it is not empty (an empty one would be a leaf: keep it whole then).
            new_sub = {k: v for k, v in nv.items() if not identical(v, ov.get(k, _MISSING))}
            old_sub = {k: v for k, v in ov.items() if not identical(v, nv.get(k, _MISSING))}
            if key == "metadata" or (new_sub and old_sub):
                new_part[key], old_part[key] = new_sub, old_sub
                continue
        if nv is not _MISSING:
            new_part[key] = nv
        if ov is not _MISSING:
            old_part[key] = ov
    return new_part, old_part


def _owns(fields: Any, path: Path) -> bool:
    """Whether ``path`` is in ``decode_fields(fields)``, without decoding the whole trie."""
    node = fields
    for element in path:
        if not isinstance(node, dict) or element not in node:
            return False
        node = node[element]
    return bool(path) and (not isinstance(node, dict) or not node)


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def apply(
    rt: ResourceType,
    live: Obj | None,
    config: Obj,
    manager: str,
    force: bool,
    subresource: str | None = None,
) -> Obj:
    """The object after ``manager`` applies ``config`` to ``live`` (None: the object is created)."""
    config = _strip_nulls(config)
    cm = meta(config)
    cm.pop("managedFields", None)
    applied = field_values(rt, config, subresource)
    applied_set = set(applied)
    if live is None:
        obj = config
        entries: list[Obj] = []
        _set_entry(entries, rt, manager, "Apply", subresource, applied_set)
        if entries:
            meta(obj)["managedFields"] = entries
        return obj

    entries = deepcopy({"e": meta(live).get("managedFields") or []})["e"]
    mine = (manager, "Apply", subresource or "")
    previous: set[Path] = set()
    owned_by: list[tuple[Obj, set[Path]]] = []
    for entry in entries:
        paths = decode_fields(entry.get("fieldsV1"))
        if _entry_key(entry) == mine:
            previous = paths
        else:
            owned_by.append((entry, paths))

    live_values = field_values(rt, live, subresource)
    conflicts: list[tuple[Path, Obj]] = []
    for entry, paths in owned_by:
        for path in sorted(applied_set & paths):
            if path[-1] == SELF:
                continue
            current = live_values.get(path, _MISSING)
            if current is not _MISSING and not _same(current, applied[path]):
                conflicts.append((path, entry))
    if conflicts and not force:
        raise _conflict_error(rt, str(meta(live).get("name", "")), conflicts)
    for entry, paths in owned_by:
        taken = {p for p, e in conflicts if e is entry}
        if taken:
            paths -= taken
            _set_fields(entry, paths)

    merge_config = {k: v for k, v in config.items() if k != "metadata"}
    merge_config["metadata"] = {k: v for k, v in cm.items() if k not in _SYSTEM_META or k == "resourceVersion"}
    try:
        result = strategic.strategic_merge_patch(rt, live, merge_config)
    except strategic.StrategicPatchError as e:
        raise errors.StatusError(422, "Invalid", f"the applied configuration could not be merged: {e}") from None

    others: set[Path] = set().union(*(paths for _e, paths in owned_by))
    keep = applied_set | others
    # A node (its "." member) before what is inside it: removing a list item whole needs its key.
    for path in sorted(previous - keep, key=lambda p: (len(p) - (p[-1] == SELF), p[-1] != SELF)):
        _remove(result, path, keep)

    entries = [e for e, paths in owned_by if paths] + [e for e in entries if _entry_key(e) == mine]
    _set_entry(entries, rt, manager, "Apply", subresource, applied_set)
    if entries:
        meta(result)["managedFields"] = entries
    else:
        meta(result).pop("managedFields", None)
    return result


def _conflict_error(rt: ResourceType, name: str, conflicts: list[tuple[Path, Obj]]) -> errors.StatusError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{entry.get("manager", "")}"'
            + (f" using {entry['apiVersion']}" if entry.get("apiVersion") else ""),
            "field": describe_path(path),
        }
        for path, entry in conflicts
    ]
    listed = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
    n = len(conflicts)
    message = f"Apply failed with {n} conflict{'s' if n != 1 else ''}: {listed}"
    details: Obj = {"name": name, "kind": rt.plural, "causes": causes}
    if rt.group:
        details["group"] = rt.group
    return errors.StatusError(409, "Conflict", message, details)


def _child(node: Any, element: str) -> Any:
    if element.startswith("f:"):
        return node.get(element[2:], _MISSING) if isinstance(node, dict) else _MISSING
    if element.startswith("k:") and isinstance(node, list):
        keys = orjson.loads(element[2:])
        for item in node:
            if isinstance(item, dict) and all(_same(item.get(k, _MISSING), v) for k, v in keys.items()):
                return item
    return _MISSING


def _remove(obj: Obj, path: Path, keep: set[Path]) -> None:
    """Delete the field/item ``path`` names, unless ``keep`` still owns something inside it; then
    drop the maps and lists the removal left empty (Go's omitempty would not print them either)."""
    if path[-1] == SELF:
        path = path[:-1]
        if any(len(k) > len(path) and k[: len(path)] == path for k in keep):
            return  # another manager (or this apply) still owns a field inside it
    chain: list[Any] = [obj]
    for element in path[:-1]:
        nxt = _child(chain[-1], element)
        if nxt is _MISSING:
            return
        chain.append(nxt)
    if not _delete(chain[-1], path[-1]):
        return
    # Walk back up, removing containers that are now empty.
    for depth in range(len(chain) - 1, 0, -1):
        if chain[depth] not in ({}, []):
            break
        _delete(chain[depth - 1], path[depth - 1])


def _delete(container: Any, element: str) -> bool:
    if element.startswith("f:") and isinstance(container, dict) and element[2:] in container:
        del container[element[2:]]
        return True
    if element.startswith("k:") and isinstance(container, list):
        item = _child(container, element)
        if item is not _MISSING:
            container.remove(item)
            return True
    if element.startswith("v:") and isinstance(container, list):
        value = orjson.loads(element[2:])
        kept = [v for v in container if not _same(v, value)]
        if len(kept) != len(container):
            container[:] = kept
            return True
    return False
