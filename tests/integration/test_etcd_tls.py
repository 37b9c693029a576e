"""The etcd driver over TLS: a real etcd with client-certificate auth, certificates from kubelite's etcd PKI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelite.auth.pki import ensure_etcd_pki, issue, new_ca
from kubelite.storage import StorageError, UnavailableError, open_store
from kubelite.storage.interface import EventType
from tests.etcd_cluster import EtcdCluster, EtcdTLS, start_cluster


@pytest.fixture(scope="module")
def etcd_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    base = tmp_path_factory.mktemp("etcd-tls")
    cluster = start_cluster(base / "etcd", 1, tls=EtcdTLS.generate(base / "pki"))
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_plain_http_gets_nowhere(etcd_tls: EtcdCluster) -> None:
    assert etcd_tls.url.startswith("etcds://127.0.0.1:")
    store = open_store(f"etcd://{etcd_tls.endpoints}?timeout=1")
    with pytest.raises(UnavailableError):
        await store.start()
    await store.close()


async def test_store_works_over_tls_with_the_client_cert(etcd_tls: EtcdCluster) -> None:
    store = open_store(etcd_tls.namespaced_url())
    await store.start()
    try:
        watch = await store.watch("/registry/", 0)
        rev = await store.create("/registry/configmaps/default/a", b"one")
        kv = await store.get("/registry/configmaps/default/a")
        assert kv is not None and kv.value == b"one" and kv.mod_revision == rev
        rev2 = await store.update("/registry/configmaps/default/a", b"two", rev)
        events = await anext(watch)
        assert [(e.type, e.kv.value) for e in events][:1] == [(EventType.PUT, b"one")]
        assert (await store.range("/registry/")).kvs[0].mod_revision == rev2
        lease = await store.grant_lease(5)
        await store.keepalive_lease(lease)
        await watch.close()
    finally:
        await store.close()


async def test_without_a_client_cert_etcd_refuses_at_once(etcd_tls: EtcdCluster) -> None:
    store = open_store(etcd_tls.url_with(client_cert=False) + "&timeout=5")
    start = time.monotonic()
    with pytest.raises(UnavailableError, match=r"TLS handshake .* failed.*needs cert= and key="):
        await store.start()
    # A configuration error, reported without waiting out the 5 s outage timeout.
    assert time.monotonic() - start < 4
    await store.close()


async def test_a_client_cert_from_another_ca_is_refused(etcd_tls: EtcdCluster, tmp_path: Path) -> None:
    # Same subject as the real client certificate, signed by a CA etcd does not trust.
    intruder = issue(new_ca("kubelite-etcd-ca"), "kube-apiserver-etcd-client", client=True)
    (tmp_path / "c.crt").write_bytes(intruder.cert_pem)
    (tmp_path / "c.key").write_bytes(intruder.key_pem)
    assert etcd_tls.tls is not None
    url = f"etcds://{etcd_tls.endpoints}?cacert={etcd_tls.tls.cacert}&cert={tmp_path}/c.crt&key={tmp_path}/c.key"
    store = open_store(url)
    with pytest.raises(UnavailableError, match=r"TLS handshake .* failed.*check cacert=, cert= and key="):
        await store.start()
    await store.close()


async def test_the_server_is_verified_against_cacert(etcd_tls: EtcdCluster, tmp_path: Path) -> None:
    assert etcd_tls.tls is not None
    other_ca = tmp_path / "other"
    ensure_etcd_pki(other_ca, "x", [])
    tls = etcd_tls.tls
    url = f"etcds://{etcd_tls.endpoints}?cacert={other_ca}/etcd/ca.crt&cert={tls.client_cert}&key={tls.client_key}"
    store = open_store(url)
    with pytest.raises(UnavailableError, match="certificate verify failed"):
        await store.start()
    await store.close()


async def test_unloadable_tls_files_fail_start(etcd_tls: EtcdCluster, tmp_path: Path) -> None:
    store = open_store(f"etcds://{etcd_tls.endpoints}?cacert={tmp_path}/missing.crt")
    with pytest.raises(StorageError, match=r"etcd TLS files \(cacert=.*missing\.crt\) could not be loaded"):
        await store.start()
    await store.close()
