"""Results as plain rows and documents: the one shape behind ``--json`` output and the DataFrames."""

from __future__ import annotations

from typing import Any

from ocilab.engines.analysis import ImageDiff
from ocilab.layers.efficiency import Efficiency
from ocilab.layers.merge import Change

CHANGE_COLUMNS = ["layer", "path", "change", "type", "size"]
DIFF_COLUMNS = ["path", "change", "type", "size_a", "size_b"]
WASTE_COLUMNS = ["path", "occurrences", "wasted_bytes", "visible"]


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
