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


def encode(obj: Obj) -> bytes:
    """Bytes stored for an object: everything but metadata.resourceVersion (the store revision is it)."""
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return orjson.dumps(obj)


def decode(kv: KeyValue) -> Obj:
    obj: Obj = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


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
