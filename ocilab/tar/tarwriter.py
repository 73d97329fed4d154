"""Writing reproducible layer tars, streaming, and compressing them into layer blobs.

A layer is planned from parts -- a directory copied under a destination (a
Dockerfile ``COPY dir/ /dest/``), a single file, in-memory files, whiteouts
and opaque whiteouts -- and written with every entry normalised by a ``Stamp``:

- entries in path order (component by component, so a directory comes right
  before what is under it), missing parent directories added first;
- owner ``uid``/``gid`` (0 by default, names ``root`` for 0, empty otherwise);
- mtimes clamped to the stamp's epoch (``SOURCE_DATE_EPOCH``): newer files get
  the epoch, older ones keep theirs; entries with no source file get the epoch;
- PAX format, integer times, so the bytes depend on nothing but the inputs.

From a source directory: symlinks are stored as symlinks (never followed),
files with several links inside the layer as one file and hard links to it,
FIFOs as FIFOs. Device nodes are stored only when building as root (only root
can have made them, and only root can unpack them); otherwise they are
refused. Sockets are always skipped, each with a note: a socket is a running
program's endpoint, not content (GNU tar skips them too).

``rewrite_tar`` copies an existing (possibly compressed) tar in its own order,
normalising owners and times and refusing unsafe names. ``write_layer`` runs a
tar producer in a thread and compresses in the caller's, hashing both sides
(diff_id and blob digest) on the way: nothing is held in memory.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ocilab.errors import InvalidInputError, NotFoundError
from ocilab.model.digest import CHUNK_SIZE, Digest, new_hasher
from ocilab.tar.compression import detect, open_uncompressed
from ocilab.tar.compressor import compress_stream
from ocilab.tar.entries import OPAQUE_MARKER, WHITEOUT_PREFIX, normalise

DIRECTORY_MODE = 0o755
FILE_MODE = 0o644


@dataclass(frozen=True)
class Stamp:
    """How entries are normalised: owner, and mtimes clamped to ``epoch`` (kept as they are when not ``clamp``)."""

    epoch: int = 0
    clamp: bool = True
    uid: int = 0
    gid: int = 0

    def mtime(self, source: float | None) -> int:
        """The mtime to store for a source mtime (None: an entry with no source file)."""
        if source is None:
            return self.epoch
        return min(int(source), self.epoch) if self.clamp else int(source)


@dataclass(frozen=True)
class File:
    """An in-memory regular file."""

    data: bytes
    mode: int = FILE_MODE


@dataclass(frozen=True)
class Symlink:
    """An in-memory symbolic link to ``target`` (stored as written)."""

    target: str


@dataclass(frozen=True)
class Directory:
    """An in-memory (empty) directory."""

    mode: int = DIRECTORY_MODE


Content = bytes | File | Symlink | Directory
"""What an in-memory path holds; plain bytes are a File with mode 0644."""


@dataclass(frozen=True)
class Copy:
    """``source`` copied as a Dockerfile COPY does: a file lands at ``dest``, a directory's contents under it.

    A ``dest`` ending in ``/`` receives a file under its own name. A symlink
    given as ``source`` itself is followed; symlinks inside a directory are not.
    """

    source: Path
    dest: str


@dataclass(frozen=True)
class Memory:
    """In-memory entries, ``{"/etc/motd": b"hi"}``."""

    files: Mapping[str, Content]


@dataclass(frozen=True)
class Whiteout:
    """Delete ``path`` (and what is under it) from the lower layers: ``.wh.NAME``."""

    path: str


@dataclass(frozen=True)
class Opaque:
    """Hide everything the lower layers have under the directory ``path``: ``.wh..wh..opq``."""

    path: str


Part = Copy | Memory | Whiteout | Opaque


@dataclass(frozen=True)
class Lower:
    """What the layers below hold at a literal path, for parents this layer must emit: a directory or a symlink."""

    kind: str
    mode: int = DIRECTORY_MODE
    uid: int = 0
    gid: int = 0
    mtime: int = 0


LowerLookup = Callable[[str], Lower | None]


@dataclass
class Delta:
    """What one layer did, as the next layers' parents see it: paths (``/a/b``) it set, whiteouts, opaque dirs."""

    entries: dict[str, Lower] = field(default_factory=dict)
    whiteouts: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)

    def record(self, info: tarfile.TarInfo) -> None:
        """Note one written entry."""
        path = "/" + info.name.rstrip("/")
        parent, _, base = path.rpartition("/")
        if base == OPAQUE_MARKER:
            self.opaque.append(parent or "/")
        elif base.startswith(WHITEOUT_PREFIX):
            self.whiteouts.append(f"{parent}/{base[len(WHITEOUT_PREFIX) :]}")
        else:
            kind = "dir" if info.isdir() else "symlink" if info.issym() else "other"
            self.entries[path] = Lower(kind, info.mode, info.uid, info.gid, int(info.mtime))


@dataclass
class _Planned:
    info: tarfile.TarInfo
    source: Path | bytes | None = None
    inode: tuple[int, int] | None = None


@dataclass
class Plan:
    """A layer's entries, sorted, parents first, with notes on what was skipped; only metadata read so far."""

    entries: list[_Planned]
    notes: list[str]

    def delta(self) -> Delta:
        """What the layer will do, for the layers above it."""
        delta = Delta()
        for entry in self.entries:
            delta.record(entry.info)
        return delta


def destination(path: str, what: str) -> str:
    """An absolute destination path normalised to ``/a/b``; InvalidInputError when relative or with ``..``."""
    if not path.startswith("/"):
        raise InvalidInputError(f"{what}: destination {path!r} is not absolute; write it as /{path}")
    return normalise(path, what)


def plan_entries(parts: Iterable[Part], stamp: Stamp, lower: LowerLookup) -> Plan:
    """Every entry of a layer from ``parts``; ``lower`` tells what the layers below hold (for parents).

    Later parts replace earlier ones at the same path. A missing source is a
    NotFoundError, an unreadable one or a bad destination an InvalidInputError.
    """
    planned: dict[str, _Planned] = {}
    notes: list[str] = []
    for part in parts:
        if isinstance(part, Copy):
            _plan_copy(part, stamp, planned, notes)
        elif isinstance(part, Memory):
            for name, content in part.files.items():
                path = destination(name, "in-memory file")
                if path == "/":
                    raise InvalidInputError("in-memory file: '/' cannot be a file; name a path under it")
                planned[path] = _memory_entry(path, content, stamp)
        elif isinstance(part, Whiteout):
            path = destination(part.path, "delete")
            if path == "/":
                raise InvalidInputError("delete: refusing to delete '/'; use replace_dir('/') to start afresh")
            parent, _, base = path.rpartition("/")
            if parent and parent not in planned and lower(parent) is None:
                notes.append(f"delete {path}: nothing to delete, {parent} is not in the image")
                continue
            planned[f"{parent}/{WHITEOUT_PREFIX}{base}"] = _marker(f"{parent}/{WHITEOUT_PREFIX}{base}", stamp)
        else:
            path = destination(part.path, "replace_dir")
            marker = f"{path.rstrip('/')}/{OPAQUE_MARKER}"
            planned[marker] = _marker(marker, stamp)
            if path != "/":  # the directory itself, so an empty replacement is still a directory
                planned.setdefault(path, _Planned(_directory(path, lower(path), stamp)))
    _add_parents(planned, stamp, lower)
    return Plan([planned[path] for path in sorted(planned, key=lambda p: p.split("/"))], notes)


def write_entries(plan: Plan, out: BinaryIO) -> None:
    """Write a plan as a PAX tar to ``out``; files are read as they are written, hard links found on the way."""
    linked: dict[tuple[int, int], str] = {}
    with tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK_SIZE) as tar:
        for entry in plan.entries:
            info = entry.info
            if entry.inode is not None and entry.inode in linked:
                info.type, info.size, info.linkname = tarfile.LNKTYPE, 0, linked[entry.inode]
                tar.addfile(info)
                continue
            if entry.inode is not None:
                linked[entry.inode] = info.name
            if isinstance(entry.source, Path):
                _add_file(tar, info, entry.source)
            elif isinstance(entry.source, bytes):
                tar.addfile(info, _BytesReader(entry.source))
            else:
                tar.addfile(info)


def rewrite_tar(source: Path, dest: str, stamp: Stamp, out: BinaryIO, delta: Delta) -> None:
    """Copy the tar at ``source`` (plain, gzip or zstd) under ``dest`` into ``out``, in its own order.

    Owners and mtimes are normalised, and each entry is recorded in ``delta``.
    Names with ``..`` and entries that are not files, directories, links,
    devices or FIFOs are refused with InvalidInputError naming the entry.
    """
    prefix = destination(dest, f"{source}").lstrip("/")
    what = str(source)
    try:
        raw = source.open("rb")
    except OSError as error:
        raise NotFoundError(f"{source}: cannot read the tar ({error.strerror})") from None
    with raw:
        compression = detect(raw.read(4))
        raw.seek(0)
        with (
            open_uncompressed(raw, compression, what) as plain,
            tarfile.open(fileobj=plain, mode="r|") as reader,
            tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK_SIZE) as writer,
        ):
            try:
                for member in reader:
                    info = _normalised_member(member, prefix, stamp, what)
                    delta.record(info)
                    writer.addfile(info, reader.extractfile(member) if member.isreg() else None)
            except tarfile.TarError as error:
                raise InvalidInputError(f"{what}: not a readable tar ({error})") from None


@dataclass(frozen=True)
class LayerBlob:
    """A written layer blob: the digest of its uncompressed tar (diff_id), its own digest and size."""

    diff_id: Digest
    digest: Digest
    size: int


def write_layer(produce: Callable[[BinaryIO], None], compression: str, out: BinaryIO) -> LayerBlob:
    """Compress the tar ``produce`` writes into ``out``; the diff_id, digest and size.

    ``produce`` runs in a thread of its own, writing into a pipe the caller's
    thread compresses from, so tar-making and compression use two cores. An
    error on either side is raised here, after both have stopped.
    """
    read_fd, write_fd = os.pipe()
    tar_side = _Hashing(open(write_fd, "wb", buffering=CHUNK_SIZE))
    failure: list[BaseException] = []

    def producer() -> None:
        try:
            with tar_side.inner:
                produce(tar_side)  # type: ignore[arg-type]
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=producer, name="ocilab-tar", daemon=True)
    blob_side = _Hashing(out)
    with open(read_fd, "rb", buffering=CHUNK_SIZE) as tar_bytes:
        thread.start()
        try:
            compress_stream(tar_bytes, blob_side, compression)  # type: ignore[arg-type]
        finally:
            tar_bytes.close()  # a producer still writing gets BrokenPipeError and stops
            thread.join()
    if failure:
        raise failure[0]
    return LayerBlob(
        Digest("sha256", tar_side.hasher.hexdigest()), Digest("sha256", blob_side.hasher.hexdigest()), blob_side.size
    )


class _Hashing:
    """A write-only stream that hashes (sha256) and counts what goes through to ``inner``."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.hasher = new_hasher("sha256")
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.inner.flush()


class _BytesReader:
    """``read`` over in-memory bytes without copying them whole again."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._offset + size
        chunk = self._view[self._offset : end]
        self._offset += len(chunk)
        return bytes(chunk)


def _info(path: str, kind: bytes, mode: int, stamp: Stamp, mtime: float | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.type, info.mode, info.mtime = kind, mode & 0o7777, stamp.mtime(mtime)
    info.uid, info.gid = stamp.uid, stamp.gid
    info.uname = "root" if stamp.uid == 0 else ""
    info.gname = "root" if stamp.gid == 0 else ""
    return info


def _marker(path: str, stamp: Stamp) -> _Planned:
    """A whiteout file: empty, mode 0644 (the image-spec gives them no other meaning)."""
    return _Planned(_info(path, tarfile.REGTYPE, FILE_MODE, stamp), b"")


def _memory_entry(path: str, content: Content, stamp: Stamp) -> _Planned:
    if isinstance(content, bytes):
        content = File(content)
    if isinstance(content, File):
        info = _info(path, tarfile.REGTYPE, content.mode, stamp)
        info.size = len(content.data)
        return _Planned(info, content.data)
    if isinstance(content, Symlink):
        info = _info(path, tarfile.SYMTYPE, 0o777, stamp)
        info.linkname = content.target
        return _Planned(info)
    return _Planned(_info(path, tarfile.DIRTYPE, content.mode, stamp))


def _plan_copy(part: Copy, stamp: Stamp, planned: dict[str, _Planned], notes: list[str]) -> None:
    dest = destination(part.dest, f"{part.source}")
    try:
        top = part.source.stat()
    except OSError as error:
        raise NotFoundError(f"{part.source}: cannot add it ({error.strerror})") from None
    if not stat.S_ISDIR(top.st_mode):
        if part.dest.endswith("/"):
            dest = f"{dest.rstrip('/')}/{part.source.name}"
        if dest == "/":
            raise InvalidInputError(f"{part.source}: a file cannot replace '/'; name a destination path")
        entry = _from_disk(part.source, dest, top, stamp, notes)
        if entry is not None:
            planned[dest] = entry
        return
    if dest != "/":
        planned[dest] = _Planned(_info(dest, tarfile.DIRTYPE, top.st_mode, stamp, top.st_mtime))
    _plan_tree(part.source, dest.rstrip("/"), stamp, planned, notes)


def _plan_tree(directory: Path, dest: str, stamp: Stamp, planned: dict[str, _Planned], notes: list[str]) -> None:
    try:
        children = sorted(os.scandir(directory), key=lambda child: child.name)
    except OSError as error:
        raise InvalidInputError(f"{directory}: cannot list the directory ({error.strerror})") from None
    for child in children:
        path = f"{dest}/{child.name}"
        try:
            status = child.stat(follow_symlinks=False)
        except OSError as error:
            raise InvalidInputError(f"{child.path}: cannot read it ({error.strerror})") from None
        entry = _from_disk(Path(child.path), path, status, stamp, notes)
        if entry is None:
            continue
        planned[path] = entry
        if stat.S_ISDIR(status.st_mode):
            _plan_tree(Path(child.path), path, stamp, planned, notes)


def _from_disk(source: Path, path: str, status: os.stat_result, stamp: Stamp, notes: list[str]) -> _Planned | None:
    """The entry for one file on disk; None (and a note) for a socket."""
    mode = status.st_mode
    if stat.S_ISREG(mode):
        info = _info(path, tarfile.REGTYPE, mode, stamp, status.st_mtime)
        info.size = status.st_size
        inode = (status.st_dev, status.st_ino) if status.st_nlink > 1 else None
        return _Planned(info, source, inode)
    if stat.S_ISDIR(mode):
        return _Planned(_info(path, tarfile.DIRTYPE, mode, stamp, status.st_mtime))
    if stat.S_ISLNK(mode):
        info = _info(path, tarfile.SYMTYPE, 0o777, stamp, status.st_mtime)
        info.linkname = os.readlink(source)
        return _Planned(info)
    if stat.S_ISFIFO(mode):
        return _Planned(_info(path, tarfile.FIFOTYPE, mode, stamp, status.st_mtime))
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        if os.geteuid() != 0:
            raise InvalidInputError(f"{source}: is a device node; device nodes are added only when building as root")
        info = _info(path, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE, mode, stamp, status.st_mtime)
        info.devmajor, info.devminor = os.major(status.st_rdev), os.minor(status.st_rdev)
        return _Planned(info)
    notes.append(f"{source}: skipped (a socket is not content)")
    return None


def _add_parents(planned: dict[str, _Planned], stamp: Stamp, lower: LowerLookup) -> None:
    """Add the missing parent directories of every entry: as the lower layers have them, or 0755 at the epoch.

    A parent that is a symlink below is not emitted (unpackers follow it), nor
    is a whiteout's parent that is not a directory below (there is nothing to
    delete, and a delete must not create directories); a parent planned as
    anything but a directory is refused.
    """
    for path in list(planned):
        whiteout = path.rpartition("/")[2].startswith(WHITEOUT_PREFIX)
        parent = path.rpartition("/")[0]
        while parent:
            existing = planned.get(parent)
            if existing is not None:
                if not existing.info.isdir():
                    raise InvalidInputError(f"{parent} is not a directory but this layer puts {path} under it")
                break
            below = lower(parent)
            if (below is not None and below.kind == "symlink") or (whiteout and (below is None or below.kind != "dir")):
                break
            planned[parent] = _Planned(_directory(parent, below, stamp))
            parent = parent.rpartition("/")[0]


def _directory(path: str, below: Lower | None, stamp: Stamp) -> tarfile.TarInfo:
    """A directory entry made up by the builder: as the lower layers have it, or 0755 at the epoch."""
    info = _info(path, tarfile.DIRTYPE, DIRECTORY_MODE, stamp)
    if below is not None and below.kind == "dir":
        info.mode, info.uid, info.gid, info.mtime = below.mode, below.uid, below.gid, below.mtime
        info.uname, info.gname = ("root" if below.uid == 0 else ""), ("root" if below.gid == 0 else "")
    return info


def _add_file(tar: tarfile.TarFile, info: tarfile.TarInfo, source: Path) -> None:
    """Add a regular file, its size taken when it is opened (a file that shrinks meanwhile is an error)."""
    try:
        with source.open("rb") as stream:
            info.size = os.fstat(stream.fileno()).st_size
            tar.addfile(info, stream)
    except OSError as error:
        raise InvalidInputError(f"{source}: could not be read whole ({error.strerror or error})") from None


def _normalised_member(member: tarfile.TarInfo, prefix: str, stamp: Stamp, what: str) -> tarfile.TarInfo:
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk() or member.isdev()):
        raise InvalidInputError(f"{what}: entry {member.name!r} has an unsupported type {member.type!r}")
    name = normalise(member.name, what).lstrip("/")
    info = _info(f"{prefix}/{name}".strip("/"), member.type, member.mode, stamp, member.mtime)
    info.size, info.linkname = member.size, member.linkname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    if member.islnk():
        info.linkname = f"{prefix}/{normalise(member.linkname, what).lstrip('/')}".strip("/")
    if not info.name:
        raise InvalidInputError(f"{what}: entry {member.name!r} names the root; only entries under it can be added")
    return info
