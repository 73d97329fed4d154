"""What layers change, how two images differ, how much of an image is waste: read from any store.

Every layer is streamed once per question (and once per ``diff`` for layers
both images share), verified against its digest and diff_id as it goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ocilab.errors import NotFoundError, UnsupportedError
from ocilab.model import Digest
from ocilab.model import mediatype as mt
from ocilab.stores.image import Image, Layer
from ocilab.tar.efficiency import Efficiency, measure
from ocilab.tar.entries import Entry, read_layer
from ocilab.tar.filediff import FileDifference, diff_files
from ocilab.tar.merge import Change, MergedFilesystem

LayerCache = dict[Digest, list[Entry] | None]


def layer_source(image: Image, position: int) -> tuple[str, str]:
    """The label errors give layer ``position`` and its compression; UnsupportedError when it is not a layer."""
    layer = image.layers[position]
    what = f"{image.reference}: layer {position} ({layer.digest})"
    compression = mt.layer_compression(layer.media_type)
    if compression is None:
        raise UnsupportedError(f"{what}: media type {layer.media_type!r} is not a layer")
    return what, compression


def layer_entries(image: Image, position: int) -> Iterator[Entry]:
    """The entries of layer ``position``, verified (digest and diff_id) once fully consumed."""
    what, compression = layer_source(image, position)
    return read_layer(image.open_layer(position), compression, image.layers[position].diff_id, what)


def merge(
    image: Image,
    upto: int | None = None,
    strict: bool = False,
    cache: LayerCache | None = None,
    keep_changes: bool = True,
) -> tuple[MergedFilesystem, list[list[Change]]]:
    """The filesystem after layers ``0..upto`` (all by default) and each layer's changes.

    ``cache`` keeps the entries of layers whose diff_id is in it (as a key) so a
    second image sharing them does not read them again. Without
    ``keep_changes`` each layer's changes are dropped once it is applied (the
    lists come back empty), so only the merged view stays in memory.
    """
    if upto is not None and not 0 <= upto < len(image.layers):
        raise NotFoundError(
            f"{image.reference} has {len(image.layers)} layers (0 to {len(image.layers) - 1}); there is no layer {upto}"
        )
    last = len(image.layers) - 1 if upto is None else upto
    filesystem = MergedFilesystem()
    per_layer = []
    for layer in image.layers[: last + 1]:
        what = f"{image.reference}: layer {layer.index} ({layer.digest})"
        layer_changes = filesystem.apply(_entries(image, layer.index, cache), strict, what)
        per_layer.append(layer_changes if keep_changes else [])
    return filesystem, per_layer


def _entries(image: Image, position: int, cache: LayerCache | None) -> Iterable[Entry]:
    """The layer's entries: from ``cache``, or streamed (and kept in ``cache`` when it has the diff_id as a key)."""
    diff_id = image.layers[position].diff_id
    if cache is None or diff_id not in cache:
        return layer_entries(image, position)
    cached = cache[diff_id]
    if cached is None:
        cached = cache[diff_id] = list(layer_entries(image, position))
    return cached


def changes(image: Image, layer: int | None = None, strict: bool = False) -> list[Change]:
    """Every layer's changeset in layer order, or only layer ``layer``'s (applying those below it first)."""
    _, per_layer = merge(image, upto=layer, strict=strict)
    if layer is not None:
        return per_layer[layer]
    return [change for layer_changes in per_layer for change in layer_changes]


@dataclass(frozen=True)
class LayerSummary:
    """One layer: its descriptor, the build step that made it, and how many paths it adds, modifies and removes."""

    index: int
    digest: Digest
    diff_id: Digest
    size: int
    media_type: str
    created_by: str | None
    added: int
    modified: int
    removed: int


def layer_summaries(image: Image) -> list[LayerSummary]:
    """One summary per layer: its descriptor, the build step that made it, and counts of its changes."""
    _, per_layer = merge(image)
    return [
        LayerSummary(
            index=layer.index,
            digest=layer.digest,
            diff_id=layer.diff_id,
            size=layer.size,
            media_type=layer.media_type,
            created_by=created_by,
            added=sum(change.change == "added" for change in layer_changes),
            modified=sum(change.change == "modified" for change in layer_changes),
            removed=sum(change.change == "removed" for change in layer_changes),
        )
        for layer, created_by, layer_changes in zip(image.layers, image.layer_steps(), per_layer, strict=True)
    ]


@dataclass(frozen=True)
class Recompressed:
    """A layer both images share by content (``diff_id``) but store as different blobs (e.g. gzip and zstd)."""

    diff_id: Digest
    a: Layer
    b: Layer


@dataclass(frozen=True)
class ImageDiff:
    """Files, config and layers: what changes from image ``a`` to image ``b``.

    Layers are compared by content (``diff_id``): ``shared_layers`` are A's
    blob digests whose content B has too, ``only_a``/``only_b`` the others, and
    ``recompressed`` the shared ones whose blobs differ (only the compression does).
    """

    files: list[FileDifference]
    config: dict[str, dict[str, Any]]
    shared_layers: list[Digest]
    only_a: list[Digest]
    only_b: list[Digest]
    recompressed: list[Recompressed]


def diff_images(a: Image, b: Image, strict: bool = False) -> ImageDiff:
    """Compare the merged filesystems, the configs and the layer lists of two images."""
    by_content_b = {layer.diff_id: layer for layer in b.layers}
    diff_ids_a = {layer.diff_id for layer in a.layers}
    cache: LayerCache = dict.fromkeys(diff_ids_a & by_content_b.keys())
    # Only the views are kept: the inodes and the directory index of A go before B is merged.
    entries_a = merge(a, strict=strict, cache=cache, keep_changes=False)[0].entries
    entries_b = merge(b, strict=strict, cache=cache, keep_changes=False)[0].entries
    del cache
    return ImageDiff(
        files=diff_files(entries_a, entries_b, strict),
        config=config_changes(a, b),
        shared_layers=[layer.digest for layer in a.layers if layer.diff_id in by_content_b],
        only_a=[layer.digest for layer in a.layers if layer.diff_id not in by_content_b],
        only_b=[layer.digest for layer in b.layers if layer.diff_id not in diff_ids_a],
        recompressed=[
            Recompressed(layer.diff_id, layer, by_content_b[layer.diff_id])
            for layer in a.layers
            if layer.diff_id in by_content_b and by_content_b[layer.diff_id].digest != layer.digest
        ],
    )


def config_changes(a: Image, b: Image) -> dict[str, dict[str, Any]]:
    """Config keys whose values differ, each ``{"a": ..., "b": ...}``: the runtime config, platform and history."""
    left: dict[str, Any] = dict(a.config.container_config)
    right: dict[str, Any] = dict(b.config.container_config)
    left["platform"], right["platform"] = str(a.platform), str(b.platform)
    left["history"] = [entry.created_by for entry in a.config.history]
    right["history"] = [entry.created_by for entry in b.config.history]
    return {
        key: {"a": left.get(key), "b": right.get(key)}
        for key in sorted(left.keys() | right.keys())
        if left.get(key) != right.get(key)
    }


def efficiency(image: Image) -> Efficiency:
    """How much of the image's file bytes survive to the merged filesystem, and which paths waste the rest."""
    filesystem, _ = merge(image, keep_changes=False)
    return measure(filesystem)
