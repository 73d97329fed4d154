"""OCI content digests: the grammar, hashing, and a reader that verifies on EOF.

Grammar (image-spec descriptor.md)::

    digest                ::= algorithm ":" encoded
    algorithm             ::= algorithm-component (algorithm-separator algorithm-component)*
    algorithm-component   ::= [a-z0-9]+
    algorithm-separator   ::= [+._-]
    encoded               ::= [a-zA-Z0-9=_-]+

Registered algorithms constrain ``encoded`` further: sha256 is 64 and sha512
128 lowercase hex characters. Digests of other algorithms parse, but content
cannot be verified against them, so consuming such content is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from ocilab.errors import DigestFormatError, DocumentTooLargeError, UnsupportedError, VerificationError

_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
_ENCODED = re.compile(r"[a-zA-Z0-9=_-]+")
_REGISTERED_LENGTHS = {"sha256": 64, "sha512": 128}
_LOWER_HEX = re.compile(r"[a-f0-9]+")

CHUNK_SIZE = 1 << 20


class Readable(Protocol):
    """Anything with ``read(n)``: a file, a response, a VerifyingReader."""

    def read(self, n: int, /) -> bytes: ...


class ByteSource(Protocol):
    """Anything read like a binary file: a file, a response body, a VerifyingReader."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, order=True)
class Digest:
    """A parsed digest; ``str(digest)`` gives back the canonical ``algorithm:encoded``."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``text``; raise DigestFormatError naming the problem."""
        if not isinstance(text, str):
            raise DigestFormatError(text, f"a digest must be a string, not {type(text).__name__}")
        algorithm, colon, encoded = text.partition(":")
        if not colon:
            raise DigestFormatError(text, "missing ':' between algorithm and encoded part")
        if not _ALGORITHM.fullmatch(algorithm):
            raise DigestFormatError(text, f"bad algorithm {algorithm!r}")
        if not _ENCODED.fullmatch(encoded):
            raise DigestFormatError(text, "encoded part may only hold letters, digits, '=', '_' and '-'")
        length = _REGISTERED_LENGTHS.get(algorithm)
        if length is not None:
            if not _LOWER_HEX.fullmatch(encoded):
                problem = (
                    "uppercase hex is not allowed"
                    if _LOWER_HEX.fullmatch(encoded.lower())
                    else "encoded part must be hex"
                )
                raise DigestFormatError(text, problem)
            if len(encoded) != length:
                raise DigestFormatError(text, f"{algorithm} needs {length} hex characters, got {len(encoded)}")
        return cls(algorithm, encoded)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest of ``data`` with a registered algorithm."""
        hasher = new_hasher(algorithm)
        hasher.update(data)
        return cls(algorithm, hasher.hexdigest())

    @classmethod
    def of_stream(cls, stream: BinaryIO, algorithm: str = "sha256") -> tuple[Digest, int]:
        """Digest and byte count of everything left in ``stream``, read in chunks."""
        hasher = new_hasher(algorithm)
        size = 0
        while chunk := stream.read(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
        return cls(algorithm, hasher.hexdigest()), size

    @property
    def verifiable(self) -> bool:
        """True when content can be checked against this digest."""
        return self.algorithm in _REGISTERED_LENGTHS

    @property
    def short(self) -> str:
        """The first 12 characters of the encoded part, as Docker shows image IDs."""
        return self.encoded[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def new_hasher(algorithm: str) -> hashlib._Hash:
    """A fresh hash object for a registered algorithm; UnsupportedError otherwise."""
    if algorithm not in _REGISTERED_LENGTHS:
        raise UnsupportedError(
            f"digest algorithm {algorithm!r} is not supported for verification (use sha256 or sha512)"
        )
    return hashlib.new(algorithm)


class VerifyingReader:
    """A read-only binary stream that checks size and digest as it is consumed.

    Reading past ``size`` bytes, or reaching EOF with a different byte count or
    digest, raises VerificationError naming ``what``. The check happens exactly
    once, on the first read that returns EOF. Construction refuses digests whose
    algorithm cannot be verified.
    """

    def __init__(self, raw: BinaryIO, digest: Digest, size: int | None, what: str) -> None:
        self._raw = raw
        self._digest = digest
        self._expected_size = size
        self._what = what
        self._hasher = new_hasher(digest.algorithm)
        self._count = 0
        self._verified = False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            # Bound an unbounded read so an oversized source cannot exhaust memory.
            n = CHUNK_SIZE if self._expected_size is None else self._expected_size - self._count + 1
            return b"".join(iter(lambda: self.read(n), b""))
        data = self._raw.read(n) if n else b""
        if data:
            self._count += len(data)
            self._hasher.update(data)
            if self._expected_size is not None and self._count > self._expected_size:
                raise VerificationError(
                    f"{self._what}: more than the expected {self._expected_size} bytes (digest {self._digest})"
                )
        elif n:
            self._finish()
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if self._verified:
            return
        self._verified = True
        if self._expected_size is not None and self._count != self._expected_size:
            raise VerificationError(
                f"{self._what}: truncated or wrong size: expected {self._expected_size} bytes, got {self._count}"
                f" (digest {self._digest})"
            )
        actual = self._hasher.hexdigest()
        if actual != self._digest.encoded:
            raise VerificationError(
                f"{self._what}: content does not match its digest: expected {self._digest},"
                f" got {self._digest.algorithm}:{actual}"
            )

    def drain(self) -> None:
        """Read to EOF (discarding) so the verification runs."""
        while self.read(CHUNK_SIZE):
            pass

    @property
    def expected_size(self) -> int | None:
        """The size the content must have, when known."""
        return self._expected_size

    @property
    def what(self) -> str:
        """The label used in error messages."""
        return self._what

    @property
    def verified(self) -> bool:
        """True once EOF was reached and the content matched."""
        return self._verified

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_capped(source: Readable, limit: int, what: str) -> bytes:
    """Everything ``source`` holds, to EOF; DocumentTooLargeError naming ``what`` past ``limit`` bytes.

    The one capped-read loop of the kit: it never asks for more than ``limit`` + 1 bytes in all, so an
    oversized (or endless) source costs at most that much memory before it is refused.
    """
    parts: list[bytes] = []
    total = 0
    while chunk := source.read(min(CHUNK_SIZE, limit + 1 - total)):
        total += len(chunk)
        if total > limit:
            raise DocumentTooLargeError(f"{what}: more than the {limit}-byte limit for documents")
        parts.append(chunk)
    return b"".join(parts)


def read_all(reader: VerifyingReader, limit: int) -> bytes:
    """Everything ``reader`` holds, verified; over ``limit`` bytes is refused, before reading when the size is known."""
    if reader.expected_size is not None and reader.expected_size > limit:
        raise DocumentTooLargeError(
            f"{reader.what}: {reader.expected_size} bytes is over the {limit}-byte limit for documents"
        )
    return read_capped(reader, limit, reader.what)
