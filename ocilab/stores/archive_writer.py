"""Writing ``oci-archive:FILE[:TAG]``: a layout built in a temporary directory, tarred reproducibly, renamed into place.

An existing archive keeps its images: its layout files (``oci-layout``,
``index.json``, ``blobs/``) are unpacked into the temporary directory first and
written to as an existing layout. The tar is always the same bytes for the same
layout: members sorted by path, owned by uid/gid 0 with no names, mtime 0,
modes 0755 (directories) and 0644 (files).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import threading
from abc import abstractmethod
from pathlib import Path
from typing import BinaryIO

from ocilab.errors import InvalidInputError
from ocilab.model import Descriptor
from ocilab.stores.base import Writer
from ocilab.stores.layout import open_layout, open_oci_archive
from ocilab.stores.layout_writer import OciLayoutWriter, temporary_directory_beside

_LAYOUT_FILES = ("oci-layout", "index.json")


class TarredLayoutWriter(Writer):
    """A layout built in a temporary directory beside ``path`` (on first use), tarred into ``path`` on commit.

    Subclasses say what goes into the layout before the first blob (``_prepare``)
    and how the finished layout becomes the file (``_publish``).
    """

    def __init__(self, path: Path, tag: str | None, reference: str) -> None:
        self.path = Path(path)
        self.reference = reference
        self._tag = tag
        self._temp: Path | None = None
        self._layout: OciLayoutWriter | None = None
        self._creating = threading.Lock()
        self._finished = False

    def _prepare(self, layout: Path) -> None:
        """Fill the new temporary ``layout`` before anything is put (nothing by default)."""

    @abstractmethod
    def _publish(self, layout: Path) -> None:
        """Turn the committed layout directory into the file at ``self.path``."""

    def _writer(self) -> OciLayoutWriter:
        """The layout being built, created once, on first use (blobs arrive from several threads)."""
        if self._finished:
            raise InvalidInputError(f"{self.reference}: this write was already committed or aborted")
        with self._creating:
            if self._layout is None:
                self._temp = temporary_directory_beside(self.path)
                self._prepare(self._temp / "layout")
                self._layout = OciLayoutWriter(self._temp / "layout", self._tag)
            return self._layout

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self._writer().has_blob(descriptor)

    def put_blob(self, descriptor: Descriptor, stream: BinaryIO) -> None:
        self._writer().put_blob(descriptor, stream)

    def put_manifest(self, descriptor: Descriptor, raw: bytes) -> None:
        self._writer().put_manifest(descriptor, raw)

    def set_root(self, descriptor: Descriptor) -> None:
        self._writer().set_root(descriptor)

    def commit(self) -> None:
        if self._finished:
            return
        writer = self._writer()
        writer.commit()
        self._publish(writer.path)
        self.abort()  # the temporary directory is no longer needed

    def abort(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
        self._finished = True

    def close(self) -> None:
        self.abort()


class OciArchiveWriter(TarredLayoutWriter):
    """A Writer for ``oci-archive:FILE[:TAG]``: a new file, or an existing archive whose images are kept."""

    def __init__(self, path: Path, tag: str | None) -> None:
        tag = tag or None
        super().__init__(path, tag, f"oci-archive:{path}" + (f":{tag}" if tag else ""))
        self.tag = tag
        self.existing = os.path.lexists(self.path)
        if self.existing:
            if not self.path.is_file() or self.path.is_symlink():
                raise InvalidInputError(f"{self.path}: already exists and is not a file; an oci-archive is a tar file")
            open_oci_archive(self.path).close()  # refuses what is not an OCI archive, before any write

    def _prepare(self, layout: Path) -> None:
        if self.existing:
            _unpack_layout(self.path, layout)

    def _publish(self, layout: Path) -> None:
        tar_layout(layout, self.path, replace=True)


def write_oci_archive(layout: Path, archive: Path) -> Path:
    """Tar the layout directory ``layout`` into ``archive`` (which must not exist), reproducibly; its path.

    The layout is opened first, so a directory that is not a layout is refused
    before anything is written.
    """
    open_layout(layout).close()
    if os.path.lexists(archive):
        raise InvalidInputError(f"{archive}: already exists; choose a new path")
    archive.parent.mkdir(parents=True, exist_ok=True)
    tar_layout(layout, archive, replace=False)
    return archive


def tar_layout(directory: Path, archive: Path, *, replace: bool) -> None:
    """Tar everything under ``directory`` into ``archive``, reproducibly, via a temporary file beside it.

    With ``replace`` False an ``archive`` that appeared meanwhile is not overwritten
    (InvalidInputError). Symlinks and special files are refused.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{archive.name}.", dir=archive.parent)
    try:
        with (
            os.fdopen(handle, "wb") as stream,
            tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in sorted(directory.rglob("*"), key=lambda p: p.relative_to(directory).as_posix()):
                _add(tar, path, path.relative_to(directory).as_posix())
        os.chmod(temporary, 0o644)
        if replace:
            os.replace(temporary, archive)
        else:
            try:
                os.link(temporary, archive)
            except FileExistsError:
                raise InvalidInputError(f"{archive}: already exists; choose a new path") from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def _add(tar: tarfile.TarFile, path: Path, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = info.uid = info.gid = 0
    if path.is_symlink():
        raise InvalidInputError(f"{path}: symlinks have no place in an OCI layout")
    if path.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif path.is_file():
        info.mode = 0o644
        with path.open("rb") as member:
            info.size = os.fstat(member.fileno()).st_size
            tar.addfile(info, member)
    else:
        raise InvalidInputError(f"{path}: not a regular file or directory; refusing to archive it")


def _unpack_layout(archive: Path, layout: Path) -> None:
    """Extract the layout files of ``archive`` (regular files only) into the new directory ``layout``."""
    with tarfile.open(archive, "r:*") as tar:
        members = [member for member in tar if member.isreg() and _is_layout_file(member.name)]
        try:
            tar.extractall(layout, members=members, filter="data")
        except tarfile.FilterError as error:
            raise InvalidInputError(f"{archive}: unsafe member in the archive ({error})") from None


def _is_layout_file(name: str) -> bool:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return (len(parts) == 1 and parts[0] in _LAYOUT_FILES) or (len(parts) == 3 and parts[0] == "blobs")
