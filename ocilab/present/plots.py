"""Matplotlib plots. Each takes ``ax=None`` (a new figure when None), returns the axes, and touches no global state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocilab.present.text import human_size, shorten
from ocilab.stores.image import Image

if TYPE_CHECKING:
    import pandas
    from matplotlib.axes import Axes

    from ocilab.engines.registry_storage import RegistryStorage


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot()


def layer_sizes(image: Image, ax: Axes | None = None) -> Axes:
    """A horizontal bar per layer (base at the top): its blob size, labelled with the step that made it."""
    from matplotlib.ticker import FuncFormatter

    frame = image.layers_frame()
    ax = _axes(ax, (8, 1.2 + 0.5 * len(frame)))
    labels = [f"{row.index}: {_short(row.created_by)}" for row in frame.itertuples()]
    bars = ax.barh(range(len(frame)), frame["size"], color="tab:blue")
    ax.set_yticks(range(len(frame)), labels)
    ax.invert_yaxis()
    ax.bar_label(bars, [human_size(size) for size in frame["size"]], padding=3)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: human_size(value)))
    ax.set_xlabel("blob size, as stored")
    ax.set_title(f"Layers of {image.reference.rsplit('/', 1)[-1]}")
    ax.margins(x=0.2)
    return ax


def _short(command: str | None, width: int = 40) -> str:
    text = " ".join((command or "?").replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").split())
    return shorten(text, width)


def layer_changes(summary: pandas.DataFrame, ax: Axes | None = None) -> Axes:
    """Stacked bars per layer of paths added, modified and removed, from ``ocilab.layers(image)``."""
    ax = _axes(ax, (8, 1.2 + 0.5 * len(summary)))
    left = [0] * len(summary)
    for change, color in (("added", "tab:green"), ("modified", "tab:orange"), ("removed", "tab:red")):
        counts = list(summary[change])
        ax.barh(range(len(summary)), counts, left=left, color=color, label=change)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_yticks(range(len(summary)), [f"{row.index}: {_short(row.created_by)}" for row in summary.itertuples()])
    ax.invert_yaxis()
    ax.set_xlabel("paths")
    ax.set_title("What each layer changes")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def registry_storage(storage: RegistryStorage, ax: Axes | None = None) -> Axes:
    """A stacked bar per repository: bytes of blobs only it links, and bytes it shares with other repositories.

    A shared blob is stored once, so the bars add up to more than the disk
    holds; the title gives both numbers.
    """
    from matplotlib.ticker import FuncFormatter

    per_repository = storage.repository_bytes()
    names = list(per_repository)
    own = [per_repository[name][0] for name in names]
    shared = [per_repository[name][1] for name in names]
    ax = _axes(ax, (8, 1.5 + 0.5 * len(names)))
    ax.barh(range(len(names)), own, color="tab:blue", label="only this repository links")
    ax.barh(range(len(names)), shared, left=own, color="tab:orange", label="shared with others (stored once)")
    ax.set_yticks(range(len(names)), [shorten(name, 40) for name in names])
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: human_size(value)))
    ax.set_xlabel("bytes of the blobs each repository links")
    totals = storage.totals()
    ax.set_title(
        f"How much does each repository store? {human_size(totals['bytes'])} on disk,"
        f" {human_size(totals['repository_bytes_sum'])} counted per repository"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def gc_before_after(before: RegistryStorage, after: RegistryStorage, ax: Axes | None = None) -> Axes:
    """Bytes on disk before and after garbage collection, each bar split into blobs a manifest still references
    and blobs none does."""
    from matplotlib.ticker import FuncFormatter

    ax = _axes(ax, (6, 4))
    labels = ["before GC", "after GC"]
    kept = [sum(blob.size for blob in storage.blobs if blob.referenced) for storage in (before, after)]
    loose = [sum(blob.size for blob in storage.blobs if not blob.referenced) for storage in (before, after)]
    ax.bar(labels, kept, color="tab:blue", label="referenced by a manifest")
    bars = ax.bar(labels, loose, bottom=kept, color="tab:red", label="referenced by none")
    ax.bar_label(bars, [human_size(storage.bytes) for storage in (before, after)], padding=3)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: human_size(value)))
    ax.set_ylabel("bytes on disk")
    removed = before.bytes - after.bytes
    ax.set_title(f"What did garbage collection free? {human_size(removed)}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.margins(y=0.15)
    return ax
