"""The image errors, one tree for the whole package::

    ImageError                  anything wrong with an image, an archive or a registry
      InvalidReferenceError     the string is not an image reference (also a ValueError)
      ArchiveFormatError        the file is neither an OCI image layout nor a docker-save tarball
      DigestMismatchError       content does not hash to the digest that names it (corrupt or tampered)
      UnsafeLayerError          a layer entry would land outside its root (absolute, ``..``, via a symlink)
      RegistryError             a registry answered with an error, or could not be reached
        RegistryNotFoundError   the registry does not have this repository/tag/blob
"""

from __future__ import annotations

__all__ = [
    "ArchiveFormatError",
    "DigestMismatchError",
    "ImageError",
    "InvalidReferenceError",
    "RegistryError",
    "RegistryNotFoundError",
    "UnsafeLayerError",
]


class ImageError(Exception):
    """An image, archive or registry problem; the message is one line meant for a user."""


class InvalidReferenceError(ImageError, ValueError):
    pass


class ArchiveFormatError(ImageError):
    pass


class DigestMismatchError(ImageError):
    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class UnsafeLayerError(ImageError):
    pass


class RegistryError(ImageError):
    pass


class RegistryNotFoundError(RegistryError):
    pass
