"""The node image store: import (OCI layout and docker save), verification, removal, pull policy."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
from pathlib import Path

import pytest

from kubelite.agent.images import ImageNeverPullError, ImagePullError, ImageStore, InvalidImageNameError
from kubelite.agent.runtime import ImagePullError as RuntimeImagePullError
from kubelite.images import DigestMismatchError, ImageError, UnsafeLayerError, parse_ref
from kubelite.images.build import assemble, build_image
from kubelite.images.oci import REF_NAME, merge_layers
from tests.unit.images.tarbuild import D, F, S, docker_save, layer_tar


def snapshot(root: Path) -> dict[str, int]:
    """Every path under the store, with the mtime of each file: nothing added, removed or rewritten.

    (Directory mtimes are left out: staging inside tmp/ touches it even when all is rolled back.)
    """
    return {str(p.relative_to(root)): 0 if p.is_dir() else os.lstat(p).st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def busybox_tar(tmp_path: Path) -> Path:
    path = tmp_path / "busybox.tar"
    build_image("busybox").write(path)
    return path


def test_busybox_build_import_get(tmp_path: Path, busybox_tar: Path) -> None:
    store = ImageStore(tmp_path / "store")
    refs = store.import_archive(busybox_tar)
    assert [str(r) for r in refs] == ["docker.io/library/busybox:latest"]
    for name in ("busybox", "library/busybox", "docker.io/library/busybox:latest"):
        image = store.get(name)
        assert image is not None, name
    assert image is not None
    (layer,) = image.layer_dirs
    assert (layer / "bin" / "busybox").is_file() and os.access(layer / "bin" / "busybox", os.X_OK)
    assert os.readlink(layer / "bin" / "sh") == "busybox"
    assert (layer / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert image.config["Cmd"] == ["sh"] and image.config["Entrypoint"] == []
    assert image.digest.startswith("sha256:") and image.id != image.digest
    assert store.get(f"busybox@{image.digest}") is not None
    assert store.get("busybox:1.35") is None
    assert [i.ref.familiar for i in store.list()] == ["busybox:latest"]


def test_build_is_deterministic_and_unknown_names_fail() -> None:
    assert build_image("busybox").manifest.digest == build_image("busybox").manifest.digest
    with pytest.raises(ImageError, match="unknown image 'nginx'"):
        build_image("nginx")


def test_layers_are_shared_and_removal_collects_garbage(tmp_path: Path, busybox_tar: Path) -> None:
    store = ImageStore(tmp_path / "store")
    store.import_archive(busybox_tar)
    base = layer_tar([D("app"), F("app/run", b"v1")])
    other = tmp_path / "other.tar"
    bb = store.get("busybox")
    assert bb is not None
    busybox_layer = (bb.layer_dirs[0] / "bin" / "busybox").read_bytes()
    assemble(parse_ref("app:1"), [layer_tar([D("bin"), F("bin/busybox", busybox_layer)]), base], {}, "t").write(other)
    store.import_archive(other)
    assert len(list((tmp_path / "store" / "layers").iterdir())) == 3
    assert store.remove("busybox") is True
    assert store.remove("busybox") is False
    assert store.get("busybox") is None
    app = store.get("app:1")
    assert app is not None and all(d.is_dir() for d in app.layer_dirs)
    assert sorted(p.name for p in (tmp_path / "store" / "layers").iterdir()) == sorted(d.name for d in app.layer_dirs)
    blobs = {p.name for p in (tmp_path / "store" / "blobs" / "sha256").iterdir()}
    assert bb.digest.removeprefix("sha256:") not in blobs and app.digest.removeprefix("sha256:") in blobs


def test_two_layer_image_with_whiteouts(tmp_path: Path) -> None:
    archive = tmp_path / "wh.tar"
    lower = layer_tar([D("etc"), F("etc/a", b"a"), F("etc/b", b"b"), D("opt"), F("opt/x", b"x")])
    upper = layer_tar([D("etc"), F("etc/.wh.a"), D("opt"), F("opt/.wh..wh..opq"), F("opt/y", b"y"), S("l", "etc/b")])
    assemble(parse_ref("wh:1"), [lower, upper], {"Entrypoint": ["/bin/x"]}, "t").write(archive)
    store = ImageStore(tmp_path / "store")
    store.import_archive(archive)
    image = store.get("wh:1")
    assert image is not None and len(image.layer_dirs) == 2
    rootfs = tmp_path / "rootfs"
    merge_layers(image.layer_dirs, rootfs)
    assert sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*")) == ["etc", "etc/b", "l", "opt", "opt/y"]
    assert image.config["Entrypoint"] == ["/bin/x"]


def _flip_byte_in_largest_blob(src: Path, dest: Path) -> str:
    """Copy an OCI layout tar, corrupting one byte in the middle of its largest blob (the layer)."""
    with tarfile.open(src) as tin:
        members = [(m, tin.extractfile(m).read() if m.isfile() else b"") for m in tin.getmembers()]  # type: ignore[union-attr]
    victim = max(members, key=lambda mb: len(mb[1]))[0].name
    with tarfile.open(dest, "w") as tout:
        for m, data in members:
            if m.name == victim:
                data = bytearray(data)
                data[len(data) // 2] ^= 0xFF
                data = bytes(data)
            tout.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return "sha256:" + victim.rsplit("/", 1)[1]


def test_corrupt_archive_is_rejected_and_store_unchanged(tmp_path: Path, busybox_tar: Path) -> None:
    store = ImageStore(tmp_path / "store")
    good = tmp_path / "good.tar"
    assemble(parse_ref("good:1"), [layer_tar([F("g", b"g")])], {}, "t").write(good)
    store.import_archive(good)
    before = snapshot(tmp_path / "store")
    bad = tmp_path / "bad.tar"
    digest = _flip_byte_in_largest_blob(busybox_tar, bad)
    with pytest.raises(DigestMismatchError, match=digest) as info:
        store.import_archive(bad)
    assert "digest mismatch" in str(info.value)
    assert snapshot(tmp_path / "store") == before
    assert store.get("busybox") is None


def test_unsafe_layer_leaves_store_unchanged(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    before = snapshot(tmp_path / "store")
    evil = tmp_path / "evil.tar"
    layers = [layer_tar([F("ok", b"1")]), layer_tar([S("link", "/"), F("link/tmp/pwned", b"x")])]
    assemble(parse_ref("evil:1"), layers, {}, "t").write(evil)
    with pytest.raises(UnsafeLayerError, match="symlink"):
        store.import_archive(evil)
    assert snapshot(tmp_path / "store") == before
    assert not Path("/tmp/pwned").exists()


def test_docker_save_tarball_imports(tmp_path: Path) -> None:
    archive = tmp_path / "saved.tar"
    layers = [layer_tar([D("bin"), F("bin/app", b"app", 0o755)]), layer_tar([D("w"), F("w/data", b"d")])]
    config_digest = docker_save(archive, "registry.local:5000/team/app:2", layers, ["/bin/app", "serve"])
    store = ImageStore(tmp_path / "store")
    (ref,) = store.import_archive(archive)
    assert str(ref) == "registry.local:5000/team/app:2"
    image = store.get("registry.local:5000/team/app:2")
    assert image is not None
    assert image.id == config_digest
    assert image.config["Cmd"] == ["/bin/app", "serve"] and image.config["WorkingDir"] == "/w"
    assert image.config["ExposedPorts"] == {"80/tcp": {}}
    assert (image.layer_dirs[0] / "bin" / "app").read_bytes() == b"app"
    assert (image.layer_dirs[1] / "w" / "data").read_bytes() == b"d"


def test_docker_save_with_a_corrupt_layer_is_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "saved.tar"
    good = layer_tar([F("a", b"original")])
    docker_save(archive, "app:1", [good], ["x"])
    data = archive.read_bytes().replace(b"original", b"0riginal")
    archive.write_bytes(data)
    store = ImageStore(tmp_path / "store")
    with pytest.raises(DigestMismatchError, match=r"layer .*/layer\.tar"):
        store.import_archive(archive)
    assert store.list() == []


@pytest.mark.parametrize("content", [b"", b"not a tar at all", b"\x1f\x8bgarbage"])
def test_not_an_archive(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(content)
    with pytest.raises(ImageError):
        ImageStore(tmp_path / "store").import_archive(path)


def _dead_registry() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: connection refused on loopback
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_pull_policy_without_a_registry(tmp_path: Path, busybox_tar: Path) -> None:
    store = ImageStore(tmp_path / "store")
    with pytest.raises(ImageNeverPullError, match="not present with pull policy of Never") as never:
        await store.ensure("busybox", "Never")
    assert never.value.reason == "ErrImageNeverPull"
    with pytest.raises(ImagePullError) as missing:
        await store.ensure("nope:1", "IfNotPresent", [])
    assert str(missing.value).startswith('image "nope:1" not found in the local store and no registry has it')
    assert missing.value.reason == "ErrImagePull" and isinstance(missing.value, RuntimeImagePullError)
    dead = _dead_registry()
    with pytest.raises(ImagePullError, match=f"{dead} unreachable: connection refused"):
        await store.ensure("nope:1", "IfNotPresent", [dead])
    with pytest.raises(InvalidImageNameError) as invalid:
        await store.ensure("Bad:Name", "IfNotPresent")
    assert invalid.value.reason == "InvalidImageName"

    store.import_archive(busybox_tar)
    local = store.get("busybox")
    assert local is not None
    # Present: Never and IfNotPresent never touch a registry (a dead one would fail them).
    assert (await store.ensure("busybox", "Never", [dead])).digest == local.digest
    assert (await store.ensure("busybox:latest", "IfNotPresent", [dead])).digest == local.digest
    # Always with no registry that has it: the imported copy serves (offline clusters).
    assert (await store.ensure("busybox", "Always", [dead])).digest == local.digest
    with pytest.raises(ValueError, match="pull policy"):
        await store.ensure("busybox", "Sometimes")


def test_oci_layout_directory_imports(tmp_path: Path, busybox_tar: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(busybox_tar) as tar:
        tar.extractall(layout, filter="data")
    store = ImageStore(tmp_path / "store")
    assert [r.familiar for r in store.import_archive(layout)] == ["busybox:latest"]


def test_newer_docker_save_with_oci_blobs_takes_names_from_repo_tags(tmp_path: Path) -> None:
    """Docker >= 25: an OCI layout whose index only has a bare tag, plus manifest.json with RepoTags."""
    built = assemble(parse_ref("ignored:0"), [layer_tar([F("f", b"new")])], {"Cmd": ["f"]}, "t")
    manifest = json.loads(built.blobs[built.manifest.digest])
    config_hex = manifest["config"]["digest"].removeprefix("sha256:")
    index = {"schemaVersion": 2, "manifests": [{**built.manifest.to_json(), "annotations": {REF_NAME: "1.0"}}]}
    files = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index).encode(),
        "manifest.json": json.dumps(
            [{"Config": f"blobs/sha256/{config_hex}", "RepoTags": ["newdocker/app:1.0"], "Layers": []}]
        ).encode(),
        **{f"blobs/sha256/{d.removeprefix('sha256:')}": b for d, b in built.blobs.items()},
    }
    archive = tmp_path / "new.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store = ImageStore(tmp_path / "store")
    assert [str(r) for r in store.import_archive(archive)] == ["docker.io/newdocker/app:1.0"]
    image = store.get("newdocker/app:1.0")
    assert image is not None and image.digest == built.manifest.digest
    assert (image.layer_dirs[0] / "f").read_bytes() == b"new"
