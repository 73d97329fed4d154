"""Artifacts (OCI 1.1): a document attached to an image by a manifest whose ``subject`` is that image.

An artifact manifest is an image manifest with the **empty config** (the two
bytes ``{}``, media type ``application/vnd.oci.empty.v1+json``), an
``artifactType`` saying what it carries, one layer holding the document
itself, and ``subject``: the descriptor of the manifest (or index) it is about.
``attach`` writes one into the store that holds the image: the same registry
repository, or the same OCI layout. There readers find it as a **referrer** of
the image: a registry through its referrers API (or the fallback tag
``<alg>-<hex>`` the registry client keeps where that API is missing), a
layout's garbage collector by its subject. The manifest is built by
``ocilab.model.build`` and is reproducible: the same document attached to the
same image has the same digest in every store.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from ocilab.errors import InvalidInputError, NotFoundError, UnsupportedError
from ocilab.model import Descriptor, Digest, Manifest, Reference
from ocilab.model import mediatype as mt
from ocilab.model.build import build_manifest, describe, encode
from ocilab.operations.copy import CopyObserver, copy_image
from ocilab.stores.base import Store
from ocilab.stores.transports import open_destination, open_store, split_transport

EMPTY_CONFIG = b"{}"
"""The empty config's bytes (image-spec: the empty descriptor)."""

EMPTY_DESCRIPTOR = Descriptor(mt.OCI_EMPTY, Digest.of_bytes(EMPTY_CONFIG), len(EMPTY_CONFIG))


@dataclass(frozen=True)
class Attached:
    """An artifact written beside its subject: where (``reference``), its manifest, and the document it carries."""

    reference: str
    manifest: Manifest
    document: bytes

    @property
    def digest(self) -> Digest:
        """The artifact manifest's digest."""
        return self.manifest.digest

    @property
    def descriptor(self) -> Descriptor:
        return describe(self.manifest)


def artifact_manifest(
    subject: Descriptor, layer: Descriptor, artifact_type: str, annotations: Mapping[str, str] | None = None
) -> Manifest:
    """The artifact manifest: empty config, ``layer`` as its one layer, ``artifact_type``, ``subject``."""
    plain_subject = Descriptor(subject.media_type, subject.digest, subject.size)
    return build_manifest(
        EMPTY_DESCRIPTOR, [layer], annotations=annotations, subject=plain_subject, artifact_type=artifact_type
    )


def attach(
    image: str,
    document: bytes | Mapping[str, Any],
    *,
    artifact_type: str,
    media_type: str = "application/json",
    annotations: Mapping[str, str] | None = None,
    tag: str | None = None,
    tls_verify: bool = True,
) -> Attached:
    """Attach ``document`` (bytes, or a dict stored as compact JSON) to the image ``image`` names.

    ``image`` is ``docker://HOST/REPO:TAG`` (or ``@DIGEST``) or ``oci:DIR:TAG``;
    the artifact goes into the same repository or layout, by digest, or under
    ``tag`` when given (a layout lists an untagged artifact in ``index.json``
    without a name). InvalidInputError for a bad ``artifact_type`` or
    ``media_type``; UnsupportedError for other transports (archives are written
    whole, the Docker engine keeps no artifacts).
    """
    transport, rest = split_transport(image)
    if transport not in ("docker", "oci"):
        raise UnsupportedError(
            f"{image}: artifacts are attached in a registry (docker://) or an OCI layout (oci:), not in {transport}:"
        )
    raw = document if isinstance(document, bytes) else encode(document)
    with open_store(image, tls_verify) as store:
        subject = store.root()
    if not (mt.is_manifest(subject.media_type) or mt.is_index(subject.media_type)):
        raise InvalidInputError(f"{image}: names a {subject.media_type}, not a manifest or index to attach to")
    layer = Descriptor(media_type, Digest.of_bytes(raw), len(raw))
    manifest = artifact_manifest(subject, layer, artifact_type, annotations)
    destination = _beside(transport, rest, tag, manifest.digest)
    blobs = {EMPTY_DESCRIPTOR.digest: EMPTY_CONFIG, layer.digest: raw, manifest.digest: manifest.raw}
    source = _Documents(image, describe(manifest), blobs)
    with open_destination(destination, tls_verify) as writer:
        copy_image(source, writer, observer=CopyObserver())
    return Attached(destination, manifest, raw)


def _beside(transport: str, rest: str, tag: str | None, digest: Digest) -> str:
    """The reference of the artifact in the image's own repository or layout: by ``tag``, else by digest."""
    if transport == "oci":
        return f"oci:{rest.partition(':')[0]}" + (f":{tag}" if tag else "")
    ref = Reference.parse(rest)
    return f"docker://{ref.host}/{ref.repository}" + (f":{tag}" if tag else f"@{digest}")


class _Documents(Store):
    """The artifact's three blobs, in memory, as a store the copy engine reads from."""

    def __init__(self, image: str, root: Descriptor, blobs: dict[Digest, bytes]) -> None:
        self.reference = f"artifact for {image}"
        self._root = root
        self._blobs = blobs

    def root(self) -> Descriptor:
        return self._root

    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        if descriptor.digest not in self._blobs:
            raise NotFoundError(f"{self.reference}: {descriptor.digest} is not part of the artifact")
        return io.BytesIO(self._blobs[descriptor.digest])
