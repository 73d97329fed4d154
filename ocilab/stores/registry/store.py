"""Reading images from a registry over the distribution API (``docker://HOST/REPO[:TAG][@DIGEST]``).

Loopback hosts (127.0.0.0/8, ::1, localhost) are spoken to in plain HTTP,
every other host in HTTPS with certificate verification, unless the caller
says otherwise. Manifests are fetched from ``/v2/<repo>/manifests/<ref>``,
everything else streams from ``/v2/<repo>/blobs/<digest>``; the base class
verifies every byte against its digest. Errors map as follows: 401/403 after
authentication -> AuthenticationError, 404 -> NotFoundError, no connection ->
ComponentUnavailableError, any other status -> RegistryError with the
registry's error code and message.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urljoin

from ocilab.errors import (
    AuthenticationError,
    ComponentUnavailableError,
    DigestFormatError,
    NotFoundError,
    OcilabError,
    RegistryError,
    VerificationError,
)
from ocilab.model import MAX_DOCUMENT_BYTES, Descriptor, Digest, Reference
from ocilab.model import mediatype as mt
from ocilab.stores.base import Store
from ocilab.stores.registry.auth import Authenticator, Credentials, DockerConfig
from ocilab.stores.registry.transport import RequestsTransport, Response, Transport, read_body

ACCEPT_MANIFESTS = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
DOCKER_HUB_API = "registry-1.docker.io"
_ERROR_BODY_LIMIT = 64 * 1024
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


class RegistryStore(Store):
    """One repository of a registry, read through the distribution API.

    ``insecure`` None speaks plain HTTP to loopback hosts and HTTPS to the
    rest; True forces HTTP, False forces HTTPS. ``tls_verify`` False skips
    certificate checks; ``ca_file`` is a PEM bundle to verify against instead
    of the system's. ``credentials`` None reads Docker's config.json (see
    ``ocilab.stores.registry.auth``). ``transport`` replaces the HTTP layer
    (tests inject failures with it); the store closes it in ``close()``.
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
    ) -> None:
        self.ref = reference
        self.reference = f"docker://{reference}"
        loopback = is_loopback(reference.host)
        plain_http = loopback if insecure is None else insecure
        api_host = DOCKER_HUB_API if reference.host == "docker.io" else reference.host
        self.base_url = f"{'http' if plain_http else 'https'}://{api_host}"
        verify: bool | str = str(ca_file) if tls_verify and ca_file is not None else tls_verify
        self._transport = transport or RequestsTransport(verify=verify, trust_env=not loopback)
        self._docker_config = DockerConfig()
        found = credentials or self._docker_config.credentials(reference.host)
        self._auth = Authenticator(self._transport, reference.host, found)
        self._manifests: dict[Digest, bytes] = {}

    @property
    def repository_url(self) -> str:
        """``<base>/v2/<repo>``, the prefix of every repository endpoint."""
        return f"{self.base_url}/v2/{self.ref.repository}"

    def root(self) -> Descriptor:
        """The manifest or index the tag (or digest) names, checked against the registry's and the pinned digest.

        The bytes are kept so that reading the document next does not fetch it again.
        """
        identifier = self.ref.identifier
        what = f"manifest {identifier}" if self.ref.digest else f"tag {identifier}"
        response = self._get(f"{self.repository_url}/manifests/{identifier}", ACCEPT_MANIFESTS, what)
        try:
            raw = read_body(response, MAX_DOCUMENT_BYTES, f"{self.reference}: manifest")
            media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            announced = response.headers.get("Docker-Content-Digest")
        finally:
            response.close()
        digest = self._check_manifest(raw, announced)
        self._manifests[digest] = raw
        return Descriptor(media_type or "application/octet-stream", digest, len(raw))

    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        """A stream of the bytes of ``descriptor``: manifests and indexes from /manifests/, the rest from /blobs/."""
        cached = self._manifests.get(descriptor.digest)
        if cached is not None:
            return io.BytesIO(cached)
        if descriptor.media_type in mt.MANIFESTS | mt.INDEXES | mt.SCHEMA1:
            url = f"{self.repository_url}/manifests/{descriptor.digest}"
            response = self._get(url, f"{descriptor.media_type}, {ACCEPT_MANIFESTS}", f"manifest {descriptor.digest}")
        else:
            response = self._get(f"{self.repository_url}/blobs/{descriptor.digest}", None, f"blob {descriptor.digest}")
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
        return self._paginate(f"{self.repository_url}/tags/list", "tags", self._scope, what)

    def catalog(self) -> list[str]:
        """Every repository of the registry (``/v2/_catalog``), following ``Link`` pagination."""
        return self._paginate(f"{self.base_url}/v2/_catalog", "repositories", "registry:catalog:*", "the catalog")

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:
        return f"<RegistryStore {self.reference} via {self.base_url}>"

    @property
    def _scope(self) -> str:
        return f"repository:{self.ref.repository}:pull"

    def _check_manifest(self, raw: bytes, announced: str | None) -> Digest:
        """The digest of ``raw``; VerificationError if it is not what the registry announced or the reference pins."""
        if announced:
            try:
                claimed = Digest.parse(announced.strip())
            except DigestFormatError as error:
                message = f"{self.reference}: the registry sent a bad Docker-Content-Digest: {error}"
                raise RegistryError(message) from None
            if claimed.verifiable and Digest.of_bytes(raw, claimed.algorithm) != claimed:
                raise VerificationError(
                    f"{self.reference}: the manifest's bytes do not match the Docker-Content-Digest {claimed}"
                    f" the registry announced"
                )
        pinned = self.ref.digest
        if pinned is None:
            return Digest.of_bytes(raw)
        actual = Digest.of_bytes(raw, pinned.algorithm)
        if actual != pinned:
            raise VerificationError(f"{self.reference}: the registry returned a manifest whose digest is {actual}")
        return pinned

    def _paginate(self, url: str, key: str, scope: str, what: str) -> list[str]:
        items: list[str] = []
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in seen:
                raise RegistryError(f"{self.reference}: the registry's Link pagination loops back to {next_url}")
            seen.add(next_url)
            response = self._get(next_url, "application/json", what, scope)
            try:
                body = read_body(response, MAX_DOCUMENT_BYTES, f"{self.reference}: {what}")
                link = _NEXT_LINK.search(response.headers.get("Link") or "")
            finally:
                response.close()
            items += _string_list(body, key, f"{self.reference}: {what}")
            next_url = urljoin(next_url, link.group(1)) if link else None
        return items

    def _get(self, url: str, accept: str | None, what: str, scope: str | None = None) -> Response:
        """A 200 response to GET ``url``, authenticating when challenged; the mapped error otherwise."""
        scope = scope or self._scope
        headers = {"Accept": accept} if accept else {}
        response = self._transport.request("GET", url, {**headers, **self._auth.headers(scope)})
        if response.status == 401:
            try:
                retry = self._auth.answer(response.headers.get("WWW-Authenticate"), scope)
            except OcilabError:
                response.close()
                raise
            if retry:
                response.close()
                response = self._transport.request("GET", url, {**headers, **self._auth.headers(scope)})
        if response.status == 200:
            return response
        try:
            raise self._error(response, url, what)
        finally:
            response.close()

    def _error(self, response: Response, url: str, what: str) -> OcilabError:
        code, detail = _error_detail(response)
        if response.status in (401, 403):
            return self._refused(response.status, detail)
        if response.status == 404:
            if code == "NAME_UNKNOWN":
                what = f"repository {self.ref.repository}"
            said = f" ({detail})" if detail else ""
            return NotFoundError(f"{self.reference}: {what} not found on {self.ref.host}{said}")
        said = f": {detail}" if detail else ""
        if response.status == 400 and url.startswith("http://"):
            said += " (if this registry serves only HTTPS, open it with insecure=False)"
        return RegistryError(f"{self.reference}: GET {url} answered HTTP {response.status}{said}", response.status)

    def _refused(self, status: int, detail: str) -> AuthenticationError:
        host, repository = self.ref.host, self.ref.repository
        said = f": {detail}" if detail else ""
        config = self._docker_config.path
        credentials = self._auth.credentials
        if credentials is None:
            helper = self._docker_config.helper(host)
            unread = f" (Docker keeps them in the credential helper {helper!r}, which ocilab does not read)"
            return AuthenticationError(
                f"{host} requires credentials for {repository} (HTTP {status}{said}) and none were found in"
                f" {config}{unread if helper else ''}; log in with `docker login {host}`, which writes {config},"
                " or pass credentials=Credentials(user, password)",
                status,
            )
        return AuthenticationError(
            f"{host} refused the credentials from {credentials.source} for {repository} (HTTP {status}{said});"
            f" log in again with `docker login {host}`",
            status,
        )


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


def _error_detail(response: Response) -> tuple[str | None, str]:
    """The first distribution-spec error (``code``, ``"CODE: message"``) of an error body, if it has one."""
    try:
        document = json.loads(read_body(response, _ERROR_BODY_LIMIT, "error body"))
    except (ValueError, OcilabError):
        return None, ""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, ""
    code, message = errors[0].get("code"), errors[0].get("message")
    code = code if isinstance(code, str) else None
    text = ": ".join(str(part) for part in (code, message) if part)
    return code, text


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
