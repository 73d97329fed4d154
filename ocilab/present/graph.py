"""The content-addressed graph of an image or a whole OCI layout, drawn with networkx and matplotlib.

Nodes are documents and blobs, keyed by digest: index -> manifest -> config +
layers. Every edge is a pointer, a descriptor in the parent, labelled with the
child's short digest: the child's name is the SHA-256 of its bytes. The top
node is where a reader starts: a layout's ``index.json`` (it has no digest of
its own), or the reference for any other store. A blob that several parents
point at (a layer two images share) is stored once and drawn with a thick red
border. No Graphviz binary is needed: nodes sit in rows by depth.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ocilab.model import Descriptor, Index, parse_root
from ocilab.model import mediatype as mt
from ocilab.present.text import human_size
from ocilab.stores.base import Store
from ocilab.stores.image import Image, ImageIndex
from ocilab.stores.layout import REF_NAME, LayoutStore, open_layout

if TYPE_CHECKING:
    import networkx
    from matplotlib.axes import Axes

Subject = Image | ImageIndex | LayoutStore | Path | str
"""What the graph is drawn for: an image, an index, a layout (store, directory or ``oci:DIR``), a reference."""

TOP = "top"
_COLORS = {
    "top": "#eeeeee",
    "index": "#c6dbef",
    "manifest": "#9ecae1",
    "config": "#fdd0a2",
    "layer": "#c7e9c0",
    "blob": "#dadaeb",
}


def image_graph(subject: Subject) -> networkx.DiGraph:
    """The graph: nodes keyed by digest (``"top"`` for the start) with ``kind``, ``label``, ``size``;
    edges with ``label`` (the child's short digest); ``shared`` is True on nodes with several parents."""
    import networkx

    graph = networkx.DiGraph()
    store, top_label, entries, owned = _start(subject)
    try:
        graph.add_node(TOP, kind="top", label=top_label, size=0, depth=0)
        for descriptor in entries:
            _add(graph, store, TOP, descriptor, 1)
    finally:
        if owned:
            store.close()
    for node in graph.nodes:
        graph.nodes[node]["shared"] = graph.in_degree(node) > 1
    return graph


def _start(subject: Subject) -> tuple[Store, str, tuple[Descriptor, ...], bool]:
    """The store, the top node's label, the descriptors it points at, and whether we opened the store."""
    if isinstance(subject, Image | ImageIndex):
        store, owned = subject.store, False
        root: tuple[Descriptor, ...] = (store.root(),)
    else:
        if isinstance(subject, Path):
            store = open_layout(subject)
        elif isinstance(subject, str):
            from ocilab.stores.transports import open_store

            store = open_store(subject)
        else:
            store = subject
        owned = store is not subject
        whole_layout = isinstance(store, LayoutStore) and store.tag is None
        root = store.index.manifests if isinstance(store, LayoutStore) and whole_layout else (store.root(),)
    if isinstance(store, LayoutStore):
        return store, "index.json", root, owned
    return store, store.reference.rsplit("/", 1)[-1], root, owned


def _add(graph: networkx.DiGraph, store: Store, parent: str, descriptor: Descriptor, depth: int) -> None:
    key = str(descriptor.digest)
    tag = descriptor.annotations.get(REF_NAME) if parent == TOP else None
    graph.add_edge(parent, key, label=descriptor.digest.short + (f"\ntag {tag}" if tag else ""))
    if key in graph.nodes and "kind" in graph.nodes[key]:
        return
    kind = _kind(descriptor.media_type)
    label = f"{kind}\n{descriptor.digest.short}\n{human_size(descriptor.size)}"
    graph.add_node(key, kind=kind, label=label, size=descriptor.size, depth=depth)
    if kind not in ("index", "manifest"):
        return
    raw = store.read_document(descriptor, kind)
    document = parse_root(raw, f"{store.reference}: {kind} {descriptor.digest}", descriptor.media_type)
    children = document.manifests if isinstance(document, Index) else (document.config, *document.layers)
    for child in children:
        _add(graph, store, key, child, depth + 1)


def _kind(media_type: str) -> str:
    if mt.is_index(media_type):
        return "index"
    if mt.is_manifest(media_type):
        return "manifest"
    if media_type in mt.CONFIGS:
        return "config"
    if mt.layer_compression(media_type) is not None:
        return "layer"
    return "blob"


def digest_graph(subject: Subject, ax: Axes | None = None) -> Axes:
    """Draw ``image_graph(subject)``: rows by depth, boxes coloured by kind, shared blobs with a red border."""
    import networkx

    from ocilab.present.plots import new_axes

    graph = image_graph(subject)
    rows: dict[int, list[str]] = {}
    for node, data in graph.nodes(data=True):
        rows.setdefault(data["depth"], []).append(node)
    widest = max(len(nodes) for nodes in rows.values())
    if ax is None:
        ax = new_axes((max(6.0, 1.9 * widest), 1.5 + 1.5 * len(rows)))
    position: dict[str, tuple[float, float]] = {}
    for depth in sorted(rows):
        # Each node under the mean of its parents' columns (a shared blob lands between them), fewer crossings.
        nodes = sorted(
            rows[depth],
            key=lambda node: sum(position[p][0] for p in graph.predecessors(node)) / max(graph.in_degree(node), 1),
        )
        position.update({node: (column - (len(nodes) - 1) / 2, -depth) for column, node in enumerate(nodes)})
    networkx.draw_networkx_edges(graph, position, ax=ax, arrows=True, arrowsize=14, node_size=2600, edge_color="gray")
    networkx.draw_networkx_edge_labels(
        graph,
        position,
        edge_labels=_one_label_per_child(graph, position),
        ax=ax,
        font_size=7,
        font_family="monospace",
        label_pos=0.7,
        rotate=False,
    )
    for node, data in graph.nodes(data=True):
        x, y = position[node]
        ax.text(
            x,
            y,
            data["label"],
            ha="center",
            va="center",
            fontsize=8,
            family="monospace",
            bbox={
                "boxstyle": "round,pad=0.4",
                "facecolor": _COLORS[data["kind"]],
                "edgecolor": "tab:red" if data["shared"] else "black",
                "linewidth": 2.5 if data["shared"] else 0.8,
            },
        )
    ax.set_xlim(-widest / 2 - 0.2, widest / 2 + 0.2)
    ax.set_ylim(-max(rows) - 0.5, 0.5)
    ax.set_axis_off()
    shared = sum(1 for _, data in graph.nodes(data=True) if data["shared"])
    note = f"; {shared} blob{'s' if shared != 1 else ''} shared (red border)" if shared else ""
    ax.set_title(f"Which digest names which part?\nEach arrow is labelled with the digest it points at{note}")
    return ax


def _one_label_per_child(
    graph: networkx.DiGraph, position: dict[str, tuple[float, float]]
) -> dict[tuple[str, str], str]:
    """Each edge's label, but a shared blob's arrows (which all carry its digest and meet at it) only
    once: on the arrow from the parent nearest above it, so that the labels do not pile up."""
    labels = {}
    for child in graph.nodes:
        parents = sorted(graph.predecessors(child), key=lambda parent: abs(position[parent][0] - position[child][0]))
        if parents:
            labels[(parents[0], child)] = graph.edges[parents[0], child]["label"]
    return labels
