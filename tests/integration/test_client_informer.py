"""kubelite's own client (ApiClient, watch, Informer) against a real `kubelite server` process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.registry import lookup
from kubelite.client import ApiClient, ApiError, ClientConfig, Informer, WatchEvent
from kubelite.client.rest import ApiConnectionError
from tests.conftest import ServerProcess, free_port, start_server

CM = lookup("configmaps")
NS = lookup("namespaces")
PODS = lookup("pods")
DEPLOY = lookup("deployments")


async def wait_until(cond: Callable[[], bool], limit: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


@pytest.fixture
async def api(apiserver: ServerProcess) -> AsyncIterator[ApiClient]:
    async with ApiClient.from_kubeconfig(apiserver.kubeconfig) as client:
        yield client


@pytest.fixture
async def ns(api: ApiClient) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    await api.create(NS, {"metadata": {"name": name}})
    return name


class Recorder:
    """Event handlers that record what they saw, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_add(self, obj: dict[str, Any]) -> None:
        self.events.append(("add", obj["metadata"]["name"]))

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.events.append(("update", new["metadata"]["name"]))

    def on_delete(self, obj: dict[str, Any]) -> None:
        self.events.append(("delete", obj["metadata"]["name"]))


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.wait_synced(), 10)
        yield task
    finally:
        informer.stop()
        await asyncio.wait_for(task, 5)


# --- ApiClient ---------------------------------------------------------------------------------


async def test_crud_and_errors(api: ApiClient, ns: str) -> None:
    created = await api.create(CM, cm("one", {"app": "a"}, k="v"), namespace=ns)
    assert created["metadata"]["uid"] and isinstance(created["metadata"]["resourceVersion"], str)
    assert (await api.get(CM, "one", ns))["data"] == {"k": "v"}

    with pytest.raises(ApiError) as exists:
        await api.create(CM, cm("one"), namespace=ns)
    assert exists.value.code == 409 and exists.value.reason == "AlreadyExists"
    assert exists.value.status["kind"] == "Status"

    updated = await api.replace(CM, {**created, "data": {"k": "v2"}})
    assert updated["data"] == {"k": "v2"}
    with pytest.raises(ApiError) as conflict:  # the old resourceVersion is stale now
        await api.replace(CM, {**created, "data": {"k": "v3"}})
    assert conflict.value.code == 409 and conflict.value.reason == "Conflict"

    merged = await api.patch(CM, "one", {"data": {"x": "1", "k": None}}, namespace=ns)
    assert merged["data"] == {"x": "1"}
    patched = await api.patch(CM, "one", [{"op": "add", "path": "/data/y", "value": "2"}], ns, patch_type="json")
    assert patched["data"] == {"x": "1", "y": "2"}

    await api.delete(CM, "one", ns)
    with pytest.raises(ApiError) as gone:
        await api.get(CM, "one", ns)
    assert gone.value.code == 404 and gone.value.reason == "NotFound"
    assert '"one" not found' in gone.value.message


async def test_list_selectors_and_all_namespaces(api: ApiClient, ns: str) -> None:
    await api.create(CM, cm("a", {"tier": "web"}), namespace=ns)
    await api.create(CM, cm("b", {"tier": "db"}), namespace=ns)
    listed = await api.list(CM, ns)
    assert listed["kind"] == "ConfigMapList" and isinstance(listed["metadata"]["resourceVersion"], str)
    assert {i["metadata"]["name"] for i in listed["items"]} >= {"a", "b"}
    web = await api.list(CM, ns, label_selector="tier in (web,cache)")
    assert [i["metadata"]["name"] for i in web["items"]] == ["a"]
    by_name = await api.list(CM, ns, field_selector="metadata.name=b")
    assert [i["metadata"]["name"] for i in by_name["items"]] == ["b"]
    everywhere = await api.list(CM, None, field_selector=f"metadata.namespace={ns}")
    assert {i["metadata"]["name"] for i in everywhere["items"]} == {"a", "b", "kube-root-ca.crt"}
    with pytest.raises(ApiError) as bad:
        await api.list(CM, ns, label_selector="tier in (web")
    assert bad.value.code == 400


async def test_status_subresource_and_delete_collection(api: ApiClient, ns: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    created = await api.create(PODS, pod, namespace=ns)
    created["status"] = {"phase": "Running"}
    updated = await api.replace_status(PODS, created)
    assert updated["status"]["phase"] == "Running"
    await api.create(CM, cm("x", {"del": "yes"}), namespace=ns)
    await api.create(CM, cm("y", {"del": "no"}), namespace=ns)
    await api.delete_collection(CM, ns, label_selector="del=yes")
    left = {i["metadata"]["name"] for i in (await api.list(CM, ns))["items"]}
    assert "x" not in left and "y" in left


async def test_failover_to_next_server(apiserver: ServerProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with ApiClient(ClientConfig(servers=[dead, apiserver.url])) as client:
        assert (await client.list(NS))["kind"] == "NamespaceList"
        assert client.server == apiserver.url
        await client.list(NS)  # keeps using the server that answered
        assert client.server == apiserver.url


async def test_no_server_reachable_is_a_connection_error() -> None:
    async with ApiClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ApiConnectionError, match="cannot reach any API server"):
            await client.list(NS)


async def test_raw_request(api: ApiClient) -> None:
    version = await api.request("GET", "/version")
    assert "gitVersion" in version


# --- watch -------------------------------------------------------------------------------------


async def test_watch_streams_changes_in_order(api: ApiClient, ns: str) -> None:
    rv = (await api.list(CM, ns))["metadata"]["resourceVersion"]
    seen: list[WatchEvent] = []

    async def consume() -> None:
        async with contextlib.aclosing(api.watch(CM, ns, resource_version=rv, timeout_seconds=30)) as events:
            async for ev in events:
                if ev.type != "BOOKMARK":
                    seen.append(ev)
                if len(seen) == 3:
                    return

    task = asyncio.create_task(consume())
    await api.create(CM, cm("w", k="1"), namespace=ns)
    await api.patch(CM, "w", {"data": {"k": "2"}}, ns)
    await api.delete(CM, "w", ns)
    await asyncio.wait_for(task, 10)
    assert [(e.type, e.object["metadata"]["name"]) for e in seen] == [
        ("ADDED", "w"),
        ("MODIFIED", "w"),
        ("DELETED", "w"),
    ]
    assert seen[1].object["data"] == {"k": "2"}


async def test_watch_ends_at_server_timeout(api: ApiClient, ns: str) -> None:
    rv = (await api.list(CM, ns))["metadata"]["resourceVersion"]
    loop = asyncio.get_running_loop()
    start = loop.time()
    events = [e async for e in api.watch(CM, ns, resource_version=rv, timeout_seconds=1)]
    assert all(e.type == "BOOKMARK" for e in events)
    assert 0.5 < loop.time() - start < 10


# --- Informer ----------------------------------------------------------------------------------


async def test_informer_cache_handlers_and_index(api: ApiClient, ns: str) -> None:
    await api.create(CM, cm("pre", {"app": "x"}), namespace=ns)
    informer = Informer(api, CM, namespace=ns, watch_timeout=1)  # short watches: exercises re-watching
    informer.add_index("app", lambda o: [(o["metadata"].get("labels") or {}).get("app", "")])
    rec = Recorder()
    informer.add_handler(rec.on_add, rec.on_update, rec.on_delete)
    assert not informer.has_synced
    async with running(informer):
        assert informer.has_synced
        assert rec.events == [("add", "kube-root-ca.crt"), ("add", "pre")]
        pre = informer.get(ns, "pre")
        assert pre is not None and pre["kind"] == "ConfigMap"

        late = Recorder()  # a handler added after sync is told about what is cached
        informer.add_handler(late.on_add)
        assert late.events == [("add", "kube-root-ca.crt"), ("add", "pre")]

        await asyncio.sleep(1.5)  # past the first watch's timeout: events must still arrive
        await api.create(CM, cm("new", {"app": "y"}), namespace=ns)
        await api.patch(CM, "pre", {"metadata": {"labels": {"app": "y"}}}, ns)
        await api.delete(CM, "new", ns)
        await wait_until(lambda: len(rec.events) == 5, what="informer events")
        assert rec.events == [("add", "kube-root-ca.crt"), ("add", "pre"), ("add", "new"), ("update", "pre"), ("delete", "new")]
        assert informer.get(ns, "new") is None
        assert [o["metadata"]["name"] for o in informer.by_index("app", "y")] == ["pre"]
        assert informer.by_index("app", "x") == []
        # The delete came last, so the informer's resourceVersion is past the surviving object's.
        pre_rv = (await api.get(CM, "pre", ns))["metadata"]["resourceVersion"]
        assert informer.resource_version is not None and int(informer.resource_version) > int(pre_rv)


async def test_informer_label_selector_and_resync(api: ApiClient, ns: str) -> None:
    await api.create(CM, cm("mine", {"team": "a"}), namespace=ns)
    await api.create(CM, cm("theirs", {"team": "b"}), namespace=ns)
    informer = Informer(api, CM, namespace=ns, label_selector="team=a", resync_period=0.2)
    rec = Recorder()
    informer.add_handler(rec.on_add, rec.on_update, rec.on_delete)
    async with running(informer):
        assert [o["metadata"]["name"] for o in informer.list()] == ["mine"]
        # Resync replays the cache as updates, so level-based controllers re-check everything.
        await wait_until(lambda: ("update", "mine") in rec.events, what="resync")
        assert all(name == "mine" for _, name in rec.events)


async def test_informer_relists_after_outage_and_emits_the_difference(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server goes away; while the informer is disconnected, objects change and history is
    compacted; on reconnect the informer gets 410, lists again, and reports exactly the diff."""
    data = tmp_path / "server"
    fast_compaction = ["--compaction-interval", "0.1", "--compaction-retain", "0"]
    port = free_port()
    first = start_server(data, port=port, extra_args=fast_compaction)
    try:
        async with ApiClient(first.url) as admin:
            await admin.create(NS, {"metadata": {"name": "outage"}})
            for name in ("keep", "change", "remove"):
                await admin.create(CM, cm(name), namespace="outage")
        client = ApiClient(first.url)
        informer = Informer(client, CM, namespace="outage", max_backoff=0.5)
        rec = Recorder()
        informer.add_handler(rec.on_add, rec.on_update, rec.on_delete)
        with caplog.at_level(logging.INFO, logger="kubelite.client.informer"):
            async with running(informer):
                assert sorted(e[1] for e in rec.events) == ["change", "keep", "kube-root-ca.crt", "remove"]
                rec.events.clear()
                first.stop(signal.SIGTERM)

                # Change things through a server on another port the informer does not know.
                other = start_server(data, extra_args=fast_compaction)
                try:
                    async with ApiClient(other.url) as admin:
                        await admin.patch(CM, "change", {"data": {"v": "2"}}, "outage")
                        await admin.delete(CM, "remove", "outage")
                        await admin.create(CM, cm("added"), namespace="outage")
                        await asyncio.sleep(0.5)  # several compactions: the informer's RV is gone
                finally:
                    other.stop()
                assert rec.events == []  # nothing seen while away

                again = start_server(data, port=port, extra_args=fast_compaction)
                try:
                    await wait_until(lambda: len(rec.events) == 3, limit=15, what="diff after relist")
                    assert sorted(rec.events) == [("add", "added"), ("delete", "remove"), ("update", "change")]
                    assert sorted(o["metadata"]["name"] for o in informer.list()) == ["added", "change", "keep", "kube-root-ca.crt"]
                    changed = informer.get("outage", "change")
                    assert changed is not None and changed["data"] == {"v": "2"}
                    # And the watch resumed after the relist.
                    async with ApiClient(again.url) as admin:
                        await admin.delete(CM, "keep", "outage")
                    await wait_until(lambda: ("delete", "keep") in rec.events, what="event after relist")
                finally:
                    again.stop()
        await client.close()
        assert any("expired, relisting" in r.getMessage() for r in caplog.records), "410 path not taken"
    finally:
        first.stop()


async def test_informer_on_cluster_scoped_kind(api: ApiClient) -> None:
    informer = Informer(api, NS)
    async with running(informer):
        assert informer.get(None, "default") is not None
        name = f"c-{uuid.uuid4().hex[:8]}"
        await api.create(NS, {"metadata": {"name": name}})
        await wait_until(lambda: informer.get(None, name) is not None, what="namespace in cache")
