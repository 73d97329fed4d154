"""A streaming tar reader: headers (ustar, GNU long names, pax) and content, one pass, no seeking.

Written for layers rather than general archives: it reads from a stream in
large chunks, hashes each regular file's content as it passes (or, with
``contents=True``, hands it out as a stream the way Go's ``tar.Reader``
does), never holds a file whole, checks every header's checksum, refuses what
it does not understand (sparse files, volume labels, unknown types) and,
after the end-of-archive marker, insists that only zero padding follows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from ocilab.errors import InvalidInputError
from ocilab.model.digest import ByteSource

BLOCK = 512
READ_SIZE = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)
# typeflag -> kind; b"\0" and b"7" (contiguous) are regular files, as every tar reader treats them.
_KINDS = {
    b"0": "file",
    b"\0": "file",
    b"7": "file",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "char",
    b"4": "block",
    b"5": "dir",
    b"6": "fifo",
}
_PAX_NUMERIC = {"size", "uid", "gid"}
_XATTR_PREFIX = "SCHILY.xattr."
_NUL_AS_SPACE = bytes.maketrans(b"\0", b" ")


@dataclass(slots=True)
class TarHeader:
    """One archive member as the tar stream describes it; ``digest`` is the sha256 of a file's content (32 bytes).

    ``read_tar`` fills ``digest`` in as the content streams past, before it yields the header; with
    ``contents=True`` it leaves ``digest`` None and sets ``content`` instead. ``xattrs`` are the pax
    ``SCHILY.xattr.*`` records, raw values.
    """

    name: str
    kind: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str
    devmajor: int
    devminor: int
    digest: bytes | None
    xattrs: dict[str, bytes] | None = None
    content: Content | None = None


class _Feed:
    """Bytes pulled from a source in large chunks, counted, capped and passed to an observer hash."""

    def __init__(self, source: ByteSource, hasher: hashlib._Hash, limit: int, what: str) -> None:
        self._source = source
        self._hasher = hasher
        self._limit = limit
        self._what = what
        self._buffer = b""
        self._position = 0
        self.total = 0

    def _pull(self) -> bool:
        chunk = self._source.read(READ_SIZE)
        if not chunk:
            return False
        self.total += len(chunk)
        if self.total > self._limit:
            raise InvalidInputError(
                f"{self._what}: more than {self._limit} uncompressed bytes; refusing"
                " (raise OCILAB_MAX_LAYER_BYTES if this is expected)"
            )
        self._hasher.update(chunk)
        self._buffer = self._buffer[self._position :] + chunk
        self._position = 0
        return True

    def take(self, count: int) -> bytes:
        """``count`` bytes, or fewer at the end of the stream."""
        while len(self._buffer) - self._position < count and self._pull():
            pass
        data = self._buffer[self._position : self._position + count]
        self._position += len(data)
        return data

    def digest_of(self, count: int, name: str) -> bytes:
        """The sha256 (32 raw bytes) of the next ``count`` bytes, consumed without keeping them."""
        content = hashlib.sha256()
        remaining = count
        while remaining:
            available = len(self._buffer) - self._position
            if not available:
                if not self._pull():
                    raise InvalidInputError(f"{self._what}: stream ends inside the content of {name!r}")
                continue
            step = min(available, remaining)
            content.update(memoryview(self._buffer)[self._position : self._position + step])
            self._position += step
            remaining -= step
        return content.digest()

    def read_upto(self, count: int, name: str) -> bytes:
        """At most ``count`` (> 0) bytes that must be there, as many as one buffer holds."""
        if self._position == len(self._buffer) and not self._pull():
            raise InvalidInputError(f"{self._what}: stream ends inside the content of {name!r}")
        data = self._buffer[self._position : self._position + count]
        self._position += len(data)
        return data

    def skip(self, count: int, name: str) -> None:
        """Consume ``count`` bytes that must be there."""
        if len(self.take(count)) != count:
            raise InvalidInputError(f"{self._what}: stream ends inside {name!r}")

    def rest_is_zero(self) -> bool:
        """Consume the stream to its end; True when nothing but zero bytes was left."""
        clean = not self._buffer[self._position :].strip(b"\0")
        self._position = len(self._buffer)
        while self._pull():
            clean = clean and not self._buffer.strip(b"\0")
            self._position = len(self._buffer)
        return clean


class Content:
    """A regular file's content as it streams past: read it (or not) before asking for the next member.

    Whatever is left unread when the reader moves on is skipped.
    """

    def __init__(self, feed: _Feed, size: int, name: str) -> None:
        self._feed = feed
        self._remaining = size
        self._name = name

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes (every remaining byte for ``n < 0``); ``b""`` at the end of the file."""
        if n < 0:
            return b"".join(iter(lambda: self.read(READ_SIZE), b""))
        if not n or not self._remaining:
            return b""
        data = self._feed.read_upto(min(n, self._remaining), self._name)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        """Skip what is left of the content."""
        if self._remaining:
            self._feed.skip(self._remaining, self._name)
            self._remaining = 0


def read_tar(
    source: ByteSource, hasher: hashlib._Hash, limit: int, what: str, contents: bool = False
) -> Iterator[TarHeader]:
    """The members of the tar stream ``source``, in order.

    Every byte read, padding and trailing zeros included, goes through ``hasher``
    (so the caller can check a diff_id once the iterator is exhausted). With
    ``contents``, a regular file's header carries its ``content`` stream instead
    of a digest; the stream is valid until the next member is asked for. Raises
    InvalidInputError naming ``what`` and the member for a malformed header, a
    stream cut short, data after the end-of-archive marker, or more than
    ``limit`` bytes in all.
    """
    feed = _Feed(source, hasher, limit, what)
    modes: dict[int, int] = {}  # one object per distinct mode and mtime: paths are many, their values few
    mtimes: dict[float, float] = {}
    pending: dict[str, str] = {}
    global_pax: dict[str, str] = {}
    while True:
        block = feed.take(BLOCK)
        if not block:
            return  # EOF at a header boundary: an archive without its end marker, as Go's reader accepts
        if len(block) < BLOCK:
            raise InvalidInputError(f"{what}: stream ends inside a tar header")
        if block == _ZERO_BLOCK:
            if not feed.rest_is_zero():
                raise InvalidInputError(f"{what}: data after the end of the tar archive")
            return
        _check_checksum(block, what)
        typeflag = block[156:157]
        size = _number(block[124:136], "size", what)
        raw_name = _name(block)
        if typeflag in (b"x", b"g", b"L", b"K"):
            payload = feed.take(size)
            if len(payload) != size:
                raise InvalidInputError(f"{what}: stream ends inside an extended header")
            feed.skip(-size % BLOCK, "an extended header")
            if typeflag == b"x":
                pending.update(_pax_records(payload, what))
            elif typeflag == b"g":
                global_pax.update(_pax_records(payload, what))
            else:
                pending["path" if typeflag == b"L" else "linkpath"] = payload.rstrip(b"\0").decode(
                    "utf-8", "surrogateescape"
                )
            continue
        kind = _KINDS.get(typeflag)
        if kind is None:
            raise InvalidInputError(f"{what}: {raw_name!r} has tar type {typeflag!r}, which layers do not use")
        fields = {**global_pax, **pending}
        pending = {}
        header = _header(block, kind, size, raw_name, fields, what)
        header.mode = modes.setdefault(header.mode, header.mode)
        header.mtime = mtimes.setdefault(header.mtime, header.mtime)
        if fields:
            header.xattrs = {
                key[len(_XATTR_PREFIX) :]: value.encode("utf-8", "surrogateescape")
                for key, value in fields.items()
                if key.startswith(_XATTR_PREFIX)
            } or None
        if kind != "file":
            yield header
        elif contents:
            header.content = Content(feed, header.size, header.name)
            yield header
            header.content.close()
            feed.skip(-header.size % BLOCK, header.name)
        else:
            header.digest = feed.digest_of(header.size, header.name)
            feed.skip(-header.size % BLOCK, header.name)
            yield header


def _header(block: bytes, kind: str, size: int, raw_name: str, pax: dict[str, str], what: str) -> TarHeader:
    name = pax.get("path", raw_name)
    try:
        size = int(pax["size"]) if "size" in pax else size
        uid = int(pax["uid"]) if "uid" in pax else _number(block[108:116], "uid", what)
        gid = int(pax["gid"]) if "gid" in pax else _number(block[116:124], "gid", what)
        mtime = float(pax["mtime"]) if "mtime" in pax else float(_number(block[136:148], "mtime", what))
    except ValueError:
        raise InvalidInputError(f"{what}: {name!r} has a malformed pax size, uid, gid or mtime") from None
    if size < 0:
        raise InvalidInputError(f"{what}: {name!r} has a negative size")
    return TarHeader(
        name=name,
        kind=kind,
        size=size if kind == "file" else 0,  # other types are header-only: no data follows, whatever size says
        mode=_number(block[100:108], "mode", what) & 0o7777,
        uid=uid,
        gid=gid,
        mtime=mtime,
        linkname=pax.get("linkpath", _text(block[157:257])),
        devmajor=_number(block[329:337], "devmajor", what) if kind in ("char", "block") else 0,
        devminor=_number(block[337:345], "devminor", what) if kind in ("char", "block") else 0,
        digest=None,
    )


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _name(block: bytes) -> str:
    name = _text(block[0:100])
    if block[257:262] == b"ustar":
        prefix = _text(block[345:500])
        if prefix:
            name = f"{prefix}/{name}"
    return name


def _number(field: bytes, label: str, what: str) -> int:
    """A numeric header field: octal text, or base-256 binary when the high bit is set (GNU)."""
    try:
        return int(field.translate(_NUL_AS_SPACE), 8)  # the common case, in one C call
    except ValueError:
        pass
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidInputError(f"{what}: tar header field {label} is not a number ({field!r})") from None


def _check_checksum(block: bytes, what: str) -> None:
    stored = _number(block[148:156], "checksum", what)
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored != unsigned:
        signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
        if stored != signed:
            raise InvalidInputError(f"{what}: corrupt tar header near {_text(block[0:100])!r} (bad checksum)")


def _pax_records(payload: bytes, what: str) -> dict[str, str]:
    """``"%d %s=%s\\n"`` records of a pax extended header."""
    records: dict[str, str] = {}
    position = 0
    while position < len(payload):
        space = payload.find(b" ", position)
        length_text = payload[position:space] if space > position else b""
        length = int(length_text) if length_text.isdigit() else 0
        record = payload[space + 1 : position + length]
        if length <= 0 or position + length > len(payload) or not record.endswith(b"\n") or b"=" not in record:
            raise InvalidInputError(f"{what}: malformed pax header record at byte {position}")
        name, _, value = record[:-1].partition(b"=")
        records[name.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    for numeric in _PAX_NUMERIC & records.keys():
        if not records[numeric].isdigit():
            raise InvalidInputError(f"{what}: pax header {numeric}={records[numeric]!r} is not a number")
    return records
