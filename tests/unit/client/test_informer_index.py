"""The informer's namespace index (list(namespace)) and the controllers' controller-uid index stay
right through adds, updates, deletes and relists, against a real API server."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelite.api.registry import resource
from kubelite.client.informer import Informer
from kubelite.controllers.podutil import CONTROLLER_UID_INDEX, claim_candidates, controller_uid_index
from tests.helpers import eventually

CONFIGMAPS = resource("", "configmaps")
NAMESPACES = resource("", "namespaces")


def _names(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


async def test_namespaced_list_and_controller_index_follow_the_cache(inproc_api: Any) -> None:
    client = inproc_api.client
    for ns in ("a", "b"):
        await client.create(NAMESPACES, {"metadata": {"name": ns}})
    owner = {"metadata": {"namespace": "a", "name": "owner", "uid": "u-1"}}
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "u-1", "controller": True}
    await client.create(CONFIGMAPS, {"metadata": {"name": "a1"}}, namespace="a")
    await client.create(CONFIGMAPS, {"metadata": {"name": "owned", "ownerReferences": [ref]}}, namespace="a")
    await client.create(CONFIGMAPS, {"metadata": {"name": "b1"}}, namespace="b")

    inf = Informer(client, CONFIGMAPS)
    inf.add_index(CONTROLLER_UID_INDEX, controller_uid_index)
    task = asyncio.create_task(inf.run())
    try:
        await inf.wait_synced()
        assert "a1" in _names(inf.list("a")) and "owned" in _names(inf.list("a"))
        assert "b1" in _names(inf.list("b")) and "a1" not in _names(inf.list("b"))
        assert inf.list("nowhere") == []
        # The owned object and a's orphans (kube-root-ca.crt, a1), never b's.
        assert "b1" not in _names(claim_candidates(inf, owner))
        assert {"owned", "a1"} <= set(_names(claim_candidates(inf, owner)))

        await client.create(CONFIGMAPS, {"metadata": {"name": "a2"}}, namespace="a")
        await client.delete(CONFIGMAPS, "a1", "a")
        await client.patch(CONFIGMAPS, "owned", {"metadata": {"ownerReferences": None}}, "a", patch_type="merge")

        async def moved() -> bool:
            names = _names(inf.list("a"))
            return "a2" in names and "a1" not in names and not inf.by_index(CONTROLLER_UID_INDEX, "u-1")

        await eventually(moved, timeout=10, what="the add, delete and release in the indexes")
        assert "owned" in _names(inf.by_index(CONTROLLER_UID_INDEX, "orphan:a"))  # released: an orphan now
        await client.delete(CONFIGMAPS, "b1", "b")

        async def b1_gone() -> bool:
            return "b1" not in _names(inf.list("b"))

        await eventually(b1_gone, timeout=10, what="b1 gone from b's list")
        everything = inf.list()
        for ns in {o["metadata"]["namespace"] for o in everything}:
            assert _names(inf.list(ns)) == _names([o for o in everything if o["metadata"]["namespace"] == ns])
    finally:
        inf.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

