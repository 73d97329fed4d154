"""Descriptors and platforms (image-spec descriptor.md, image-index.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ocilab.errors import DigestFormatError, ValidationError
from ocilab.model.digest import Digest
from ocilab.model.jsondoc import Fields, load_object

_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


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

    @classmethod
    def from_fields(cls, fields: Fields) -> Descriptor:
        """Validate and build a descriptor from a JSON object."""
        media_type = fields.string("mediaType", required=True) or ""
        if not _MEDIA_TYPE.fullmatch(media_type):
            raise fields.error("mediaType", f"{media_type!r} is not a valid media type (RFC 6838)")
        digest_text = fields.string("digest", required=True) or ""
        try:
            digest = Digest.parse(digest_text)
        except DigestFormatError as error:
            raise fields.error("digest", error.problem) from None
        size = fields.integer("size", required=True)
        assert size is not None
        if size < 0:
            raise fields.error("size", f"must not be negative, got {size}")
        platform_obj = fields.obj_field("platform")
        platform = (
            Platform.from_fields(Fields(platform_obj, fields.at("platform"), fields.source))
            if platform_obj is not None
            else None
        )
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=tuple(fields.string_list("urls") or ()),
            annotations=fields.string_map("annotations"),
            platform=platform,
            artifact_type=fields.string("artifactType"),
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


def parse_descriptor(raw: bytes, source: str = "descriptor") -> Descriptor:
    """Parse and validate a standalone descriptor document."""
    return Descriptor.from_fields(Fields(load_object(raw, source), "", source))
