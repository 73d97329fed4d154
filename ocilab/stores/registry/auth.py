"""Registry authentication: challenges, Docker's stored credentials, and the token flow.

A registry that wants credentials answers 401 with ``WWW-Authenticate``:

- ``Basic realm="..."``: send ``Authorization: Basic base64(user:pass)``;
- ``Bearer realm="https://auth.example/token",service="...",scope="repository:r:pull"``:
  GET the realm with ``service`` and one ``scope`` per access wanted (Basic credentials attached
  when there are any, anonymous otherwise), take ``token`` (or
  ``access_token``) from the JSON answer and send ``Authorization: Bearer``.

Credentials come from Docker's ``config.json`` (``$DOCKER_CONFIG/config.json``,
default ``~/.docker/config.json``, the file ``docker login`` writes): an
``auths`` entry for the host with ``auth`` (base64 ``user:pass``) or
``username``/``password``. Credential helpers (``credsStore``,
``credHelpers``) and ``identitytoken`` are NOT consulted; ``DockerConfig.helper``
names the helper so error messages can say why nothing was found.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ocilab.errors import AuthenticationError, InvalidInputError, RegistryError
from ocilab.stores.registry.transport import Transport, read_body

MAX_TOKEN_RESPONSE = 1 << 20
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME = re.compile(rf"\s*({_TOKEN})")
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))')
_TOKEN68 = re.compile(r"\s*([A-Za-z0-9._~+/-]+=*)\s*(?=,|$)")
_SEPARATOR = re.compile(r"\s*,")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; ``scheme`` is lowercase, parameter names too."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges of a ``WWW-Authenticate`` value (RFC 9110 grammar, quoted strings may hold commas).

    Parsing stops at the first thing that is not a challenge; what came before it is kept.
    """
    challenges: list[Challenge] = []
    position = 0
    while True:
        while separator := _SEPARATOR.match(header, position):
            position = separator.end()
        scheme = _SCHEME.match(header, position)
        if scheme is None:
            return challenges
        position = scheme.end()
        params, token68, position = _parse_params(header, position)
        challenges.append(Challenge(scheme.group(1).lower(), params, token68))


def _parse_params(header: str, position: int) -> tuple[dict[str, str], str | None, int]:
    """The auth-params (or token68) after a scheme, and where the next challenge may start."""
    if _PARAM.match(header, position) is None:
        token68 = _TOKEN68.match(header, position)
        if token68 is not None:
            return {}, token68.group(1), token68.end()
    params: dict[str, str] = {}
    while param := _PARAM.match(header, position):
        quoted, bare = param.group(2), param.group(3)
        params[param.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        position = param.end()
        separator = _SEPARATOR.match(header, position)
        if separator is None or _PARAM.match(header, separator.end()) is None:
            break
        position = separator.end()
    return params, None, position


@dataclass(frozen=True)
class Credentials:
    """A user name and password; ``source`` says where they came from, for messages."""

    username: str
    password: str = field(repr=False)
    source: str = "the caller"

    def basic_header(self) -> str:
        """The value of an ``Authorization: Basic`` header."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, or ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


class DockerConfig:
    """Docker's ``config.json``, read for registry credentials. A missing file means no credentials."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or docker_config_path()
        self._document = self._load()

    def credentials(self, host: str) -> Credentials | None:
        """The inline credentials stored for ``host`` (``auth`` or ``username``/``password``), if any."""
        entry = next((value for key, value in self._auths().items() if _matches(key, host)), None)
        if not isinstance(entry, dict):
            return None
        source = f"{self.path} (auths entry for {host})"
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            return _decode_auth(entry["auth"], source)
        username, password = entry.get("username"), entry.get("password")
        if isinstance(username, str) and isinstance(password, str) and username:
            return Credentials(username, password, source)
        return None

    def helper(self, host: str) -> str | None:
        """The credential helper Docker uses for ``host`` (``credHelpers``, else ``credsStore``); ocilab does not."""
        helpers = self._document.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if _matches(key, host) and isinstance(name, str):
                    return name
        store = self._document.get("credsStore")
        return store if isinstance(store, str) and store else None

    def _auths(self) -> dict[str, Any]:
        auths = self._document.get("auths")
        return auths if isinstance(auths, dict) else {}

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise InvalidInputError(f"cannot read Docker's config {self.path}: {error.strerror}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"Docker's config {self.path} is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise InvalidInputError(f"Docker's config {self.path} is not a JSON object")
        return document


def _matches(key: str, host: str) -> bool:
    """True when an ``auths``/``credHelpers`` key names ``host`` (keys may carry a scheme and a path)."""
    normalised = (urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]).lower()
    if host.lower() == "docker.io":
        return key in _DOCKER_HUB_KEYS or normalised in _DOCKER_HUB_KEYS
    return normalised == host.lower()


def _decode_auth(value: str, source: str) -> Credentials:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidInputError(f"{source}: 'auth' is not base64 of user:password") from None
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        raise InvalidInputError(f"{source}: 'auth' does not decode to user:password")
    return Credentials(username, password, source)


class Authenticator:
    """Adds ``Authorization`` to a registry's requests and answers its 401 challenges.

    Anonymous until challenged. A ``scope`` is one or more space-separated
    token scopes (``repository:r:pull,push repository:other:pull`` for a mount);
    each is asked for as a ``scope`` parameter, with the challenge's own scope
    when it names another. ``headers(scope)`` is what to send now;
    ``answer(challenge_header, scope)`` reacts to a 401 and returns True when a
    retry may succeed (new Basic credentials or a fresh Bearer token).
    Bearer tokens are cached per scope.
    """

    def __init__(self, transport: Transport, host: str, credentials: Credentials | None) -> None:
        self._transport = transport
        self._host = host
        self.credentials = credentials
        self._basic = False
        self._tokens: dict[str, str] = {}

    def headers(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token is not None:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self.credentials is not None:
            return {"Authorization": self.credentials.basic_header()}
        return {}

    def answer(self, challenge_header: str | None, scope: str) -> bool:
        """React to a 401 carrying ``challenge_header``; True when the request is worth sending again."""
        challenges = parse_challenges(challenge_header or "")
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            self._tokens[scope] = self._fetch_token(bearer, scope)
            return True
        if any(c.scheme == "basic" for c in challenges) and self.credentials is not None and not self._basic:
            self._basic = True
            return True
        return False

    def _fetch_token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.realm
        if not realm or urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(f"{self._host} sent a Bearer challenge without an http(s) realm: {challenge.params}")
        scopes = scope.split()
        if challenge.scope and challenge.scope not in scopes:
            scopes.append(challenge.scope)
        query = [("service", challenge.service)] if challenge.service else []
        query += [("scope", wanted) for wanted in scopes]
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials is not None else {}
        response = self._transport.request("GET", url, headers)
        try:
            body = read_body(response, MAX_TOKEN_RESPONSE, f"token from {realm}")
            status = response.status
        finally:
            response.close()
        if status in (401, 403):
            who = f"the credentials from {self.credentials.source}" if self.credentials else "anonymous access"
            message = f"the token server {realm} refused {who} for {self._host} (HTTP {status})"
            raise AuthenticationError(message, status)
        if status != 200:
            raise RegistryError(f"the token server {realm} answered HTTP {status} for {self._host}", status)
        return _token_from(body, realm)


def _token_from(body: bytes, realm: str) -> str:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RegistryError(f"the token server {realm} did not answer JSON") from None
    token = (document.get("token") or document.get("access_token")) if isinstance(document, Mapping) else None
    if not isinstance(token, str) or not token:
        raise RegistryError(f"the token server {realm} answered without a 'token' or 'access_token'")
    return token
