"""Layer unpacking: whiteouts, opaque dirs, metadata, links, and the paths it must refuse."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from kubelite.images.errors import DigestMismatchError, UnsafeLayerError
from kubelite.images.oci import OPAQUE_XATTR, merge_layers, unpack_layer
from tests.unit.images.tarbuild import D, Entry, F, H, S, gz, layer_tar, sha


def unpack(tmp_path: Path, name: str, tar: bytes, lowers: list[Path] | None = None) -> Path:
    blob = tmp_path / f"{name}.blob"
    blob.write_bytes(tar)
    dest = tmp_path / name
    dest.mkdir()
    unpack_layer(blob, dest, lowers=lowers or [])
    return dest


LOWER = [
    D("etc"),
    F("etc/keep", b"keep"),
    F("etc/gone", b"gone"),
    D("var"),
    D("var/cache"),
    F("var/cache/a", b"a"),
    F("var/cache/b", b"b"),
    D("data"),
    F("data/old", b"old"),
]
UPPER = [
    D("etc"),
    F("etc/.wh.gone"),  # deletes a lower file
    F("etc/new", b"new"),
    D("var"),
    F("var/.wh.cache"),  # deletes a lower directory with its contents
    D("data"),
    F("data/.wh..wh..opq"),  # hides everything of data/ below this layer, keeps this layer's own
    F("data/fresh", b"fresh"),
]


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    upper = unpack(tmp_path, "upper", layer_tar(UPPER))
    st = os.lstat(upper / "etc" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert stat.S_ISCHR(os.lstat(upper / "var" / "cache").st_mode)
    assert os.getxattr(upper / "data", OPAQUE_XATTR) == b"y"
    assert not list(upper.rglob(".wh.*"))
    assert (upper / "data" / "fresh").read_bytes() == b"fresh"


def _view(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


EXPECTED = {
    "data": None,
    "data/fresh": b"fresh",
    "etc": None,
    "etc/keep": b"keep",
    "etc/new": b"new",
    "var": None,
}


def test_merge_applies_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    lower = unpack(tmp_path, "lower", layer_tar(LOWER))
    upper = unpack(tmp_path, "upper", layer_tar(UPPER))
    merge_layers([lower, upper], tmp_path / "rootfs")
    assert _view(tmp_path / "rootfs") == EXPECTED
    assert _view(lower)["var/cache/a"] == b"a"  # layers themselves are untouched (shared by images)


def test_overlayfs_mount_of_layers_shows_the_same(tmp_path: Path) -> None:
    lower = unpack(tmp_path, "lower", layer_tar(LOWER))
    upper = unpack(tmp_path, "upper", layer_tar(UPPER))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", str(mnt)], check=True)
    try:
        assert _view(mnt) == EXPECTED
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_whiteout_does_not_hide_an_entry_of_its_own_layer(tmp_path: Path) -> None:
    layer = unpack(tmp_path, "l", layer_tar([F(".wh.x"), F("x", b"mine")]))
    assert (layer / "x").read_bytes() == b"mine"


def test_metadata_links_and_devices(tmp_path: Path) -> None:
    tar = layer_tar(
        [
            D("bin", 0o755),
            F("bin/tool", b"#!/bin/sh\n", 0o4755),
            H("bin/tool2", "bin/tool"),
            S("bin/sh", "tool"),
            S("abs", "/bin/tool"),  # absolute targets resolve inside the container's root: fine
            Entry("dev", kind=b"5", mode=0o755),
            Entry("dev/null", kind=b"3", mode=0o666, devmajor=1, devminor=3),
            Entry("owned", data=b"x", mode=0o600, uid=1000, gid=1001),
            D("ro", 0o555),
            F("ro/inner", b"i"),
        ]
    )
    layer = unpack(tmp_path, "l", gz(tar))
    assert stat.S_IMODE(os.stat(layer / "bin" / "tool").st_mode) == 0o4755
    assert os.stat(layer / "bin" / "tool").st_ino == os.stat(layer / "bin" / "tool2").st_ino
    assert os.readlink(layer / "bin" / "sh") == "tool"
    assert os.readlink(layer / "abs") == "/bin/tool"
    null = os.lstat(layer / "dev" / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    owned = os.lstat(layer / "owned")
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (1000, 1001, 0o600)
    assert stat.S_IMODE(os.stat(layer / "ro").st_mode) == 0o555
    assert (layer / "ro" / "inner").read_bytes() == b"i"
    assert int(os.stat(layer / "bin" / "tool").st_mtime) == 1_000_000


def test_hardlink_to_a_lower_layer_copies_the_file(tmp_path: Path) -> None:
    lower = unpack(tmp_path, "lower", layer_tar([F("base", b"from-below")]))
    upper = unpack(tmp_path, "upper", layer_tar([H("link", "base")]), lowers=[lower])
    assert (upper / "link").read_bytes() == b"from-below"
    assert os.stat(upper / "link").st_ino != os.stat(lower / "base").st_ino


@pytest.mark.parametrize(
    ("entries", "complaint"),
    [
        ([F("/etc/passwd", b"x")], "absolute path"),
        ([F("../escape", b"x")], "'..'"),
        ([D("a"), F("a/../../escape", b"x")], "'..'"),
        ([S("link", "/"), F("link/etc/passwd", b"x")], "symlink"),
        ([S("up", "../../.."), F("x")], "escapes the layer root"),
        ([D("a"), S("a/up", "../../x")], "escapes the layer root"),
        ([H("hard", "../../etc/passwd")], "'..'"),
        ([H("hard", "/etc/passwd")], "absolute path"),
    ],
)
def test_unsafe_entries_are_refused(tmp_path: Path, entries: list[Entry], complaint: str) -> None:
    outside = tmp_path / "escape"
    with pytest.raises(UnsafeLayerError, match=complaint):
        unpack(tmp_path, "l", layer_tar(entries))
    assert not outside.exists()


def test_diff_id_mismatch_is_refused(tmp_path: Path) -> None:
    tar = layer_tar([F("a", b"a")])
    blob = tmp_path / "blob"
    blob.write_bytes(gz(tar))
    dest = tmp_path / "d"
    dest.mkdir()
    assert unpack_layer(blob, dest, expected_diff_id=sha(tar)) == sha(tar)
    other = tmp_path / "d2"
    other.mkdir()
    with pytest.raises(DigestMismatchError, match=sha(b"nope")):
        unpack_layer(blob, other, expected_diff_id=sha(b"nope"))
