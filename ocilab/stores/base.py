"""The interface every store implements, and the verified reads built on it.

A store knows two things: which descriptor its reference points at
(``root``), and how to open the raw bytes of any descriptor it holds
(``open_raw``). Everything else -- verification, parsing, platform
selection -- is done once, here and in ``ocilab.stores.image``, for all stores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import BinaryIO, Self

from ocilab.model import MAX_DOCUMENT_BYTES, Descriptor, VerifyingReader, read_all
from ocilab.model.digest import new_hasher


class Store(ABC):
    """Read access to the images of one place (directory, archive, engine, registry)."""

    #: The transport string this store was opened from, e.g. ``oci:/tmp/layout:v1``.
    reference: str

    @abstractmethod
    def root(self) -> Descriptor:
        """The descriptor (manifest or index) the reference names; NotFoundError if absent."""

    @abstractmethod
    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        """The unverified bytes of ``descriptor``; NotFoundError if the store lacks them.

        Callers use ``open_blob`` / ``read_document``, which verify.
        """

    def close(self) -> None:
        """Release files, connections or temporary copies held by the store."""

    def open_blob(self, descriptor: Descriptor, what: str = "blob") -> VerifyingReader:
        """A stream of ``descriptor``'s bytes that checks size and digest when it reaches EOF.

        Digests whose algorithm cannot be verified are refused before any I/O.
        """
        new_hasher(descriptor.digest.algorithm)
        label = f"{self.reference}: {what} {descriptor.digest}"
        return VerifyingReader(self.open_raw(descriptor), descriptor.digest, descriptor.size, label)

    def read_document(self, descriptor: Descriptor, what: str) -> bytes:
        """The whole verified bytes of a JSON document (manifest, index, config), capped in size."""
        with self.open_blob(descriptor, what) as reader:
            return read_all(reader, MAX_DOCUMENT_BYTES)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Writer(ABC):
    """Write access to one place, named by a transport string (``oci:DIR:TAG``, ``docker://HOST/REPO:TAG`` ...).

    The copy engine drives every writer the same way: blobs first (``has_blob``,
    then ``mount_blob`` or ``put_blob``), then manifests and indexes children
    before parents (``put_manifest``), then ``set_root`` names the top one with
    the reference's tag, and ``commit`` publishes. Until ``commit`` returns, a
    writer that can (layouts, archives) leaves the destination as it was;
    ``abort`` undoes what was written. Used as a context manager, a writer
    commits on success and aborts on an exception. ``has_blob``, ``put_blob``
    and ``mount_blob`` may be called from several threads at once.
    """

    #: The transport string this writer was opened for.
    reference: str

    @abstractmethod
    def has_blob(self, descriptor: Descriptor) -> bool:
        """True when the destination already holds the blob (so it need not be sent again)."""

    @abstractmethod
    def put_blob(self, descriptor: Descriptor, stream: BinaryIO) -> None:
        """Store ``descriptor``'s bytes read from ``stream`` (to EOF).

        The bytes are checked against the descriptor's digest and size as they
        stream; on a mismatch VerificationError is raised and nothing is stored.
        """

    def mount_blob(self, descriptor: Descriptor, source: Store) -> bool:
        """Link the blob from ``source`` without copying bytes, where the destination can; True when it did."""
        return False

    @abstractmethod
    def put_manifest(self, descriptor: Descriptor, raw: bytes) -> None:
        """Store a manifest or index (``raw`` must match ``descriptor``); its blobs and children are already there."""

    @abstractmethod
    def set_root(self, descriptor: Descriptor) -> None:
        """Point the reference's name (its tag) at ``descriptor``, a manifest or index already put."""

    def accepts(self, media_type: str) -> bool:
        """True when the destination stores documents of ``media_type`` as they are (no conversion needed)."""
        return True

    def commit(self) -> None:
        """Publish everything written (rename into place, load into the engine ...). Idempotent."""

    def abort(self) -> None:
        """Undo what can be undone of an unfinished write. Idempotent."""

    def close(self) -> None:
        """Release connections and temporary files."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            if kind is None:
                self.commit()
            else:
                self.abort()
        finally:
            self.close()
