"""A transport that keeps a record of every request it sends: what notebook 03 shows of the distribution API.

``RecordingTransport`` wraps another transport (a ``RequestsTransport`` by
default) and adds one ``Exchange`` per request, when its response arrives:
the method, the path and query, the status, the size of the body sent, and
the response headers that teach how the API works. Bodies are passed through
untouched, so a store over it behaves exactly as over the transport it wraps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ocilab.model import Reference
from ocilab.stores.registry.store import RegistryStore, is_loopback
from ocilab.stores.registry.transport import RequestsTransport, Response, Transport

TEACHING_HEADERS = ("Docker-Content-Digest", "Location", "Range", "Content-Type")
"""Response headers kept in each Exchange, in this order."""


@dataclass(frozen=True)
class Exchange:
    """One request and the headline of its response."""

    method: str
    path: str
    status: int
    sent: int
    headers: dict[str, str] = field(default_factory=dict)


class RecordingTransport:
    """A Transport that records every exchange in ``exchanges`` (oldest first) and otherwise forwards to ``inner``."""

    def __init__(self, inner: Transport | None = None) -> None:
        self.inner: Transport = inner or RequestsTransport(trust_env=False)
        self.exchanges: list[Exchange] = []

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
        response = (
            self.inner.request(method, url, headers, body)
            if body is not None
            else self.inner.request(method, url, headers)
        )
        parts = urlsplit(url)
        kept = {name: response.headers[name] for name in TEACHING_HEADERS if name in response.headers}
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.exchanges.append(Exchange(method, path, response.status, len(body or b""), kept))
        return response

    def take(self) -> list[Exchange]:
        """The exchanges recorded since the last ``take``, removed from the record."""
        taken, self.exchanges = self.exchanges, []
        return taken

    def open(self, reference: str) -> RegistryStore:
        """A RegistryStore for ``docker://HOST/REPO[:TAG]`` whose requests this transport records.

        Only loopback registries (the kit's own), spoken to over plain HTTP.
        """
        from ocilab.errors import InvalidInputError

        ref = Reference.parse(reference.removeprefix("docker://"))
        if not is_loopback(ref.host):
            raise InvalidInputError(f"{reference}: recording is for the kit's registry on 127.0.0.1, not {ref.host}")
        return RegistryStore(ref, transport=self)

    def close(self) -> None:
        self.inner.close()
