"""`kubelite server` on a real etcd: leader election by default, Lease release, SQLite -> etcd migration.

The storage contract itself is covered by tests/unit/storage/test_conformance.py (etcd with one
and with three members); here the whole server runs on it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubelite.client import ApiClient
from kubelite.client.rest import ApiError
from kubelite.controllers.base import CONFIGMAPS, DEPLOYMENTS, LEASES, NAMESPACES, REPLICASETS, SECRETS
from kubelite.storage import UnavailableError, open_store
from kubelite.storage.etcd import parse_etcd_url
from tests.conftest import free_port, start_server
from tests.etcd_cluster import EtcdCluster, etcd_single
from tests.helpers import eventually

__all__ = ["etcd_single"]

FAST_ELECTION = [
    "--leader-elect-lease-duration", "4",
    "--leader-elect-renew-deadline", "3",
    "--leader-elect-retry-period", "0.5",
]  # fmt: skip
LEADER_LEASE_KEY = "/registry/coordination.k8s.io/leases/kube-system/kubelite-controller-manager"


def kubelite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=60)


def test_url_parsing() -> None:
    cfg = parse_etcd_url("etcds://10.0.0.1:2379,10.0.0.2/kubelite?cacert=/ca.pem&cert=/c.pem&key=/k.pem&timeout=2")
    assert cfg.endpoints == ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
    assert (cfg.prefix, cfg.timeout, cfg.cacert, cfg.cert, cfg.key) == ("/kubelite", 2.0, "/ca.pem", "/c.pem", "/k.pem")
    assert parse_etcd_url("etcd://127.0.0.1:1").endpoints == ["http://127.0.0.1:1"]
    for bad in ("etcd://", "etcd://h:1?timeout=0", "etcd://h:1?timeout=x"):
        with pytest.raises(ValueError):
            parse_etcd_url(bad)


async def test_unreachable_etcd_fails_within_the_timeout() -> None:
    store = open_store(f"etcd://127.0.0.1:{free_port()},127.0.0.1:{free_port()}?timeout=1")
    start = time.monotonic()
    with pytest.raises(UnavailableError):
        await store.start()
    assert time.monotonic() - start < 5  # bounded by the 1 s timeout, not a hang
    await store.close()


async def test_server_on_etcd_leads_by_default_and_releases_on_shutdown(
    etcd_single: EtcdCluster, tmp_path: Path
) -> None:
    url = etcd_single.namespaced_url()
    server = start_server(tmp_path, url, extra_args=FAST_ELECTION)
    client = ApiClient(server.url)
    try:
        # No --leader-elect flag: an etcd datastore turns it on.
        lease = await eventually(lambda: _get(client, LEASES, "kubelite-controller-manager", "kube-system"),
                                 timeout=10, what="the leader Lease")  # fmt: skip
        identity = lease["spec"]["holderIdentity"]
        assert re.fullmatch(r".+_[0-9a-f-]{36}", identity), identity
        assert f"started leading kube-system/kubelite-controller-manager as {identity}" in server.log()
        # The controllers run while leading: a Deployment gets its ReplicaSet.
        await client.create(DEPLOYMENTS, deployment("web", 2), "default")
        await eventually(lambda: _items(client, REPLICASETS, "default"), timeout=10, what="a ReplicaSet")
    finally:
        await client.close()
        assert server.stop(signal.SIGTERM) == 0
    # A clean shutdown gives the Lease up so a successor need not wait for it to expire.
    store = open_store(url)
    await store.start()
    try:
        kv = await store.get(LEADER_LEASE_KEY)
        assert kv is not None
        assert orjson.loads(kv.value)["spec"]["holderIdentity"] == ""
    finally:
        await store.close()
    assert "stopped leading" in server.log() and "released leader lease" in server.log()


async def test_export_from_sqlite_import_into_etcd(etcd_single: EtcdCluster, tmp_path: Path) -> None:
    source = start_server(tmp_path / "sqlite", extra_args=["--controllers", ""])
    client = ApiClient(source.url)
    try:
        await client.create(NAMESPACES, {"metadata": {"name": "shop"}})
        created = [await client.create(CONFIGMAPS, {"metadata": {"name": f"cm{i}"}, "data": {"i": str(i)}}, "shop")
                   for i in range(30)]  # fmt: skip
        created.append(await client.create(SECRETS, {"metadata": {"name": "s"}, "data": {"k": "AAEC/w=="}}, "shop"))
        created.append(await client.create(DEPLOYMENTS, deployment("web", 1), "shop"))
    finally:
        await client.close()
        source.stop()
    snapshot = tmp_path / "snap.jsonl"
    out = kubelite("datastore", "export", "--datastore-endpoint", f"sqlite:///{source.data_dir}/state.db", "-o", str(snapshot))
    assert out.returncode == 0, out.stderr
    target = etcd_single.namespaced_url()
    out = kubelite("datastore", "import", "--datastore-endpoint", target, "-i", str(snapshot))
    assert out.returncode == 0, out.stderr
    # A second import would mix two clusters' state: refused unless forced.
    again = kubelite("datastore", "import", "--datastore-endpoint", target, "-i", str(snapshot))
    assert again.returncode == 1 and "--force" in again.stderr
    forced = kubelite("datastore", "import", "--datastore-endpoint", target, "-i", str(snapshot), "--force")
    assert forced.returncode == 0, forced.stderr

    moved = start_server(tmp_path / "etcd", target, extra_args=["--controllers", ""])
    client = ApiClient(moved.url)
    try:
        for obj in created:
            rt = {"ConfigMap": CONFIGMAPS, "Secret": SECRETS, "Deployment": DEPLOYMENTS}[obj["kind"]]
            got = await client.get(rt, obj["metadata"]["name"], "shop")
            assert got["metadata"]["uid"] == obj["metadata"]["uid"]
            assert got.get("data") == obj.get("data") and got.get("spec") == obj.get("spec")
        names = sorted(c["metadata"]["name"] for c in (await client.list(CONFIGMAPS, "shop"))["items"])
        assert names == sorted([*(f"cm{i}" for i in range(30)), "kube-root-ca.crt"])
        # The imported store is a working one: writes continue on top of it.
        cm = await client.get(CONFIGMAPS, "cm0", "shop")
        cm["data"] = {"i": "changed"}
        assert (await client.replace(CONFIGMAPS, cm))["data"] == {"i": "changed"}
    finally:
        await client.close()
        moved.stop()


async def _get(client: ApiClient, rt: Any, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return await client.get(rt, name, namespace)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


async def _items(client: ApiClient, rt: Any, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.list(rt, namespace))["items"]
    return items


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }


async def test_a_quiet_watch_is_reopened_after_silence_and_loses_nothing(etcd_single: EtcdCluster) -> None:
    """A stream quiet for the idle timeout is cut (a dead member looks the same) and re-opened from
    the last revision, any number of times: this etcd sends no progress notifications."""
    import asyncio

    store = open_store(etcd_single.namespaced_url())
    await store.start()
    try:
        await store.create("/registry/idle/a", b"1")
        watch = await store.watch("/registry/idle/", 0)
        watch.idle_timeout = 0.3  # type: ignore[attr-defined]
        received: list[str] = []

        async def read() -> None:
            async for batch in watch:
                received.extend(e.kv.key for e in batch)

        task = asyncio.create_task(read())
        await asyncio.sleep(6)  # idle cuts for longer than the store's 5 s retry budget, no event in between
        await store.create("/registry/idle/b", b"2")
        await asyncio.sleep(1.0)
        await store.create("/registry/idle/c", b"3")
        async def both() -> bool:
            return len(received) >= 2

        await eventually(both, timeout=10, what="events after the idle cuts")
        assert not task.done(), task  # the watch did not give up
        assert received == ["/registry/idle/b", "/registry/idle/c"]
        task.cancel()
        await watch.close()
    finally:
        await store.close()
