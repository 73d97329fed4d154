"""Writing compressed layers: gzip and zstd streams that are the same bytes for the same input.

A gzip member carries no file name and mtime 0; zstd frames carry no
timestamps at all. Same input, same level, same library: same digest.
"""

from __future__ import annotations

import gzip
from typing import BinaryIO, cast

from ocilab.errors import UnsupportedError
from ocilab.model.digest import CHUNK_SIZE, ByteSource

GZIP_LEVEL = 6
ZSTD_LEVEL = 3


def compress_stream(source: ByteSource, destination: BinaryIO, compression: str) -> None:
    """Copy ``source`` to ``destination`` compressed as ``"gzip"``, ``"zstd"`` or ``"none"``, streaming."""
    if compression == "none":
        while chunk := source.read(CHUNK_SIZE):
            destination.write(chunk)
        return
    encoder: BinaryIO
    if compression == "gzip":
        encoder = _gzip_writer(destination)
    elif compression == "zstd":
        encoder = _zstd_writer(destination)
    else:
        raise UnsupportedError(f"cannot compress as {compression!r}: use gzip, zstd or none")
    with encoder:
        while chunk := source.read(CHUNK_SIZE):
            encoder.write(chunk)


def _gzip_writer(destination: BinaryIO) -> BinaryIO:
    try:
        from zlib_ng.gzip_ng import GzipNGFile

        encoder: object = GzipNGFile(filename="", mode="wb", fileobj=destination, compresslevel=GZIP_LEVEL, mtime=0)
    except ImportError:  # pragma: no cover - zlib-ng is a dependency
        encoder = gzip.GzipFile(filename="", mode="wb", fileobj=destination, compresslevel=GZIP_LEVEL, mtime=0)
    return cast(BinaryIO, encoder)


def _zstd_writer(destination: BinaryIO) -> BinaryIO:
    try:
        from compression.zstd import ZstdFile  # type: ignore[import-not-found]
    except ImportError:
        from backports.zstd import ZstdFile
    return cast(BinaryIO, ZstdFile(destination, mode="wb", level=ZSTD_LEVEL))
