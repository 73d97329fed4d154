"""ocilab.plots: each plot answers its question from the real layers, shows itself as a PNG, leaves pyplot alone."""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure

import ocilab
from ocilab.present import plots
from tests.plots_fixtures import tar_of
from tests.random_image import write_random_image

BIG = 3000


@pytest.fixture(scope="module")
def wasteful(tmp_path_factory: pytest.TempPathFactory) -> ocilab.Image:
    """Layer 0 writes /data/big and /data/keep; layer 1 deletes big (a whiteout); layer 2 rewrites keep."""
    layers = [
        tar_of(("data/big", b"x" * BIG), ("data/keep", b"k" * 100)),
        tar_of(("data/.wh.big", b"")),
        tar_of(("data/keep", b"K" * 40)),
    ]
    image = write_random_image(tmp_path_factory.mktemp("waste") / "layout", 1, layers=0, shared_layers=layers)
    return ocilab.open(image.reference)


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> ocilab.Image:
    layout = ocilab.busybox_layout(tmp_path_factory.mktemp("bb") / "layout", tag="1")
    return ocilab.open(f"oci:{layout}:1")


def test_every_plot_is_an_axes_that_shows_itself_as_a_png(busybox: ocilab.Image, wasteful: ocilab.Image) -> None:
    from matplotlib.axes import Axes

    for ax in (
        plots.layer_sizes(busybox),
        plots.layer_changes(busybox),
        plots.wasted_space(wasteful),
        plots.digest_graph(busybox),
    ):
        assert isinstance(ax, Axes)
        assert ax._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")  # type: ignore[attr-defined]
        assert repr(ax) == f"<plot: {' '.join(ax.get_title().split())}>"
        assert "?" in ax.get_title(), "the title states the question the plot answers"


def test_plots_leave_pyplot_and_rc_params_alone(busybox: ocilab.Image) -> None:
    import matplotlib.pyplot as pyplot

    before = (pyplot.get_fignums(), dict(matplotlib.rcParams))
    plots.layer_sizes(busybox)._repr_png_()  # type: ignore[attr-defined]
    plots.digest_graph(busybox)
    assert (pyplot.get_fignums(), dict(matplotlib.rcParams)) == before == ([], before[1])


def test_a_given_axes_is_drawn_on_and_returned(busybox: ocilab.Image, wasteful: ocilab.Image) -> None:
    figure = Figure()
    mine = figure.subplots(1, 3)
    assert plots.layer_sizes(busybox, ax=mine[0]) is mine[0]
    assert plots.layer_changes(ocilab.layers(busybox), ax=mine[1]) is mine[1]
    assert plots.wasted_space(wasteful, ax=mine[2]) is mine[2]
    figure.savefig(io.BytesIO(), format="png")


def test_layer_sizes_shows_the_blob_and_the_tar_gzip_unpacks(busybox: ocilab.Image) -> None:
    ax = plots.layer_sizes(busybox)
    compressed, unpacked = ax.containers[0], ax.containers[1]
    assert [bar.get_width() for bar in compressed] == [layer.size for layer in busybox.layers]
    layout = Path(busybox.reference.removeprefix("oci:").rsplit(":", 1)[0])
    by_gzip = [
        len(gzip.decompress((layout / "blobs" / "sha256" / layer.digest.encoded).read_bytes()))
        for layer in busybox.layers
    ]
    assert [bar.get_width() for bar in unpacked] == by_gzip


def test_byte_axes_tick_at_powers_of_two_in_binary_units(busybox: ocilab.Image) -> None:
    ax = plots.layer_sizes(busybox)
    ax.get_figure(root=True).savefig(io.BytesIO(), format="png")  # type: ignore[union-attr]
    ticks = [tick for tick in ax.get_xticks() if tick > 0]
    step = ticks[1] - ticks[0]
    assert step == 2 ** round(step).bit_length() / 2 and all(tick % step == 0 for tick in ticks)
    labels = [label.get_text() for label in ax.get_xticklabels()]
    assert labels[0] == "0" and all(re.fullmatch(r"\d+(\.\d+)? (B|KiB|MiB|GiB)", text) for text in labels[1:])


@pytest.mark.parametrize("size", [(8.0, 3.0), (5.0, 3.0), (4.0, 3.0)])
def test_byte_tick_labels_never_overlap_however_narrow(busybox: ocilab.Image, size: tuple[float, float]) -> None:
    ax = plots.wasted_space(busybox, ax=Figure(figsize=size, layout="constrained").add_subplot())
    figure = ax.get_figure(root=True)
    figure.savefig(io.BytesIO(), format="png")  # type: ignore[union-attr]
    boxes = [label.get_window_extent() for label in ax.get_xticklabels() if label.get_text()]
    assert len(boxes) >= 2
    gaps = [right.x0 - left.x1 for left, right in zip(boxes, boxes[1:], strict=False)]
    em = ax.xaxis.get_ticklabels()[0].get_fontsize() * figure.dpi / 72  # type: ignore[union-attr]
    assert min(gaps) >= em, gaps  # at least a font size of white between two labels


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0"), (512, "512 B"), (262144, "256 KiB"), (1572864, "1.5 MiB"), (2**30, "1 GiB")]
)
def test_round_size_labels(value: int, text: str) -> None:
    assert plots.round_size(value) == text


def test_layer_changes_counts_are_on_the_bars(wasteful: ocilab.Image) -> None:
    ax = plots.layer_changes(wasteful)
    labels = [text.get_text() for text in ax.texts]
    assert labels == ["3 added", "1 removed", "1 modified"]  # /data, big, keep; big; keep


def test_wasted_space_per_layer_adds_up_to_efficiency(wasteful: ocilab.Image) -> None:
    ax = plots.wasted_space(wasteful)
    visible, wasted = ax.containers
    assert [bar.get_width() for bar in wasted] == [BIG + 100, 0, 0]
    assert [bar.get_width() for bar in visible] == [0, 0, 40]
    assert sum(bar.get_width() for bar in wasted) == ocilab.efficiency(wasteful).attrs["wasted_bytes"]


def test_a_layer_whose_blob_lies_is_refused_by_name(tmp_path: Path) -> None:
    image = write_random_image(tmp_path / "layout", 2, layers=1)
    blob = tmp_path / "layout" / "blobs" / "sha256" / image.layers[0].removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[-12] ^= 0xFF  # the gzip trailer still parses; the bytes no longer match the digest
    blob.write_bytes(bytes(data))
    with ocilab.open(image.reference) as opened, pytest.raises(ocilab.OcilabError, match="layer 0"):
        plots.layer_sizes(opened)


def test_plots_render_in_a_process_without_a_display(tmp_path: Path, busybox: ocilab.Image) -> None:
    script = (
        "import ocilab, sys; image = ocilab.open(sys.argv[1]);"
        "open(sys.argv[2], 'wb').write(ocilab.plots.layer_sizes(image)._repr_png_())"
    )
    out = tmp_path / "plot.png"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no DISPLAY, no MPLBACKEND
    subprocess.run([sys.executable, "-c", script, busybox.reference, str(out)], check=True, env=env, timeout=120)
    assert out.read_bytes().startswith(b"\x89PNG")
