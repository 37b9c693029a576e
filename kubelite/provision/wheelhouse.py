"""The offline install of kubelite: a wheelhouse built on the controlling machine, shipped as one tarball.

Two caches under ``<cache>/wheelhouse``: the dependencies' wheels keyed by ``pyproject.toml``
(rebuilt only when the dependencies change), and kubelite's own wheel keyed by its sources. The
tarball's name carries the build id the deploy uses to decide whether a node is up to date.
Building the dependencies needs a package index (or pip's cache) on the controlling machine only.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kubelite.provision.errors import ProvisionError
from kubelite.provision.image import cache_dir
from kubelite.provision.templates import checkout_dir

__all__ = ["Wheelhouse", "ensure_wheelhouse"]


@dataclass(frozen=True)
class Wheelhouse:
    tar: Path
    build: str  # short content hash: the same checkout gives the same build on every machine
    built: bool


def _hash_files(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _pip_wheel(args: list[str], out: Path, src: Path) -> None:
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="kubelite-wheel-") as tree:
        # A clean copy of the sources: setuptools' build/ in the checkout may hold stale modules.
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(src / name, Path(tree) / name)
        shutil.copytree(
            src / "kubelite", Path(tree) / "kubelite", ignore=shutil.ignore_patterns("__pycache__")
        )
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(tmp), *args],
            cwd=tree, capture_output=True, text=True,
        )  # fmt: skip
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ProvisionError(f"pip wheel failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    tmp.rename(out)


KEEP_OLD_BUILDS = 6  # tarballs and wheel dirs of earlier checkout states kept around


def ensure_wheelhouse(cache: Path | None = None) -> Wheelhouse:
    src = checkout_dir()
    base = (cache or cache_dir()) / "wheelhouse"
    base.mkdir(parents=True, exist_ok=True)
    deps_key = _hash_files([src / "pyproject.toml"], src)
    code_key = _hash_files([src / "pyproject.toml", *(src / "kubelite").rglob("*.py")], src)
    build = hashlib.sha256(f"{deps_key}:{code_key}".encode()).hexdigest()[:12]
    tar = base / f"kubelite-{build}.tar"
    if tar.is_file():
        return Wheelhouse(tar, build, built=False)
    # One builder at a time (two `cluster up`s at once would write into the same wheel dirs).
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tar.is_file():
            return Wheelhouse(tar, build, built=False)  # the other builder made it meanwhile
        deps = base / f"deps-{deps_key}"
        if not deps.is_dir():
            _pip_wheel(["."], deps, src)
            for w in deps.glob("kubelite-*.whl"):
                w.unlink()  # only the dependencies are cached here; kubelite's wheel is keyed by its code
        own = base / f"kubelite-{code_key}"
        if not own.is_dir():
            _pip_wheel(["--no-deps", "."], own, src)
        tmp = tar.with_suffix(".tar.tmp")
        with tarfile.open(tmp, "w") as t:
            for d in (deps, own):
                for whl in sorted(d.glob("*.whl")):
                    t.add(whl, arcname=whl.name)
        tmp.rename(tar)
        # Older builds go, but not the last few: a cluster brought up a moment ago may still be
        # deploying from its tarball.
        old = sorted((p for p in [*base.glob("kubelite-*"), *base.glob("deps-*")] if p not in (tar, deps, own)),
                     key=lambda p: p.stat().st_mtime)  # fmt: skip
        for stale in old[:-KEEP_OLD_BUILDS] if len(old) > KEEP_OLD_BUILDS else []:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    return Wheelhouse(tar, build, built=True)
