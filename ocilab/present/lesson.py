"""Small steps the lessons take, so that each notebook cell stays a line or two (notebooks 02 and 03).

``write_files`` lays out a directory (a web site, a Docker build context),
``noise`` makes bytes that do not compress, ``tar_members`` lists a layer's
tar as it is stored (whiteouts included), and ``upload_blobs`` sends blobs of
an image to a registry, one ``put_blob`` each.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from ocilab.errors import InvalidInputError, NotFoundError
from ocilab.model import Descriptor
from ocilab.stores.base import Writer
from ocilab.stores.image import Image

if TYPE_CHECKING:
    import pandas

_KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


def write_files(directory: Path | str, files: Mapping[str, str | bytes | Path]) -> Path:
    """Create ``directory`` (and its parents) with ``files``: name -> text, bytes, or a file or directory to copy.

    Copies keep their modes (a program stays executable). Names are relative
    (``site/index.html``); returns the directory. Refuses
    (InvalidInputError) a name that is absolute or climbs out with ``..``, and
    (NotFoundError) a path to copy that does not exist, before writing anything.
    """
    root = Path(directory)
    for name, content in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts or not Path(name).parts:
            raise InvalidInputError(f"write_files: {name!r} must be a relative name inside {root}")
        if isinstance(content, Path) and not content.exists():
            raise NotFoundError(f"write_files: {content} (for {name!r}) does not exist")
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            if content.is_dir():
                shutil.copytree(content, target, dirs_exist_ok=True)
            else:
                shutil.copy(content, target)  # with its mode: a program stays executable
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    return root


def noise(size: int, seed: str = "") -> bytes:
    """``size`` bytes that look random and do not compress; the same ``seed`` always gives the same bytes."""
    if size < 0:
        raise InvalidInputError(f"noise: size {size} is negative")
    return hashlib.shake_256(seed.encode()).digest(size)


def tar_members(image: Image, layer: int) -> pandas.DataFrame:
    """The tar of layer ``layer`` as stored: one row per member (name, type, size), whiteouts as the files they are.

    ``type`` is file, dir, symlink, hardlink, char, block or fifo; a whiteout
    is an empty file named ``.wh.NAME``. NotFoundError for a layer the image
    does not have.
    """
    import pandas

    if not 0 <= layer < len(image.layers):
        raise NotFoundError(f"{image.reference}: no layer {layer} (it has {len(image.layers)})")
    rows = []
    with image.open_layer(layer) as blob, tarfile.open(fileobj=cast(BinaryIO, blob), mode="r|*") as tar:
        for member in tar:
            rows.append({"name": member.name, "type": _KINDS.get(member.type, "other"), "size": member.size})
    return pandas.DataFrame(rows, columns=["name", "type", "size"])


def upload_blobs(registry: Writer, image: Image, *descriptors: Descriptor) -> None:
    """Send each of ``descriptors`` (blobs of ``image``: layers, config) to ``registry`` with ``put_blob``."""
    for descriptor in descriptors:
        with image.store.open_blob(descriptor) as stream:
            registry.put_blob(descriptor, cast(BinaryIO, stream))  # a verifying reader is a binary stream
