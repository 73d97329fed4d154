"""Layer entries: what one layer blob says about the filesystem, verified while it streams.

``read_layer`` decompresses a layer blob (checking the compression against
the media type), parses its tar stream, and yields one ``Entry`` per member
with the path normalised to ``/a/b``. Whiteouts come out as entries of kind
``whiteout`` (the path they hide) or ``opaque`` (the directory whose lower
content they hide), as the image-spec's layer rules define them. When the
stream ends, the uncompressed bytes are checked against the diff_id and the
blob is read to its end so the store checks its digest. ``read_members``
gives the same entries with each regular file's content as a stream and the
member's xattrs, for unpacking.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ocilab.errors import InvalidInputError, VerificationError
from ocilab.model.digest import ByteSource, Digest, new_hasher
from ocilab.tar.compression import open_uncompressed
from ocilab.tar.tarstream import Content, TarHeader, read_tar

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
AUFS_META_PREFIX = ".wh..wh."
MAX_LAYER_BYTES_ENV = "OCILAB_MAX_LAYER_BYTES"
DEFAULT_MAX_LAYER_BYTES = 64 * 1024**3
"""Cap on one layer's uncompressed bytes (decompression bombs); ``OCILAB_MAX_LAYER_BYTES`` overrides it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One path a layer sets (or, for whiteouts, hides).

    ``kind`` is file, dir, symlink, hardlink, char, block, fifo, whiteout or
    opaque. ``size`` and ``digest`` (the sha256 of the content, 32 raw bytes)
    are for regular files only. ``link`` is a symlink's target as written, or a hard link's
    target as a normalised ``/path``.
    """

    path: str
    kind: str
    size: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0
    link: str | None = None
    digest: bytes | None = None
    device: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """An entry with what unpacking needs besides: the content stream of a regular file, and xattrs.

    ``content`` is valid only until the next member is asked for.
    """

    entry: Entry
    content: Content | None
    xattrs: Mapping[str, bytes]


_NO_XATTRS: Mapping[str, bytes] = MappingProxyType({})


def max_layer_bytes() -> int:
    """The uncompressed-size cap in force: ``OCILAB_MAX_LAYER_BYTES`` or the default."""
    value = os.environ.get(MAX_LAYER_BYTES_ENV)
    if value is None:
        return DEFAULT_MAX_LAYER_BYTES
    if not value.isdigit():
        raise InvalidInputError(f"{MAX_LAYER_BYTES_ENV}={value!r} must be a number of bytes")
    return int(value)


def normalise(name: str, what: str) -> str:
    """``./a//b/`` -> ``/a/b``; the root is ``/``. InvalidInputError for ``..`` components or NUL bytes."""
    if "\x00" in name:
        raise InvalidInputError(f"{what}: entry {name!r} has a NUL byte in its name")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidInputError(f"{what}: entry {name!r} has a '..' component; refusing it")
    return "/" + "/".join(parts)


def read_layer(
    blob: ByteSource, compression: str, diff_id: Digest, what: str, limit: int | None = None
) -> Iterator[Entry]:
    """The entries of one layer blob, in tar order.

    ``blob`` is the layer's (verifying) stream; ``compression`` is what its
    media type promises. Raises InvalidInputError naming ``what`` and the entry
    for unsafe names, bad whiteouts, duplicate paths or a malformed stream, and
    VerificationError when the uncompressed bytes are not ``diff_id``. The
    checks that need the whole stream run when the iterator is exhausted.
    """
    for entry, _ in _read(blob, compression, diff_id, what, limit, contents=False):
        yield entry


def read_members(
    blob: ByteSource, compression: str, diff_id: Digest, what: str, limit: int | None = None
) -> Iterator[Member]:
    """``read_layer``'s entries as Members: files' contents streamed (not hashed), xattrs kept; same checks."""
    for entry, header in _read(blob, compression, diff_id, what, limit, contents=True):
        yield Member(entry, header.content, header.xattrs or _NO_XATTRS)


def _read(
    blob: ByteSource, compression: str, diff_id: Digest, what: str, limit: int | None, contents: bool
) -> Iterator[tuple[Entry, TarHeader]]:
    hasher = new_hasher(diff_id.algorithm)
    seen: set[str] = set()
    with open_uncompressed(blob, compression, what) as tar:
        for header in read_tar(tar, hasher, max_layer_bytes() if limit is None else limit, what, contents):
            entry = _entry(header, what)
            if entry is None:
                continue
            # A whiteout and an entry of the same path may share a layer: the whiteout acts on lower layers only.
            key = f"{entry.kind if entry.kind in ('whiteout', 'opaque') else ''}:{entry.path}"
            if key in seen:
                raise InvalidInputError(f"{what}: {entry.path} appears twice in the layer")
            seen.add(key)
            yield entry, header
        _drain(blob)
    if hasher.hexdigest() != diff_id.encoded:
        raise VerificationError(
            f"{what}: uncompressed content is {diff_id.algorithm}:{hasher.hexdigest()},"
            f" but the config's diff_id is {diff_id}"
        )


def _drain(blob: ByteSource) -> None:
    """Read the compressed blob to its end, so its own digest check runs (and trailing garbage is seen)."""
    while blob.read(1 << 20):
        pass


def _entry(header: TarHeader, what: str) -> Entry | None:
    """The Entry for a tar member; None for the root directory and aufs metadata files.

    A member for the root that is not a directory is refused: no tool could apply it.
    """
    path = normalise(header.name, what)
    if path == "/" and header.kind != "dir":
        raise InvalidInputError(f"{what}: entry {header.name!r} is a {header.kind} in place of the root directory")
    if path == "/" or AUFS_META_PREFIX in path and _under_aufs_metadata(path):
        return None  # the root itself, or aufs bookkeeping (.wh..wh.plnk/..., .wh..wh.aufs): not part of the filesystem
    directory, base = posixpath.split(path)
    if base.startswith(WHITEOUT_PREFIX):
        return _whiteout(header, directory, base, what)
    link = header.linkname if header.kind == "symlink" else None
    if header.kind == "hardlink":
        link = normalise(header.linkname, f"{what}: hard link {path}")
        if link == "/":
            raise InvalidInputError(f"{what}: hard link {path} points at the root directory")
    return Entry(
        path=path,
        kind=header.kind,
        size=header.size,
        mode=header.mode,
        uid=header.uid,
        gid=header.gid,
        mtime=header.mtime,
        link=link,
        digest=header.digest,
        device=(header.devmajor, header.devminor) if header.kind in ("char", "block") else None,
    )


def _whiteout(header: TarHeader, directory: str, base: str, what: str) -> Entry | None:
    if base == OPAQUE_MARKER:
        return Entry(path=directory, kind="opaque")
    hidden = base[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", ".."):
        raise InvalidInputError(f"{what}: whiteout {posixpath.join(directory, base)!r} names no file")
    if header.kind != "file":
        raise InvalidInputError(f"{what}: whiteout {posixpath.join(directory, base)!r} is a {header.kind}, not a file")
    return Entry(path=posixpath.join(directory, hidden), kind="whiteout")


def _under_aufs_metadata(path: str) -> bool:
    """True for aufs bookkeeping (``.wh..wh.plnk``, ``.wh..wh.aufs`` and what is under them)."""
    return any(part.startswith(AUFS_META_PREFIX) and part != OPAQUE_MARKER for part in path.split("/"))
