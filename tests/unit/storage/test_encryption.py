"""Encryption at rest: the EncryptedStore wrapper over the memory and sqlite drivers.

The whole storage conformance suite runs again through the wrapper with every key encrypted, so
the wrapper is held to the same contract as a driver; the tests below it check what is stored.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from kubelite.storage import EventType, RevisionMismatchError, StorageError, Store, open_store
from kubelite.storage.encryption import (
    AesGcmKey,
    EncryptionConfig,
    EncryptionConfigError,
    EncryptionRule,
    Provider,
    load_encryption_config,
    wrap_store,
)
from tests.unit.storage import test_conformance as conformance

SECRETS = "/registry/core/secrets/"
PLAINTEXT = b"hunter2-correct-horse-battery-staple"
KEY1 = os.urandom(32)
KEY2 = os.urandom(32)


def aesgcm(*keys: tuple[str, bytes]) -> Provider:
    return Provider("aesgcm", tuple(AesGcmKey(n, s) for n, s in keys))


def config(*providers: Provider, prefixes: tuple[str, ...] = (SECRETS,)) -> EncryptionConfig:
    return EncryptionConfig((EncryptionRule(prefixes, providers),))


def driver_url(name: str, tmp_path: Path) -> str:
    return "memory://" if name == "memory" else f"sqlite://{tmp_path}/state.db"


# ---- the conformance suite, through the wrapper, with every key encrypted ----------------------


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = wrap_store(open_store(driver_url(request.param, tmp_path)), config(aesgcm(("k", KEY1)), prefixes=("/",)))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


for _name, _fn in vars(conformance).items():
    if _name.startswith("test_") and "store" in inspect.signature(_fn).parameters:
        globals()[_name] = _fn


# ---- what is stored ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
async def inner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The bare driver: tests wrap it themselves and look at the bytes it holds."""
    s = open_store(driver_url(request.param, tmp_path))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def test_round_trip_and_only_configured_prefixes_are_encrypted(inner: Store) -> None:
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1)), Provider("identity")))
    rev = await enc.create(SECRETS + "default/db", PLAINTEXT)
    await enc.create("/registry/core/configmaps/default/cm", PLAINTEXT)
    kv = await enc.get(SECRETS + "default/db")
    assert kv is not None and kv.value == PLAINTEXT and kv.mod_revision == rev
    await enc.update(SECRETS + "default/db", PLAINTEXT + b"-2", rev)
    listed = await enc.range(SECRETS)
    assert [kv.value for kv in listed.kvs] == [PLAINTEXT + b"-2"]
    _, old = await enc.delete(SECRETS + "default/db")
    assert old.value == PLAINTEXT + b"-2"
    cm = await inner.get("/registry/core/configmaps/default/cm")
    assert cm is not None and cm.value == PLAINTEXT  # not listed in the config: stored as is


async def test_stored_value_is_aesgcm_with_no_plaintext(inner: Store) -> None:
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    await enc.create(SECRETS + "default/a", PLAINTEXT)
    await enc.create(SECRETS + "default/b", PLAINTEXT)
    a, b = await inner.get(SECRETS + "default/a"), await inner.get(SECRETS + "default/b")
    assert a is not None and b is not None
    assert a.value.startswith(b"k8s:enc:aesgcm:v1:key1:")
    assert PLAINTEXT not in a.value
    # A fresh nonce per write: equal plaintexts never give equal ciphertexts.
    assert a.value != b.value


def sqlite_files_bytes(directory: Path) -> bytes:
    """state.db and its -wal/-shm companions: everything SQLite put on disk."""
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.name.startswith("state.db"))


async def test_sqlite_file_never_holds_the_plaintext(tmp_path: Path) -> None:
    inner = open_store(f"sqlite://{tmp_path}/state.db")
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    await enc.start()
    rev = await enc.create(SECRETS + "default/db", PLAINTEXT)
    await enc.update(SECRETS + "default/db", PLAINTEXT + b"-v2", rev)
    await enc.create("/registry/core/configmaps/default/cm", b"visible-marker")
    await enc.close()
    on_disk = sqlite_files_bytes(tmp_path)
    assert b"visible-marker" in on_disk  # the scan does see what the driver wrote
    assert b"k8s:enc:aesgcm:v1:key1:" in on_disk
    assert PLAINTEXT not in on_disk


async def test_watch_events_and_prev_kv_are_decrypted(inner: Store) -> None:
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    key = SECRETS + "default/w"
    watch = await enc.watch(SECRETS, 0)
    try:
        r1 = await enc.create(key, b"one")
        r2 = await enc.update(key, b"two", r1)
        r3, _ = await enc.delete(key)
        events = await conformance.collect(watch, r3)
    finally:
        await watch.close()
    assert [(e.type, e.kv.value) for e in events] == [
        (EventType.PUT, b"one"),
        (EventType.PUT, b"two"),
        (EventType.DELETE, b"two"),  # a DELETE carries the value the key held
    ]
    assert [e.revision for e in events] == [r1, r2, r3]
    assert [e.prev_kv.value if e.prev_kv else None for e in events] == [None, b"one", b"two"]


async def test_lost_compare_and_swap_returns_the_current_value_decrypted(inner: Store) -> None:
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    key = SECRETS + "default/cas"
    r1 = await enc.create(key, b"first")
    await enc.update(key, b"second", r1)
    with pytest.raises(RevisionMismatchError) as err:
        await enc.update(key, b"third", r1)
    assert err.value.current is not None and err.value.current.value == b"second"
    with pytest.raises(RevisionMismatchError) as err:
        await enc.delete(key, r1)
    assert err.value.current is not None and err.value.current.value == b"second"


async def test_rotation_old_key_reads_new_key_writes_then_reencrypt(inner: Store) -> None:
    key_a, key_b = SECRETS + "default/a", SECRETS + "default/b"
    old = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    await old.create(key_a, b"written-with-key1")
    # Step 2 of the rotation: key2 first, key1 still configured for reads.
    rotated = wrap_store(inner, config(aesgcm(("key2", KEY2), ("key1", KEY1))))
    a = await rotated.get(key_a)
    assert a is not None and a.value == b"written-with-key1"
    await rotated.create(key_b, b"written-with-key2")
    raw_b = await inner.get(key_b)
    assert raw_b is not None and raw_b.value.startswith(b"k8s:enc:aesgcm:v1:key2:")
    # Without key1 the old value cannot be read, and the error says why.
    key2_only = wrap_store(inner, config(aesgcm(("key2", KEY2))))
    with pytest.raises(StorageError, match=r"key 'key1'.*not in the encryption provider config"):
        await key2_only.get(key_a)
    # Step 3: rewrite; afterwards key1 can be dropped. A value no key opens is skipped, not fatal.
    await wrap_store(inner, config(aesgcm(("lost", KEY2)))).create(SECRETS + "default/c", b"lost")
    assert await rotated.reencrypt() == 1
    assert await rotated.reencrypt() == 0
    await inner.delete(SECRETS + "default/c")
    listed = await key2_only.range(SECRETS)
    assert [kv.value for kv in listed.kvs] == [b"written-with-key1", b"written-with-key2"]


async def test_plaintext_written_before_encryption_reads_and_is_reencrypted(inner: Store) -> None:
    key = SECRETS + "default/legacy"
    await inner.create(key, PLAINTEXT)
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    kv = await enc.get(key)
    assert kv is not None and kv.value == PLAINTEXT
    assert await enc.reencrypt() == 1
    raw = await inner.get(key)
    assert raw is not None and PLAINTEXT not in raw.value
    # Turning encryption off: identity first, aesgcm kept for reads, then rewrite to plaintext.
    off = wrap_store(inner, config(Provider("identity"), aesgcm(("key1", KEY1))))
    assert await off.reencrypt() == 1
    raw = await inner.get(key)
    assert raw is not None and raw.value == PLAINTEXT


async def test_tampered_ciphertext_is_a_storage_error(inner: Store) -> None:
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    key = SECRETS + "default/t"
    await enc.create(key, PLAINTEXT)
    raw = await inner.get(key)
    assert raw is not None
    flipped = raw.value[:-1] + bytes([raw.value[-1] ^ 1])
    await inner.update(key, flipped, raw.mod_revision)
    with pytest.raises(StorageError, match="authentication failed"):
        await enc.get(key)
    with pytest.raises(StorageError, match="authentication failed"):
        await enc.range(SECRETS)


async def test_value_copied_to_another_key_does_not_decrypt(inner: Store) -> None:
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    await enc.create(SECRETS + "default/source", PLAINTEXT)
    raw = await inner.get(SECRETS + "default/source")
    assert raw is not None
    await inner.create(SECRETS + "kube-system/target", raw.value)
    with pytest.raises(StorageError, match="copied from another key"):
        await enc.get(SECRETS + "kube-system/target")


async def test_watch_with_an_undecryptable_value_raises_storage_error(inner: Store) -> None:
    enc = wrap_store(inner, config(aesgcm(("key1", KEY1))))
    watch = await enc.watch(SECRETS, 0)
    try:
        other = wrap_store(inner, config(aesgcm(("key1", KEY2))))  # same name, different secret
        await other.create(SECRETS + "default/x", PLAINTEXT)
        with pytest.raises(StorageError, match="authentication failed"):
            async with asyncio.timeout(5):
                await anext(watch)
    finally:
        await watch.close()


# ---- the config file ---------------------------------------------------------------------------


def write_config(tmp_path: Path, providers: object, resources: object = ("secrets",)) -> Path:
    path = tmp_path / "encryption.yaml"
    doc = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": providers}],  # type: ignore[call-overload]
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_load_kubernetes_format(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        [{"aesgcm": {"keys": [{"name": "key2", "secret": b64(KEY2)}, {"name": "key1", "secret": b64(KEY1[:16])}]}},
         {"identity": {}}],
        ["secrets", "configmaps", "*.apps"],
    )
    cfg = load_encryption_config(path)
    (rule,) = cfg.rules
    assert rule.prefixes[:2] == ("/registry/core/secrets/", "/registry/core/configmaps/")
    assert "/registry/apps/deployments/" in rule.prefixes
    assert [p.kind for p in rule.providers] == ["aesgcm", "identity"]
    assert [(k.name, k.secret) for k in rule.providers[0].keys] == [("key2", KEY2), ("key1", KEY1[:16])]
    assert b64(KEY2) not in repr(cfg) and repr(KEY2) not in repr(cfg)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("resources: [\n  - {", "invalid YAML at line"),
        ({"kind": "EncryptionConfig"}, "apiVersion/kind must be apiserver.config.k8s.io/v1 EncryptionConfiguration"),
        ([{"aesgcm": {"keys": [{"name": "k", "secret": b64(b"short")}]}}],
         "resources[0].providers[0].aesgcm.keys[0].secret: must decode to 16, 24 or 32 bytes, got 5"),
        ([{"aesgcm": {"keys": [{"name": "k", "secret": "not base64!"}]}}],
         "resources[0].providers[0].aesgcm.keys[0].secret: must be base64"),
        ([{"identity": {}}, {"secretbox": {"keys": [{"name": "k", "secret": b64(KEY1)}]}}],
         "resources[0].providers[1]: unsupported provider 'secretbox'"),
        ([{"aesgcm": {"keys": []}}], "resources[0].providers[0].aesgcm.keys: must be a non-empty list"),
        ([{"aesgcm": {"keys": [{"name": "a:b", "secret": b64(KEY1)}]}}], "keys[0].name: must be a non-empty name"),
        ([{"aesgcm": {"keys": [{"name": "k", "secret": b64(KEY1)}, {"name": "k", "secret": b64(KEY2)}]}}],
         "keys[1].name: duplicate key name 'k'"),
        ("unknown-resource", "resources[0].resources[0]: unknown resource 'secret'"),
    ],
    ids=["missing", "bad-yaml", "wrong-kind", "short-key", "not-base64", "unknown-provider", "no-keys",
         "colon-in-name", "duplicate-name", "unknown-resource"],
)
def test_config_errors_are_one_line_and_name_the_problem(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "encryption.yaml"
    if isinstance(content, list):
        path = write_config(tmp_path, content)
    elif content == "unknown-resource":
        path = write_config(tmp_path, [{"identity": {}}], ["secret"])
    elif isinstance(content, dict):
        path.write_text(yaml.safe_dump(content))
    elif isinstance(content, str):
        path.write_text(content)
    with pytest.raises(EncryptionConfigError) as err:
        load_encryption_config(path)
    text = str(err.value)
    assert message in text
    assert str(path) in text and "\n" not in text
    assert b64(KEY1) not in text and b64(KEY2) not in text

