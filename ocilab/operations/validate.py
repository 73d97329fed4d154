"""Whole-image validation against the image-spec: documents, blobs, digests, sizes, and every layer's tar.

Problems are collected, not raised one at a time, so a report shows all that
is wrong with an image in one pass. What the spec allows but calls odd is a
warning, and warnings never make an image invalid. Each layer is read once,
streaming, through the same reader ``ocilab changes`` uses (tar format,
whiteouts, duplicate entries, hard links), its digest and diff_id checked on the way.
A manifest whose config is not an image config is an artifact: its blobs are
checked against their digests and sizes, and their content is not interpreted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ocilab.errors import OcilabError, ValidationError
from ocilab.model import Descriptor, Index, Manifest, parse_config, parse_root
from ocilab.model import mediatype as mt
from ocilab.model.jsondoc import Finding
from ocilab.operations.analysis import layer_entries
from ocilab.stores.base import Store
from ocilab.stores.image import Image
from ocilab.stores.layout import LayoutStore, open_layout
from ocilab.tar.merge import MergedFilesystem

LAYOUT_FILE = "oci-layout"


@dataclass
class ValidationReport:
    """What was checked, what is wrong (``errors``) and what is odd but allowed (``warnings``)."""

    reference: str
    checked: list[str] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings do not count)."""
        return not self.errors

    @property
    def problems(self) -> list[str]:
        """The errors as one-line strings (``field: message``)."""
        return [str(error) for error in self.errors]

    def note(self, warnings: Iterable[Finding], source: str) -> None:
        """Add a parsed document's warnings, saying which document they are from."""
        self.warnings += [Finding(w.field, f"{w.message} (in {source})") for w in warnings]

    def to_json(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "valid": self.ok,
            "errors": [error.to_json() for error in self.errors],
            "warnings": [warning.to_json() for warning in self.warnings],
            "checked": self.checked,
        }


@contextmanager
def _collect(report: ValidationReport, where: str = "") -> Iterator[None]:
    """Record an OcilabError raised inside as an error; its own field wins over ``where``."""
    try:
        yield
    except ValidationError as error:
        message = f"{error.problem} (in {error.source})" if error.source else error.problem
        report.errors.append(Finding(error.field or where, message))
    except OcilabError as error:
        report.errors.append(Finding(where, str(error)))


def validate_store(store: Store) -> ValidationReport:
    """Validate what the store's reference names: an image, an artifact, or everything an index reaches."""
    report = ValidationReport(store.reference)
    with _collect(report):
        _validate_node(store, store.root(), report)
    return report


def validate_layout(store: LayoutStore) -> ValidationReport:
    """Validate every entry of a layout's index.json (the layout files were checked on opening)."""
    report = ValidationReport(store.reference)
    source = f"{store.tree.name}/index.json"
    report.note(store.index.warnings, source)
    report.checked.append(f"{store.tree.name}/{LAYOUT_FILE} and index.json")
    for position, descriptor in enumerate(store.index.manifests):
        with _collect(report, f"manifests[{position}]"):
            _validate_node(store, descriptor, report)
    return report


def validate_layout_path(path: Path) -> ValidationReport:
    """Validate the layout at ``path``: its directory, or its ``oci-layout`` file. Opening errors are reported."""
    directory = path.parent if path.name == LAYOUT_FILE and not path.is_dir() else path
    report = ValidationReport(f"oci:{directory}")
    with _collect(report), open_layout(directory) as store:
        return validate_layout(store)
    return report


def _validate_node(store: Store, descriptor: Descriptor, report: ValidationReport) -> None:
    """Validate the manifest or index ``descriptor`` points at, and everything below it."""
    source = f"manifest {descriptor.digest}"
    raw = store.read_document(descriptor, "manifest")
    declared = (
        descriptor.media_type if mt.is_manifest(descriptor.media_type) or mt.is_index(descriptor.media_type) else None
    )
    document = parse_root(raw, source, declared)
    report.note(document.warnings, source)
    if isinstance(document, Index):
        _validate_index(store, descriptor, document, report)
    elif document.is_image:
        _validate_image(store, descriptor, document, report)
    else:
        _validate_artifact(store, descriptor, document, report)


def _is_document(descriptor: Descriptor) -> bool:
    return mt.is_manifest(descriptor.media_type) or mt.is_index(descriptor.media_type)


def _validate_index(store: Store, descriptor: Descriptor, index: Index, report: ValidationReport) -> None:
    report.checked.append(f"index {descriptor.digest}")
    for position, child in enumerate(index.manifests):
        if not _is_document(child):
            # image-index.md: an unknown mediaType MUST NOT generate an error.
            report.checked.append(f"{child.digest} ({child.media_type}) is not an image manifest or index: not read")
            continue
        with _collect(report, f"manifests[{position}]"):
            _validate_node(store, child, report)


def _validate_image(store: Store, descriptor: Descriptor, manifest: Manifest, report: ValidationReport) -> None:
    report.checked.append(f"manifest {descriptor.digest}")
    source = f"config {manifest.config.digest}"
    raw = store.read_document(manifest.config, "config")
    config = parse_config(raw, source, layer_count=len(manifest.layers))
    report.note(config.warnings, source)
    report.checked.append(source)
    image = Image(store, descriptor, manifest, config)
    filesystem = MergedFilesystem()
    for position in range(len(image.layers)):
        with _collect(report, f"layers[{position}]"):
            _validate_layer(image, position, filesystem, report)


def _validate_layer(image: Image, position: int, filesystem: MergedFilesystem, report: ValidationReport) -> None:
    """Read the layer once through the tar reader and apply it, as ``changes`` does; digest and diff_id checked."""
    layer = image.layers[position]
    if layer.media_type in mt.NONDISTRIBUTABLE and layer.descriptor.urls:
        report.checked.append(f"layer {position} {layer.digest} (foreign, not checked)")
        return
    if mt.layer_compression(layer.media_type) is None:
        image.open_layer(position).drain()  # the manifest's warning says why the content is not read
        report.checked.append(f"layer {position} {layer.digest} digest and size (unknown media type: not read)")
        return
    filesystem.apply(layer_entries(image, position), what=f"{image.reference}: layer {position} ({layer.digest})")
    report.checked.append(f"layer {position} {layer.digest} diff_id {layer.diff_id}")


def _validate_artifact(store: Store, descriptor: Descriptor, manifest: Manifest, report: ValidationReport) -> None:
    kind = manifest.artifact_type or manifest.config.media_type
    report.checked.append(f"manifest {descriptor.digest} (artifact {kind})")
    blobs = [("config", manifest.config), *((f"layers[{i}]", layer) for i, layer in enumerate(manifest.layers))]
    for where, blob in blobs:
        with _collect(report, where):
            store.open_blob(blob, where).drain()
            report.checked.append(f"{where} {blob.digest} digest and size")
