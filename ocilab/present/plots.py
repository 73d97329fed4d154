"""Matplotlib plots, one question each (the title asks it).

Every plot takes ``ax=None`` and returns the axes it drew on. With no ``ax``
it draws on a new figure that is not registered with pyplot, in axes of the
class ``plot_axes_class()``: an ordinary ``Axes`` that also displays itself
as a PNG when it is a notebook cell's last expression (its text form,
``<plot: TITLE>``, is what nbval compares). Passing your own ``ax`` draws
there and leaves displaying to you. Nothing touches pyplot or rcParams, so
the plots render headless and leave global state alone. Byte axes tick at
powers of two, labelled in binary units (256 KiB, 1 MiB).
"""

from __future__ import annotations

import functools
import io
import math
from typing import TYPE_CHECKING, Any

from ocilab.model import mediatype as mt
from ocilab.model.digest import CHUNK_SIZE
from ocilab.present.graph import digest_graph
from ocilab.present.text import human_size, shorten
from ocilab.present.walk import walk
from ocilab.stores.image import Image
from ocilab.tar.compression import open_uncompressed

if TYPE_CHECKING:
    import pandas
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis

    from ocilab.operations.registry_storage import RegistryStorage

_MAX_TICKS = 6
__all__ = [
    "binary_ticks",
    "digest_graph",
    "gc_before_after",
    "layer_changes",
    "layer_sizes",
    "new_axes",
    "registry_storage",
    "wasted_space",
]
_COLORS = {"added": "tab:green", "modified": "tab:orange", "removed": "tab:red"}


@functools.cache
def plot_axes_class() -> type[Axes]:
    """The Axes subclass new plots draw in: it shows its figure as a PNG in a notebook."""
    from matplotlib.axes import Axes

    class PlotAxes(Axes):
        """Axes whose figure is the picture a notebook shows for them."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            figure = self.get_figure(root=True)
            assert figure is not None  # new_axes always makes one
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")  # legends outside the axes too
            return buffer.getvalue()

        def __repr__(self) -> str:
            return f"<plot: {' '.join(self.get_title().split())}>"

    return PlotAxes


def new_axes(size: tuple[float, float]) -> Axes:
    """Axes on a new constrained-layout figure of ``size`` inches, outside pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot(axes_class=plot_axes_class())


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    return ax if ax is not None else new_axes(size)


def round_size(value: float) -> str:
    """A tick label: ``262144`` -> ``256 KiB``, ``1572864`` -> ``1.5 MiB``, ``0`` -> ``0``."""
    if value == 0:
        return "0"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = min(int(math.log(abs(value), 1024)), len(units) - 1) if abs(value) >= 1 else 0
    return f"{value / 1024**power:.3g} {units[power]}"


def binary_ticks(axis: Axis) -> None:
    """Tick a byte axis at multiples of a power of two, labelled in binary units.

    At most six ticks, and no more than fit side by side: a label such as
    ``512 KiB`` is given five font sizes of room along an x axis.
    """
    from matplotlib.axis import XAxis
    from matplotlib.ticker import FuncFormatter, Locator

    class PowerOfTwoLocator(Locator):
        most = _MAX_TICKS

        def __call__(self) -> Any:
            room = axis.get_tick_space() * 3 // (5 if isinstance(axis, XAxis) else 3)  # it gives 3 font sizes
            self.most = max(2, min(_MAX_TICKS, room))
            low, high = axis.get_view_interval()
            return self.tick_values(low, high)

        def tick_values(self, vmin: float, vmax: float) -> Any:
            low, high = sorted((max(vmin, 0.0), max(vmax, 0.0)))
            step = 2.0 ** max(0, math.ceil(math.log2(max(high, 1.0) / self.most)))
            first = math.ceil(low / step)
            return [step * n for n in range(first, int(high // step) + 1)]

    axis.set_major_locator(PowerOfTwoLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _: round_size(value)))


def _step_label(index: int, command: str | None, width: int = 40) -> str:
    text = " ".join((command or "?").replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").split())
    return f"{index}: {shorten(text, width)}"


def _layer_labels(image: Image) -> list[str]:
    steps = [entry.created_by for entry in image.config.history if not entry.empty_layer]
    return [
        _step_label(layer.index, steps[layer.index] if layer.index < len(steps) else None) for layer in image.layers
    ]


def _name(image: Image) -> str:
    return image.reference.rsplit("/", 1)[-1]


def uncompressed_size(image: Image, position: int) -> int:
    """Bytes of layer ``position``'s tar once decompressed (the blob is read whole and verified)."""
    layer = image.layers[position]
    compression = mt.layer_compression(layer.media_type) or "none"
    what = f"{image.reference}: layer {position} ({layer.digest})"
    total = 0
    blob = image.open_layer(position)
    with open_uncompressed(blob, compression, what) as tar:
        while chunk := tar.read(CHUNK_SIZE):
            total += len(chunk)
        blob.drain()
    return total


def layer_sizes(image: Image, ax: Axes | None = None) -> Axes:
    """Two bars per layer (base at the top): the blob as stored and pulled, and its tar unpacked."""
    import numpy

    stored = [layer.size for layer in image.layers]
    unpacked = [uncompressed_size(image, layer.index) for layer in image.layers]
    ax = _axes(ax, (8, 1.4 + 0.7 * len(stored)))
    rows = numpy.arange(len(stored))
    for offset, values, label, color in (
        (-0.2, stored, "compressed (the blob a registry stores)", "tab:blue"),
        (0.2, unpacked, "uncompressed (the tar unpacked)", "tab:cyan"),
    ):
        bars = ax.barh(rows + offset, values, height=0.4, label=label, color=color)
        ax.bar_label(bars, [human_size(value) for value in values], padding=3)
    ax.set_yticks(rows, _layer_labels(image))
    ax.invert_yaxis()
    binary_ticks(ax.xaxis)
    ax.set_xlabel("bytes")
    ax.set_title(f"How big is each layer of {_name(image)}, compressed and unpacked?")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=2, frameon=False)
    ax.margins(x=0.25)
    return ax


def layer_changes(image_or_summary: Image | pandas.DataFrame, ax: Axes | None = None) -> Axes:
    """Stacked bars per layer of paths added, modified and removed, each count written on its bar.

    Takes an image, or the frame ``ocilab.layers(image)`` gives (columns index,
    created_by, added, modified, removed).
    """
    if isinstance(image_or_summary, Image):
        from ocilab.api import layers

        summary = layers(image_or_summary)
    else:
        summary = image_or_summary
    ax = _axes(ax, (8, 1.4 + 0.5 * len(summary)))
    left = [0] * len(summary)
    for change, color in _COLORS.items():
        counts = [int(count) for count in summary[change]]
        bars = ax.barh(range(len(summary)), counts, left=left, color=color, label=change)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    counts_text = [
        ", ".join(f"{int(getattr(row, change))} {change}" for change in _COLORS if getattr(row, change))
        for row in summary.itertuples()
    ]
    ax.bar_label(bars, [text or "no change" for text in counts_text], padding=3)
    ax.set_yticks(range(len(summary)), [_step_label(row.index, row.created_by) for row in summary.itertuples()])
    ax.invert_yaxis()
    ax.set_xlabel("paths")
    ax.set_title("What does each layer change?")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_xlim(0, 1.3 * max(left, default=0) or 1)
    return ax


def wasted_space(image: Image, ax: Axes | None = None) -> Axes:
    """Stacked bars per layer: file bytes still visible at the end, and bytes a later layer hides or removes."""
    steps = walk(image)
    visible = [step.written_bytes - step.wasted_bytes for step in steps]
    wasted = [step.wasted_bytes for step in steps]
    ax = _axes(ax, (8, 1.4 + 0.5 * len(steps)))
    ax.barh(range(len(steps)), visible, color="tab:blue", label="still visible")
    bars = ax.barh(range(len(steps)), wasted, left=visible, color="tab:red", label="hidden by a later layer (wasted)")
    ax.bar_label(bars, [human_size(value) if value else "" for value in wasted], padding=3)
    ax.set_yticks(range(len(steps)), _layer_labels(image))
    ax.invert_yaxis()
    binary_ticks(ax.xaxis)
    ax.set_xlabel("file bytes each layer writes")
    total = sum(step.written_bytes for step in steps)
    ax.set_title(f"Which layers ship bytes no container sees? {human_size(sum(wasted))} of {human_size(total)}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=2, frameon=False)  # below: the bars keep the width
    ax.set_xlim(0, 1.25 * max((step.written_bytes for step in steps), default=0) or 1)
    return ax


def registry_storage(storage: RegistryStorage, ax: Axes | None = None) -> Axes:
    """A stacked bar per repository: bytes of blobs only it links, and bytes it shares with other repositories.

    A shared blob is stored once, so the bars add up to more than the disk
    holds; the title gives both numbers.
    """
    per_repository = storage.repository_bytes()
    names = list(per_repository)
    own = [per_repository[name][0] for name in names]
    shared = [per_repository[name][1] for name in names]
    ax = _axes(ax, (8, 1.5 + 0.5 * len(names)))
    ax.barh(range(len(names)), own, color="tab:blue", label="only this repository links")
    bars = ax.barh(range(len(names)), shared, left=own, color="tab:orange", label="shared with others (stored once)")
    # A repository's own blobs may be a few bytes beside shared megabytes: the numbers say what the bar cannot.
    labels = [f"{human_size(mine)} own + {human_size(common)} shared" for mine, common in zip(own, shared, strict=True)]
    ax.bar_label(bars, labels, padding=4)
    ax.margins(x=0.45)
    ax.set_yticks(range(len(names)), [shorten(name, 40) for name in names])
    ax.invert_yaxis()
    binary_ticks(ax.xaxis)
    ax.set_xlabel("bytes of the blobs each repository links")
    totals = storage.totals()
    ax.set_title(  # two lines, so that the title is never wider than the figure
        f"How much does each repository store?\n{human_size(totals['bytes'])} on disk,"
        f" {human_size(totals['repository_bytes_sum'])} counted per repository"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=2)
    return ax


def gc_before_after(before: RegistryStorage, after: RegistryStorage, ax: Axes | None = None) -> Axes:
    """Bytes on disk before and after garbage collection, each bar split into blobs a manifest still references
    and blobs none does."""
    ax = _axes(ax, (6, 4))
    labels = ["before GC", "after GC"]
    kept = [sum(blob.size for blob in storage.blobs if blob.referenced) for storage in (before, after)]
    loose = [sum(blob.size for blob in storage.blobs if not blob.referenced) for storage in (before, after)]
    ax.bar(labels, kept, color="tab:blue", label="referenced by a manifest")
    bars = ax.bar(labels, loose, bottom=kept, color="tab:red", label="referenced by none")
    ax.bar_label(bars, [human_size(storage.bytes) for storage in (before, after)], padding=3)
    binary_ticks(ax.yaxis)
    ax.set_ylabel("bytes on disk")
    removed = before.bytes - after.bytes
    ax.set_title(f"What did garbage collection free? {human_size(removed)}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.margins(y=0.15)
    return ax
