"""Images and indexes read from any store, verified and validated on the way in.

``resolve(store)`` gives what the reference names: an ``Image`` when it is a
manifest, an ``ImageIndex`` when it is an index. ``load_image(store, platform)``
always gives an ``Image``, selecting from an index by platform.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from ocilab.errors import InvalidInputError, NotFoundError, ValidationError
from ocilab.model import (
    Descriptor,
    Digest,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    VerifyingReader,
    parse_config,
    parse_manifest,
    parse_root,
)
from ocilab.model import mediatype as mt
from ocilab.stores.base import Store

DEFAULT_PLATFORM = Platform("linux", "amd64")
MAX_INDEX_DEPTH = 8
"""Indexes inside indexes followed when choosing a platform's image."""


@dataclass(frozen=True)
class Layer:
    """One layer of an image: its blob descriptor and the digest of its uncompressed tar."""

    index: int
    descriptor: Descriptor
    diff_id: Digest

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type


class Image:
    """A single-platform image: verified manifest and config, and access to its layers."""

    def __init__(self, store: Store, descriptor: Descriptor, manifest: Manifest, config: ImageConfig) -> None:
        self.store = store
        self.descriptor = descriptor
        self.manifest = manifest
        self.config = config
        self.layers = tuple(
            Layer(position, layer, diff_id)
            for position, (layer, diff_id) in enumerate(zip(manifest.layers, config.diff_ids, strict=True))
        )

    @property
    def reference(self) -> str:
        return self.store.reference

    @property
    def manifest_digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def config_digest(self) -> Digest:
        return self.manifest.config.digest

    @property
    def platform(self) -> Platform:
        return self.config.platform

    @property
    def media_type(self) -> str:
        return self.manifest.media_type

    def layer_steps(self) -> list[str | None]:
        """Per layer, the ``created_by`` of the history entry that made it (None where history says nothing)."""
        steps = [entry.created_by for entry in self.config.history if not entry.empty_layer]
        return [steps[layer.index] if layer.index < len(steps) else None for layer in self.layers]

    def open_layer(self, position: int) -> VerifyingReader:
        """The (possibly compressed) blob of layer ``position``, verified against its digest at EOF."""
        layer = self.layers[position]
        return self.store.open_blob(layer.descriptor, f"layer {position}")

    def close(self) -> None:
        """Release the store (open archives, temporary copies, connections)."""
        self.store.close()

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Image {self.reference} {self.manifest_digest.short} {self.platform} {len(self.layers)} layers>"


class ImageIndex:
    """A multi-platform index; ``image(platform)`` loads one of its images."""

    def __init__(self, store: Store, descriptor: Descriptor, index: Index) -> None:
        self.store = store
        self.descriptor = descriptor
        self.index = index

    @property
    def reference(self) -> str:
        return self.store.reference

    @property
    def manifests(self) -> tuple[Descriptor, ...]:
        return self.index.manifests

    def image(self, platform: Platform) -> Image:
        """The first image for ``platform``, nested indexes followed; NotFoundError listing the platforms there are."""
        seen: list[str] = []
        for descriptor in self._images():
            if descriptor.platform and descriptor.platform.matches(platform):
                return _load_manifest(self.store, descriptor)
            seen.append(str(descriptor.platform) if descriptor.platform else "undeclared")
        available = ", ".join(dict.fromkeys(seen)) or "no images"
        raise NotFoundError(
            f"{self.reference}: no image for platform {platform} (available: {available}); choose one with --platform"
        )

    def _images(self, depth: int = 0) -> Iterator[Descriptor]:
        """The image manifests' descriptors in order, a nested index's own in its place (read when reached)."""
        for descriptor in self.manifests:
            if mt.is_manifest(descriptor.media_type):
                yield descriptor
            elif descriptor.media_type in mt.INDEXES:
                if depth >= MAX_INDEX_DEPTH:
                    raise InvalidInputError(f"{self.reference}: indexes nested more than {MAX_INDEX_DEPTH} deep")
                nested = resolve(self.store, descriptor)
                if isinstance(nested, ImageIndex):
                    yield from nested._images(depth + 1)

    def __repr__(self) -> str:
        return f"<ImageIndex {self.reference} {self.descriptor.digest.short} {len(self.manifests)} manifests>"


def resolve(store: Store, descriptor: Descriptor | None = None) -> Image | ImageIndex:
    """What ``descriptor`` (default: the store's reference) points at: an image or an index, verified."""
    descriptor = descriptor or store.root()
    raw = store.read_document(descriptor, "manifest")
    document = parse_root(raw, f"{store.reference}: manifest {descriptor.digest}", _declared(descriptor))
    if isinstance(document, Index):
        return ImageIndex(store, _with_media_type(descriptor, document.media_type), document)
    return _image(store, _with_media_type(descriptor, document.media_type), document)


def load_image(store: Store, platform: Platform | None = None) -> Image:
    """An image from the store; from an index, the one for ``platform`` (default linux/amd64)."""
    node = resolve(store)
    if isinstance(node, ImageIndex):
        return node.image(platform or DEFAULT_PLATFORM)
    if platform is not None and not node.platform.matches(platform):
        raise NotFoundError(f"{store.reference}: the image is for {node.platform}, not {platform}")
    return node


def _declared(descriptor: Descriptor) -> str | None:
    known = mt.MANIFESTS | mt.INDEXES
    return descriptor.media_type if descriptor.media_type in known else None


def _with_media_type(descriptor: Descriptor, media_type: str) -> Descriptor:
    return descriptor if descriptor.media_type == media_type else replace(descriptor, media_type=media_type)


def _load_manifest(store: Store, descriptor: Descriptor) -> Image:
    source = f"{store.reference}: manifest {descriptor.digest}"
    raw = store.read_document(descriptor, "manifest")
    return _image(store, descriptor, parse_manifest(raw, source, _declared(descriptor)))


def _image(store: Store, descriptor: Descriptor, manifest: Manifest) -> Image:
    if manifest.config.media_type not in mt.CONFIGS:
        raise ValidationError(
            "config.mediaType",
            f"{manifest.config.media_type!r} is not an image config (this is an artifact, not an image)",
            f"{store.reference}: manifest {descriptor.digest}",
        )
    raw = store.read_document(manifest.config, "config")
    config = parse_config(raw, f"{store.reference}: config {manifest.config.digest}", layer_count=len(manifest.layers))
    return Image(store, descriptor, manifest, config)
