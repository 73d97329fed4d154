"""Images in a registry over the distribution API (``docker://HOST/REPO[:TAG][@DIGEST]``): read, push, delete.

Loopback hosts (127.0.0.0/8, ::1, localhost) are spoken to in plain HTTP,
every other host in HTTPS with certificate verification, unless the caller
says otherwise. Manifests live at ``/v2/<repo>/manifests/<ref>``, everything
else at ``/v2/<repo>/blobs/<digest>``; the base class verifies every byte read
against its digest. Blobs are pushed by ``ocilab.stores.registry.upload``;
requests, retries and the mapping of failed answers to typed errors are
``ocilab.stores.registry.client``'s. No connection -> ComponentUnavailableError.

Referrers (distribution-spec 1.1): ``referrers(digest)`` asks
``/v2/<repo>/referrers/<digest>``; a registry without that API (404) is
read through the fallback tag ``<alg>-<hex>``, which ``put_manifest`` keeps
up to date itself when the registry does not answer ``OCI-Subject``.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote, urljoin

from ocilab.errors import (
    ComponentUnavailableError,
    DigestFormatError,
    InvalidInputError,
    ReferenceFormatError,
    RegistryError,
    RegistryNotFoundError,
    VerificationError,
)
from ocilab.model import (
    MAX_DOCUMENT_BYTES,
    Descriptor,
    Digest,
    Index,
    Manifest,
    Reference,
    load_object,
    parse_index,
    parse_root,
)
from ocilab.model import mediatype as mt
from ocilab.model.build import build_index, describe
from ocilab.stores.base import Store, Writer
from ocilab.stores.registry.auth import Authenticator, Credentials, DockerConfig
from ocilab.stores.registry.client import RegistryClient, next_location
from ocilab.stores.registry.retry import RetryPolicy
from ocilab.stores.registry.transport import RequestsTransport, Response, Transport, read_body
from ocilab.stores.registry.upload import DEFAULT_CHUNK_SIZE, cancel, push_blob

ACCEPT_MANIFESTS = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
DOCKER_HUB_API = "registry-1.docker.io"
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')
_GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream"})


class RegistryStore(Store, Writer):
    """One repository of a registry: read through the distribution API, written by pushing, deleted on request.

    ``insecure`` None speaks plain HTTP to loopback hosts and HTTPS to the
    rest; True forces HTTP, False forces HTTPS. ``tls_verify`` False skips
    certificate checks; ``ca_file`` is a PEM bundle to verify against instead
    of the system's. ``credentials`` None reads Docker's config.json (see
    ``ocilab.stores.registry.auth``). ``transport`` replaces the HTTP layer
    (tests inject failures with it); the store closes it in ``close()``.
    Blobs larger than ``chunk_size`` bytes are pushed in chunks of that size
    (one chunk is held in memory); ``retry`` says how failed requests that are
    safe to repeat are retried. Writes take effect at once: ``commit`` and
    ``abort`` have nothing left to do.
    """

    def __init__(
        self,
        reference: Reference,
        *,
        tls_verify: bool = True,
        ca_file: Path | None = None,
        insecure: bool | None = None,
        credentials: Credentials | None = None,
        transport: Transport | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retry: RetryPolicy | None = None,
    ) -> None:
        _check_reference(reference)
        if chunk_size < 1:
            raise InvalidInputError(f"chunk_size must be a positive number of bytes, not {chunk_size}")
        self.ref = reference
        self.reference = f"docker://{reference}"
        self.chunk_size = chunk_size
        loopback = is_loopback(reference.host)
        plain_http = loopback if insecure is None else insecure
        api_host = DOCKER_HUB_API if reference.host == "docker.io" else reference.host
        self.base_url = f"{'http' if plain_http else 'https'}://{api_host}"
        verify: bool | str = str(ca_file) if tls_verify and ca_file is not None else tls_verify
        transport = transport or RequestsTransport(verify=verify, trust_env=not loopback)
        docker_config = DockerConfig()
        found = credentials or docker_config.credentials(reference.host)
        auth = Authenticator(transport, reference.host, found)
        self._client = RegistryClient(
            reference, self.base_url, self.reference, transport, auth, docker_config, retry or RetryPolicy()
        )
        self._manifests: dict[Digest, bytes] = {}
        self._pushed: dict[Digest, tuple[str, bytes]] = {}

    @property
    def repository_url(self) -> str:
        """``<base>/v2/<repo>``, the prefix of every repository endpoint."""
        return self._client.repository_url

    # --- reading ------------------------------------------------------------------------------------

    def root(self) -> Descriptor:
        """The manifest or index the tag (or digest) names, checked against the registry's and the pinned digest.

        The bytes are kept so that reading the document next does not fetch it again.
        """
        identifier = self.ref.identifier
        what = f"manifest {identifier}" if self.ref.digest else f"tag {identifier}"
        raw, media_type = self._fetch_manifest(identifier, ACCEPT_MANIFESTS, what)
        digest = Digest.of_bytes(raw)
        pinned = self.ref.digest
        if pinned is not None:
            actual = Digest.of_bytes(raw, pinned.algorithm)
            if actual != pinned:
                raise VerificationError(f"{self.reference}: the registry returned a manifest whose digest is {actual}")
            digest = pinned
        self._manifests[digest] = raw
        return Descriptor(media_type or "application/octet-stream", digest, len(raw))

    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        """A stream of the bytes of ``descriptor``: manifests and indexes from /manifests/, the rest from /blobs/."""
        cached = self._manifests.get(descriptor.digest)
        if cached is not None:
            return io.BytesIO(cached)
        if descriptor.media_type in mt.MANIFESTS | mt.INDEXES | mt.SCHEMA1:
            url = f"{self.repository_url}/manifests/{descriptor.digest}"
            headers = {"Accept": f"{descriptor.media_type}, {ACCEPT_MANIFESTS}"}
            response = self._get(url, f"manifest {descriptor.digest}", headers)
        else:
            response = self._get(f"{self.repository_url}/blobs/{descriptor.digest}", f"blob {descriptor.digest}")
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) != descriptor.size:
            response.close()
            raise VerificationError(
                f"{self.reference}: {descriptor.digest}: the registry announces {length} bytes,"
                f" the descriptor says {descriptor.size}"
            )
        return cast(BinaryIO, _Body(response))

    def tags(self) -> list[str]:
        """Every tag of the repository, following ``Link`` pagination."""
        what = f"repository {self.ref.repository}"
        return self._paginate(f"{self.repository_url}/tags/list", "tags", self._pull, what)

    def catalog(self) -> list[str]:
        """Every repository of the registry (``/v2/_catalog``), following ``Link`` pagination."""
        return self._paginate(f"{self.base_url}/v2/_catalog", "repositories", "registry:catalog:*", "the catalog")

    def referrers(self, digest: Digest | str, artifact_type: str | None = None) -> list[Descriptor]:
        """The manifests whose ``subject`` is ``digest`` (OCI 1.1 referrers API, else the fallback tag).

        With ``artifact_type`` only those of that artifact type. A subject nothing refers to has none.
        """
        subject = _digest(digest)
        url = f"{self.repository_url}/referrers/{subject}"
        if artifact_type:
            url += f"?artifactType={quote(artifact_type, safe='')}"
        what = f"the referrers of {subject}"
        headers = {"Accept": mt.OCI_INDEX}
        response = self._client.send("GET", url, what=what, scope=self._pull, ok=(200, 404), headers=headers)
        try:
            found = response.status == 200
            raw = read_body(response, MAX_DOCUMENT_BYTES, f"{self.reference}: {what}") if found else b""
            filtered = "artifacttype" in (response.headers.get("OCI-Filters-Applied") or "").lower()
        finally:
            response.close()
        if not found:  # no referrers API: the fallback tag, when anything was ever pushed with this subject
            fallback = self._fallback_index(subject)
            if fallback is None:
                return []
            raw, filtered = fallback, False
        referrers = parse_index(raw, f"{self.reference}: {what}").manifests
        if artifact_type and not filtered:
            return [item for item in referrers if item.artifact_type == artifact_type]
        return list(referrers)

    # --- writing (ocilab.stores.base.Writer) ----------------------------------------------------------

    def has_blob(self, descriptor: Descriptor) -> bool:
        """``HEAD /blobs/<digest>``: 200 -> True, 404 -> False."""
        url = f"{self.repository_url}/blobs/{descriptor.digest}"
        what = f"blob {descriptor.digest}"
        response = self._client.send("HEAD", url, what=what, scope=self._push, ok=(200, 404))
        response.close()
        return response.status == 200

    def put_blob(self, descriptor: Descriptor, stream: BinaryIO) -> None:
        """Upload the blob (see ``ocilab.stores.registry.upload``); VerificationError on a digest or size mismatch."""
        push_blob(self._client, descriptor, stream, self.chunk_size, self._push)

    def mount_blob(self, descriptor: Descriptor, source: Store) -> bool:
        """Mount the blob from another repository of the same registry (``?mount=&from=``); True when it did.

        False, without a request, for any other source; False when the registry
        opens an upload instead (202), which is cancelled.
        """
        if not isinstance(source, RegistryStore) or source.base_url != self.base_url:
            return False
        origin = source.ref.repository
        if origin == self.ref.repository:
            return False
        url = f"{self.repository_url}/blobs/uploads/?mount={descriptor.digest}&from={origin}"
        scope = f"{self._push} repository:{origin}:pull"
        what = f"a mount of blob {descriptor.digest} from {origin}"
        response = self._client.send("POST", url, what=what, scope=scope, ok=(201, 202), repeatable=False)
        try:
            if response.status == 201:
                return True
            location = next_location(response, url)
        finally:
            response.close()
        cancel(self._client, location, scope)
        return False

    def put_manifest(self, descriptor: Descriptor, raw: bytes) -> None:
        """``PUT /manifests/<digest>`` with ``raw`` as ``descriptor.media_type``; the registry's digest is checked.

        A manifest with a ``subject`` is added to the subject's fallback referrers
        tag when the registry does not announce ``OCI-Subject`` (it has no referrers API).
        """
        if Digest.of_bytes(raw, descriptor.digest.algorithm) != descriptor.digest or len(raw) != descriptor.size:
            raise VerificationError(
                f"{self.reference}: the manifest's {len(raw)} bytes do not match its descriptor"
                f" ({descriptor.digest}, {descriptor.size} bytes)"
            )
        document = parse_root(raw, f"{self.reference}: manifest {descriptor.digest}", descriptor.media_type)
        headers = self._put_manifest(str(descriptor.digest), descriptor.media_type, raw, descriptor.digest)
        self._pushed[descriptor.digest] = (descriptor.media_type, raw)
        if document.subject is not None and "OCI-Subject" not in headers:
            self._add_referrer(document.subject.digest, _referrer(descriptor, document))

    def set_root(self, descriptor: Descriptor) -> None:
        """Tag ``descriptor`` with the reference's tag; for a reference pinned by digest, only check it is that one."""
        pinned = self.ref.digest
        if pinned is not None:
            if descriptor.digest != pinned:
                raise VerificationError(f"{self.reference}: the image pushed is {descriptor.digest}, not {pinned}")
            return
        media_type, raw = self._pushed.get(descriptor.digest) or (
            descriptor.media_type,
            self.read_document(descriptor, "manifest"),
        )
        self._put_manifest(self.ref.identifier, media_type, raw, descriptor.digest)

    def accepts(self, media_type: str) -> bool:
        """OCI and Docker v2 manifests and indexes."""
        return media_type in mt.MANIFESTS | mt.INDEXES

    # --- deleting -------------------------------------------------------------------------------------

    def delete_manifest(self, digest: Digest | str) -> None:
        """``DELETE /manifests/<digest>``: the manifest and every tag on it are gone (blobs stay until GC)."""
        wanted = _digest(digest)
        url = f"{self.repository_url}/manifests/{wanted}"
        self._client.send("DELETE", url, what=f"manifest {wanted}", scope=self._delete, ok=(202,)).close()

    def delete_tag(self, tag: str) -> tuple[Digest, list[str]]:
        """Delete the manifest ``tag`` names; its digest and every tag that named it (they are all gone).

        The distribution API deletes manifests, not tags, so the other tags of the same digest go too.
        """
        _check_tag(self.ref, tag)
        digest = self._resolve(tag)
        same = sorted(other for other in self.tags() if other == tag or self._resolve(other) == digest)
        self.delete_manifest(digest)
        return digest, same

    def delete_blob(self, digest: Digest | str) -> None:
        """``DELETE /blobs/<digest>`` (a registry may refuse while a manifest still refers to it)."""
        wanted = _digest(digest)
        url = f"{self.repository_url}/blobs/{wanted}"
        self._client.send("DELETE", url, what=f"blob {wanted}", scope=self._delete, ok=(202,)).close()

    def close(self) -> None:
        self._client.transport.close()

    def __repr__(self) -> str:
        return f"<RegistryStore {self.reference} via {self.base_url}>"

    # --- helpers --------------------------------------------------------------------------------------

    @property
    def _pull(self) -> str:
        return f"repository:{self.ref.repository}:pull"

    @property
    def _push(self) -> str:
        return f"repository:{self.ref.repository}:pull,push"

    @property
    def _delete(self) -> str:
        return f"repository:{self.ref.repository}:delete"

    def _get(self, url: str, what: str, headers: dict[str, str] | None = None, scope: str | None = None) -> Response:
        return self._client.send("GET", url, what=what, scope=scope or self._pull, headers=headers)

    def _fetch_manifest(self, identifier: str, accept: str, what: str) -> tuple[bytes, str]:
        """The bytes and Content-Type of ``/manifests/<identifier>``, checked against what the registry announces."""
        response = self._get(f"{self.repository_url}/manifests/{identifier}", what, {"Accept": accept})
        try:
            raw = read_body(response, MAX_DOCUMENT_BYTES, f"{self.reference}: manifest")
            media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            announced = response.headers.get("Docker-Content-Digest")
        finally:
            response.close()
        self._check_announced(raw, announced)
        own = load_object(raw, f"{self.reference}: {what}").get("mediaType")
        if isinstance(own, str) and media_type not in _GENERIC_TYPES and own != media_type:
            raise RegistryError(
                f"{self.reference}: the registry serves {what} as {media_type!r}, but the document's mediaType"
                f" is {own!r}; the manifest was pushed with the wrong Content-Type"
            )
        return raw, media_type

    def _check_announced(self, raw: bytes, announced: str | None) -> None:
        """VerificationError when ``raw`` is not what the registry's ``Docker-Content-Digest`` announced."""
        if not announced:
            return
        try:
            claimed = Digest.parse(announced.strip())
        except DigestFormatError as error:
            raise RegistryError(f"{self.reference}: the registry sent a bad Docker-Content-Digest: {error}") from None
        if claimed.verifiable and Digest.of_bytes(raw, claimed.algorithm) != claimed:
            raise VerificationError(
                f"{self.reference}: the manifest's bytes do not match the Docker-Content-Digest {claimed}"
                " the registry announced"
            )

    def _resolve(self, tag: str) -> Digest:
        """The digest ``tag`` names: ``HEAD`` and its ``Docker-Content-Digest``, else the hash of a ``GET``."""
        url = f"{self.repository_url}/manifests/{tag}"
        headers = {"Accept": ACCEPT_MANIFESTS}
        response = self._client.send("HEAD", url, what=f"tag {tag}", scope=self._pull, headers=headers)
        response.close()
        announced = (response.headers.get("Docker-Content-Digest") or "").strip()
        try:
            return Digest.parse(announced)
        except DigestFormatError:
            return Digest.of_bytes(self._fetch_manifest(tag, ACCEPT_MANIFESTS, f"tag {tag}")[0])

    def _put_manifest(self, identifier: str, media_type: str, raw: bytes, digest: Digest) -> Mapping[str, str]:
        """``PUT /manifests/<identifier>``; the answer's headers. VerificationError if it announces another digest."""
        url = f"{self.repository_url}/manifests/{identifier}"
        what = f"manifest {digest}" if identifier == str(digest) else f"manifest {digest} as {identifier}"
        headers = {"Content-Type": media_type}
        response = self._client.send("PUT", url, what=what, scope=self._push, ok=(201,), headers=headers, body=raw)
        response.close()
        announced = (response.headers.get("Docker-Content-Digest") or "").strip()
        if announced and announced != str(digest):
            raise VerificationError(f"{self.reference}: the registry stored {what} under the digest {announced}")
        return response.headers

    def _fallback_index(self, subject: Digest) -> bytes | None:
        """The bytes of the index under the fallback tag ``<alg>-<hex>`` of ``subject``; None when there is none."""
        tag = _fallback_tag(subject)
        try:
            return self._fetch_manifest(tag, mt.OCI_INDEX, f"referrers tag {tag}")[0]
        except RegistryNotFoundError:
            return None

    def _add_referrer(self, subject: Digest, referrer: Descriptor) -> None:
        """Add ``referrer`` to the fallback tag index of ``subject`` (the spec's client-side referrers list)."""
        raw = self._fallback_index(subject)
        current = parse_index(raw, f"{self.reference}: referrers tag").manifests if raw else ()
        index = build_index([*(item for item in current if item.digest != referrer.digest), referrer])
        self._put_manifest(_fallback_tag(subject), index.media_type, index.raw, describe(index).digest)

    def _paginate(self, url: str, key: str, scope: str, what: str) -> list[str]:
        items: list[str] = []
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in seen:
                raise RegistryError(f"{self.reference}: the registry's Link pagination loops back to {next_url}")
            seen.add(next_url)
            response = self._get(next_url, what, {"Accept": "application/json"}, scope)
            try:
                body = read_body(response, MAX_DOCUMENT_BYTES, f"{self.reference}: {what}")
                link = _NEXT_LINK.search(response.headers.get("Link") or "")
            finally:
                response.close()
            items += _string_list(body, key, f"{self.reference}: {what}")
            next_url = urljoin(next_url, link.group(1)) if link else None
        return items


class _Body(io.RawIOBase):
    """A response body as a read-only binary stream; a broken connection raises ComponentUnavailableError."""

    def __init__(self, response: Response) -> None:
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._response.read(len(buffer))
        except OSError as error:
            raise ComponentUnavailableError(
                f"the connection to {self._response.url} failed while reading the response: {error}"
            ) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
        super().close()


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``[::1]``, with or without a port."""
    hostname = host[1 : host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _check_reference(reference: Reference) -> None:
    """ReferenceFormatError for a Reference built by hand with a bad host, repository, tag or digest."""
    parsed = Reference.parse(str(reference))
    if (parsed.host, parsed.repository) != (reference.host, reference.repository):
        raise ReferenceFormatError(f"{str(reference)!r} is not normalised; build references with Reference.parse")


def _check_tag(ref: Reference, tag: str) -> None:
    """ReferenceFormatError unless ``tag`` is a valid tag (the grammar ``Reference.parse`` applies)."""
    try:
        valid = isinstance(tag, str) and Reference.parse(f"{ref.name}:{tag}").tag == tag
    except ReferenceFormatError:
        valid = False
    if not valid:
        raise ReferenceFormatError(
            f"{tag!r} is not a valid tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        )


def _digest(value: Digest | str) -> Digest:
    """``value`` as a Digest; DigestFormatError for a malformed string."""
    return value if isinstance(value, Digest) else Digest.parse(value)


def _fallback_tag(subject: Digest) -> str:
    """The referrers tag schema: ``<alg>-<ref>``, algorithm cut to 32 and encoded part to 64 characters."""
    return f"{subject.algorithm[:32]}-{subject.encoded[:64]}"


def _referrer(descriptor: Descriptor, document: Manifest | Index) -> Descriptor:
    """The descriptor a referrers list holds for a manifest: artifact type (else config type) and annotations."""
    artifact_type = None
    if isinstance(document, Manifest):
        artifact_type = document.artifact_type or document.config.media_type
    return Descriptor(
        descriptor.media_type,
        descriptor.digest,
        descriptor.size,
        annotations=dict(document.annotations),
        artifact_type=artifact_type,
    )


def _string_list(body: bytes, key: str, source: str) -> list[str]:
    try:
        document = json.loads(body)
    except ValueError:
        raise RegistryError(f"{source}: the registry did not answer JSON") from None
    items = document.get(key) if isinstance(document, dict) else None
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise RegistryError(f"{source}: {key!r} is not a list of strings")
    return items
