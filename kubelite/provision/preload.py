"""Preload images into the cluster registry, so pods pull without any registry on the internet.

A name ``kubelite image build`` knows (busybox) is built once into the cache; an archive is pushed
as it is. A built image already in the registry is not pushed again (``up`` stays "no changes").
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from kubelite.provision.errors import StepError
from kubelite.provision.image import cache_dir

__all__ = ["preload_images", "wait_registry"]

_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def wait_registry(registry: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{registry}/v2/", timeout=2):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise StepError("wait for the registry", registry, str(e)) from None
            time.sleep(0.3)


def _has_tag(registry: str, repo: str, tag: str) -> bool:
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": _ACCEPT})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=5):
            return True
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise


def _kubelite(*args: str, step: str, where: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise StepError(step, where, (proc.stderr or proc.stdout).strip().splitlines()[-1:][0] if (proc.stderr or proc.stdout).strip() else f"exit {proc.returncode}")


def preload_images(images: list[str], registry: str, timeout: float = 60) -> list[str]:
    """Push ``images`` to ``registry`` (host:port); returns what was pushed."""
    if not images:
        return []
    wait_registry(registry, timeout)
    pushed = []
    for entry in images:
        if "/" in entry:  # an archive path (the spec resolved it)
            _kubelite("image", "push", entry, "--registry", registry, step=f"push {Path(entry).name}", where=registry)
            pushed.append(Path(entry).name)
            continue
        if _has_tag(registry, f"library/{entry}", "latest"):
            continue
        archive = cache_dir() / "oci" / f"{entry}.tar"
        if not archive.is_file():
            archive.parent.mkdir(parents=True, exist_ok=True)
            _kubelite("image", "build", entry, "-o", str(archive), step=f"build image {entry}", where="this machine")
        _kubelite("image", "push", str(archive), "--registry", registry, step=f"push {entry}", where=registry)
        pushed.append(f"{entry}:latest")
    return pushed
