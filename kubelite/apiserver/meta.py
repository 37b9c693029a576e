"""Small helpers for object metadata: timestamps, UIDs, encoding with the revision as resourceVersion."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from typing import Any

import orjson

from kubelite.storage import KeyValue

Obj = dict[str, Any]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(t: dt.datetime | None = None) -> str:
    """Kubernetes' timestamp format: second precision, 'Z'."""
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def new_uid() -> str:
    return str(uuid.uuid4())


# Stored objects lead with these keys, so a LIST can splice the stored bytes (typed_json).
_LEADING = ("apiVersion", "kind", "metadata")


def encode(obj: Obj) -> bytes:
    """Bytes stored for an object: everything but metadata.resourceVersion (the store revision is it),
    with apiVersion, kind and metadata first (the layout typed_json splices)."""
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        meta = {k: v for k, v in meta.items() if k != "resourceVersion"}
    out = {k: obj[k] for k in _LEADING if k in obj}
    if "metadata" in obj:
        out["metadata"] = meta
    for k, v in obj.items():
        if k not in out:
            out[k] = v
    return orjson.dumps(out)


def decode(kv: KeyValue) -> Obj:
    obj: Obj = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def typed_json_head(api_version: str, kind: str) -> bytes:
    return b'{"apiVersion":' + orjson.dumps(api_version) + b',"kind":' + orjson.dumps(kind) + b',"metadata":{'


def typed_json(kv: KeyValue, head: bytes) -> bytes | None:
    """The JSON of ``decode(kv)`` typed as ``head`` says (typed_json_head), spliced from the stored
    bytes without decoding them: the resourceVersion becomes metadata's first key. None when the
    stored bytes are not in encode's layout for that type (written before it, untyped, or of
    another apiVersion), and the caller must decode."""
    value = kv.value
    if not value.startswith(head):
        return None
    rest = value[len(head) :]
    rv = b'"resourceVersion":"%d"' % kv.mod_revision
    return b"".join((head, rv, rest if rest[:1] == b"}" else b"," + rest))


def deepcopy(obj: Obj) -> Obj:
    # orjson round-trip is several times faster than copy.deepcopy for JSON-shaped data.
    try:
        result: Obj = orjson.loads(orjson.dumps(obj))
        return result
    except TypeError:
        return copy.deepcopy(obj)


def meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def spec_part(obj: Obj) -> Obj:
    """What ``generation`` tracks: everything but metadata, status and type info."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}
