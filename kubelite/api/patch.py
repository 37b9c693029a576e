"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) applied to plain JSON objects.

Both return a new document and never modify their arguments: the API server patches the object
it read from storage and must be able to compare or discard the result. Strategic merge patch
(kubectl's client-side apply) is a separate piece of work.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer
import orjson

__all__ = ["PatchError", "json_patch", "merge_patch"]


class PatchError(ValueError):
    """The patch cannot be applied: malformed operations, a failed ``test``, or a bad path."""


def _copy(value: Any) -> Any:
    # An orjson round-trip copies JSON-shaped data several times faster than copy.deepcopy (a
    # status patch on a Node copied the whole object with it, on every heartbeat).
    if not isinstance(value, dict | list):
        return value  # str, int, float, bool, None: immutable
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # not JSON-shaped (e.g. an integer beyond 64 bits)
        return copy.deepcopy(value)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return _copy(patch)
    result = _copy(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(target: dict[str, Any], patch: dict[str, Any]) -> None:
    # ``target`` is already our private copy, so it is updated in place.
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            existing = target.get(key)
            if not isinstance(existing, dict):
                existing = {}
                target[key] = existing
            _merge_into(existing, value)
        else:
            target[key] = _copy(value)


def json_patch(target: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch (a list of operations)."""
    if not isinstance(ops, list):
        raise PatchError(f"a JSON patch must be a list of operations, got {type(ops).__name__}")
    for i, op in enumerate(ops):
        if not isinstance(op, dict):
            raise PatchError(f"JSON patch operation {i} must be an object, got {type(op).__name__}")
        if "op" not in op:
            raise PatchError(f"JSON patch operation {i} has no 'op' member")
        if "path" not in op:
            raise PatchError(f"JSON patch operation {i} ({op['op']}) has no 'path' member")
    try:
        return jsonpatch.apply_patch(target, ops, in_place=False)
    except jsonpatch.JsonPatchTestFailed as e:
        raise PatchError(f"JSON patch test operation failed: {e}") from e
    except jsonpatch.InvalidJsonPatch as e:
        raise PatchError(f"invalid JSON patch: {e}") from e
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as e:
        raise PatchError(f"JSON patch cannot be applied: {e}") from e
    except (KeyError, IndexError, TypeError, ValueError) as e:
        # jsonpatch lets some malformed operations escape as builtin errors (e.g. a missing "value").
        raise PatchError(f"invalid JSON patch: {e!r}") from e
