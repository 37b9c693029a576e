"""Container images: references, OCI/docker archives and layers, building, and registry push/pull.

Modules: ``reference`` (parse and normalise ``busybox:1.35``), ``errors`` (the exception tree),
``oci`` (archives in, OCI layout tars out, layer unpacking), ``build`` (``kubelite image build``),
``registry`` (OCI Distribution API client). The node's store is :mod:`kubelite.agent.images`.
"""

from kubelite.images.errors import (
    ArchiveFormatError,
    DigestMismatchError,
    ImageError,
    InvalidReferenceError,
    RegistryError,
    RegistryNotFoundError,
    UnsafeLayerError,
)
from kubelite.images.reference import ImageRef, parse_ref

__all__ = [
    "ArchiveFormatError",
    "DigestMismatchError",
    "ImageError",
    "ImageRef",
    "InvalidReferenceError",
    "RegistryError",
    "RegistryNotFoundError",
    "UnsafeLayerError",
    "parse_ref",
]
