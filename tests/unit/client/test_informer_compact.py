"""Informer caches keep compacted objects: no managedFields, short strings shared, content intact."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from kubelite.api.registry import resource
from kubelite.client.informer import Informer, compact

CONFIGMAPS = resource("", "configmaps")


def test_compact_drops_managed_fields_and_interns_short_strings() -> None:
    long = "x" * 500
    obj: dict[str, Any] = {
        "metadata": {"name": "".join(["a", "b"]), "managedFields": [{"manager": "m"}]},
        "data": {"k": "".join(["v", "1"]), "big": long},
        "items": ["".join(["e", "1"]), {"n": 3}],
    }
    out = compact(obj)
    assert out is obj
    assert out == {"metadata": {"name": "ab"}, "data": {"k": "v1", "big": long}, "items": ["e1", {"n": 3}]}
    assert out["metadata"]["name"] is sys.intern("ab")
    assert out["data"]["k"] is sys.intern("v1")
    assert out["items"][0] is sys.intern("e1")
    kept = compact({"metadata": {"managedFields": []}}, keep_managed_fields=True)
    assert kept == {"metadata": {"managedFields": []}}


async def _wait(cond: Any) -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_cached_objects_have_no_managed_fields_from_list_and_watch(inproc_api: Any) -> None:
    client = inproc_api.client
    await client.create(CONFIGMAPS, {"metadata": {"name": "listed"}, "data": {"a": "1"}}, namespace="default")
    assert (await client.get(CONFIGMAPS, "listed", "default"))["metadata"].get("managedFields")
    inf = Informer(client, CONFIGMAPS, namespace="default")
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.wait_synced(), 10)
        await client.create(CONFIGMAPS, {"metadata": {"name": "watched"}, "data": {"b": "2"}}, namespace="default")
        await _wait(lambda: inf.get("default", "watched") is not None)
        for name, data in (("listed", {"a": "1"}), ("watched", {"b": "2"})):
            cached = inf.get("default", name)
            assert cached is not None
            assert "managedFields" not in cached["metadata"]
            assert cached["data"] == data and cached["kind"] == "ConfigMap"
            assert cached["metadata"]["namespace"] is sys.intern("default")
        # An update from the cached copy (no managedFields) keeps the server's.
        cached = dict(inf.get("default", "listed") or {})
        cached["data"] = {"a": "2"}
        updated = await client.replace(CONFIGMAPS, cached)
        assert updated["metadata"].get("managedFields")
    finally:
        inf.stop()
        await asyncio.wait_for(task, 10)
