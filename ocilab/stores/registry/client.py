"""Requests to one repository of a registry: authentication first, retries where safe, errors with their codes.

``RegistryClient.authorised`` sends one request with the ``Authorization``
the scope needs and answers a 401 challenge once (every body is bytes, so it
can be sent again). ``send`` adds the status check, the retries of
``RetryPolicy`` for requests the caller marks as safe to repeat (a failed TLS
handshake is not retried), and maps a
failed answer to a typed error carrying the distribution error code:

=====================================  =============================================
401, 403                               AuthenticationError (what to do about credentials)
404                                    RegistryNotFoundError (a NotFoundError)
400 DIGEST_INVALID / SIZE_INVALID      RegistryVerificationError (a VerificationError)
405 or UNSUPPORTED on DELETE           DeletionDisabledError
anything else                          RegistryError
=====================================  =============================================
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from urllib.parse import urljoin

from ocilab.errors import (
    AuthenticationError,
    ComponentUnavailableError,
    DeletionDisabledError,
    OcilabError,
    RegistryError,
    RegistryNotFoundError,
    RegistryVerificationError,
)
from ocilab.model import Reference
from ocilab.stores.registry.auth import Authenticator, DockerConfig
from ocilab.stores.registry.retry import RETRYABLE_STATUSES, RetryPolicy
from ocilab.stores.registry.transport import Response, TLSFailure, Transport, read_body

_ERROR_BODY_LIMIT = 64 * 1024
_VERIFICATION_CODES = frozenset({"DIGEST_INVALID", "SIZE_INVALID", "MANIFEST_INVALID", "MANIFEST_BLOB_UNKNOWN"})


class RegistryClient:
    """Sends the requests of one ``RegistryStore``.

    ``ref`` names the repository, ``base_url`` is ``http(s)://host[:port]`` and
    ``label`` (``docker://...``) starts every message.
    """

    def __init__(
        self,
        ref: Reference,
        base_url: str,
        label: str,
        transport: Transport,
        auth: Authenticator,
        docker_config: DockerConfig,
        retry: RetryPolicy,
    ) -> None:
        self.ref = ref
        self.base_url = base_url
        self.repository_url = f"{base_url}/v2/{ref.repository}"
        self.label = label
        self.transport = transport
        self.auth = auth
        self.retry = retry
        self._docker_config = docker_config

    def authorised(
        self, method: str, url: str, scope: str, headers: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> Response:
        """The answer to one request, after answering a 401 challenge once; any status."""
        response = self._request(method, url, scope, headers or {}, body)
        if response.status == 401:
            try:
                again = self.auth.answer(response.headers.get("WWW-Authenticate"), scope)
            except OcilabError:
                response.close()
                raise
            if again:
                response.close()
                response = self._request(method, url, scope, headers or {}, body)
        return response

    def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        scope: str,
        ok: Collection[int] = (200,),
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        repeatable: bool = True,
    ) -> Response:
        """A response whose status is in ``ok``; ``repeatable`` requests are retried on 429, 5xx, lost connections."""
        backoff = self.retry.delays()
        while True:
            try:
                response = self.authorised(method, url, scope, headers, body)
            except ComponentUnavailableError as failure:
                if repeatable and not isinstance(failure, TLSFailure) and backoff.wait():
                    continue
                raise
            if response.status in ok:
                return response
            if repeatable and response.status in RETRYABLE_STATUSES and backoff.wait(response.headers):
                response.close()
                continue
            try:
                raise self.error(response, method, url, what)
            finally:
                response.close()

    def error(self, response: Response, method: str, url: str, what: str) -> RegistryError:
        """The typed error for a failed answer to ``method url`` about ``what`` (the body is read, not closed)."""
        code, detail = error_detail(response)
        status = response.status
        said = f" ({detail})" if detail else ""
        if status in (401, 403):
            return self._refused(status, code, detail)
        if status == 404:
            if code == "NAME_UNKNOWN":
                what = f"repository {self.ref.repository}"
            return RegistryNotFoundError(f"{self.label}: {what} not found on {self.ref.host}{said}", status, code)
        if method == "DELETE" and (status == 405 or code == "UNSUPPORTED"):
            return DeletionDisabledError(
                f"{self.label}: deletion is disabled on the registry {self.ref.host}"
                " (it is turned on by storage.delete.enabled: true in the registry's config)",
                status,
                code,
            )
        if code in _VERIFICATION_CODES:
            return RegistryVerificationError(f"{self.label}: the registry refused {what}{said}", status, code)
        where = url.split("?", 1)[0]
        hint = ""
        if status == 400 and url.startswith("http://") and code is None:
            hint = " (if this registry serves only HTTPS, open it with insecure=False)"
        said = f": {detail}" if detail else ""
        return RegistryError(f"{self.label}: {method} {where} answered HTTP {status}{said}{hint}", status, code)

    def _request(self, method: str, url: str, scope: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        sent = {**headers, **self.auth.headers(scope)}
        if body is None:  # transports written for reads alone take no body parameter
            return self.transport.request(method, url, sent)
        return self.transport.request(method, url, sent, body)

    def _refused(self, status: int, code: str | None, detail: str) -> AuthenticationError:
        host, repository = self.ref.host, self.ref.repository
        said = f": {detail}" if detail else ""
        config = self._docker_config.path
        credentials = self.auth.credentials
        if credentials is None:
            helper = self._docker_config.helper(host)
            unread = f" (Docker keeps them in the credential helper {helper!r}, which ocilab does not read)"
            return AuthenticationError(
                f"{host} requires credentials for {repository} (HTTP {status}{said}) and none were found in"
                f" {config}{unread if helper else ''}; log in with `docker login {host}`, which writes {config},"
                " or pass credentials=Credentials(user, password)",
                status,
                code,
            )
        return AuthenticationError(
            f"{host} refused the credentials from {credentials.source} for {repository} (HTTP {status}{said});"
            f" log in again with `docker login {host}`",
            status,
            code,
        )


def next_location(response: Response, current: str) -> str:
    """The absolute upload URL a response names in ``Location``; RegistryError when it names none."""
    location = response.headers.get("Location")
    if not location:
        raise RegistryError(f"{current.split('?', 1)[0]} answered HTTP {response.status} without a Location header")
    return urljoin(current, location)


def error_detail(response: Response) -> tuple[str | None, str]:
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
