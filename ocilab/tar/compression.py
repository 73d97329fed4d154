"""Layer compression: the table of formats, detection from magic bytes, streaming decompression.

``open_uncompressed`` checks that the bytes really are in the compression the
media type promises, then returns a stream of the uncompressed tar. Nothing
is read whole.
"""

from __future__ import annotations

import io
import zlib
from typing import BinaryIO

from ocilab.errors import InvalidInputError, UnsupportedError
from ocilab.model.digest import ByteSource

try:  # the fastest gzip decoder available: zlib-ng, then ISA-L, then the standard library's zlib
    from zlib_ng.gzip_ng import GzipNGFile as _GzipReader

    GZIP_BACKEND = "zlib-ng"
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        from isal.igzip import IGzipFile as _GzipReader  # type: ignore[assignment,import-not-found,no-redef,unused-ignore]

        GZIP_BACKEND = "isal"
    except ImportError:
        from gzip import GzipFile as _GzipReader  # type: ignore[assignment]

        GZIP_BACKEND = "zlib"

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESSIONS = ("none", "gzip", "zstd")
_DECODER_MODULES = {"compression", "backports", "zlib_ng", "isal"}
_LABELS = {"none": "an uncompressed tar (compression none)", "gzip": "gzip", "zstd": "zstd"}
_FOUND = {
    "none": "not compressed (compression none: no gzip or zstd header at the start)",
    "gzip": "gzip-compressed",
    "zstd": "zstd-compressed",
}


def detect(head: bytes) -> str:
    """The compression whose magic number starts ``head``; ``"none"`` otherwise."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class _Prefixed(io.RawIOBase):
    """A stream that first gives back bytes already read (the sniffed head), then the rest."""

    def __init__(self, head: bytes, rest: ByteSource) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._rest.close()
        super().close()


class _CheckedDecompressor(io.RawIOBase):
    """Turns a decompressor's low-level errors into InvalidInputError naming ``what``."""

    def __init__(self, inner: BinaryIO, what: str, compression: str) -> None:
        self._inner = inner
        self._what = what
        self._compression = compression

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except (OSError, EOFError, zlib.error) as error:
            raise InvalidInputError(f"{self._what}: corrupt {self._compression} stream ({error})") from None
        except Exception as error:
            if type(error).__module__.split(".")[0] in _DECODER_MODULES:
                raise InvalidInputError(f"{self._what}: corrupt {self._compression} stream ({error})") from None
            raise
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def open_uncompressed(stream: ByteSource, expected: str, what: str) -> BinaryIO:
    """The uncompressed bytes of ``stream``, after checking they are ``expected``-compressed.

    ``expected`` is ``"none"``, ``"gzip"`` or ``"zstd"``; a mismatch with the magic
    bytes raises InvalidInputError naming ``what``.
    """
    if expected not in COMPRESSIONS:
        raise UnsupportedError(f"{what}: unknown compression {expected!r}")
    head = stream.read(4)
    actual = detect(head)
    if actual != expected:
        raise InvalidInputError(
            f"{what}: the layer is labelled {_LABELS[expected]} but its bytes are {_FOUND[actual]};"
            " its media type must say how its bytes are compressed"
        )
    raw = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 20)
    if expected == "none":
        return raw
    if expected == "gzip":
        inner: BinaryIO = _GzipReader(fileobj=raw, mode="rb")  # type: ignore[assignment]
    else:
        inner = _zstd_reader(raw)
    return io.BufferedReader(_CheckedDecompressor(inner, what, expected), buffer_size=1 << 20)


def _zstd_reader(raw: BinaryIO) -> BinaryIO:
    """A zstd decoder (Python 3.14's ``compression.zstd``, or its backport) that reports truncated frames."""
    try:
        from compression.zstd import ZstdFile  # type: ignore[import-not-found]
    except ImportError:
        from backports.zstd import ZstdFile
    return ZstdFile(raw, mode="rb")
