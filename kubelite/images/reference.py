"""Image references as Docker and kubectl read them, normalised so one image has one name.

``busybox``, ``library/busybox``, ``docker.io/library/busybox`` and ``index.docker.io/library/busybox:latest``
all parse to ``docker.io/library/busybox:latest``; ``registry.local:5000/app:1`` keeps its host.
The first path component is a host only if it has a ``.`` or ``:`` or is ``localhost`` (Docker's rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from kubelite.images.errors import InvalidReferenceError

__all__ = ["DEFAULT_REGISTRY", "ImageRef", "parse_ref"]

DEFAULT_REGISTRY = "docker.io"
_LEGACY_REGISTRIES = {"index.docker.io", "registry-1.docker.io"}

# distribution/reference's grammar, component by component.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ImageRef:
    registry: str  # "docker.io" or "host[:port]"
    repository: str  # "library/busybox", "app"
    tag: str | None = None  # None only when the reference is by digest alone
    digest: str | None = None  # "sha256:<hex>" of the manifest

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``: the repository with its registry."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar(self) -> str:
        """``busybox:latest``: the short form Docker prints for docker.io images."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        return name + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_digest(self, digest: str) -> ImageRef:
        return replace(self, tag=None, digest=digest)

    def with_registry(self, registry: str) -> ImageRef:
        return replace(self, registry=registry)

    def __str__(self) -> str:
        return self.name + self._suffix()


def parse_ref(text: str) -> ImageRef:
    """Parse and normalise ``text``; the tag defaults to ``latest`` unless a digest is given."""
    s = text.strip()
    if not s or s != text or any(c.isspace() for c in s):
        raise InvalidReferenceError(f"invalid reference format: {text!r}")
    digest: str | None = None
    if "@" in s:
        s, digest = s.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidReferenceError(f"invalid reference format: {text!r} (digest must be sha256:<64 hex>)")
    tag: str | None = None
    colon, slash = s.rfind(":"), s.rfind("/")
    if colon > slash:  # a ':' after the last '/' is a tag, not a port
        s, tag = s[:colon], s[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReferenceError(f"invalid reference format: {text!r} (bad tag {tag!r})")
    first, sep, rest = s.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise InvalidReferenceError(f"invalid reference format: {text!r} (bad registry host {first!r})")
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, s
    if registry in _LEGACY_REGISTRIES:
        registry = DEFAULT_REGISTRY
    parts = path.split("/")
    if not path or not all(_COMPONENT.fullmatch(p) for p in parts):
        hint = " (repository names must be lowercase)" if path.lower() != path else ""
        raise InvalidReferenceError(f"invalid reference format: {text!r}{hint}")
    if registry == DEFAULT_REGISTRY and len(parts) == 1:
        path = f"library/{path}"
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest)
