"""The one place manifests, indexes and configs are written: canonical bytes in, parsed documents out.

Every builder serialises once, compactly, with keys in the spec's order, and
returns the parsed document with those exact bytes as ``raw`` -- so the
digest a caller sees is the digest of what gets stored. Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ocilab.model import mediatype as mt
from ocilab.model.descriptor import Descriptor
from ocilab.model.manifest import Index, Manifest, parse_index, parse_manifest


def encode(document: Mapping[str, Any]) -> bytes:
    """``document`` as compact UTF-8 JSON, keys in the order given (no spaces, no trailing newline)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def build_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor],
    *,
    media_type: str = mt.OCI_MANIFEST,
    annotations: Mapping[str, str] | None = None,
    subject: Descriptor | None = None,
    artifact_type: str | None = None,
) -> Manifest:
    """An image manifest over ``config`` and ``layers`` (base first), validated as any manifest read from a store."""
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        document["artifactType"] = artifact_type
    document["config"] = _descriptor(config, media_type)
    document["layers"] = [_descriptor(layer, media_type) for layer in layers]
    if subject is not None:
        document["subject"] = _descriptor(subject, media_type)
    if annotations:
        document["annotations"] = dict(annotations)
    return parse_manifest(encode(document), "built manifest", media_type)


def build_index(
    manifests: Sequence[Descriptor],
    *,
    media_type: str = mt.OCI_INDEX,
    annotations: Mapping[str, str] | None = None,
    subject: Descriptor | None = None,
    artifact_type: str | None = None,
) -> Index:
    """An image index listing ``manifests`` (with their platforms), validated as any index read from a store."""
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        document["artifactType"] = artifact_type
    document["manifests"] = [_descriptor(manifest, media_type) for manifest in manifests]
    if subject is not None:
        document["subject"] = _descriptor(subject, media_type)
    if annotations:
        document["annotations"] = dict(annotations)
    return parse_index(encode(document), "built index", media_type)


def _descriptor(descriptor: Descriptor, media_type: str) -> dict[str, Any]:
    """``descriptor`` as JSON for a document of ``media_type``.

    Docker v2 documents put ``size`` before ``digest``, as Docker's Go types
    serialise them, so a manifest built here is byte for byte Docker's (and skopeo's).
    """
    document = descriptor.to_json()
    if format_of(media_type) == "docker":
        return {"mediaType": document.pop("mediaType"), "size": document.pop("size"), **document}
    return document


def describe(document: Manifest | Index, **extras: Any) -> Descriptor:
    """The descriptor of a built (or parsed) manifest or index: its media type, digest and size.

    ``extras`` are Descriptor fields such as ``platform=`` or ``annotations=``.
    """
    return Descriptor(document.media_type, document.digest, len(document.raw), **extras)


def config_document(
    *,
    architecture: str,
    os: str,
    diff_ids: Sequence[str],
    config: Mapping[str, Any] | None = None,
    created: str | None = None,
    author: str | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    variant: str | None = None,
) -> dict[str, Any]:
    """An image config as a dict in the spec's key order (encode it with ``encode``)."""
    document: dict[str, Any] = {}
    if created is not None:
        document["created"] = created
    if author is not None:
        document["author"] = author
    document["architecture"] = architecture
    if variant is not None:
        document["variant"] = variant
    document["os"] = os
    if config:
        document["config"] = dict(config)
    document["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    if history:
        document["history"] = [dict(entry) for entry in history]
    return document


_MANIFEST_TYPES = {"oci": mt.OCI_MANIFEST, "docker": mt.DOCKER_MANIFEST}
_INDEX_TYPES = {"oci": mt.OCI_INDEX, "docker": mt.DOCKER_MANIFEST_LIST}
_CONFIG_TYPES = {"oci": mt.OCI_CONFIG, "docker": mt.DOCKER_CONFIG}
FORMATS = tuple(_MANIFEST_TYPES)


def format_of(media_type: str) -> str:
    """``"docker"`` for Docker v2 media types, ``"oci"`` for everything else."""
    return "docker" if media_type.startswith("application/vnd.docker.") else "oci"


def manifest_type(image_format: str) -> str:
    """The manifest media type of ``"oci"`` or ``"docker"``."""
    return _MANIFEST_TYPES[image_format]


def index_type(image_format: str) -> str:
    """The index (manifest list) media type of ``"oci"`` or ``"docker"``."""
    return _INDEX_TYPES[image_format]


def config_type(image_format: str) -> str:
    """The config media type of ``"oci"`` or ``"docker"``."""
    return _CONFIG_TYPES[image_format]


def layer_type(image_format: str, compression: str) -> str | None:
    """The layer media type for a format and compression; None when the format has none (Docker has no zstd)."""
    return mt.layer_type(image_format, compression)
