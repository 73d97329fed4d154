"""Read-only file trees confined to a root: a directory, or the inside of a tar archive.

Paths are relative POSIX paths. A path that is absolute or climbs out with
``..`` is refused; in a directory, no component may be a symlink; in an
archive, symlink members are resolved inside the archive only. Files are
opened as streams: nothing is read whole unless asked for with a cap.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import stat
import tarfile
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO, cast

from ocilab.errors import InvalidInputError, NotFoundError, UnsafePathError
from ocilab.model.digest import read_capped

_MAX_LINK_HOPS = 40


def confined(path: str, where: str) -> str:
    """``path`` normalised (``a/b``), or UnsafePathError when it is absolute or escapes with ``..``."""
    if not path or path.startswith("/") or "\x00" in path:
        raise UnsafePathError(f"{where}: path {path!r} must be relative and non-empty")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts or not parts:
        raise UnsafePathError(f"{where}: path {path!r} escapes its root")
    return "/".join(parts)


class Tree(ABC):
    """Files under one root, addressed by relative paths."""

    #: A label for messages: the directory or archive path.
    name: str

    @abstractmethod
    def open(self, path: str) -> BinaryIO:
        """A binary stream of the regular file at ``path``; NotFoundError or UnsafePathError otherwise."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """True when a regular file is at ``path`` (symlinks resolved as ``open`` would)."""

    @abstractmethod
    def size(self, path: str) -> int:
        """The byte size of the regular file at ``path``, without reading it."""

    def read(self, path: str, limit: int) -> bytes:
        """The whole content of a small file, refused when larger than ``limit`` bytes."""
        with self.open(path) as stream:
            return read_capped(stream, limit, f"{self.name}: {path}")

    def close(self) -> None:
        """Release the archive (no-op for directories)."""


class DirectoryTree(Tree):
    """A directory on disk. Symlinks are refused at every component below the root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = str(root)
        if not self.root.is_dir():
            raise NotFoundError(f"{root}: no such directory")

    def _walk(self, path: str) -> Path:
        relative = confined(path, self.name)
        current = self.root
        for part in relative.split("/"):
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                raise NotFoundError(f"{self.name}: {relative} does not exist") from None
            if stat.S_ISLNK(mode):
                raise UnsafePathError(
                    f"{self.name}: {relative} goes through a symlink ({current}); refusing to follow it"
                )
        return current

    def open(self, path: str) -> BinaryIO:
        target = self._walk(path)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafePathError(f"{self.name}: {path} is a symlink; refusing to follow it") from None
            raise NotFoundError(f"{self.name}: cannot open {path}: {error.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InvalidInputError(f"{self.name}: {path} is not a regular file")
        return os.fdopen(fd, "rb")

    def exists(self, path: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self._walk(path)).st_mode)
        except NotFoundError:
            return False

    def size(self, path: str) -> int:
        return os.lstat(self._walk(path)).st_size


class TarTree(Tree):
    """The members of a tar archive (uncompressed or gzip), read in place without extracting.

    Member names are normalised (``./a`` and ``a`` are the same); a later member
    of the same name replaces an earlier one, as extraction would. Symlink
    members are followed inside the archive only; hard links are read from
    their target member.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._path = path
        try:
            self._tar = tarfile.open(path, "r:*")
        except FileNotFoundError:
            raise NotFoundError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise InvalidInputError(f"{path}: is a directory, not an archive") from None
        except (tarfile.TarError, OSError) as error:
            raise InvalidInputError(f"{path}: not a readable tar archive ({error})") from None
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            for member in self._tar:
                name = posixpath.normpath(member.name.lstrip("/")) if member.name.strip("/.") else "."
                self._members[name] = member
        except tarfile.TarError as error:
            self._tar.close()
            raise InvalidInputError(f"{path}: corrupt tar archive ({error})") from None
        # Members of a plain tar are read through their own file descriptors, so several threads (the copy
        # engine's parallel blobs) can read at once; a compressed archive has one stream, read under a lock.
        self._plain = self._tar.fileobj is not None and type(self._tar.fileobj) is io.BufferedReader
        self._lock = threading.Lock()

    def _member(self, path: str) -> tarfile.TarInfo:
        relative = confined(path, self.name)
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(relative)
            if member is None:
                raise NotFoundError(f"{self.name}: no {relative} in the archive")
            if not member.issym():
                return member
            target = member.linkname
            if target.startswith("/"):
                raise UnsafePathError(f"{self.name}: {relative} is a symlink to the absolute path {target!r}")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
            if joined.startswith("../") or joined == "..":
                raise UnsafePathError(f"{self.name}: {relative} is a symlink that leaves the archive ({target!r})")
            relative = joined
        raise UnsafePathError(f"{self.name}: {path} has too many levels of symlinks")

    def _regular(self, path: str) -> tarfile.TarInfo:
        member = self._member(path)
        if member.islnk():
            member = self._members.get(posixpath.normpath(member.linkname.lstrip("/")), member)
        if not member.isreg():
            raise InvalidInputError(f"{self.name}: {path} is not a regular file in the archive")
        return member

    def open(self, path: str) -> BinaryIO:
        member = self._regular(path)
        if self._plain and not member.issparse():
            return cast(BinaryIO, io.BufferedReader(_MemberSlice(self._path, member.offset_data, member.size)))
        with self._lock:
            stream = self._tar.extractfile(member)
        if stream is None:
            raise InvalidInputError(f"{self.name}: {path} cannot be read from the archive")
        return cast(BinaryIO, _Locked(stream, self._lock))

    def exists(self, path: str) -> bool:
        try:
            member = self._member(path)
        except NotFoundError:
            return False
        return member.isreg() or member.islnk()

    def size(self, path: str) -> int:
        return self._regular(path).size

    def close(self) -> None:
        self._tar.close()


class _MemberSlice(io.RawIOBase):
    """``size`` bytes of the file at ``path`` from ``offset``, through a file descriptor of its own."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._offset = offset
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._fd, min(len(buffer), self._left), self._offset)
        buffer[: len(data)] = data
        self._offset += len(data)
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class _Locked(io.RawIOBase):
    """A member stream of a compressed archive: every read holds the archive's lock (its stream is shared)."""

    def __init__(self, inner: Any, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._lock:
            data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()
