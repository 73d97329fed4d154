"""Bytes on disk, step by step: a table that shows deleting frees nothing until the garbage collector runs.

A ``DiskLog`` watches one place -- a registry's data directory or an OCI
image layout -- and each ``note(step)`` adds a row of what is on disk there
now: blobs, bytes, how many blobs a tag still reaches, and how many the
collector would keep. Reading never changes the place (a layout is counted
with a dry run of its collector).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ocilab.model import mediatype as mt
from ocilab.operations.layout_gc import collect_layout
from ocilab.operations.registry_storage import RegistryStorage, storage_map
from ocilab.present.text import human_size

if TYPE_CHECKING:
    import pandas

COLUMNS = ["step", "blobs", "on disk", "a tag reaches", "GC keeps"]
BLOB_COLUMNS = ["blob", "size", "type", "linked by", "referenced"]


@dataclass(frozen=True)
class Usage:
    """One count of a place: blobs and bytes on disk, blobs a tag reaches, blobs the collector keeps."""

    blobs: int
    bytes: int
    tagged: int
    kept: int


def registry_usage(data_dir: Path) -> Usage:
    """A registry's data directory, read from disk: the collector keeps what any stored manifest references."""
    storage = storage_map(data_dir)
    return Usage(
        len(storage.blobs),
        storage.bytes,
        sum(blob.tagged for blob in storage.blobs),
        sum(blob.referenced for blob in storage.blobs),
    )


def layout_usage(path: Path) -> Usage:
    """An OCI image layout: the collector keeps what a tag in ``index.json`` reaches (counted by a dry run)."""
    report = collect_layout(Path(path), dry_run=True)
    return Usage(report.blobs_before, report.bytes_before, report.blobs_after, report.blobs_after)


@dataclass
class DiskLog:
    """Rows of ``Usage``, one per step, for one place; ``note`` adds one and returns the whole table."""

    place: Path
    count: Callable[[Path], Usage]
    rows: list[tuple[str, Usage]] = field(default_factory=list)

    @classmethod
    def registry(cls, data_dir: Path) -> DiskLog:
        """Watch a registry's data directory (running or not)."""
        return cls(Path(data_dir), registry_usage)

    @classmethod
    def layout(cls, path: Path) -> DiskLog:
        """Watch an OCI image layout directory."""
        return cls(Path(path), layout_usage)

    def note(self, step: str) -> pandas.DataFrame:
        """Count the place now, add the row as ``step``, and return every row so far."""
        self.rows.append((step, self.count(self.place)))
        return self.frame()

    def frame(self) -> pandas.DataFrame:
        """One row per step: step, blobs, on disk (human size), a tag reaches, GC keeps."""
        import pandas

        rows = [(step, u.blobs, human_size(u.bytes), u.tagged, u.kept) for step, u in self.rows]
        return pandas.DataFrame(rows, columns=COLUMNS).set_index("step")


def blobs(storage: RegistryStorage) -> pandas.DataFrame:
    """A registry's blob files, one row each: short digest, size, type, the repositories linking it, and whether
    a stored manifest references it. The type of a blob no manifest references is unknown (``-``)."""
    import pandas

    rows = [
        (
            blob.digest[:19],
            human_size(blob.size),
            mt.short_name(blob.media_type) if blob.media_type else "-",
            ", ".join(blob.repositories) or "-",
            blob.referenced,
        )
        for blob in storage.blobs
    ]
    return pandas.DataFrame(rows, columns=BLOB_COLUMNS).set_index("blob")
