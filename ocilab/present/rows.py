"""Results as plain rows and documents: the one place that shapes ``--json`` output and the DataFrames.

Stores and engines return objects (``Image``, ``LayerSummary``, ``Change`` ...); only this module turns
them into dicts of JSON types, so a field is named once for the command line, the Python API and the notebooks.
"""

from __future__ import annotations

from typing import Any

from ocilab.model import mediatype as mt
from ocilab.operations.analysis import ImageDiff, LayerSummary
from ocilab.stores.image import Image, ImageIndex
from ocilab.tar.efficiency import Efficiency
from ocilab.tar.merge import Change

LAYER_COLUMNS = ["index", "digest", "diff_id", "size", "media_type", "created_by"]
SUMMARY_COLUMNS = [*LAYER_COLUMNS, "added", "modified", "removed"]
HISTORY_COLUMNS = ["created", "created_by", "empty_layer", "layer", "comment"]
CHANGE_COLUMNS = ["layer", "path", "change", "type", "size"]
DIFF_COLUMNS = ["path", "change", "type", "size_a", "size_b"]
WASTE_COLUMNS = ["path", "occurrences", "wasted_bytes", "visible"]
SIZED_TYPES = frozenset({"file", "hardlink"})
"""Entry types whose ``size`` is content (a hard link's is its target's): the tables show it for these."""


def inspect_document(node: Image | ImageIndex) -> dict[str, Any]:
    """The ``ocilab inspect --json`` object: an image's manifest, config and layers, or an index's manifests."""
    if isinstance(node, ImageIndex):
        return {
            "reference": node.reference,
            "manifest_digest": str(node.descriptor.digest),
            "media_type": node.index.media_type,
            "manifests": [
                {
                    "digest": str(d.digest),
                    "media_type": d.media_type,
                    "size": d.size,
                    "platform": d.platform.to_json() if d.platform else None,
                    **({"annotations": dict(d.annotations)} if d.annotations else {}),
                }
                for d in node.manifests
            ],
            "annotations": dict(node.index.annotations),
        }
    return {
        "reference": node.reference,
        "manifest_digest": str(node.manifest_digest),
        "media_type": node.media_type,
        "config_digest": str(node.config_digest),
        "platform": node.platform.to_json(),
        "created": node.config.created,
        "size": sum(layer.size for layer in node.layers) + node.manifest.config.size + len(node.manifest.raw),
        "layers": [
            {
                "digest": str(layer.digest),
                "diff_id": str(layer.diff_id),
                "size": layer.size,
                "media_type": layer.media_type,
            }
            for layer in node.layers
        ],
        "history": [
            {
                "created": entry.created,
                "created_by": entry.created_by,
                "empty_layer": entry.empty_layer,
                **({"comment": entry.comment} if entry.comment else {}),
                **({"author": entry.author} if entry.author else {}),
            }
            for entry in node.config.history
        ],
        "config": node.config.container_config,
        "annotations": dict(node.manifest.annotations),
    }


def layer_rows(image: Image) -> list[dict[str, Any]]:
    """``{index, digest, diff_id, size, media_type, created_by}`` per layer, from the manifest and config alone."""
    return [
        {
            "index": layer.index,
            "digest": str(layer.digest),
            "diff_id": str(layer.diff_id),
            "size": layer.size,
            "media_type": mt.short_name(layer.media_type),
            "created_by": created_by,
        }
        for layer, created_by in zip(image.layers, image.layer_steps(), strict=True)
    ]


def history_rows(image: Image) -> list[dict[str, Any]]:
    """``{created, created_by, empty_layer, layer, comment}`` per history entry; ``layer`` is the one it made."""
    rows = []
    next_layer = 0
    for entry in image.config.history:
        rows.append(
            {
                "created": entry.created,
                "created_by": entry.created_by,
                "empty_layer": entry.empty_layer,
                "layer": None if entry.empty_layer else next_layer,
                "comment": entry.comment,
            }
        )
        next_layer += 0 if entry.empty_layer else 1
    return rows


def summary_rows(summaries: list[LayerSummary]) -> list[dict[str, Any]]:
    """``ocilab layers --json``: per layer, the descriptor, the build step and the counts of its changes."""
    return [
        {
            "index": s.index,
            "digest": str(s.digest),
            "diff_id": str(s.diff_id),
            "size": s.size,
            "media_type": s.media_type,
            "created_by": s.created_by,
            "added": s.added,
            "modified": s.modified,
            "removed": s.removed,
        }
        for s in summaries
    ]


def change_rows(changes: list[Change]) -> list[dict[str, Any]]:
    """``{layer, path, change, type, size}`` per change; size is the file's bytes (0 for non-files)."""
    return [
        {"layer": c.layer, "path": c.path, "change": c.change, "type": c.entry.kind, "size": c.entry.size}
        for c in changes
    ]


def diff_document(diff: ImageDiff) -> dict[str, Any]:
    """``{files, config, layers}`` as ``ocilab diff --json`` prints it."""
    return {
        "files": [
            {
                "path": d.path,
                "change": d.change,
                "type": d.kind,
                "size_a": d.a.size if d.a else None,
                "size_b": d.b.size if d.b else None,
            }
            for d in diff.files
        ],
        "config": diff.config,
        "layers": {
            "shared": [str(d) for d in diff.shared_layers],
            "only_a": [str(d) for d in diff.only_a],
            "only_b": [str(d) for d in diff.only_b],
            "recompressed": [
                {
                    "diff_id": str(r.diff_id),
                    "a": {"digest": str(r.a.digest), "media_type": r.a.media_type},
                    "b": {"digest": str(r.b.digest), "media_type": r.b.media_type},
                }
                for r in diff.recompressed
            ],
        },
    }


def efficiency_document(result: Efficiency, top: int | None = None) -> dict[str, Any]:
    """``{efficiency, total_bytes, final_bytes, wasted_bytes, wasted_percent, files}``; ``top`` caps ``files``."""
    return {
        "efficiency": result.efficiency,
        "total_bytes": result.total_bytes,
        "final_bytes": result.final_bytes,
        "wasted_bytes": result.wasted_bytes,
        "wasted_percent": result.wasted_percent,
        "files": [
            {"path": w.path, "occurrences": w.occurrences, "wasted_bytes": w.wasted_bytes, "visible": w.visible}
            for w in result.files[:top]
        ],
    }
