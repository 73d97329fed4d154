"""Whole-image validation: every blob present, digests and sizes right, diff_ids true to the layers.

Problems are collected, not raised one at a time, so a report shows all that
is wrong with an image in one pass. Layers are streamed, never held whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocilab.errors import OcilabError
from ocilab.layers.compression import open_uncompressed
from ocilab.model import Descriptor, Digest
from ocilab.model import mediatype as mt
from ocilab.model.digest import CHUNK_SIZE, new_hasher
from ocilab.stores.base import Store
from ocilab.stores.image import Image, resolve
from ocilab.stores.layout import LayoutStore


@dataclass
class ValidationReport:
    """What was checked and what was wrong; ``ok`` when nothing was."""

    reference: str
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"reference": self.reference, "valid": self.ok, "checked": self.checked, "problems": self.problems}


def validate_store(store: Store) -> ValidationReport:
    """Validate what the store's reference names: an image, or every image of an index."""
    report = ValidationReport(store.reference)
    try:
        _validate_root(store, store.root(), report)
    except OcilabError as error:
        report.problems.append(str(error))
    return report


def validate_layout(store: LayoutStore) -> ValidationReport:
    """Validate every entry of a layout's index.json (the layout files were checked on opening)."""
    report = ValidationReport(store.reference)
    report.checked.append(f"{store.tree.name}/oci-layout and index.json")
    for descriptor in store.index.manifests:
        try:
            _validate_root(store, descriptor, report)
        except OcilabError as error:
            report.problems.append(str(error))
    return report


def _validate_root(store: Store, descriptor: Descriptor, report: ValidationReport) -> None:
    node = resolve(store, descriptor)
    if isinstance(node, Image):
        _validate_image(node, report)
        return
    report.checked.append(f"index {node.descriptor.digest}")
    for child in node.manifests:
        if not (mt.is_manifest(child.media_type) or mt.is_index(child.media_type)):
            report.checked.append(f"{child.digest} ({child.media_type}) is not an image: not checked")
            continue
        try:
            _validate_root(store, child, report)
        except OcilabError as error:
            report.problems.append(str(error))


def _validate_image(image: Image, report: ValidationReport) -> None:
    report.checked.append(f"manifest {image.manifest_digest}")
    report.checked.append(f"config {image.config_digest}")
    for layer in image.layers:
        compression = mt.layer_compression(layer.media_type)
        if compression is None:
            report.problems.append(
                f"layer {layer.index} ({layer.digest}): unknown layer media type {layer.media_type!r}"
            )
            continue
        if layer.media_type in mt.NONDISTRIBUTABLE and layer.descriptor.urls:
            report.checked.append(f"layer {layer.index} {layer.digest} (foreign, not checked)")
            continue
        try:
            actual = _uncompressed_digest(image, layer.index, compression, layer.diff_id)
        except OcilabError as error:
            report.problems.append(str(error))
            continue
        if actual != layer.diff_id:
            report.problems.append(
                f"layer {layer.index} ({layer.digest}): uncompressed content is {actual}, but the config's"
                f" rootfs.diff_ids[{layer.index}] says {layer.diff_id}"
            )
        else:
            report.checked.append(f"layer {layer.index} {layer.digest} diff_id {layer.diff_id}")


def _uncompressed_digest(image: Image, position: int, compression: str, diff_id: Digest) -> Digest:
    """Digest of the uncompressed layer, reading the blob to EOF so its own digest is verified too."""
    blob = image.open_layer(position)
    hasher = new_hasher(diff_id.algorithm)
    with open_uncompressed(blob, compression, f"{image.reference}: layer {position}") as tar:
        while chunk := tar.read(CHUNK_SIZE):
            hasher.update(chunk)
        blob.drain()
    return Digest(diff_id.algorithm, hasher.hexdigest())
