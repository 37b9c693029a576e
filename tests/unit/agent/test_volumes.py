"""Pod volumes against temporary directories: the atomic writer, sources, hostPath types, mounts."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kubelite.agent.env import PodContext
from kubelite.agent.volumes import (
    HostPathError,
    VolumeError,
    VolumeManager,
    atomic_write_dir,
    check_host_path,
    container_mounts,
)
from kubelite.client import ApiClient
from tests.unit.agent.test_env import DictSource

Obj = dict[str, Any]
CTX = PodContext(pod_ip="10.1.0.9", host_ip="192.168.0.1")


def read(path: str | Path) -> str:
    return Path(path).read_text()


def visible(d: Path) -> dict[str, str]:
    """What a container sees: every non-hidden path read through the symlinks."""
    out: dict[str, str] = {}
    for root, _dirs, files in os.walk(d, followlinks=True):
        rel_root = Path(root).relative_to(d)
        if any(p.startswith("..") for p in rel_root.parts):
            continue
        for f in files:
            if not f.startswith(".."):
                out[str(rel_root / f)] = (Path(root) / f).read_text()
    return out


def test_atomic_write_swaps_data_symlink(tmp_path: Path) -> None:
    d = tmp_path / "vol"
    assert atomic_write_dir(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    first = (d / "..data").resolve()
    assert visible(d) == {"a": "1", "sub/b": "2"}
    assert (d / "a").is_symlink() and os.readlink(d / "a") == "..data/a"
    assert stat.S_IMODE((d / "sub" / "b").stat().st_mode) == 0o600
    assert not atomic_write_dir(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})  # unchanged: no swap
    assert (d / "..data").resolve() == first
    assert atomic_write_dir(d, {"a": (b"changed", 0o644), "c": (b"3", 0o644)})
    assert visible(d) == {"a": "changed", "c": "3"}  # sub/ is gone, c appeared
    assert not first.exists()  # the old generation is removed
    with pytest.raises(VolumeError):
        atomic_write_dir(d, {"../escape": (b"x", 0o644)})


def test_host_path_types(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    check_host_path(tmp_path, "Directory")
    check_host_path(f, "File")
    check_host_path(tmp_path / "nope", "")  # no type: no check
    check_host_path(tmp_path / "new" / "dir", "DirectoryOrCreate")
    assert (tmp_path / "new" / "dir").is_dir()
    check_host_path(tmp_path / "made" / "f", "FileOrCreate")
    assert (tmp_path / "made" / "f").is_file()
    with pytest.raises(HostPathError, match="is not a directory"):
        check_host_path(f, "Directory")
    with pytest.raises(HostPathError, match="does not exist"):
        check_host_path(tmp_path / "missing", "File")
    with pytest.raises(HostPathError, match="is not a file"):
        check_host_path(tmp_path, "FileOrCreate")


def pod(volumes: list[Obj], containers: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "labels": {"app": "a"},
                     "annotations": {"note": "n"}},
        "spec": {"volumes": volumes, "containers": containers or [{"name": "c"}]},
    }


def manager(tmp_path: Path, source: DictSource) -> VolumeManager:
    # The ApiClient is only used for claims, which these tests do not have; nothing connects to it.
    return VolumeManager(ApiClient("http://127.0.0.1:9"), "node-1", tmp_path / "agent", source=source)


async def test_configmap_secret_downward_projected_and_refresh(tmp_path: Path) -> None:
    source = DictSource(
        configmaps={"ns/cfg": {"data": {"a.conf": "A=1", "b.conf": "B=2"}}},
        secrets={"ns/sec": {"data": {"token": base64.b64encode(b"t0k").decode()}}},
    )
    p = pod([
        {"name": "cm", "configMap": {"name": "cfg"}},
        {"name": "cm-items", "configMap": {"name": "cfg", "items": [{"key": "b.conf", "path": "x/b", "mode": 0o400}],
                                           "defaultMode": 0o640}},
        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o600}},
        {"name": "opt", "configMap": {"name": "absent", "optional": True}},
        {"name": "down", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}},
        {"name": "proj", "projected": {"sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "a"}]}},
            {"secret": {"name": "sec"}},
            {"downwardAPI": {"items": [{"path": "ann", "fieldRef": {"fieldPath": "metadata.annotations['note']"}}]}},
        ]}},
        {"name": "scratch", "emptyDir": {}},
    ])
    vm = manager(tmp_path, source)
    paths = await vm.setup(p, CTX)
    assert visible(paths["cm"]) == {"a.conf": "A=1", "b.conf": "B=2"}
    assert visible(paths["cm-items"]) == {"x/b": "B=2"}
    assert stat.S_IMODE((paths["cm-items"] / "x" / "b").stat().st_mode) == 0o400
    assert visible(paths["sec"]) == {"token": "t0k"}
    assert stat.S_IMODE((paths["sec"] / "token").stat().st_mode) == 0o600
    assert visible(paths["opt"]) == {}
    assert visible(paths["down"]) == {"labels": 'app="a"', "ip": "10.1.0.9"}
    assert visible(paths["proj"]) == {"a": "A=1", "token": "t0k", "ann": "n"}
    assert paths["scratch"].is_dir() and paths["scratch"] == tmp_path / "agent/pods/uid-1/volumes/scratch"

    source.configmaps["ns/cfg"] = {"data": {"a.conf": "A=2"}}
    p["metadata"]["labels"] = {"app": "b"}
    assert await vm.refresh(p, CTX)
    assert visible(paths["cm"]) == {"a.conf": "A=2"}
    assert visible(paths["proj"]) == {"a": "A=2", "token": "t0k", "ann": "n"}
    assert visible(paths["down"])["labels"] == 'app="b"'
    assert not await vm.refresh(p, CTX)  # nothing changed since

    await vm.teardown("uid-1")
    assert not (tmp_path / "agent/pods/uid-1").exists()


async def test_missing_sources_fail_setup(tmp_path: Path) -> None:
    vm = manager(tmp_path, DictSource(configmaps={"ns/cfg": {"data": {"a": "1"}}}))
    with pytest.raises(VolumeError, match='configmap "nope" not found'):
        await vm.setup(pod([{"name": "v", "configMap": {"name": "nope"}}]), CTX)
    with pytest.raises(VolumeError, match="couldn't find key b in ConfigMap ns/cfg"):
        await vm.setup(pod([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "b", "path": "b"}]}}]), CTX)


async def test_memory_empty_dir_is_a_tmpfs_with_its_size(tmp_path: Path) -> None:
    vm = manager(tmp_path, DictSource())
    paths = await vm.setup(pod([{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}}]), CTX)
    fs = os.statvfs(paths["mem"])
    mounts = read("/proc/self/mounts")
    try:
        assert f"tmpfs {paths['mem']} tmpfs" in mounts
        assert fs.f_blocks * fs.f_frsize == 4 * 1024 * 1024
    finally:
        await vm.teardown("uid-1")
    assert str(paths["mem"]) not in read("/proc/self/mounts")


async def test_container_mounts_sub_path_and_read_only(tmp_path: Path) -> None:
    vm = manager(tmp_path, DictSource(configmaps={"ns/cfg": {"data": {"app.conf": "x"}}}))
    host = tmp_path / "host"
    host.mkdir()
    c = {"name": "c", "volumeMounts": [
        {"name": "data", "mountPath": "/data"},
        {"name": "data", "mountPath": "/logs", "subPath": "logs/app"},
        {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        {"name": "host", "mountPath": "/host", "readOnly": True},
    ]}
    p = pod([{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
             {"name": "host", "hostPath": {"path": str(host), "type": "Directory"}}], [c])
    paths = await vm.setup(p, CTX)
    mounts = {m.container_path: m for m in container_mounts(p, c, paths)}
    assert mounts["/data"].host_path == str(paths["data"]) and not mounts["/data"].read_only
    assert mounts["/logs"].host_path == str(paths["data"] / "logs/app") and (paths["data"] / "logs/app").is_dir()
    cfg = mounts["/etc/app.conf"].host_path
    assert read(cfg) == "x" and "..data" not in cfg and cfg.startswith(str(paths["cfg"])) and mounts["/etc/app.conf"].read_only
    assert mounts["/host"].read_only and mounts["/host"].host_path == str(host)
    bad = {"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "../../etc"}]}
    with pytest.raises(VolumeError):
        container_mounts(p, bad, paths)
