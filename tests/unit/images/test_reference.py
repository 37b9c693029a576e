"""Image references normalise like Docker's, so one image has one name."""

from __future__ import annotations

import pytest

from kubelite.images import InvalidReferenceError, parse_ref

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/busybox:1.35", "docker.io/library/busybox:1.35", "busybox:1.35"),
        ("busybox:1.35", "docker.io/library/busybox:1.35", "busybox:1.35"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("registry.local:5000/app:1", "registry.local:5000/app:1", "registry.local:5000/app:1"),
        ("localhost/a/b", "localhost/a/b:latest", "localhost/a/b:latest"),
        ("10.0.0.1:5000/team/app", "10.0.0.1:5000/team/app:latest", "10.0.0.1:5000/team/app:latest"),
        (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}", f"busybox@sha256:{HEX}"),
        (f"busybox:1@sha256:{HEX}", f"docker.io/library/busybox:1@sha256:{HEX}", f"busybox:1@sha256:{HEX}"),
    ],
)
def test_normalisation(text: str, full: str, familiar: str) -> None:
    ref = parse_ref(text)
    assert str(ref) == full
    assert ref.familiar == familiar
    assert parse_ref(full) == ref


def test_host_only_when_it_looks_like_one() -> None:
    assert parse_ref("registry.local:5000/app").registry == "registry.local:5000"
    assert parse_ref("team/app").registry == "docker.io"
    assert parse_ref("team/app").repository == "team/app"


@pytest.mark.parametrize(
    "text", ["", "Busybox", "busybox:", "busybox@sha256:abc", "a//b", "busybox:bad tag", " busybox", "-x", "a:b:c"]
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_ref(text)
