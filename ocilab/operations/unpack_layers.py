"""Unpack an image as it stood after one of its layers: the rootfs built layer by layer (notebook 04)."""

from __future__ import annotations

import copy
from pathlib import Path

from ocilab.errors import InvalidInputError
from ocilab.operations.unpack import UnpackReport, unpack
from ocilab.stores.image import Image


def unpack_through(image: Image, layer: int, bundle: str | Path, rootless: bool = False) -> UnpackReport:
    """Unpack layers 0 to ``layer`` of ``image`` into ``bundle`` (as ``unpack`` does, with the same checks).

    The rootfs is what a container would see had the build stopped after that
    layer; ``config.json`` comes from the image's config as it is now.
    InvalidInputError when ``image`` has no layer ``layer``.
    """
    if not 0 <= layer < len(image.layers):
        raise InvalidInputError(f"{image.reference}: there is no layer {layer} (the image has {len(image.layers)})")
    partial = copy.copy(image)
    partial.layers = image.layers[: layer + 1]
    return unpack(partial, bundle, rootless=rootless)
