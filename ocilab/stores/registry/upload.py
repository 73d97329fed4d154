"""Pushing one blob: an upload session, monolithic or in chunks, resumed from the registry's offset.

``POST /v2/<repo>/blobs/uploads/`` opens a session (202 and a ``Location``).
A blob of at most ``chunk_size`` bytes is then sent whole with
``PUT <location>?digest=<digest>``; a larger one goes as ``PATCH`` requests
of ``chunk_size`` bytes (``Content-Range: <first>-<last>``), then an empty
closing ``PUT ?digest=``. Only the current chunk is held in memory. When a
PATCH fails (lost connection, 416, 429, 5xx), ``GET <location>`` asks how many
bytes the registry holds (204, ``Range: 0-<last>``) and the rest of the chunk
is sent again from there; the source is never read twice.

The bytes are checked against the descriptor while they are read (a
VerifyingReader), so a wrong digest or size stops the upload before the
closing PUT; the registry's own DIGEST_INVALID / SIZE_INVALID is a
VerificationError as well. On any failure the session is cancelled
(``DELETE <location>``) where the registry still answers.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from ocilab.errors import (
    ComponentUnavailableError,
    OcilabError,
    RegistryError,
    RegistryNotFoundError,
    VerificationError,
)
from ocilab.model import Descriptor, Digest, VerifyingReader
from ocilab.stores.registry.client import RegistryClient, next_location
from ocilab.stores.registry.retry import RETRYABLE_STATUSES
from ocilab.stores.registry.transport import TLSFailure

DEFAULT_CHUNK_SIZE = 16 << 20
_RANGE = re.compile(r"\s*0-([0-9]+)\s*")
_RESUMABLE = RETRYABLE_STATUSES | {416}


def push_blob(client: RegistryClient, descriptor: Descriptor, stream: BinaryIO, chunk_size: int, scope: str) -> None:
    """Upload ``stream`` as the blob ``descriptor`` names; VerificationError (nothing stored) on a mismatch."""
    what = f"blob {descriptor.digest}"
    reader = VerifyingReader(stream, descriptor.digest, descriptor.size, f"{client.label}: {what}")
    whole = descriptor.size <= chunk_size
    # A blob that fits in one chunk is read (and verified) before a session is opened.
    first = _read_up_to(reader, descriptor.size + 1 if whole else chunk_size)
    uploads = f"{client.repository_url}/blobs/uploads/"
    response = client.send("POST", uploads, what=f"an upload of {what}", scope=scope, ok=(202,), repeatable=False)
    try:
        location = next_location(response, uploads)
    finally:
        response.close()
    try:
        if not whole:
            offset, chunk = 0, first
            while chunk:
                location = _send_chunk(client, location, offset, chunk, scope, what)
                offset += len(chunk)
                chunk = _read_up_to(reader, chunk_size)
            first = b""
        _close(client, location, descriptor.digest, first, scope, what)
    except BaseException:
        cancel(client, location, scope)
        raise


def cancel(client: RegistryClient, location: str, scope: str) -> None:
    """Ask the registry to drop an upload session; a registry that cannot be reached or refuses is left alone."""
    try:
        client.authorised("DELETE", location, scope).close()
    except OcilabError:
        pass


def _send_chunk(client: RegistryClient, location: str, offset: int, chunk: bytes, scope: str, what: str) -> str:
    """PATCH ``chunk`` (the blob's bytes from ``offset``), resuming from the registry's offset; the next location."""
    backoff = client.retry.delays()
    sent = 0
    while True:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset + sent}-{offset + len(chunk) - 1}",
            "Content-Length": str(len(chunk) - sent),
        }
        try:
            response = client.authorised("PATCH", location, scope, headers, chunk[sent:])
        except ComponentUnavailableError as failure:
            if isinstance(failure, TLSFailure) or not backoff.wait():
                raise
        else:
            try:
                if response.status == 202:
                    return next_location(response, location)
                if response.status not in _RESUMABLE or not backoff.wait(response.headers):
                    raise client.error(response, "PATCH", location, f"a chunk of {what}")
            finally:
                response.close()
        held, location = _offset(client, location, scope, what)
        if not offset <= held <= offset + len(chunk):
            raise RegistryError(
                f"{client.label}: cannot resume the upload of {what}: the registry holds {held} bytes, and only the"
                f" bytes from {offset} to {offset + len(chunk)} are still in memory; push the image again"
            )
        sent = held - offset
        if sent == len(chunk):
            return location


def _offset(client: RegistryClient, location: str, scope: str, what: str) -> tuple[int, str]:
    """How many bytes of the upload the registry holds (``GET`` -> 204 ``Range: 0-<last>``), and the next location.

    ``0-0`` is read as nothing received: the registry writes it for an empty upload (and for a single byte).
    """
    try:
        response = client.send("GET", location, what=f"the upload session of {what}", scope=scope, ok=(204,))
    except RegistryNotFoundError as error:
        raise RegistryNotFoundError(
            f"{client.label}: the registry lost the upload session of {what} after a failed chunk"
            " (a registry that tracks offsets only in the upload URL cannot resume once it has part of a chunk);"
            " push the image again",
            error.status,
            error.code,
        ) from None
    try:
        match = _RANGE.fullmatch(response.headers.get("Range") or "")
        if match is None:
            raise RegistryError(
                f"{client.label}: the registry did not say how much of {what} it holds"
                f" (Range: {response.headers.get('Range')!r})"
            )
        last = int(match.group(1))
        if "Location" in response.headers:
            location = next_location(response, location)
        return (last + 1 if last else 0), location
    finally:
        response.close()


def _close(client: RegistryClient, location: str, digest: Digest, data: bytes, scope: str, what: str) -> None:
    """The closing ``PUT ?digest=`` (with ``data``, possibly empty); checks the digest the registry answers."""
    url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
    response = client.send("PUT", url, what=what, scope=scope, ok=(201,), headers=headers, body=data, repeatable=False)
    try:
        answered = (response.headers.get("Docker-Content-Digest") or "").strip()
    finally:
        response.close()
    if answered and answered != str(digest):
        raise VerificationError(f"{client.label}: the registry stored {what} under the digest {answered}")


def _read_up_to(reader: VerifyingReader, limit: int) -> bytes:
    """Up to ``limit`` bytes; fewer only at the end of the stream (where the reader verifies)."""
    parts: list[bytes] = []
    total = 0
    while total < limit:
        data = reader.read(limit - total)  # one read, one buffer: no 1 MiB pieces joined into a copy
        if not data:
            break
        parts.append(data)
        total += len(data)
    return b"".join(parts)
