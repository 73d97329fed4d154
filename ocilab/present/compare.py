"""Two images side by side, as small tables: their layers matched by content, the config keys that changed.

``layer_matches`` and ``config_changes`` read the frame ``ocilab.diff`` returns
(its ``attrs``); ``compressed_sizes`` reads two images' manifests and configs
(no layer is read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocilab.model import Digest
from ocilab.model import mediatype as mt
from ocilab.present.text import human_size, shorten
from ocilab.stores.image import Image

if TYPE_CHECKING:
    import pandas

MATCH_COLUMNS = ["layer in A", "layer in B", "how"]
SIZE_COLUMNS = ["diff_id", "A", "size A", "B", "size B", "B / A"]


def layer_matches(diff: pandas.DataFrame) -> pandas.DataFrame:
    """One row per layer of ``ocilab.diff(a, b)``: its short blob digest in A and in B, and how they match.

    ``how`` is ``same blob``, ``same content, gzip -> zstd`` (only the compression differs),
    ``only in A`` or ``only in B``; A's layers first, in order.
    """
    import pandas

    layers = diff.attrs["layers"]
    recompressed = {item["a"]["digest"]: item for item in layers["recompressed"]}
    rows = []
    for digest in layers["shared"]:
        item = recompressed.get(digest)
        if item is None:
            rows.append([_short(digest), _short(digest), "same blob"])
        else:
            change = f"{_compression(item['a']['media_type'])} -> {_compression(item['b']['media_type'])}"
            rows.append([_short(digest), _short(item["b"]["digest"]), f"same content, {change}"])
    rows += [[_short(digest), "", "only in A"] for digest in layers["only_a"]]
    rows += [["", _short(digest), "only in B"] for digest in layers["only_b"]]
    return pandas.DataFrame(rows, columns=MATCH_COLUMNS)


def config_changes(diff: pandas.DataFrame, width: int = 50) -> pandas.DataFrame:
    """The config keys of ``ocilab.diff(a, b)`` that differ, indexed by key: what only A has, what only B has.

    For a list (``Env``, ``history``) or a mapping (``Labels``) only the items
    that differ are shown; a plain value is shown whole. Values are cut to ``width`` characters.
    """
    import pandas

    rows = {key: difference(change["a"], change["b"]) for key, change in diff.attrs["config"].items()}
    cut = {key: [shorten(side, width) for side in sides] for key, sides in rows.items()}
    return pandas.DataFrame.from_dict(cut, orient="index", columns=["only in A", "only in B"]).rename_axis("key")


def compressed_sizes(a: Image, b: Image) -> pandas.DataFrame:
    """A's layers beside B's layers of the same content (diff_id): blob types, sizes, and B's size over A's.

    A layer B does not have leaves B's columns empty.
    """
    import pandas

    by_content = {layer.diff_id: layer for layer in b.layers}
    rows = []
    for layer in a.layers:
        other = by_content.get(layer.diff_id)
        rows.append(
            [
                layer.diff_id.short,
                mt.short_name(layer.descriptor.media_type),
                human_size(layer.size),
                mt.short_name(other.descriptor.media_type) if other else "",
                human_size(other.size) if other else "",
                round(other.size / layer.size, 2) if other and layer.size else None,
            ]
        )
    return pandas.DataFrame(rows, columns=SIZE_COLUMNS)


def _short(digest: str) -> str:
    return Digest.parse(digest).short


def _compression(media_type: str) -> str:
    return mt.layer_compression(media_type) or media_type


def difference(a: Any, b: Any) -> tuple[str, str]:
    """What only ``a`` has and what only ``b`` has, as text: items of lists and mappings, else the values.

    A missing side (None) beside a list or mapping counts as an empty one. An empty side is ``""``;
    items are joined with ``, ``.
    """
    a = type(b)() if a is None and isinstance(b, list | dict) else a
    b = type(a)() if b is None and isinstance(a, list | dict) else b
    if isinstance(a, list) and isinstance(b, list):
        return _items([item for item in a if item not in b]), _items([item for item in b if item not in a])
    if isinstance(a, dict) and isinstance(b, dict):
        only_a = [f"{key}={value}" for key, value in a.items() if b.get(key, ...) != value]
        only_b = [f"{key}={value}" for key, value in b.items() if a.get(key, ...) != value]
        return _items(only_a), _items(only_b)
    return ("" if a is None else str(a)), ("" if b is None else str(b))


def _items(items: list[Any]) -> str:
    return ", ".join(str(item) for item in items)
