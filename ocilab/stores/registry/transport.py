"""The HTTP seam of the registry store: one request in, one streamed response out.

Everything the store and its auth flow send goes through a ``Transport``, so
tests can inject one that fails the ways a real registry cannot be made to
(a 500, a connection dropped in the middle of a blob). The default,
``RequestsTransport``, sits on a ``requests.Session``: responses are streamed,
redirects followed (``requests`` drops ``Authorization`` when one leaves the
host), bodies read as sent (``Accept-Encoding: identity``, no decoding, so
blob bytes are the bytes their digest covers), no retries (the store decides
what is safe to repeat). A request body is bytes: the store never sends more
than one bounded chunk at a time, so every body can be sent again after a
challenge or a failure. Failures to connect, send or keep reading become
ComponentUnavailableError naming the URL.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Protocol

import requests
import urllib3.exceptions

from ocilab.errors import ComponentUnavailableError
from ocilab.model.digest import read_capped

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0


class TLSFailure(ComponentUnavailableError):
    """The TLS handshake failed (certificate not trusted, plain HTTP server ...): trying again cannot help."""


class Response(Protocol):
    """A response whose body has not been read yet."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Header lookups are case-insensitive."""
        ...

    @property
    def url(self) -> str:
        """The URL that answered, after redirects."""
        ...

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body; b"" at its end. ComponentUnavailableError if the connection fails."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Sends one HTTP request; ComponentUnavailableError when the server cannot be reached.

    Callers pass ``body`` only when there is one, so a transport for reads alone may omit the parameter.
    """

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response: ...

    def close(self) -> None: ...


class RequestsTransport:
    """The default transport, on a ``requests.Session``.

    ``verify`` False skips TLS certificate checks; a path names the CA bundle to use. ``trust_env`` False ignores
    proxy variables and .netrc (the store passes False for loopback hosts,
    which are never proxied, as Go's tools do).
    """

    def __init__(
        self, verify: bool | str = True, trust_env: bool = True, timeout: tuple[float, float] | None = None
    ) -> None:
        self._session = requests.Session()
        self._session.verify = verify
        self._session.trust_env = trust_env
        self._session.headers["Accept-Encoding"] = "identity"
        self._session.headers["User-Agent"] = "ocilab"
        self._timeout = timeout or (CONNECT_TIMEOUT, READ_TIMEOUT)

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
        try:
            with warnings.catch_warnings():
                # The caller chose not to verify (tls_verify=False): no warning on every request.
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                response = self._session.request(
                    method,
                    url,
                    headers=dict(headers),
                    data=body,
                    stream=True,
                    timeout=self._timeout,
                    allow_redirects=True,
                )
        except requests.exceptions.SSLError as error:
            raise TLSFailure(
                f"TLS failed for {url}: {_reason(error)}; for a registry with a self-signed certificate"
                " pass its CA as ca_file, or tls_verify=False (--tls-verify=false) to skip the check"
            ) from None
        except requests.exceptions.RequestException as error:
            raise ComponentUnavailableError(f"cannot reach {url}: {_reason(error)}; is the registry running?") from None
        return _RequestsResponse(response)

    def close(self) -> None:
        self._session.close()


class _RequestsResponse:
    def __init__(self, response: requests.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def url(self) -> str:
        return self._response.url

    def read(self, size: int) -> bytes:
        try:
            return bytes(self._response.raw.read(size, decode_content=False))
        except (OSError, urllib3.exceptions.HTTPError, requests.exceptions.RequestException) as error:
            raise ComponentUnavailableError(
                f"the connection to {self.url} failed while reading the response: {_reason(error)}"
            ) from None

    def close(self) -> None:
        self._response.close()


def read_body(response: Response, limit: int, what: str) -> bytes:
    """The whole body of a response expected to be small; DocumentTooLargeError past ``limit`` bytes."""
    return read_capped(response, limit, f"{what} ({response.url})")


def _reason(error: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, without the wrapper layers."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    reason = getattr(error, "reason", None)
    return str(reason if reason is not None else error)
