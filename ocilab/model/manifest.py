"""Image manifests and indexes (OCI and Docker v2 schema 2), raw bytes kept beside the parsed form.

The digest of a document is always computed over ``raw``: re-serialising the
parsed form would not give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocilab.model import mediatype as mt
from ocilab.model.descriptor import Descriptor, Platform
from ocilab.model.digest import Digest
from ocilab.model.jsondoc import Fields, Finding, load_object


@dataclass(frozen=True)
class Manifest:
    """An image manifest: one config and an ordered list of layers (base first)."""

    raw: bytes = field(repr=False)
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    warnings: tuple[Finding, ...] = field(default=(), compare=False, hash=False, repr=False)

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)

    @property
    def is_image(self) -> bool:
        """True when the config is an image config (OCI or Docker), false for an artifact."""
        return self.config.media_type in mt.CONFIGS


@dataclass(frozen=True)
class Index:
    """An image index (or Docker manifest list): descriptors of manifests, often one per platform."""

    raw: bytes = field(repr=False)
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    warnings: tuple[Finding, ...] = field(default=(), compare=False, hash=False, repr=False)

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)

    def select(self, platform: Platform) -> Descriptor | None:
        """The first image manifest whose platform satisfies ``platform``; None if there is none."""
        for descriptor in self.manifests:
            if descriptor.platform and descriptor.platform.matches(platform) and mt.is_manifest(descriptor.media_type):
                return descriptor
        return None


def _schema_version(fields: Fields) -> None:
    version = fields.integer("schemaVersion", required=True)
    if version == 1:
        raise fields.error(
            "schemaVersion", "Docker schema 1 manifests are deprecated and not supported; re-push the image"
        )
    if version != 2:
        raise fields.error("schemaVersion", f"must be 2, got {version}")


def _media_type(fields: Fields, expected_kind: str, declared: str | None) -> str:
    """The document's media type: its own ``mediaType`` checked against the descriptor's."""
    own = fields.string("mediaType")
    if own and declared and own != declared:
        raise fields.error("mediaType", f"{own!r} contradicts the descriptor's media type {declared!r}")
    media_type = own or declared
    if media_type is None:
        return mt.OCI_MANIFEST if expected_kind == "manifest" else mt.OCI_INDEX
    if media_type in mt.SCHEMA1:
        raise fields.error("mediaType", "Docker schema 1 manifests are deprecated and not supported")
    wanted = mt.MANIFESTS if expected_kind == "manifest" else mt.INDEXES
    if media_type not in wanted:
        raise fields.error("mediaType", f"{media_type!r} is not an image {expected_kind} media type")
    return media_type


def _descriptor_list(fields: Fields, key: str, required: bool) -> tuple[Descriptor, ...]:
    items = fields.array(key, required=required) or []
    return tuple(Descriptor.from_fields(fields.nested(item, f"{fields.at(key)}[{i}]")) for i, item in enumerate(items))


def _optional_descriptor(fields: Fields, key: str) -> Descriptor | None:
    obj = fields.obj_field(key)
    return Descriptor.from_fields(fields.nested(obj, fields.at(key))) if obj is not None else None


def _check_artifact(
    fields: Fields, config: Descriptor, layers: tuple[Descriptor, ...], artifact_type: str | None
) -> None:
    """The manifest rules that depend on whether it is an image or an artifact."""
    if config.media_type == mt.OCI_EMPTY and artifact_type is None:
        raise fields.error("artifactType", f"must be set when config.mediaType is {mt.OCI_EMPTY}")
    if not layers:
        fields.warn("layers", "is empty; for portability a manifest should have at least one layer")
    if config.media_type not in mt.CONFIGS:
        fields.warn(
            "config.mediaType",
            f"{config.media_type!r} is not an image config: this is an artifact, and its config is not parsed",
        )
        return
    for position, layer in enumerate(layers):
        if mt.layer_compression(layer.media_type) is None:
            fields.warn(
                f"layers[{position}].mediaType",
                f"{layer.media_type!r} is not a layer media type ocilab knows: its blob is checked, not its content",
            )


def parse_manifest(raw: bytes, source: str = "manifest", declared_media_type: str | None = None) -> Manifest:
    """Parse and validate an image manifest; what is allowed but odd is kept in ``warnings``.

    Refuses a document that also carries ``manifests`` (an index in disguise), whose
    ``mediaType`` contradicts ``declared_media_type``, whose config is not a descriptor,
    or whose empty config comes without ``artifactType``.
    """
    fields = Fields(load_object(raw, source), "", source)
    _schema_version(fields)
    if "manifests" in fields.obj:
        raise fields.error("manifests", "an image manifest must not carry 'manifests' (is this an index?)")
    media_type = _media_type(fields, "manifest", declared_media_type)
    config = Descriptor.from_fields(fields.nested(fields.obj_field("config", required=True), "config"))
    layers = _descriptor_list(fields, "layers", required=True)
    if media_type == mt.DOCKER_MANIFEST and config.media_type != mt.DOCKER_CONFIG:
        raise fields.error("config.mediaType", f"a Docker v2 manifest needs config media type {mt.DOCKER_CONFIG!r}")
    artifact_type = fields.media_type("artifactType")
    _check_artifact(fields, config, layers, artifact_type)
    return Manifest(
        raw=raw,
        media_type=media_type,
        config=config,
        layers=layers,
        annotations=fields.annotations(),
        subject=_optional_descriptor(fields, "subject"),
        artifact_type=artifact_type,
        warnings=tuple(fields.warnings),
    )


def parse_index(raw: bytes, source: str = "index", declared_media_type: str | None = None) -> Index:
    """Parse and validate an image index; refuses one that also carries ``layers`` or ``config``."""
    fields = Fields(load_object(raw, source), "", source)
    _schema_version(fields)
    for key in ("layers", "config"):
        if key in fields.obj:
            raise fields.error(key, f"an image index must not carry '{key}' (is this a manifest?)")
    media_type = _media_type(fields, "index", declared_media_type)
    return Index(
        raw=raw,
        media_type=media_type,
        manifests=_descriptor_list(fields, "manifests", required=True),
        annotations=fields.annotations(),
        subject=_optional_descriptor(fields, "subject"),
        artifact_type=fields.media_type("artifactType"),
        warnings=tuple(fields.warnings),
    )


def parse_root(raw: bytes, source: str, declared_media_type: str | None = None) -> Manifest | Index:
    """Parse a document that may be a manifest or an index: by the declared media type, else by its own."""
    if declared_media_type in mt.INDEXES:
        return parse_index(raw, source, declared_media_type)
    if declared_media_type in mt.MANIFESTS:
        return parse_manifest(raw, source, declared_media_type)
    obj = load_object(raw, source)
    own = obj.get("mediaType")
    if own in mt.INDEXES or (own is None and "manifests" in obj):
        return parse_index(raw, source)
    return parse_manifest(raw, source)
