"""The layer explorer: each layer's changes and the merged tree, as umoci unpacks it; a stable static fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ocilab
from ocilab.present.widgets import Explorer, explore
from tests.conftest import require_tool
from tests.plots_fixtures import tar_of
from tests.random_image import RandomImage, write_random_image


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> RandomImage:
    """Layer 0 writes three files, layer 1 deletes one and adds a big one, layer 2 rewrites one."""
    layers = [
        tar_of(("etc/a", b"a" * 10), ("etc/b", b"b" * 20), ("opt/tool", b"t" * 30)),
        tar_of(("etc/.wh.b", b""), ("opt/big", b"B" * 5000)),
        tar_of(("etc/a", b"A" * 15)),
    ]
    return write_random_image(tmp_path_factory.mktemp("explore") / "layout", 7, layers=0, shared_layers=layers)


@pytest.fixture(scope="module")
def explorer(layered: RandomImage) -> Explorer:
    return explore(layered.reference)


def test_each_layer_shows_its_own_changes(explorer: Explorer) -> None:
    rows = [list(explorer.frame(n)[["change", "path"]].itertuples(index=False, name=None)) for n in range(3)]
    assert rows == [
        [("A", "/etc"), ("A", "/etc/a"), ("A", "/etc/b"), ("A", "/opt"), ("A", "/opt/tool")],
        [("D", "/etc/b"), ("A", "/opt/big")],
        [("M", "/etc/a")],
    ]


def test_the_merged_tree_after_each_layer(explorer: Explorer) -> None:
    assert list(explorer.frame(0, "tree")["path"]) == ["/etc", "/etc/a", "/etc/b", "/opt", "/opt/tool"]
    after_1 = explorer.frame(1, "tree")
    assert list(after_1["path"]) == ["/etc", "/etc/a", "/opt", "/opt/big", "/opt/tool"]
    assert dict(zip(after_1["path"], after_1["change"], strict=True))["/opt/big"] == "A"
    assert explorer.frame(2, "tree").set_index("path").loc["/etc/a", "size"] == 15


def test_the_last_tree_is_what_umoci_unpacks(layered: RandomImage, explorer: Explorer, tmp_path: Path) -> None:
    umoci = require_tool("umoci")
    bundle = tmp_path / "bundle"
    layout = str(layered.layout)
    subprocess.run([umoci, "raw", "unpack", "--rootless", "--image", f"{layout}:1", str(bundle)], check=True)
    on_disk = sorted("/" + str(path.relative_to(bundle)) for path in bundle.rglob("*"))
    assert list(explorer.frame(2, "tree")["path"]) == on_disk


def test_filters_by_path_and_size(explorer: Explorer) -> None:
    assert list(explorer.frame(1, "tree", path="/opt")["path"]) == ["/opt", "/opt/big", "/opt/tool"]
    assert list(explorer.frame(1, "tree", min_size=1024)["path"]) == ["/opt/big"]
    assert explorer.frame(0, path="nothing-like-this").empty


def test_a_layer_or_view_that_does_not_exist_is_named(explorer: Explorer) -> None:
    with pytest.raises(IndexError, match="layers 0 to 2, not 3"):
        explorer.frame(3)
    with pytest.raises(ValueError, match="changes, tree"):
        explorer.frame(0, "files")


def test_the_widget_steps_through_layers_and_filters(explorer: Explorer) -> None:
    pytest.importorskip("ipywidgets")
    box = explorer.widget
    (slider, view), (path, size) = box.children[0].children, box.children[1].children
    heading, table = box.children[2], box.children[3]
    assert "layer 0" in heading.value and "/opt/tool" in table.value
    slider.value = 1
    assert "layer 1" in heading.value and "/opt/big" in table.value and "/opt/tool" not in table.value
    view.value = "tree"
    path.value = "/etc"
    assert "/etc/a" in table.value and "/opt" not in table.value
    path.value = ""
    size.value = 1 << 10
    assert "/opt/big" in table.value and "/etc/a" not in table.value


def test_the_display_carries_the_widget_and_a_stable_static_table(layered: RandomImage, explorer: Explorer) -> None:
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    again = explore(layered.reference)._repr_mimebundle_()
    assert (bundle["text/plain"], bundle["text/html"]) == (again["text/plain"], again["text/html"])
    lines = bundle["text/plain"].splitlines()
    assert (
        lines[0].startswith(f"Layers of {layered.reference}") and len(lines) == 1 + 2 + 3
    )  # note, two header lines, a row per layer
    assert "<table" in bundle["text/html"]


def test_without_ipywidgets_the_static_table_is_all_there_is(layered: RandomImage) -> None:
    script = (
        "import sys; sys.modules['ipywidgets'] = None\n"
        "import ocilab\n"
        "bundle = ocilab.widgets.explore(sys.argv[1])._repr_mimebundle_()\n"
        "print(sorted(bundle))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, layered.reference], capture_output=True, text=True, env=dict(os.environ)
    )
    assert result.stdout.strip() == "['text/html', 'text/plain']", result.stderr


def test_an_image_explored_from_an_open_image(layered: RandomImage) -> None:
    with ocilab.open(layered.reference) as image:
        assert len(explore(image).steps) == 3
