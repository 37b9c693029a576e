"""Images against a REAL registry (Debian's docker-registry, Distribution 2.8) and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelite.agent.images import ImagePullError, ImageStore
from kubelite.images import RegistryNotFoundError, parse_ref
from kubelite.images.build import assemble, build_image
from kubelite.images.registry import RegistryClient, push_archive
from tests.conftest import free_port
from tests.helpers import stop_processes
from tests.integration.test_cli import _kubelite_cmd

REGISTRY_BIN = Path("/usr/bin/docker-registry")  # apt: docker-registry
REGISTRY_DATA: dict[str, Path] = {}  # registry address -> its storage root


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry on a free loopback port, storage in a temp dir; stopped by its PID."""
    assert REGISTRY_BIN.exists(), f"{REGISTRY_BIN} is missing: install the docker-registry package"
    tmp = tmp_path_factory.mktemp("registry")
    addr = f"127.0.0.1:{free_port()}"
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )
    log = (tmp / "registry.log").open("wb")
    proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{addr}/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert proc.poll() is None, f"docker-registry exited: {(tmp / 'registry.log').read_text()}"
            assert time.monotonic() < deadline, "docker-registry did not answer /v2/ within 15 s"
            time.sleep(0.05)
        REGISTRY_DATA[addr] = tmp / "data"
        yield addr
    finally:
        stop_processes(proc)
        log.close()


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("build") / "busybox.tar"
    build_image("busybox").write(path)
    return path


async def test_push_then_pull_gives_the_same_image(registry: str, busybox_tar: Path, tmp_path: Path) -> None:
    pushed = await push_archive(busybox_tar, registry)
    assert [str(p.ref) for p in pushed] == [f"{registry}/library/busybox:latest"]
    store = ImageStore(tmp_path / "store")
    image = await store.ensure("busybox", "IfNotPresent", [registry])  # docker.io names: registry as mirror
    assert image.digest == pushed[0].digest
    assert os.readlink(image.layer_dirs[0] / "bin" / "sh") == "busybox"
    local = ImageStore(tmp_path / "local")
    local.import_archive(busybox_tar)
    built = local.get("busybox")
    assert built is not None and (built.digest, built.id) == (image.digest, image.id)
    # A name with its own host is pulled from that host, whatever the node's registries.
    by_host = await store.ensure(f"{registry}/library/busybox:latest", "IfNotPresent", [])
    assert by_host.digest == image.digest and str(by_host.ref).startswith(registry)
    by_digest = await ImageStore(tmp_path / "d").ensure(f"busybox@{image.digest}", "IfNotPresent", [registry])
    assert by_digest.digest == image.digest


async def test_pull_policy_always_follows_the_registry(registry: str, tmp_path: Path) -> None:
    def version(n: int) -> Path:
        from tests.unit.images.tarbuild import F, layer_tar

        path = tmp_path / f"v{n}.tar"
        assemble(parse_ref("policy/app:1"), [layer_tar([F("version", str(n).encode())])], {"Cmd": ["x"]}, "t").write(
            path
        )
        return path

    store = ImageStore(tmp_path / "store")
    with pytest.raises(ImagePullError, match='image "policy/app:1" not found in the local store and no registry has it'):
        await store.ensure("policy/app:1", "IfNotPresent", [registry])
    (v1,) = await push_archive(version(1), registry)
    first = await store.ensure("policy/app:1", "IfNotPresent", [registry])
    assert first.digest == v1.digest
    (v2,) = await push_archive(version(2), registry)  # the tag moves
    assert (await store.ensure("policy/app:1", "IfNotPresent", [registry])).digest == v1.digest
    assert (await store.ensure("policy/app:1", "Never", [registry])).digest == v1.digest
    latest = await store.ensure("policy/app:1", "Always", [registry])
    assert latest.digest == v2.digest != v1.digest
    assert (latest.layer_dirs[0] / "version").read_bytes() == b"2"


async def test_corrupt_blob_from_the_registry_is_refused(registry: str, tmp_path: Path) -> None:
    from tests.unit.images.tarbuild import F, layer_tar

    archive = tmp_path / "c.tar"
    built = assemble(parse_ref("corrupt/app:1"), [layer_tar([F("payload", b"p" * 4096)])], {}, "t")
    built.write(archive)
    await push_archive(archive, registry)
    layer_digest = json.loads(built.blobs[built.manifest.digest])["layers"][0]["digest"]
    hexd = layer_digest.removeprefix("sha256:")
    # The registry serves what its filesystem holds without re-hashing it: flip a byte there.
    data = REGISTRY_DATA[registry] / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    store = ImageStore(tmp_path / "store")
    with pytest.raises(ImagePullError, match=f"blob {layer_digest}.*digest mismatch"):
        await store.ensure("corrupt/app:1", "IfNotPresent", [registry])
    assert store.list() == []
    assert not list((tmp_path / "store" / "layers").iterdir())
    assert not list((tmp_path / "store" / "tmp").iterdir())
    async with RegistryClient(registry) as client:  # and a digest it never had is "not found"
        with pytest.raises(RegistryNotFoundError):
            await client.get_manifest("corrupt/app", "sha256:" + "0" * 64)


# --- the CLI, run as a user would ---


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_kubelite_cmd(), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_cli_build_import_list_push(registry: str, tmp_path: Path) -> None:
    out = tmp_path / "bb.tar"
    r = run("image", "build", "busybox", "-o", str(out))
    assert r.returncode == 0, r.stderr
    digest = r.stdout.split()[1]
    assert digest.startswith("sha256:") and out.exists()
    index = json.loads(subprocess.run(["tar", "-xOf", str(out), "index.json"], capture_output=True, check=True).stdout)
    assert index["manifests"][0]["digest"] == digest

    data = tmp_path / "agent"
    r = run("image", "import", str(out), "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"imported busybox:latest {digest}"
    image = ImageStore(data / "images").get("busybox")
    assert image is not None and image.digest == digest

    r = run("image", "list", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.strip().splitlines()]
    assert rows[0][:2] == ["IMAGE", "TAG"] and rows[1][:2] == ["busybox", "latest"]

    r = run("image", "push", str(out), "--registry", registry)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"pushed {registry}/library/busybox:latest {digest}"
    with urllib.request.urlopen(f"http://{registry}/v2/library/busybox/tags/list", timeout=5) as resp:
        assert json.load(resp)["tags"] == ["latest"]

    r = run("image", "build", "busybox", "--tag", "bb:2", "--import", "--data-dir", str(data), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "busybox.tar").exists()  # --import alone writes no file
    assert ImageStore(data / "images").get("bb:2") is not None


def _error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_cli_bad_input_is_one_line(registry: str, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    assert "does not exist" in _error_line(run("image", "import", str(tmp_path / "missing.tar"), "--data-dir", str(data)))
    assert "unknown image 'nginx'" in _error_line(run("image", "build", "nginx", "-o", str(tmp_path / "n.tar")))
    good = tmp_path / "bb.tar"
    build_image("busybox").write(good)
    raw = bytearray(good.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the layer blob, the bulk of the file
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(raw))
    line = _error_line(run("image", "import", str(bad), "--data-dir", str(data)))
    assert "digest mismatch" in line
    assert not list((data / "images" / "layers").iterdir())
    assert "digest mismatch" in _error_line(run("image", "push", str(bad), "--registry", registry))
    junk = tmp_path / "junk.tar"
    junk.write_text("hello")
    assert "neither an OCI image layout" in _error_line(run("image", "import", str(junk), "--data-dir", str(data)))
    port = free_port()
    assert "connection refused" in _error_line(run("image", "push", str(good), "--registry", f"127.0.0.1:{port}"))
