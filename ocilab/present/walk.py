"""One pass up an image's layers, keeping what the explorer and the waste plot show at every step."""

from __future__ import annotations

from dataclasses import dataclass

from ocilab.operations.analysis import layer_entries
from ocilab.stores.image import Image
from ocilab.tar.entries import Entry
from ocilab.tar.merge import Change, MergedFilesystem


@dataclass(frozen=True)
class Step:
    """Layer ``index`` laid on the ones below it.

    ``changes`` is what it changes, ``tree`` the merged filesystem right after
    it (``/path`` -> Entry), ``written_bytes`` the file bytes its tar carries
    and ``wasted_bytes`` how many of those no container of the whole image sees
    (a later layer overwrote or removed them).
    """

    index: int
    created_by: str | None
    size: int
    changes: tuple[Change, ...]
    tree: dict[str, Entry]
    written_bytes: int
    wasted_bytes: int


def walk(image: Image) -> list[Step]:
    """Every layer in order, each read once and verified against its digest and diff_id."""
    filesystem = MergedFilesystem()
    applied: list[tuple[list[Change], dict[str, Entry], range]] = []
    for layer in image.layers:
        first = len(filesystem.written_paths)
        what = f"{image.reference}: layer {layer.index} ({layer.digest})"
        layer_changes = filesystem.apply(layer_entries(image, layer.index), what=what)
        applied.append((layer_changes, dict(filesystem.entries), range(first, len(filesystem.written_paths))))
    visible = filesystem.visible_inodes()
    sizes = filesystem.written_sizes
    steps = [entry.created_by for entry in image.config.history if not entry.empty_layer]
    return [
        Step(
            index=layer.index,
            created_by=steps[layer.index] if layer.index < len(steps) else None,
            size=layer.size,
            changes=tuple(layer_changes),
            tree=tree,
            written_bytes=sum(sizes[inode] for inode in inodes),
            wasted_bytes=sum(sizes[inode] for inode in inodes if inode not in visible),
        )
        for layer, (layer_changes, tree, inodes) in zip(image.layers, applied, strict=True)
    ]
