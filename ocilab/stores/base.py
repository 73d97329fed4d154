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
