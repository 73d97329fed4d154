"""The digest graph: every node is a blob on disk named by its digest, arrows carry the digest they point at."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import ocilab
from ocilab.present.graph import TOP, image_graph
from tests.plots_fixtures import tar_of
from tests.random_image import write_random_image


@pytest.fixture(scope="module")
def two_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout with two images that share their first layer."""
    layout = tmp_path_factory.mktemp("graph") / "layout"
    shared = tar_of(("shared/file", b"s" * 500))
    write_random_image(layout, 1, tag="a", layers=1, shared_layers=[shared])
    write_random_image(layout, 2, tag="b", layers=1, shared_layers=[shared])
    return layout


def blob_files(layout: Path) -> set[str]:
    return {f"sha256:{path.name}" for path in (layout / "blobs" / "sha256").iterdir()}


def test_a_whole_layout_graph_has_every_blob_once_and_marks_the_shared_layer(two_images: Path) -> None:
    graph = image_graph(two_images)
    assert set(graph.nodes) - {TOP} == blob_files(two_images)
    assert graph.nodes[TOP]["label"] == "index.json"
    shared = [node for node, data in graph.nodes(data=True) if data["shared"]]
    assert len(shared) == 1 and graph.nodes[shared[0]]["kind"] == "layer" and graph.in_degree(shared[0]) == 2
    kinds = sorted(data["kind"] for node, data in graph.nodes(data=True) if node != TOP)
    assert kinds == ["config", "config", "layer", "layer", "layer", "manifest", "manifest"]


def test_each_arrow_is_labelled_with_the_digest_it_points_at(two_images: Path) -> None:
    graph = image_graph(f"oci:{two_images}")
    for parent, child, data in graph.edges(data=True):
        assert data["label"].split("\n")[0] == child.removeprefix("sha256:")[:12], (parent, child)
    tags = sorted(data["label"].split("\n")[1] for _, _, data in graph.out_edges(TOP, data=True))
    assert tags == ["tag a", "tag b"]


def test_an_image_graph_starts_at_its_tag_and_reaches_only_its_blobs(two_images: Path) -> None:
    with ocilab.open(f"oci:{two_images}:a") as image:
        graph = image_graph(image)
        reached = {str(image.manifest_digest), str(image.config_digest), *(str(la.digest) for la in image.layers)}
    assert set(graph.nodes) - {TOP} == reached
    assert not any(data["shared"] for _, data in graph.nodes(data=True))


def test_an_index_is_followed_to_each_platform(tmp_path: Path) -> None:
    image = write_random_image(tmp_path / "layout", 3, platforms=["linux/amd64", "linux/arm64"])
    graph = image_graph(image.reference)
    index = image.digest
    assert graph.nodes[index]["kind"] == "index"
    assert sorted(graph.nodes[child]["kind"] for child in graph.successors(index)) == ["manifest", "manifest"]
    assert set(graph.nodes) - {TOP} == blob_files(tmp_path / "layout")


def test_drawing_puts_one_box_per_node_with_a_red_border_for_shared_blobs(two_images: Path) -> None:
    ax = ocilab.plots.digest_graph(two_images)
    labels = {data["label"] for _, data in image_graph(two_images).nodes(data=True)}
    boxes = [text.get_bbox_patch() for text in ax.texts if text.get_text() in labels]
    assert len(boxes) == len(labels) == 8
    assert sum(box.get_linewidth() > 2 for box in boxes) == 1
    assert "1 blob shared" in ax.get_title()


def test_a_missing_blob_is_named(two_images: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(two_images, broken)
    with ocilab.open(f"oci:{broken}:a") as image:
        config = image.config_digest
    (broken / "blobs" / "sha256" / config.encoded).unlink()
    graph = image_graph(broken)  # a config is a leaf: it is drawn from its descriptor, never read
    assert str(config) in graph.nodes
    with ocilab.open(f"oci:{two_images}:a") as image:
        manifest = image.manifest_digest
    (broken / "blobs" / "sha256" / manifest.encoded).unlink()
    with pytest.raises(ocilab.OcilabError, match=manifest.encoded):
        image_graph(broken)


def test_a_directory_that_is_not_a_layout_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ocilab.OcilabError, match="oci-layout|index.json"):
        image_graph(tmp_path)


def test_drawn_arrow_labels_do_not_overlap_and_a_shared_blob_is_labelled_once(two_images: Path) -> None:
    graph = image_graph(two_images)
    ax = ocilab.plots.digest_graph(two_images)
    figure = ax.get_figure(root=True)
    figure.savefig(io.BytesIO(), format="png")  # type: ignore[union-attr]
    edge_texts = {data["label"] for _, _, data in graph.edges(data=True)}
    drawn = [text for text in ax.texts if text.get_text() in edge_texts]
    assert sorted(text.get_text() for text in drawn) == sorted(edge_texts)  # each digest once, the shared one too
    boxes = [text.get_window_extent() for text in drawn]
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
