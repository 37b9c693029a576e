"""What the runtimes that run real images share: the node's image store behind the CRI image calls."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from kubelite.agent.images import Image, ImageStore
from kubelite.agent.runtime import ImagePullError, RuntimeFailure, RuntimeOptions

__all__ = ["ImageSource", "StoreBackedImages"]


class ImageSource(Protocol):
    async def ensure(self, ref: str, pull_policy: str, registries: Sequence[str] = ()) -> Image:
        """The image ``ref``, pulled/imported first unless present (``Never``: only if present)."""
        ...


S = TypeVar("S", bound=ImageSource)


class StoreBackedImages(Generic[S]):
    """``image_present``/``pull_image`` over the node's image store (``<data dir>/images``).

    The store is opened lazily (a runtime built only to re-adopt containers never touches it), and
    its errors become the CRI's ImagePullError, keeping their ``reason`` (ErrImageNeverPull, …).
    """

    options: RuntimeOptions
    _images: S | None

    def _images_root(self) -> Path:
        raise NotImplementedError

    def _image_source(self) -> S:
        if self._images is None:
            self._images = ImageStore(self._images_root())  # type: ignore[assignment]
        assert self._images is not None
        return self._images

    async def _image(self, ref: str, policy: str) -> Image:
        try:
            return await self._image_source().ensure(ref, policy, self.options.registries)
        except RuntimeFailure:
            raise
        except Exception as e:  # the store's own errors become the CRI's
            raise ImagePullError(f"image {ref!r}: {e}") from e

    async def image_present(self, ref: str) -> bool:
        try:
            await self._image(ref, "Never")
        except ImagePullError:
            return False
        return True

    async def pull_image(self, ref: str) -> str:
        return (await self._image(ref, "Always")).id
