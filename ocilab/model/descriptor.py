"""Descriptors and platforms (image-spec descriptor.md, image-index.md)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ocilab.errors import DigestFormatError, ValidationError
from ocilab.model.digest import Digest
from ocilab.model.jsondoc import Fields, Finding, load_object

MAX_SIZE = 2**63 - 1
"""``size`` is an int64."""

# RFC 3986 URI (not a relative reference): a scheme, then only URI characters, %XX escapes, at most one '#'.
_URI = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")


@dataclass(frozen=True)
class Platform:
    """The platform an image runs on; ``str()`` gives ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` as given to ``--platform``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValidationError("platform", f"{text!r} is not OS/ARCH or OS/ARCH/VARIANT")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_fields(cls, fields: Fields) -> Platform:
        """The platform fields of ``fields`` (an index's ``platform`` object, or an image config)."""
        return cls(
            os=fields.string("os", required=True) or "",
            architecture=fields.string("architecture", required=True) or "",
            variant=fields.string("variant"),
            os_version=fields.string("os.version"),
            os_features=tuple(fields.string_list("os.features") or ()),
        )

    def matches(self, wanted: Platform) -> bool:
        """True when this platform satisfies ``wanted`` (a missing wanted variant matches any)."""
        return (
            self.os == wanted.os
            and self.architecture == wanted.architecture
            and (wanted.variant is None or self.variant == wanted.variant)
        )

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            result["variant"] = self.variant
        if self.os_version:
            result["os.version"] = self.os_version
        if self.os_features:
            result["os.features"] = list(self.os_features)
        return result

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """A typed pointer to content: media type, digest and size, plus optional extras."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    warnings: tuple[Finding, ...] = field(default=(), compare=False, hash=False, repr=False)

    @classmethod
    def from_fields(cls, fields: Fields) -> Descriptor:
        """Validate and build a descriptor from a JSON object (its warnings go to ``fields.warnings``)."""
        media_type = fields.media_type("mediaType", required=True) or ""
        digest_text = fields.string("digest", required=True) or ""
        try:
            digest = Digest.parse(digest_text)
        except DigestFormatError as error:
            raise fields.error("digest", error.problem) from None
        size = fields.integer("size", required=True)
        assert size is not None
        if size < 0:
            raise fields.error("size", f"must not be negative, got {size}")
        if size > MAX_SIZE:
            raise fields.error("size", f"{size} does not fit an int64")
        _check_data(fields, digest, size)
        platform_obj = fields.obj_field("platform")
        platform = None
        if platform_obj is not None:
            platform = Platform.from_fields(fields.nested(platform_obj, fields.at("platform")))
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=_urls(fields),
            annotations=fields.annotations(),
            platform=platform,
            artifact_type=fields.media_type("artifactType"),
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor as a JSON object in spec field order."""
        result: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            result["urls"] = list(self.urls)
        if self.annotations:
            result["annotations"] = dict(self.annotations)
        if self.platform:
            result["platform"] = self.platform.to_json()
        if self.artifact_type:
            result["artifactType"] = self.artifact_type
        return result


def _urls(fields: Fields) -> tuple[str, ...]:
    """``urls``: each an RFC 3986 URI; a scheme other than http or https is a warning (they SHOULD be used)."""
    urls = fields.string_list("urls") or []
    for position, url in enumerate(urls):
        match = _URI.fullmatch(url)
        if match is None or url.count("#") > 1:
            raise fields.error(f"urls[{position}]", f"{url!r} is not an RFC 3986 URI (a scheme, then URI characters)")
        if match["scheme"].lower() not in ("http", "https"):
            fields.warn(f"urls[{position}]", f"scheme {match['scheme']!r}: entries should use http or https")
    return tuple(urls)


def _check_data(fields: Fields, digest: Digest, size: int) -> None:
    """``data``: standard padded base64 whose decoded bytes have ``size`` and, when verifiable, ``digest``."""
    text = fields.string("data")
    if text is None:
        return
    try:
        content = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise fields.error("data", "is not base64 (RFC 4648 section 4: standard alphabet, padded)") from None
    if len(content) != size:
        raise fields.error("data", f"decodes to {len(content)} bytes, but size is {size}")
    if not digest.verifiable:
        fields.warn("data", f"cannot be checked against a {digest.algorithm} digest (unsupported algorithm)")
    elif Digest.of_bytes(content, digest.algorithm) != digest:
        raise fields.error("data", f"decodes to content whose digest is not {digest}")


def parse_descriptor(raw: bytes, source: str = "descriptor") -> Descriptor:
    """Parse and validate a standalone descriptor document; its warnings are kept in ``warnings``."""
    fields = Fields(load_object(raw, source), "", source)
    descriptor = Descriptor.from_fields(fields)
    return replace(descriptor, warnings=tuple(fields.warnings))
