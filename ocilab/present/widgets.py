"""The layer explorer: dive inside a notebook.

``explore(image)`` reads every layer once (``ocilab.present.walk``) and gives an
``Explorer``. In JupyterLab it displays as ipywidgets: a slider steps through
the layers, a toggle shows the layer's own changes or the merged tree after
it, and a path filter and a minimum size narrow the table. Where no widget
frontend runs (nbval, a static renderer, ipywidgets not installed) the same
output carries a static table, one row per layer, whose text is stable.
``Explorer.frame(...)`` is the table the widget shows, for use in code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocilab.present.text import human_size, shorten
from ocilab.present.walk import Step, walk
from ocilab.stores.image import Image

if TYPE_CHECKING:
    import pandas

VIEWS = ("changes", "tree")
SIZES = (("any size", 0), ("≥ 1 KiB", 1 << 10), ("≥ 64 KiB", 1 << 16), ("≥ 1 MiB", 1 << 20))
MAX_ROWS = 200
_MARKS = {"added": "A", "modified": "M", "removed": "D"}


class Explorer:
    """The layers of one image, ready to show step by step (``steps`` come from ``walk``)."""

    def __init__(self, image: Image, steps: list[Step], max_rows: int = MAX_ROWS) -> None:
        self.reference = image.reference
        self.steps = steps
        self.max_rows = max_rows
        self._widget: Any = None

    def summary(self) -> pandas.DataFrame:
        """One row per layer: the step that made it, blob size, counts of changes, wasted bytes, paths after it."""
        import pandas

        rows = [
            {
                "layer": step.index,
                "created_by": shorten(" ".join((step.created_by or "?").split()), 50),
                "size": step.size,
                **{change: sum(c.change == change for c in step.changes) for change in _MARKS},
                "wasted": step.wasted_bytes,
                "paths after": len(step.tree),
            }
            for step in self.steps
        ]
        return pandas.DataFrame(rows).set_index("layer")

    def frame(self, layer: int = 0, view: str = "changes", path: str = "", min_size: int = 0) -> pandas.DataFrame:
        """The rows for ``layer``: its changes (``view="changes"``) or the merged tree after it (``"tree"``).

        ``path`` keeps rows whose path contains it; ``min_size`` keeps rows at least that many bytes.
        Columns: change (A, M, D; blank in the tree for paths this layer left alone), type, size, path.
        """
        import pandas

        if not 0 <= layer < len(self.steps):
            raise IndexError(f"{self.reference} has layers 0 to {len(self.steps) - 1}, not {layer}")
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, not {view!r}")
        step = self.steps[layer]
        marks = {change.path: _MARKS[change.change] for change in step.changes}
        if view == "changes":
            rows = [(marks[c.path], c.entry.kind, c.entry.size, c.path) for c in step.changes]
        else:
            rows = [(marks.get(p, ""), entry.kind, entry.size, p) for p, entry in sorted(step.tree.items())]
        kept = [row for row in rows if path in row[3] and row[2] >= min_size]
        return pandas.DataFrame(kept, columns=["change", "type", "size", "path"])

    @property
    def widget(self) -> Any:
        """The ipywidgets box (built on first use); None when ipywidgets is not installed."""
        if self._widget is None:
            try:
                self._widget = _build(self)
            except ImportError:
                return None
        return self._widget

    def _static(self) -> tuple[str, str]:
        summary = self.summary()
        # Sizes padded to one width, so the table's layout does not move when only a size differs.
        summary["size"] = [f"{human_size(size):>10}" for size in summary["size"]]
        summary["wasted"] = [f"{human_size(size):>10}" for size in summary["wasted"]]
        note = f"Layers of {self.reference} (step through them in JupyterLab: ocilab.widgets.explore)"
        return f"{note}\n{summary.to_string()}", f"<p>{_escape(note)}</p>{summary.to_html()}"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        text, html = self._static()
        bundle: dict[str, Any] = {"text/plain": text, "text/html": html}
        widget = self.widget
        if widget is not None:
            view = widget._repr_mimebundle_()
            bundle["application/vnd.jupyter.widget-view+json"] = view["application/vnd.jupyter.widget-view+json"]
        return bundle

    def __repr__(self) -> str:
        return self._static()[0]


def explore(image: Image | str, max_rows: int = MAX_ROWS) -> Explorer:
    """An explorer of ``image`` (an Image or a reference string); every layer is read once, now."""
    if isinstance(image, str):
        from ocilab.api import open as open_image

        with open_image(image) as opened:
            return Explorer(opened, walk(opened), max_rows)
    return Explorer(image, walk(image), max_rows)


def _build(explorer: Explorer) -> Any:
    """The widget: controls on top, a heading for the chosen layer, and the table."""
    import ipywidgets as w

    last = len(explorer.steps) - 1
    layer = w.IntSlider(value=0, min=0, max=max(last, 0), description="layer", continuous_update=False)
    view = w.ToggleButtons(options=[("changes", "changes"), ("merged tree", "tree")], value="changes")
    path = w.Text(value="", placeholder="/etc", description="path has")
    size = w.Dropdown(options=SIZES, value=0, description="size")
    heading = w.HTML()
    table = w.HTML()

    def refresh(*_: object) -> None:
        step = explorer.steps[layer.value]
        frame = explorer.frame(layer.value, view.value, path.value, size.value)
        counts = ", ".join(f"{sum(c.change == k for c in step.changes)} {k}" for k in _MARKS)
        heading.value = (
            f"<b>layer {step.index}</b> of {last + 1}: <code>{_escape(step.created_by or '?')}</code>"
            f" &middot; blob {human_size(step.size)} &middot; {counts} &middot; {len(frame)} rows"
        )
        shown = frame.head(explorer.max_rows).assign(
            size=[human_size(s) for s in frame["size"].head(explorer.max_rows)]
        )
        more = f"<p>… {len(frame) - explorer.max_rows} more rows</p>" if len(frame) > explorer.max_rows else ""
        table.value = shown.to_html(index=False) + more

    for control in (layer, view, path, size):
        control.observe(refresh, names="value")
    refresh()
    box = w.VBox([w.HBox([layer, view]), w.HBox([path, size]), heading, table])
    box.add_class("ocilab-explorer")
    return box


def _escape(text: str) -> str:
    import html

    return html.escape(text)
