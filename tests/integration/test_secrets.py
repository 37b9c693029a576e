"""Secrets as Kubernetes does them, on a real `kubelite server` with encryption at rest.

The server runs with ``--encryption-provider-config`` (aesgcm first, identity second); every test
that writes a Secret also scans the SQLite files for its plaintext.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.api.registry import lookup
from kubelite.client import ApiClient
from kubelite.client.rest import ApiError
from tests.conftest import ServerProcess, start_server

SECRETS = lookup("secrets")
NS = "default"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unique(tag: str) -> str:
    """A plaintext no other write could produce, so finding it on disk means a leak."""
    return f"{tag}-{os.urandom(12).hex()}"


def db_bytes(server: ServerProcess) -> bytes:
    """state.db and its -wal/-shm files: every byte SQLite wrote."""
    files = sorted(p for p in server.data_dir.iterdir() if p.name.startswith("state.db"))
    assert files, f"no SQLite files in {server.data_dir}"
    return b"".join(p.read_bytes() for p in files)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("secrets")
    config = root / "encryption.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                {"aesgcm": {"keys": [{"name": "key1", "secret": base64.b64encode(os.urandom(32)).decode()}]}},
                {"identity": {}},
            ],
        }],
    }))  # fmt: skip
    proc = start_server(root / "data", extra_args=["--controllers", "", "--encryption-provider-config", str(config)])
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[ApiClient]:
    async with ApiClient(server.url) as c:
        yield c


def secret(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, **fields}


async def invalid(coro: Any) -> str:
    """The message of the 422 Invalid the write must fail with."""
    with pytest.raises(ApiError) as err:
        await coro
    assert (err.value.code, err.value.reason) == (422, "Invalid"), err.value
    return err.value.message


async def test_string_data_is_merged_into_data_and_never_stored(server: ServerProcess, client: ApiClient) -> None:
    password = unique("pw")
    created = await client.create(SECRETS, secret(
        "db", data={"user": b64("overridden"), "host": b64("db.local")},
        stringData={"user": "admin", "password": password},
    ))  # fmt: skip
    want = {"user": b64("admin"), "host": b64("db.local"), "password": b64(password)}
    assert created["data"] == want and "stringData" not in created
    assert created["type"] == "Opaque"
    got = await client.get(SECRETS, "db", NS)
    assert got["data"] == want and "stringData" not in got
    listed = await client.list(SECRETS, NS)
    assert [s["data"] for s in listed["items"] if s["metadata"]["name"] == "db"] == [want]
    on_disk = db_bytes(server)
    assert b"k8s:enc:aesgcm:v1:key1:" in on_disk
    assert password.encode() not in on_disk and b64(password).encode() not in on_disk


async def test_update_and_patch_merge_string_data(server: ServerProcess, client: ApiClient) -> None:
    first, second = unique("first"), unique("second")
    obj = await client.create(SECRETS, secret("rotating", stringData={"token": first}))
    obj["stringData"] = {"token": second, "extra": "x"}
    replaced = await client.replace(SECRETS, obj)
    assert replaced["data"] == {"token": b64(second), "extra": b64("x")} and "stringData" not in replaced
    patched = await client.patch(SECRETS, "rotating", {"stringData": {"extra": "y"}}, NS)
    assert patched["data"] == {"token": b64(second), "extra": b64("y")} and "stringData" not in patched
    assert (await client.get(SECRETS, "rotating", NS))["data"] == patched["data"]
    on_disk = db_bytes(server)
    assert first.encode() not in on_disk and second.encode() not in on_disk


async def test_watch_returns_decrypted_objects(client: ApiClient) -> None:
    listed = await client.list(SECRETS, NS)
    value = unique("watched")
    await client.create(SECRETS, secret("watched", stringData={"v": value}))
    events = client.watch(SECRETS, NS, resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=5)
    async with contextlib.aclosing(events):
        async for event in events:
            if event.type == "ADDED" and event.object["metadata"]["name"] == "watched":
                assert event.object["data"] == {"v": b64(value)}
                break
        else:
            pytest.fail("the watch ended without the ADDED event")


async def test_secret_validation(client: ApiClient) -> None:
    msg = await invalid(client.create(SECRETS, secret("bad-b64", data={"key.pem": "not base64!"})))
    assert "data[key.pem]: Invalid value" in msg and "illegal base64 data" in msg
    msg = await invalid(client.create(SECRETS, secret("bad-key", stringData={"a/b": "x"})))
    assert "data[a/b]" in msg
    msg = await invalid(client.create(SECRETS, secret("big", stringData={"big": "x" * (1024 * 1024 + 1)})))
    assert "data: Too long" in msg
    msg = await invalid(client.create(SECRETS, secret("tls", type="kubernetes.io/tls", stringData={"tls.crt": "c"})))
    assert "data[tls.key]: Required value" in msg
    msg = await invalid(client.create(SECRETS, secret(
        "docker", type="kubernetes.io/dockerconfigjson", stringData={".dockerconfigjson": "{not json"})))
    assert "data[.dockerconfigjson]: Invalid value" in msg and "not json" not in msg
    msg = await invalid(client.create(SECRETS, secret("sa-token", type="kubernetes.io/service-account-token")))
    assert "metadata.annotations[kubernetes.io/service-account.name]: Required value" in msg
    ok = await client.create(SECRETS, secret("basic", type="kubernetes.io/basic-auth", stringData={"username": "u"}))
    assert ok["data"] == {"username": b64("u")}


async def test_type_and_immutable_data_cannot_change(client: ApiClient) -> None:
    await client.create(SECRETS, secret("typed", stringData={"a": "1"}))
    msg = await invalid(client.patch(SECRETS, "typed", {"type": "kubernetes.io/basic-auth"}, NS))
    assert "type: Invalid value" in msg and "field is immutable" in msg
    await client.create(SECRETS, secret("frozen", immutable=True, stringData={"a": "1"}))
    msg = await invalid(client.patch(SECRETS, "frozen", {"stringData": {"a": "2"}}, NS))
    assert "data: Forbidden: field is immutable when `immutable` is set" in msg
    msg = await invalid(client.patch(SECRETS, "frozen", {"immutable": False}, NS))
    assert "immutable: Forbidden" in msg
    # Re-sending the same value is not a change; metadata stays writable.
    same = await client.patch(SECRETS, "frozen", {"stringData": {"a": "1"}, "metadata": {"labels": {"l": "v"}}}, NS)
    assert same["data"] == {"a": b64("1")} and same["metadata"]["labels"] == {"l": "v"}


def kubectl(server: ServerProcess, *args: str) -> str:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(server.kubeconfig), *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl {' '.join(args)} failed:\n{out.stderr}"
    return out.stdout


def test_kubectl_create_secret_generic(server: ServerProcess) -> None:
    password = unique("kubectl")
    created = kubectl(server, "create", "secret", "generic", "from-kubectl", "-n", NS,
                      f"--from-literal=password={password}", "--from-literal=user=admin")  # fmt: skip
    assert created.strip() == "secret/from-kubectl created"
    live = yaml.safe_load(kubectl(server, "get", "secret", "from-kubectl", "-n", NS, "-o", "yaml"))
    assert live["data"] == {"password": b64(password), "user": b64("admin")}
    assert live["type"] == "Opaque" and "stringData" not in live
    table = kubectl(server, "get", "secrets", "from-kubectl", "-n", NS).splitlines()
    assert table[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert table[1].split()[:3] == ["from-kubectl", "Opaque", "2"]
    decoded = kubectl(server, "get", "secret", "from-kubectl", "-n", NS, "-o", "jsonpath={.data.password}")
    assert base64.b64decode(decoded).decode() == password
    assert password.encode() not in db_bytes(server)
    # kubectl apply with stringData: stored as data, the plaintext only in kubectl's own annotation
    # (as with Kubernetes), which the encryption covers too.
    applied = unique("applied")
    manifest = json.dumps(secret("applied", stringData={"k": applied}))
    subprocess.run(["kubectl", "--kubeconfig", str(server.kubeconfig), "apply", "-f", "-"], input=manifest,
                   capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    live = yaml.safe_load(kubectl(server, "get", "secret", "applied", "-n", NS, "-o", "yaml"))
    assert live["data"] == {"k": b64(applied)} and "stringData" not in live
    assert applied.encode() not in db_bytes(server)


def test_server_refuses_a_bad_encryption_config(tmp_path: Path) -> None:
    config = tmp_path / "encryption.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"],
                       "providers": [{"aesgcm": {"keys": [{"name": "k", "secret": b64("too short")}]}}]}],
    }))  # fmt: skip
    with pytest.raises(RuntimeError, match=r"secret: must decode to 16, 24 or 32 bytes, got 9"):
        start_server(tmp_path / "data", extra_args=["--controllers", "", "--encryption-provider-config", str(config)])
