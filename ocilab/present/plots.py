"""Matplotlib plots. Each takes ``ax=None`` (a new figure when None), returns the axes, and touches no global state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocilab.present.text import human_size
from ocilab.stores.image import Image

if TYPE_CHECKING:
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
    return text if len(text) <= width else text[: width - 1] + "…"
