"""``kubelite image build busybox-openssl``: busybox plus the host's openssl, runnable on its own."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

from kubelite.images.build import build_image
from kubelite.images.reference import parse_ref


def test_openssl_runs_inside_the_image_root_alone(tmp_path: Path) -> None:
    built, plain = build_image("busybox-openssl"), build_image("busybox")
    assert built.ref == parse_ref("busybox-openssl:latest")
    manifest = json.loads(built.blobs[built.manifest.digest])
    # Two layers, the first the plain busybox image's (same digest: stored and pulled once).
    assert [layer["digest"] for layer in manifest["layers"]][:1] == \
        [layer["digest"] for layer in json.loads(plain.blobs[plain.manifest.digest])["layers"]]
    assert len(manifest["layers"]) == 2
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(built.blobs[layer["digest"]]))) as tar:
            tar.extractall(tmp_path, filter="tar")
    # chroot: nothing of the host is visible, so a missing library fails here as it would in a pod.
    assert os.geteuid() == 0, "chroot needs root (the test suite runs as root)"
    out = subprocess.run(["chroot", str(tmp_path), "/bin/sh", "-c", "openssl version"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("OpenSSL 3"), out
