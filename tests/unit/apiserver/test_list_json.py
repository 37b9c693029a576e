"""LIST served from spliced stored bytes: the same objects a decoded LIST returns, in every layout."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from kubelite.api.registry import resource
from kubelite.api.selectors import parse_label_selector
from kubelite.apiserver.meta import decode, encode, typed_json, typed_json_head
from kubelite.apiserver.objects import ListOptions, ObjectStore
from kubelite.storage import KeyValue

PODS = resource("", "pods")
CONFIGMAPS = resource("", "configmaps")


def test_encode_leads_with_type_and_metadata_and_drops_resource_version() -> None:
    obj: dict[str, Any] = {"data": {"a": "b"}, "metadata": {"name": "x", "resourceVersion": "7"}, "kind": "ConfigMap", "apiVersion": "v1"}
    raw = encode(obj)
    assert raw.startswith(b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}')
    assert orjson.loads(raw) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}
    assert obj["metadata"]["resourceVersion"] == "7"  # the caller's object is left alone


def test_typed_json_equals_decode() -> None:
    head = typed_json_head("v1", "ConfigMap")
    for obj in (
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
    ):
        kv = KeyValue("/registry/core/configmaps/default/x", encode(obj), 3, 42)
        raw = typed_json(kv, head)
        assert raw is not None
        assert orjson.loads(raw) == decode(kv)
        assert orjson.loads(raw)["metadata"]["resourceVersion"] == "42"


def test_typed_json_refuses_other_layouts() -> None:
    head = typed_json_head("v1", "ConfigMap")
    for value in (
        orjson.dumps({"metadata": {"name": "x"}, "kind": "ConfigMap", "apiVersion": "v1"}),  # written before encode's layout
        orjson.dumps({"metadata": {"name": "x"}}),  # untyped
        orjson.dumps({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    ):
        assert typed_json(KeyValue("k", value, 1, 1), head) is None


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        return orjson.loads(await r.read())


async def test_list_json_equals_list_for_every_layout_selector_and_page(inproc_api: Any) -> None:
    objects: ObjectStore = inproc_api.api.objects
    for i in range(6):
        body = {"metadata": {"name": f"cm{i}", "labels": {"shard": str(i % 2)}}, "data": {"i": str(i)}}
        await inproc_api.client.create(CONFIGMAPS, body, namespace="default")
    # Objects stored in other layouts (an older server's, another client of the store): decoded instead.
    await objects.store.create(
        CONFIGMAPS.key("default", "old"),
        orjson.dumps({"data": {"x": "y"}, "metadata": {"name": "old", "namespace": "default", "labels": {"shard": "1"}}}),
    )
    await objects.store.create(
        CONFIGMAPS.key("default", "old2"),
        orjson.dumps({"metadata": {"name": "old2", "namespace": "default"}, "apiVersion": "v1", "kind": "ConfigMap"}),
    )
    for selector, limit in ((None, 0), ("shard=1", 0), (None, 2), ("shard=1", 1)):
        cont = ""
        while True:
            opts = ListOptions(parse_label_selector(selector) if selector else None, limit=limit, continue_token=cont)
            expected = await objects.list(CONFIGMAPS, "default", opts)
            got = orjson.loads(await objects.list_json(CONFIGMAPS, "default", opts))
            assert got == expected
            cont = expected["metadata"].get("continue", "")
            if not cont:
                break
    listed = await _get(f"{inproc_api.url}/api/v1/namespaces/default/configmaps")
    names = {o["metadata"]["name"] for o in listed["items"]}
    assert {"old", "old2", "cm0", "cm5"} <= names
    assert all(o["kind"] == "ConfigMap" and o["apiVersion"] == "v1" for o in listed["items"])
    assert listed["kind"] == "ConfigMapList"
    assert int(listed["metadata"]["resourceVersion"]) > 0


async def test_listed_resource_version_is_the_current_one(inproc_api: Any) -> None:
    client = inproc_api.client
    await client.create(PODS, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                        namespace="default")  # fmt: skip
    patched = await client.patch(PODS, "p", {"metadata": {"labels": {"x": "y"}}}, namespace="default")
    listed = await _get(f"{inproc_api.url}/api/v1/namespaces/default/pods")
    (item,) = listed["items"]
    assert item["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    assert item["metadata"]["labels"] == {"x": "y"}
    assert item == await client.get(PODS, "p", namespace="default")
