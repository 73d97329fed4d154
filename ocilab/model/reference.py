"""Image references: ``[host[:port]/]repo[:tag][@digest]``.

Names follow the distribution-spec grammar: path components match
``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*`` joined by ``/``, and tags match
``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``. The first component is a host when it
contains a ``.`` or a ``:`` or is ``localhost``; otherwise the reference
belongs to Docker Hub, normalised as Docker does (``busybox`` becomes
``docker.io/library/busybox``). A reference without tag or digest means ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocilab.errors import DigestFormatError, ReferenceFormatError
from ocilab.model.digest import Digest

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\]"
)
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``tag`` is None only when a digest pins the image."""

    host: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalise ``text``; ReferenceFormatError says which part is wrong."""
        if not text or not isinstance(text, str):
            raise ReferenceFormatError("an image reference cannot be empty")
        remainder, at, digest_text = text.partition("@")
        digest = None
        if at:
            try:
                digest = Digest.parse(digest_text)
            except DigestFormatError as error:
                raise ReferenceFormatError(f"reference {text!r}: {error}") from None
        host, path = _split_host(remainder)
        tag = None
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise ReferenceFormatError(
                    f"reference {text!r}: tag {tag!r} is not valid (letters, digits, '_', '.', '-'; at most 128)"
                )
        if host is None:
            host = DOCKER_HUB
            if "/" not in path:
                path = f"library/{path}"
        for component in path.split("/"):
            if not _PATH_COMPONENT.fullmatch(component):
                raise ReferenceFormatError(
                    f"reference {text!r}: repository component {component!r} is not valid"
                    " (lowercase letters, digits and single separators '.', '_', '__', '-')"
                )
        if len(path) > _MAX_NAME:
            raise ReferenceFormatError(f"reference {text!r}: repository name is longer than {_MAX_NAME} characters")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(host, path, tag, digest)

    @property
    def name(self) -> str:
        """``host/repository``."""
        return f"{self.host}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask a registry for: the digest when pinned, else the tag."""
        return str(self.digest) if self.digest else (self.tag or DEFAULT_TAG)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_host(text: str) -> tuple[str | None, str]:
    first, slash, rest = text.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        hostname = first
        port = ""
        if first.startswith("["):
            closing = first.find("]")
            hostname, port = first[: closing + 1], first[closing + 1 :]
        elif ":" in first:
            hostname, port = first.split(":", 1)
            port = ":" + port
        if not _HOST.fullmatch(hostname) or (port and not re.fullmatch(r":[0-9]{1,5}", port)):
            raise ReferenceFormatError(f"reference {text!r}: host {first!r} is not valid")
        return first, rest
    return None, text
