"""``read_layer`` on tar streams made here with Python's ``tarfile``: every field exact, every bad input refused.

The peers are Python's ``tarfile`` (entries, fields, content digests) and GNU
``tar tv`` (names, types, modes, owners, sizes, times, link targets). Bad input
must raise the exact error class, naming the layer label and, where there is
one, the entry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import random
import stat
import subprocess
import sys
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard

import ocilab
from ocilab.errors import InvalidInputError, UnsupportedError, VerificationError
from ocilab.model import Descriptor, Digest
from ocilab.model import mediatype as mt
from ocilab.operations.analysis import layer_entries
from ocilab.stores.layout_writer import LayoutWriter
from ocilab.tar.compression import GZIP_BACKEND
from ocilab.tar.entries import MAX_LAYER_BYTES_ENV, Entry, read_layer
from ocilab.tar.tarstream import READ_SIZE
from tests.conftest import require_tool
from tests.random_image import write_random_image

WHAT = "oci:/test/layout:v1: layer 3 (sha256:feed)"
"""The layer label every error must carry."""

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
COMPRESSIONS = ("none", "gzip", "zstd")
MEDIA_TYPES = {"none": mt.OCI_LAYER_TAR, "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}
EPOCH = 1_700_000_000
Member = tuple[tarfile.TarInfo, bytes | None]


# ---------------------------------------------------------------------------------------------- building tar streams


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes | None = None,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: float = EPOCH,
    link: str = "",
    device: tuple[int, int] = (0, 0),
) -> Member:
    """One tar member: its header and, for a regular file, its content."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, mtime
    info.uname = info.gname = ""
    info.linkname = link
    info.devmajor, info.devminor = device
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        data = data or b""
        info.size = len(data)
    return info, data


def make_tar(members: list[Member], tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar archive of ``members`` in ``tar_format``, end-of-archive marker and record padding included."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def raw_header(name: str, typeflag: bytes, size: int = 0) -> bytes:
    """A single ustar header block with any type flag (tarfile writes what it is given), checksum correct."""
    info = tarfile.TarInfo(name)
    info.type = typeflag
    info.size = size
    return info.tobuf(tarfile.USTAR_FORMAT)


def pax_member(payload: bytes) -> bytes:
    """A pax extended header (type ``x``) whose records are exactly ``payload``, padded to a block."""
    return raw_header("PaxHeader/f", tarfile.XHDTYPE, len(payload)) + payload + bytes(-len(payload) % 512)


def compress(data: bytes, compression: str) -> bytes:
    """``data`` as a layer blob in ``compression``."""
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def read(tar: bytes, compression: str = "none", diff_id: Digest | None = None, limit: int | None = None) -> list[Entry]:
    """All entries of the layer whose uncompressed tar is ``tar``, stored in ``compression``."""
    diff_id = diff_id or Digest.of_bytes(tar)
    return list(read_layer(io.BytesIO(compress(tar, compression)), compression, diff_id, WHAT, limit))


def refused(blob: bytes, compression: str, diff_id: Digest, error: type[Exception]) -> str:
    """The message of the ``error`` that reading ``blob`` must raise; checks that it names the layer."""
    with pytest.raises(error) as caught:
        list(read_layer(io.BytesIO(blob), compression, diff_id, WHAT))
    assert type(caught.value) is error, f"expected exactly {error.__name__}, got {type(caught.value).__name__}"
    message = str(caught.value)
    assert WHAT in message, message
    return message


# ------------------------------------------------------------------------------------------------------ the peers


def normalised(name: str) -> str:
    """A tar name as ``/a/b`` (posixpath's own rules; the cases here have no ``..``)."""
    return posixpath.normpath("/" + name.lstrip("/"))


TARFILE_KINDS: dict[bytes, str] = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.LNKTYPE: "hardlink",
    tarfile.SYMTYPE: "symlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.DIRTYPE: "dir",
    tarfile.FIFOTYPE: "fifo",
}


def tarfile_view(tar: bytes) -> list[tuple[object, ...]]:
    """What Python's tarfile reports for each member, in ``entry_view`` form."""
    rows: list[tuple[object, ...]] = []
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
        for info in archive.getmembers():
            path = normalised(info.name)
            if path == "/":
                continue
            kind = TARFILE_KINDS[info.type]
            digest = None
            if kind == "file":
                stream = archive.extractfile(info)
                assert stream is not None
                digest = hashlib.sha256(stream.read()).digest()
            link = {"symlink": info.linkname, "hardlink": normalised(info.linkname)}.get(kind)
            device = (info.devmajor, info.devminor) if kind in ("char", "block") else None
            size = info.size if kind == "file" else 0
            rows.append((path, kind, size, info.mode & 0o7777, info.uid, info.gid, info.mtime, link, digest, device))
    return rows


def entry_view(entries: list[Entry]) -> list[tuple[object, ...]]:
    return [(e.path, e.kind, e.size, e.mode, e.uid, e.gid, e.mtime, e.link, e.digest, e.device) for e in entries]


GNU_KINDS = {"-": "file", "d": "dir", "l": "symlink", "h": "hardlink", "c": "char", "b": "block", "p": "fifo"}


def gnu_tar_view(blob: bytes, compression: str) -> list[tuple[object, ...]]:
    """``tar tv`` of the blob: (path, kind, permission string, uid, gid, size or device, mtime second, link)."""
    flags = {"none": [], "gzip": ["-z"], "zstd": ["--zstd"]}[compression]
    result = subprocess.run(
        [require_tool("tar"), "-tv", "--numeric-owner", "--full-time", "--quoting-style=literal", *flags, "-f", "-"],
        input=blob,
        capture_output=True,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C.UTF-8"},
        check=True,
    )
    rows: list[tuple[object, ...]] = []
    for line in result.stdout.decode().splitlines():
        perms, owner, size, day, time, rest = line.split(None, 5)
        kind = GNU_KINDS[perms[0]]
        link = None
        if kind == "symlink":
            rest, link = rest.split(" -> ", 1)
        elif kind == "hardlink":
            rest, target = rest.split(" link to ", 1)
            link = normalised(target)
        path = normalised(rest)
        if path == "/":
            continue
        uid, gid = map(int, owner.split("/"))
        rows.append((path, kind, perms[1:], uid, gid, size, f"{day} {time.split('.')[0]}", link))
    return rows


def gnu_form(entries: list[Entry]) -> list[tuple[object, ...]]:
    """Our entries in ``gnu_tar_view`` form."""
    rows: list[tuple[object, ...]] = []
    for e in entries:
        size = f"{e.device[0]},{e.device[1]}" if e.device else str(e.size)
        when = datetime.fromtimestamp(int(e.mtime), UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append((e.path, e.kind, stat.filemode(e.mode)[1:], e.uid, e.gid, size, when, e.link))
    return rows


# ------------------------------------------------------------------------------------------------------ sample set

_RANDOM = random.Random(20240917)
ACROSS_READS = _RANDOM.randbytes(READ_SIZE + 4321)  # crosses the reader's 1 MiB read size
EXACT_READ = _RANDOM.randbytes(READ_SIZE)
ONE_BLOCK = _RANDOM.randbytes(512)
LONG_NAME = "long/" + "a" * 90 + "/" + "b" * 90 + "/file.txt"  # 196 characters; ustar splits it into prefix + name
VERY_LONG_NAME = "very/" + "/".join(["c" * 60] * 5) + "/file.bin"  # 318 characters: GNU ././@LongLink or pax path
LONG_TARGET = "/opt/" + "t" * 150 + "/target"  # a link target over 100 characters
NON_ASCII = "usr/share/ünïcødé/日本語.txt"
BIG_ID = 3_000_000  # over 2097151 = 0o7777777: base-256 in GNU headers, a pax record in pax


def sample_members(tar_format: int) -> list[Member]:
    """Every kind of member a layer holds, as far as ``tar_format`` can express it."""
    members = [
        member("./", tarfile.DIRTYPE, mode=0o755),
        member("etc/", tarfile.DIRTYPE, mode=0o755, mtime=EPOCH + 1),
        member("etc/empty", data=b"", mode=0o600, mtime=EPOCH + 2),
        member("etc/big", data=ACROSS_READS, mode=0o640, uid=1000, gid=1001, mtime=EPOCH + 3),
        member("etc/exact-mib", data=EXACT_READ, mtime=EPOCH + 4),
        member("etc/one-block", data=ONE_BLOCK, mtime=EPOCH + 5),
        member("usr/bin/suid", data=b"#!/bin/sh\necho hi\n", mode=0o4755, mtime=EPOCH + 6),
        member("tmp/", tarfile.DIRTYPE, mode=0o1777, mtime=EPOCH + 7),
        member("etc/link", tarfile.SYMTYPE, mode=0o777, link="../usr/bin/suid"),
        member("etc/hard", tarfile.LNKTYPE, mode=0o640, uid=1000, gid=1001, link="etc/big"),
        member("dev/null", tarfile.CHRTYPE, mode=0o666, device=(1, 3)),
        member("dev/sda", tarfile.BLKTYPE, mode=0o660, gid=6, device=(8, 0)),
        member("run/fifo", tarfile.FIFOTYPE, mode=0o600, uid=7, gid=7),
        member(NON_ASCII, data="こんにちは\n".encode(), mtime=EPOCH + 8),
        member(LONG_NAME, data=b"a long name\n", mtime=EPOCH + 9),
        member("./etc//dotted/", tarfile.DIRTYPE, mode=0o700),
    ]
    if tar_format != tarfile.USTAR_FORMAT:  # ustar has no room for these
        members += [
            member(VERY_LONG_NAME, data=b"a very long name\n", mtime=EPOCH + 10),
            member("etc/long-symlink", tarfile.SYMTYPE, mode=0o777, link=LONG_TARGET),
            member("etc/long-hardlink", tarfile.LNKTYPE, link=VERY_LONG_NAME),
            member("home/big-ids", data=b"owned by a big uid\n", uid=BIG_ID, gid=BIG_ID + 1),
        ]
    if tar_format == tarfile.PAX_FORMAT:
        members.append(member("etc/fractional-mtime", data=b"x", mtime=EPOCH + 0.25))
    return members


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("format_name", FORMATS)
def test_entries_match_tarfile(format_name: str, compression: str) -> None:
    """Every member (long names and targets, non-ASCII, big ids, devices, fifos, links, 0 B and >1 MiB files)
    comes out with the path, kind, size, mode, uid, gid, mtime, link, device and content digest tarfile reports."""
    tar = make_tar(sample_members(FORMATS[format_name]), FORMATS[format_name])
    if format_name == "gnu":
        assert b"././@LongLink" in tar and b"\x80\x00\x00\x00\x00\x2d\xc6\xc0" in tar  # long names; base-256 uid
    entries = read(tar, compression)
    assert entry_view(entries) == tarfile_view(tar)
    assert len(entries) == len(sample_members(FORMATS[format_name])) - 1  # all but the root
    by_path = {entry.path: entry for entry in entries}
    assert by_path["/etc/big"].digest == hashlib.sha256(ACROSS_READS).digest()
    assert by_path["/etc/empty"].size == 0 and by_path["/etc/empty"].digest == hashlib.sha256(b"").digest()
    assert by_path["/etc/hard"].link == "/etc/big" and by_path["/etc/hard"].digest is None
    assert by_path["/dev/null"].device == (1, 3) and by_path["/usr/bin/suid"].mode == 0o4755
    assert "/" + NON_ASCII in by_path and "/etc/dotted" in by_path


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("format_name", FORMATS)
def test_entries_match_gnu_tar(format_name: str, compression: str) -> None:
    """GNU ``tar tv`` sees the same names, types, permissions, owners, sizes, devices, times and link targets."""
    tar = make_tar(sample_members(FORMATS[format_name]), FORMATS[format_name])
    blob = compress(tar, compression)
    if compression == "zstd":
        require_tool("zstd")
    assert gnu_form(read(tar, compression)) == gnu_tar_view(blob, compression)


def test_gzip_backend_is_named() -> None:
    """The decoder in use is one of the three the compression table knows (the bench prints it)."""
    assert GZIP_BACKEND in ("zlib-ng", "isal", "zlib")


# ----------------------------------------------------------------------------------------------------- diff_id


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_correct_diff_id_passes_and_wrong_one_is_refused_at_the_end(compression: str) -> None:
    """The uncompressed bytes are checked against the diff_id once the stream ends: a wrong one raises
    VerificationError naming the layer, after the entries were yielded."""
    tar = make_tar(sample_members(tarfile.PAX_FORMAT))
    assert len(read(tar, compression, Digest.of_bytes(tar))) > 0
    wrong = Digest.of_bytes(tar + b"x")
    entries = read_layer(io.BytesIO(compress(tar, compression)), compression, wrong, WHAT)
    yielded = []
    with pytest.raises(VerificationError) as caught:
        for entry in entries:
            yielded.append(entry)
    assert WHAT in str(caught.value) and str(wrong) in str(caught.value)
    assert len(yielded) == len(tarfile_view(tar))


# ---------------------------------------------------------------------------------------------- accepted oddities


def test_zero_padding_after_the_end_marker_is_accepted() -> None:
    """Zeros after the end-of-archive marker (tar pads to records; some writers pad more) are part of the diff_id."""
    tar = make_tar([member("a", data=b"hello")]) + bytes(3 * READ_SIZE + 17)
    assert [entry.path for entry in read(tar)] == ["/a"]


def test_archive_without_end_marker_is_accepted() -> None:
    """A stream that ends at a header boundary without the two zero blocks reads as its members (as Go's reader)."""
    tar = make_tar([member("a", data=b"hello"), member("b/", tarfile.DIRTYPE)])
    body = tar[: 3 * 512]  # header a, content a, header b
    assert [entry.path for entry in read(body)] == ["/a", "/b"]


def test_absolute_and_dotted_names_are_normalised() -> None:
    """``/etc/x`` stays ``/etc/x`` and ``./usr//lib/`` becomes ``/usr/lib``, as tar readers accept them."""
    tar = make_tar([member("/etc/x", data=b"x"), member("./usr//lib/", tarfile.DIRTYPE), member("//srv/./y")])
    assert b"/etc/x" in tar[:100]
    assert [entry.path for entry in read(tar)] == ["/etc/x", "/usr/lib", "/srv/y"]


def test_whiteouts_come_out_as_whiteout_and_opaque_entries() -> None:
    """``.wh.<name>`` becomes a ``whiteout`` of ``<name>``, ``.wh..wh..opq`` an ``opaque`` of its directory,
    and aufs bookkeeping (``.wh..wh.plnk``) is dropped: whiteout files themselves are never file entries."""
    tar = make_tar(
        [
            member("etc/.wh.passwd"),
            member("var/cache/.wh..wh..opq"),
            member(".wh..wh.plnk/", tarfile.DIRTYPE),
            member("usr/.wh..hidden"),  # whiteout of the dotfile .hidden
        ]
    )
    assert [(entry.path, entry.kind) for entry in read(tar)] == [
        ("/etc/passwd", "whiteout"),
        ("/var/cache", "opaque"),
        ("/usr/.hidden", "whiteout"),
    ]


def test_aufs_bookkeeping_directory_content_is_not_a_file() -> None:
    """image-spec: "it is not possible to create a filesystem which has a file or directory with a name beginning
    with ``.wh.``". The aufs hard-link directory ``.wh..wh.plnk/`` is dropped, and so must be what it holds
    (moby skips every member under it): no entry may have a ``.wh.`` component."""
    tar = make_tar(
        [
            member(".wh..wh.plnk/", tarfile.DIRTYPE),
            member(".wh..wh.plnk/123.456", data=b"hard link target kept by aufs"),
            member("etc/kept", data=b"x"),
        ]
    )
    assert [entry.path for entry in read(tar)] == ["/etc/kept"]


def test_whiteout_and_re_added_path_in_one_layer_are_accepted() -> None:
    """image-spec layer.md: "Files that are present in the same layer as a whiteout file can only be hidden by
    whiteout files in subsequent layers." A layer holding both ``.wh.foo`` and ``foo`` has no duplicate tar path:
    it must be read, yielding the whiteout and the entry, in either order."""
    for members in (
        [member("a/.wh.foo"), member("a/foo", data=b"new")],
        [member("a/foo", data=b"new"), member("a/.wh.foo")],
    ):
        kinds = sorted((entry.path, entry.kind) for entry in read(make_tar(members)))
        assert kinds == [("/a/foo", "file"), ("/a/foo", "whiteout")]


# ------------------------------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def plain_tar() -> bytes:
    """A small valid layer used by the corruption cases: two files, one larger than a read."""
    return make_tar(
        [
            member("etc/", tarfile.DIRTYPE),
            member("etc/hostname", data=b"ocilab\n"),
            member("etc/payload", data=ACROSS_READS),
        ]
    )


@pytest.mark.parametrize(
    ("promised", "given"),
    [("gzip", "none"), ("zstd", "gzip"), ("none", "gzip"), ("gzip", "zstd"), ("none", "zstd")],
)
def test_compression_that_does_not_match_the_media_type(plain_tar: bytes, promised: str, given: str) -> None:
    """Bytes in another compression than the media type promises are refused, saying both."""
    message = refused(compress(plain_tar, given), promised, Digest.of_bytes(plain_tar), InvalidInputError)
    assert promised in message and given in message


def test_unknown_compression_is_unsupported(plain_tar: bytes) -> None:
    """A compression outside the table is UnsupportedError, naming the layer."""
    message = refused(plain_tar, "bzip2", Digest.of_bytes(plain_tar), UnsupportedError)
    assert "bzip2" in message


def test_corrupt_gzip_stream(plain_tar: bytes) -> None:
    """Flipped bytes in the middle of the gzip stream: InvalidInputError naming the layer and gzip."""
    blob = bytearray(compress(plain_tar, "gzip"))
    middle = len(blob) // 2
    for offset in range(middle, middle + 8):
        blob[offset] ^= 0xFF
    message = refused(bytes(blob), "gzip", Digest.of_bytes(plain_tar), InvalidInputError)
    assert "gzip" in message


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize("cut", ["two-thirds", "last-byte", "last-5-bytes"])
@pytest.mark.parametrize("layer", ["small", "large"])
def test_truncated_compressed_stream(plain_tar: bytes, compression: str, cut: str, layer: str) -> None:
    """A compressed stream cut short is InvalidInputError (a truncated stream), whether the cut falls in the data
    or in the trailer (gzip CRC/ISIZE, zstd content checksum, which the zstd CLI and Go's zstd write by default);
    never a silent success or a diff_id complaint about an empty layer."""
    tar = plain_tar if layer == "large" else make_tar([member("etc/hostname", data=b"ocilab\n")])
    if compression == "zstd":
        blob = zstandard.ZstdCompressor(write_checksum=True).compress(tar)
    else:
        blob = compress(tar, compression)
    keep = {"two-thirds": len(blob) * 2 // 3, "last-byte": len(blob) - 1, "last-5-bytes": len(blob) - 5}[cut]
    refused(blob[:keep], compression, Digest.of_bytes(tar), InvalidInputError)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_multi_member_streams_are_accepted(plain_tar: bytes, compression: str) -> None:
    """A tar split over two gzip members (RFC 1952; pigz, concatenated files) or two zstd frames reads whole."""
    half = len(plain_tar) // 2
    blob = compress(plain_tar[:half], compression) + compress(plain_tar[half:], compression)
    entries = list(read_layer(io.BytesIO(blob), compression, Digest.of_bytes(plain_tar), WHAT))
    assert [entry.path for entry in entries] == ["/etc", "/etc/hostname", "/etc/payload"]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_trailing_garbage_after_the_compressed_stream(plain_tar: bytes, compression: str) -> None:
    """Non-zero bytes after the gzip / zstd stream are refused (the blob is read to its end)."""
    blob = compress(plain_tar, compression) + b"this is not a compressed stream"
    refused(blob, compression, Digest.of_bytes(plain_tar), InvalidInputError)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_tar_truncated_mid_header(plain_tar: bytes, compression: str) -> None:
    """A tar that stops inside a header block is InvalidInputError."""
    cut = plain_tar[: 3 * 512 + 300]  # etc/ header, etc/hostname header + content block, 300 bytes of the next header
    message = refused(compress(cut, compression), compression, Digest.of_bytes(cut), InvalidInputError)
    assert "header" in message


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_tar_truncated_mid_content(plain_tar: bytes, compression: str) -> None:
    """A tar that stops inside a file's content is InvalidInputError naming that file."""
    cut = plain_tar[: 4 * 512 + READ_SIZE // 2]
    message = refused(compress(cut, compression), compression, Digest.of_bytes(cut), InvalidInputError)
    assert "etc/payload" in message


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("where", ["just after the marker", "at the very end", "a megabyte later"])
def test_garbage_after_the_end_marker(plain_tar: bytes, compression: str, where: str) -> None:
    """Non-zero bytes anywhere after the end-of-archive marker are refused: the stream is read to its end."""
    end = plain_tar.rindex(bytes(1024))  # trailing zeros start within the last record
    tar = bytearray(plain_tar + bytes(READ_SIZE + 1000))
    offset = {"just after the marker": end + 1024 + 3, "at the very end": len(tar) - 1}.get(where, end + READ_SIZE)
    tar[offset] = 0x01
    message = refused(compress(bytes(tar), compression), compression, Digest.of_bytes(bytes(tar)), InvalidInputError)
    assert "after the end" in message


@pytest.mark.parametrize(
    ("members", "entry"),
    [
        ([member("etc/x", data=b"1"), member("etc/x", data=b"2")], "/etc/x"),
        ([member("etc/", tarfile.DIRTYPE), member("./etc", tarfile.DIRTYPE)], "/etc"),
        ([member("a/b", data=b"1"), member("a//b", tarfile.SYMTYPE, link="c")], "/a/b"),
        ([member("d/.wh..wh..opq"), member("./d/.wh..wh..opq")], "/d"),
        ([member("d/.wh.x"), member("d/.wh.x")], "/d/x"),
    ],
    ids=["file-twice", "dir-twice", "file-then-symlink", "opaque-twice", "whiteout-twice"],
)
def test_duplicate_entries(members: list[Member], entry: str) -> None:
    """The same path twice in one layer (image-spec: "MUST NOT include duplicate entries") is InvalidInputError."""
    tar = make_tar(members)
    assert entry in refused(tar, "none", Digest.of_bytes(tar), InvalidInputError)


@pytest.mark.parametrize("name", ["dir/.wh.", "dir/.wh..", "dir/.wh..."])
def test_whiteouts_that_name_no_file(name: str) -> None:
    """A whiteout names a file: ``.wh.`` (empty), ``.wh..`` (``.``) and ``.wh...`` (``..``) are refused."""
    tar = make_tar([member(name)])
    assert name in refused(tar, "none", Digest.of_bytes(tar), InvalidInputError)


def test_whiteout_that_is_not_a_regular_file() -> None:
    """A whiteout is "an empty file": a symlink named ``.wh.x`` is refused, naming it."""
    tar = make_tar([member("dir/.wh.x", tarfile.SYMTYPE, link="/etc/passwd")])
    assert "dir/.wh.x" in refused(tar, "none", Digest.of_bytes(tar), InvalidInputError)


@pytest.mark.parametrize("name", ["a/../../etc/passwd", "../x", "ok/..", "a/b/../../../c"])
def test_dot_dot_components(name: str) -> None:
    """A name with a ``..`` component is refused, naming the entry (it could escape the root when unpacked)."""
    tar = make_tar([member(name, data=b"x")])
    assert name in refused(tar, "none", Digest.of_bytes(tar), InvalidInputError)


def test_dot_dot_in_a_hard_link_target_names_the_link() -> None:
    """A hard link whose target has ``..`` is refused; the message names the link entry and its target."""
    tar = make_tar([member("etc/shadow-link", tarfile.LNKTYPE, link="../../etc/shadow")])
    message = refused(tar, "none", Digest.of_bytes(tar), InvalidInputError)
    assert "../../etc/shadow" in message
    assert "etc/shadow-link" in message, message


def test_nul_in_a_pax_path() -> None:
    """A pax ``path`` record with a NUL byte is refused, naming the entry."""
    info, data = member("placeholder", data=b"x")
    info.pax_headers = {"path": "nul/inside\x00name"}
    tar = make_tar([(info, data)])
    assert "nul/inside" in refused(tar, "none", Digest.of_bytes(tar), InvalidInputError)


@pytest.mark.parametrize(
    "typeflag", [b"V", b"S", b"M", b"D", b"N", b"A", b"Z"], ids=lambda flag: f"type-{flag.decode()}"
)
def test_unknown_tar_types(typeflag: bytes) -> None:
    """Volume headers, GNU sparse / multi-volume / dumpdir / long-name-old, and unknown letters: refused by name."""
    tar = make_tar([member("etc/ok", data=b"x")])
    odd = raw_header("odd-member", typeflag) + bytes(1024)
    blob = tar[:1024] + odd
    message = refused(blob, "none", Digest.of_bytes(blob), InvalidInputError)
    assert "odd-member" in message and repr(typeflag) in message


def test_bad_header_checksum(plain_tar: bytes) -> None:
    """A header whose checksum does not add up is refused, naming the member it belongs to."""
    tar = bytearray(plain_tar)
    header = 512 * 2 + 512  # etc/, etc/hostname + content, then etc/payload's header
    assert tar[header : header + 11] == b"etc/payload"
    tar[header + 100] ^= 0x01  # one bit of the mode field
    message = refused(bytes(tar), "none", Digest.of_bytes(bytes(tar)), InvalidInputError)
    assert "etc/payload" in message and "checksum" in message


@pytest.mark.parametrize(
    "payload",
    [
        b"30 path=short\n",  # length says 30, the record is 14 bytes
        b"no-length-here\n",  # no length at all
        b"5 path=short\n",  # length too short for the record
        b"13 pathshort\n",  # no '='
        b"11 uid=abc\n",  # a number that is not one
        b"-4 a=b\n",  # a negative length
    ],
    ids=["length-too-long", "no-length", "length-too-short", "no-equals", "uid-not-a-number", "negative-length"],
)
def test_malformed_pax_record(payload: bytes) -> None:
    """A pax header that is not ``"%d %s=%s\\n"`` records is refused (GNU tar refuses each of these too)."""
    tail = make_tar([member("f", data=b"x")], tarfile.USTAR_FORMAT)
    blob = pax_member(payload) + tail
    gnu = subprocess.run([require_tool("tar"), "-tf", "-"], input=blob, capture_output=True)
    assert gnu.returncode != 0, "GNU tar accepts this pax header; it is not a malformed case"
    message = refused(blob, "none", Digest.of_bytes(blob), InvalidInputError)
    assert "pax" in message


def test_non_numeric_header_field() -> None:
    """An octal field with non-octal text (here uid) is refused, naming the field."""
    header = bytearray(raw_header("f", tarfile.REGTYPE))
    header[108:116] = b"12z4567\0"
    header[148:156] = b"        "
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    blob = bytes(header) + bytes(1024)
    assert "uid" in refused(blob, "none", Digest.of_bytes(blob), InvalidInputError)


# ---------------------------------------------------------------------------------------------- decompression cap


@pytest.fixture(scope="module")
def gzip_bomb() -> tuple[bytes, Digest]:
    """A layer of one 200 MB file of zeros, gzip-compressed to a few hundred KB, and its diff_id."""
    size = 200 * 1000 * 1000
    header = member("zeros")[0]
    header.size = size
    head = header.tobuf(tarfile.PAX_FORMAT)
    tail = bytes(-size % 512) + bytes(1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    hasher = hashlib.sha256(head)
    parts = [compressor.compress(head)]
    chunk = bytes(4 * READ_SIZE)
    remaining = size
    while remaining:
        piece = chunk[: min(remaining, len(chunk))]
        hasher.update(piece)
        parts.append(compressor.compress(piece))
        remaining -= len(piece)
    hasher.update(tail)
    parts += [compressor.compress(tail), compressor.flush()]
    return b"".join(parts), Digest("sha256", hasher.hexdigest())


def test_gzip_bomb_hits_the_cap_in_little_memory(gzip_bomb: tuple[bytes, Digest]) -> None:
    """200 MB of zeros in a ~200 KB gzip with ``limit=50 MB``: InvalidInputError naming the layer and the limit,
    while Python's traced memory peaks far below the limit."""
    blob, diff_id = gzip_bomb
    assert len(blob) < 1_000_000
    limit = 50 * 1000 * 1000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError) as caught:
            list(read_layer(io.BytesIO(blob), "gzip", diff_id, WHAT, limit=limit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert WHAT in str(caught.value) and str(limit) in str(caught.value)
    assert MAX_LAYER_BYTES_ENV in str(caught.value)
    assert peak < 50 * 1000 * 1000, f"peak traced memory {peak} bytes"


def test_gzip_bomb_reads_under_a_higher_cap(gzip_bomb: tuple[bytes, Digest]) -> None:
    """The same layer under a cap above its size reads fine, in a few megabytes: the cap, not a buffer, stopped it."""
    blob, diff_id = gzip_bomb
    tracemalloc.start()
    try:
        entries = list(read_layer(io.BytesIO(blob), "gzip", diff_id, WHAT, limit=300 * 1000 * 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(entry.path, entry.size) for entry in entries] == [("/zeros", 200 * 1000 * 1000)]
    assert peak < 50 * 1000 * 1000, f"peak traced memory {peak} bytes"


def test_cap_is_exact_on_uncompressed_bytes(plain_tar: bytes) -> None:
    """A layer of exactly ``limit`` uncompressed bytes passes; one byte less of cap refuses it."""
    assert len(read(plain_tar, "gzip", limit=len(plain_tar))) == 3
    with pytest.raises(InvalidInputError, match=str(len(plain_tar) - 1)) as caught:
        read(plain_tar, "gzip", limit=len(plain_tar) - 1)
    assert WHAT in str(caught.value)


def test_cap_from_the_environment(plain_tar: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """``OCILAB_MAX_LAYER_BYTES`` sets the cap when none is passed; a value that is not a number is refused."""
    monkeypatch.setenv(MAX_LAYER_BYTES_ENV, "4096")
    with pytest.raises(InvalidInputError, match="4096") as caught:
        read(plain_tar)
    assert WHAT in str(caught.value)
    monkeypatch.setenv(MAX_LAYER_BYTES_ENV, "10MB")
    with pytest.raises(InvalidInputError, match=MAX_LAYER_BYTES_ENV):
        read(plain_tar)


# --------------------------------------------------------------------------------- through a real OCI image layout


def write_layout(root: Path, blob: bytes, media_type: str, diff_id: Digest) -> tuple[Path, Descriptor]:
    """A one-layer OCI image layout tagged ``v1`` whose layer blob is ``blob``; its path and the layer descriptor."""
    with LayoutWriter(root) as writer:
        layer = writer.put_bytes(blob, media_type)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
            "history": [{"created_by": "crafted test layer"}],
        }
        config_descriptor = writer.put_bytes(json.dumps(config).encode(), mt.OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": config_descriptor.to_json(),
            "layers": [layer.to_json()],
        }
        writer.tag(writer.put_bytes(json.dumps(manifest).encode(), mt.OCI_MANIFEST), "v1")
        return writer.commit(), layer


def blob_file(layout: Path, descriptor: Descriptor) -> Path:
    return layout / "blobs" / descriptor.digest.algorithm / descriptor.digest.encoded


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_layout_layer_reads(tmp_path: Path, compression: str) -> None:
    """Control: an intact layer of a real layout gives tarfile's entries through ``layer_entries``."""
    tar = make_tar(sample_members(tarfile.PAX_FORMAT))
    blob = compress(tar, compression)
    layout, _ = write_layout(tmp_path / "image", blob, MEDIA_TYPES[compression], Digest.of_bytes(tar))
    with ocilab.open(f"oci:{layout}:v1") as image:
        assert entry_view(list(layer_entries(image, 0))) == tarfile_view(tar)


def tampered_layout(root: Path, compression: str) -> tuple[Path, Descriptor, int]:
    """A layout whose layer blob was replaced by other bytes of the same size, its diff_id true to the new bytes
    (so only the blob digest can catch it); the layout, descriptor and entry count. The last file is larger than
    the read size, so the first entries stream out before the blob's end is reached."""
    tar = make_tar(
        [
            member("etc/", tarfile.DIRTYPE),
            member("etc/motd", data=b"hello\n" * 100),
            member("var/big", data=ACROSS_READS * 3),
        ]
    )
    if compression == "gzip":
        original, replacement = gzip.compress(tar, mtime=0), gzip.compress(tar, mtime=1)  # differ in the header only
        diff_id = Digest.of_bytes(tar)
    else:
        original = tar
        replacement = tar.replace(b"hello\n", b"HELLO\n", 1)  # one content byte changed
        diff_id = Digest.of_bytes(replacement)
    assert len(original) == len(replacement) and original != replacement
    layout, descriptor = write_layout(root, original, MEDIA_TYPES[compression], diff_id)
    blob_file(layout, descriptor).write_bytes(replacement)
    return layout, descriptor, 3


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_layout_blob_not_matching_its_digest(tmp_path: Path, compression: str) -> None:
    """Layer bytes that are not the manifest's digest raise VerificationError naming the layer and its digest,
    once the blob is fully consumed: the entries before its end were yielded first."""
    layout, descriptor, count = tampered_layout(tmp_path / "image", compression)
    yielded = []
    with ocilab.open(f"oci:{layout}:v1") as image, pytest.raises(VerificationError) as caught:
        for entry in layer_entries(image, 0):
            yielded.append(entry)
    assert 2 <= len(yielded) <= count
    message = str(caught.value)
    assert "layer 0" in message and str(descriptor.digest) in message


def test_layout_layer_with_unknown_media_type(tmp_path: Path) -> None:
    """A layer whose media type is not a layer type is UnsupportedError naming the layer and the media type."""
    tar = make_tar([member("a", data=b"x")])
    odd = "application/vnd.example.mystery.v1+tar"
    layout, descriptor = write_layout(tmp_path / "image", tar, odd, Digest.of_bytes(tar))
    with ocilab.open(f"oci:{layout}:v1") as image, pytest.raises(UnsupportedError) as caught:
        layer_entries(image, 0)
    assert "layer 0" in str(caught.value) and odd in str(caught.value)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocilab", *args], capture_output=True, text=True, timeout=120)


def _unsafe_name_layout(root: Path) -> tuple[Path, str]:
    tar = make_tar([member("etc/", tarfile.DIRTYPE), member("../escape", data=b"x")])
    layout, _ = write_layout(root, compress(tar, "gzip"), mt.OCI_LAYER_GZIP, Digest.of_bytes(tar))
    return layout, "../escape"


def _tampered_blob_layout(root: Path) -> tuple[Path, str]:
    layout, descriptor, _ = tampered_layout(root, "gzip")
    return layout, str(descriptor.digest)


def _wrong_compression_layout(root: Path) -> tuple[Path, str]:
    tar = make_tar([member("a", data=b"x")])
    layout, _ = write_layout(root, tar, mt.OCI_LAYER_ZSTD, Digest.of_bytes(tar))
    return layout, "zstd"


BAD_LAYERS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "unsafe-name": _unsafe_name_layout,
    "tampered-blob": _tampered_blob_layout,
    "wrong-compression": _wrong_compression_layout,
}
"""Layouts with one bad layer, each with a detail the error must mention."""


@pytest.mark.parametrize("case", BAD_LAYERS)
def test_cli_changes_on_a_bad_layer(tmp_path: Path, case: str) -> None:
    """``ocilab changes oci:DIR:v1`` on a bad layer exits 1 with one line on stderr naming the layer, no traceback."""
    layout, detail = BAD_LAYERS[case](tmp_path / "image")
    result = run_cli("changes", f"oci:{layout}:v1")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ocilab: ") and "layer 0" in lines[0] and detail in lines[0]


def test_cli_changes_on_a_good_layer(tmp_path: Path) -> None:
    """Control for the above: the same command on an intact layer exits 0 and lists its paths as added."""
    tar = make_tar([member("etc/", tarfile.DIRTYPE), member("etc/motd", data=b"hi\n")])
    layout, _ = write_layout(tmp_path / "image", compress(tar, "gzip"), mt.OCI_LAYER_GZIP, Digest.of_bytes(tar))
    result = run_cli("changes", f"oci:{layout}:v1", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(row["path"], row["change"]) for row in json.loads(result.stdout)}
    assert rows == {("/etc", "added"), ("/etc/motd", "added")}


# ----------------------------------------------------------------------- platforms, recompressed layers, --top


def run_json(*args: str) -> Any:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def layer_names(layout: Path, digests: list[str]) -> set[str]:
    """Every path the layer blobs ``digests`` of ``layout`` hold, with their parents, read by Python's tarfile."""
    names: set[str] = set()
    for digest in digests:
        with tarfile.open(blob_file(layout, Descriptor(mt.OCI_LAYER_GZIP, Digest.parse(digest), 0))) as tar:
            for name in tar.getnames():
                parts = name.split("/")
                names |= {"/" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1)}
    return names


def skopeo_layers(reference: str, architecture: str) -> list[str]:
    """The layer digests skopeo picks from ``reference`` for linux/``architecture`` (the peer's platform choice)."""
    require_tool("skopeo")
    command = ["skopeo", "inspect", "--override-os", "linux", "--override-arch", architecture, reference]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return list(json.loads(result.stdout)["Layers"])


@pytest.fixture
def two_platforms(tmp_path: Path) -> str:
    """An index over a linux/amd64 and a linux/arm64 image with different layers, tagged ``multi``; and the same
    index nested inside another one (no platform on the outer descriptor), tagged ``nested``."""
    image = write_random_image(tmp_path / "layout", 7, tag="multi", platforms=["linux/amd64", "linux/arm64"])
    index = json.loads((image.layout / "index.json").read_text())
    outer = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [image.root]}).encode()
    digest = hashlib.sha256(outer).hexdigest()
    (image.layout / "blobs" / "sha256" / digest).write_bytes(outer)
    nested = {"mediaType": mt.OCI_INDEX, "digest": f"sha256:{digest}", "size": len(outer)}
    index["manifests"].append({**nested, "annotations": {"org.opencontainers.image.ref.name": "nested"}})
    (image.layout / "index.json").write_text(json.dumps(index))
    return str(image.layout)


@pytest.mark.parametrize("tag", ["multi", "nested"])
@pytest.mark.parametrize("architecture", ["amd64", "arm64"])
def test_platform_picks_the_image_from_an_index(two_platforms: str, tag: str, architecture: str) -> None:
    """``--platform`` on layers, changes, diff and efficiency (and ``platform=`` in Python) reads the image skopeo
    picks for that platform, through a nested index too; without it, linux/amd64."""
    layout, reference, platform = Path(two_platforms), f"oci:{two_platforms}:{tag}", f"linux/{architecture}"
    digests = skopeo_layers(f"oci:{two_platforms}:multi", architecture)
    summaries = run_json("layers", reference, "--platform", platform)
    assert [row["digest"] for row in summaries] == digests
    assert list(ocilab.layers(reference, platform=platform)["digest"]) == digests
    changes = run_json("changes", reference, "--platform", platform)
    assert {row["path"] for row in changes} == layer_names(layout, digests)
    assert set(ocilab.changes(reference, platform=platform)["path"]) == layer_names(layout, digests)
    efficiency = run_json("efficiency", reference, "--platform", platform)
    assert efficiency["wasted_bytes"] == 0 and efficiency["total_bytes"] > 0
    diff = run_json("diff", reference, f"oci:{two_platforms}:multi", "--platform", platform)
    assert diff["files"] == [] and diff["layers"]["shared"] == digests
    if architecture == "amd64":
        assert [row["digest"] for row in run_json("layers", reference)] == digests


def test_platform_missing_from_the_index_lists_those_there_are(tmp_path: Path) -> None:
    """An index with only a linux/arm64 image, read without ``--platform`` (so for linux/amd64) or for another
    platform: exit 1, one line naming the platforms the index has."""
    image = write_random_image(tmp_path / "layout", 8, platforms=["linux/arm64"])
    for command in (["changes"], ["layers"], ["efficiency"], ["changes", "--platform", "linux/s390x"]):
        result = run_cli(*command[:1], image.reference, *command[1:])
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "no image for platform linux/" in result.stderr and "(available: linux/arm64)" in result.stderr
    assert run_cli("changes", image.reference, "--platform", "linux/arm64").returncode == 0


def test_diff_counts_a_recompressed_layer_as_shared(tmp_path: Path) -> None:
    """The same layers as gzip (written here) and as zstd (``skopeo copy --dest-compress-format zstd``): every
    layer is shared by diff_id, each reported as differing only in compression, and no file differs."""
    require_tool("skopeo")
    image = write_random_image(tmp_path / "gzip", 9, layers=2)
    zstd_reference = f"oci:{tmp_path / 'zstd'}:1"
    command = ["skopeo", "copy", "-q", "--dest-compress", "--dest-compress-format", "zstd"]
    subprocess.run([*command, image.reference, zstd_reference], check=True, capture_output=True)
    zstd_layers = skopeo_layers(zstd_reference, "amd64")
    assert zstd_layers != list(image.layers)
    document = run_json("diff", image.reference, zstd_reference)
    assert document["files"] == []
    layers = document["layers"]
    assert (layers["shared"], layers["only_a"], layers["only_b"]) == (list(image.layers), [], [])
    assert [(r["a"]["digest"], r["b"]["digest"]) for r in layers["recompressed"]] == list(
        zip(image.layers, zstd_layers, strict=True)
    )
    assert {r["b"]["media_type"] for r in layers["recompressed"]} == {mt.OCI_LAYER_ZSTD}
    text = run_cli("diff", image.reference, zstd_reference).stdout
    assert "layers: 2 shared, 0 only in A, 0 only in B" in text
    assert text.count("only the compression differs") == 2 and "(oci.layer.zstd) in B" in text
    assert ocilab.diff(image.reference, zstd_reference).attrs["layers"] == layers
    same = run_json("diff", image.reference, image.reference)["layers"]
    assert same["recompressed"] == [] and same["shared"] == list(image.layers)


def test_efficiency_top_limits_the_json_file_list(tmp_path: Path) -> None:
    """``efficiency --json --top N`` lists the N most wasteful paths of the full list, in its order; the totals do
    not change; ``top=`` does the same for the DataFrame; ``--top 0`` is a usage error."""
    rewritten = [member(f"f{n}", data=bytes(100 * (n + 1))) for n in range(5)]
    base = make_tar([member(f"f{n}", data=bytes(10 * (n + 1))) for n in range(5)])  # f4 wastes the most
    image = write_random_image(tmp_path / "layout", 10, layers=0, shared_layers=[base, make_tar(rewritten)])
    full = run_json("efficiency", image.reference)
    assert len(full["files"]) == 5
    top = run_json("efficiency", image.reference, "--top", "2")
    assert top["files"] == full["files"][:2] and [row["path"] for row in top["files"]] == ["/f4", "/f3"]
    assert {key: value for key, value in top.items() if key != "files"} == {
        key: value for key, value in full.items() if key != "files"
    }
    assert list(ocilab.efficiency(image.reference, top=2)["path"]) == [row["path"] for row in top["files"]]
    assert run_cli("efficiency", image.reference, "--top", "0").returncode == 2
