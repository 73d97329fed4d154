"""Writing OCI image layouts (``oci:DIR[:TAG]``), all or nothing.

One writer, two cases, decided before anything is written:

- **a new layout** (the path does not exist, or is an empty directory) is built
  in a temporary directory beside it, created at the first put, and renamed
  into place by ``commit``; ``abort`` removes the temporary directory;
- **an existing layout** keeps its other images. Each new blob is spooled to a
  temporary file inside the layout (``TEMP_PREFIX``), verified, and renamed to
  ``blobs/<alg>/<encoded>``; ``commit`` replaces ``index.json`` atomically (an
  entry with the same ``org.opencontainers.image.ref.name`` is replaced, the
  others kept); ``abort`` removes exactly the blobs this writer added.

Anything else at the path (a file, a directory that is not a layout) is refused.
``LayoutWriter`` is the builder's face of the same writer: it stores bytes and
streams whose digests are not known in advance (the offline busybox builder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from ocilab.errors import InvalidInputError, NotFoundError
from ocilab.model import Descriptor, Digest, Index, VerifyingReader
from ocilab.model.build import build_index, build_manifest, describe, encode
from ocilab.model.digest import CHUNK_SIZE, ByteSource, new_hasher
from ocilab.model.mediatype import OCI_CONFIG, OCI_LAYOUT_VERSION
from ocilab.stores.base import Writer
from ocilab.stores.layout import REF_NAME, blob_path, open_layout

TEMP_PREFIX = ".ocilab-tmp-"
"""Names of the temporary files a write leaves inside a layout until it renames them (layout GC removes leftovers)."""


class OciLayoutWriter(Writer):
    """A Writer for ``oci:DIR[:TAG]``: a new layout or an existing one (see the module docstring)."""

    def __init__(self, path: Path, tag: str | None) -> None:
        self.path = Path(path)
        self.tag = tag or None
        self.reference = f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")
        self.existing = _is_existing_layout(self.path)
        self._work: Path | None = self.path if self.existing else None
        self._added: list[Path] = []
        self._entries: list[Descriptor] = []
        self._finished = False
        self._creating = threading.Lock()

    def _root(self) -> Path:
        """Where blobs go: the existing layout, or the temporary directory (created once, on first use).

        The copy engine puts blobs from several threads; the lock makes them all use one directory.
        """
        if self._finished:
            raise InvalidInputError(f"{self.reference}: this write was already committed or aborted")
        with self._creating:
            if self._work is None:
                self._work = temporary_directory_beside(self.path)
            return self._work

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self._work is not None and (self._work / blob_path(descriptor.digest)).is_file()

    def put_blob(self, descriptor: Descriptor, stream: BinaryIO) -> None:
        label = f"{self.reference}: blob {descriptor.digest}"
        spool, _ = self._spool(VerifyingReader(stream, descriptor.digest, descriptor.size, label))
        self._place(spool, descriptor.digest)

    def put_stream(self, stream: BinaryIO, media_type: str) -> Descriptor:
        """Store a stream whose digest is not known yet (sha256, computed while spooling); its descriptor."""
        hasher = new_hasher("sha256")
        spool, size = self._spool(stream, hasher)
        digest = Digest("sha256", hasher.hexdigest())
        self._place(spool, digest)
        return Descriptor(media_type, digest, size)

    def put_manifest(self, descriptor: Descriptor, raw: bytes) -> None:
        self.put_blob(descriptor, io.BytesIO(raw))

    def set_root(self, descriptor: Descriptor) -> None:
        self.add_entry(descriptor, self.tag)

    def add_entry(self, descriptor: Descriptor, tag: str | None) -> None:
        """List ``descriptor`` (already stored) in index.json, under the ref.name ``tag`` when given."""
        if not self.has_blob(descriptor):
            raise NotFoundError(f"{self.reference}: cannot tag {descriptor.digest}, which was not put in the layout")
        annotations = {key: value for key, value in descriptor.annotations.items() if key != REF_NAME}
        if tag is not None:
            annotations[REF_NAME] = tag
        entry = dataclasses.replace(descriptor, annotations=annotations)
        self._entries = [*_without(self._entries, entry), entry]

    def commit(self) -> None:
        if self._finished:
            return
        if self.existing:
            with open_layout(self.path) as store:
                current = store.index
            entries = [*_without(current.manifests, *self._entries), *self._entries]
            write_index(self.path, build_index(entries, annotations=current.annotations))
        else:
            work = self._root()
            (work / "oci-layout").write_bytes(encode({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
            write_index(work, build_index(self._entries))
            if self.path.is_dir():
                self.path.rmdir()  # the empty directory the layout replaces
            os.rename(work, self.path)
        self._added.clear()
        self._finished = True

    def abort(self) -> None:
        if self._finished:
            return
        if self.existing:
            for blob in self._added:
                blob.unlink(missing_ok=True)
            self._added.clear()
        elif self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
        self._finished = True

    def close(self) -> None:
        self.abort()

    def _spool(self, stream: ByteSource, hasher: hashlib._Hash | None = None) -> tuple[Path, int]:
        """Copy ``stream`` to a new temporary file in the layout (updating ``hasher``); its path and size."""
        handle, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self._root())
        size = 0
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := stream.read(CHUNK_SIZE):
                    if hasher is not None:
                        hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except BaseException:
            os.unlink(name)
            raise
        return Path(name), size

    def _place(self, spool: Path, digest: Digest) -> None:
        """Rename a verified spool to its blob path; a blob already there is kept (and not counted as added)."""
        target = self._root() / blob_path(digest)
        if target.exists():
            spool.unlink()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(spool, 0o644)  # mkstemp makes it private; blobs are readable like the rest of the layout
        os.replace(spool, target)
        self._added.append(target)


def open_layout_writer(path: Path, tag: str | None) -> OciLayoutWriter:
    """The writer for ``oci:PATH[:TAG]``; InvalidInputError, before any write, when PATH is neither new nor a layout."""
    return OciLayoutWriter(path, tag)


def remove_layout_tag(path: Path, tag: str) -> Descriptor:
    """Remove the ``index.json`` entry tagged ``tag`` (atomically) and return it; the blobs stay until layout GC.

    NotFoundError lists the layout's tags when none is ``tag``.
    """
    with open_layout(path) as store:
        index, tags = store.index, store.tags()
    removed = [entry for entry in index.manifests if entry.annotations.get(REF_NAME) == tag]
    if not removed:
        raise NotFoundError(f"{path}: no image tagged {tag!r} (tags: {', '.join(tags) or 'none'})")
    kept = [entry for entry in index.manifests if entry.annotations.get(REF_NAME) != tag]
    write_index(path, build_index(kept, annotations=index.annotations))
    return removed[0]


def temporary_directory_beside(path: Path) -> Path:
    """A new directory (mode 0755) beside ``path`` to build it in; InvalidInputError when that place is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as error:
        raise InvalidInputError(f"{path}: cannot write there ({error.strerror})") from None
    os.chmod(work, 0o755)  # mkdtemp makes it private; a layout is readable like its blobs
    return work


def write_index(layout: Path, index: Index) -> None:
    """Replace ``layout/index.json`` with ``index``'s bytes atomically (temporary file + rename)."""
    handle, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=layout)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(index.raw)
        os.chmod(name, 0o644)
        os.replace(name, layout / "index.json")
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _is_existing_layout(path: Path) -> bool:
    """True for a layout (validated), False for a new path or an empty directory; InvalidInputError otherwise."""
    if not os.path.lexists(path):
        return False
    if not path.is_dir() or path.is_symlink():
        raise InvalidInputError(f"{path}: already exists and is not a directory; an oci: destination is a directory")
    if (path / "oci-layout").exists():
        open_layout(path).close()
        return True
    if any(path.iterdir()):
        raise InvalidInputError(
            f"{path}: already exists and is neither an OCI image layout (no oci-layout file) nor empty;"
            " choose a new path"
        )
    return False


def _without(entries: Sequence[Descriptor], *new: Descriptor) -> list[Descriptor]:
    """``entries`` minus those a new entry replaces: the same ref.name, or (untagged) the same digest untagged."""
    names = {entry.annotations[REF_NAME] for entry in new if REF_NAME in entry.annotations}
    untagged = {entry.digest for entry in new if REF_NAME not in entry.annotations}
    return [
        entry
        for entry in entries
        if entry.annotations.get(REF_NAME, None) not in names
        and not (REF_NAME not in entry.annotations and entry.digest in untagged)
    ]


class LayoutWriter:
    """Builds images from bytes and streams into a new or existing layout at ``destination``.

    Used as a context manager, an exception aborts the write; ``commit`` publishes it.
    """

    def __init__(self, destination: Path) -> None:
        self.destination = Path(destination)
        self._writer = OciLayoutWriter(self.destination, None)

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store ``data`` as a blob; its descriptor."""
        descriptor = Descriptor(media_type, Digest.of_bytes(data), len(data))
        self._writer.put_blob(descriptor, io.BytesIO(data))
        return descriptor

    def put_stream(self, stream: BinaryIO, media_type: str) -> Descriptor:
        """Store a stream as a blob, hashing while copying; its descriptor."""
        return self._writer.put_stream(stream, media_type)

    def put_image(self, config: Mapping[str, object], layers: Sequence[Descriptor], tag: str) -> Descriptor:
        """Store ``config`` and an OCI manifest over ``layers`` (both built by ocilab.model.build), tagged ``tag``."""
        config_descriptor = self.put_bytes(encode(config), OCI_CONFIG)
        manifest = build_manifest(config_descriptor, layers)
        descriptor = describe(manifest)
        self._writer.put_manifest(descriptor, manifest.raw)
        self.tag(descriptor, tag)
        return descriptor

    def tag(self, descriptor: Descriptor, tag: str) -> None:
        """List ``descriptor`` in index.json under the ref.name ``tag``."""
        self._writer.add_entry(descriptor, tag)

    def commit(self) -> Path:
        """Publish the layout (rename into place, or replace index.json); its path."""
        self._writer.commit()
        return self.destination

    def abort(self) -> None:
        """Remove everything written so far."""
        self._writer.abort()

    def __enter__(self) -> LayoutWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        self._writer.abort()  # a no-op after commit
