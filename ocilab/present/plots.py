"""Matplotlib plots. Each takes ``ax=None`` (a new figure when None), returns the axes, and touches no global state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocilab.present.text import human_size, shorten
from ocilab.stores.image import Image

if TYPE_CHECKING:
    import pandas
    from matplotlib.axes import Axes


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
