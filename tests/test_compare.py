"""Two images side by side: layers matched by content, sizes of each compression, config keys that changed.

The expected values are read from the layouts' files on disk (manifests,
configs, blob sizes), not from ocilab.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import ocilab
from ocilab.present.compare import compressed_sizes, config_changes, layer_matches
from ocilab.present.text import human_size
from tests.random_image import RandomImage, write_random_image


def document(layout: Path, digest: str) -> dict[str, Any]:
    return dict(json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_text()))


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


@pytest.fixture
def recompressed(tmp_path: Path) -> tuple[RandomImage, Path]:
    image = write_random_image(tmp_path / "gzip", seed=21, layers=3)
    ocilab.copy(image.reference, f"oci:{tmp_path / 'zstd'}:1", compression="zstd", quiet=True)
    return image, tmp_path / "zstd"


def test_a_recompressed_image_matches_every_layer_by_content(recompressed: tuple[RandomImage, Path]) -> None:
    image, zstd = recompressed
    [entry] = json.loads((zstd / "index.json").read_text())["manifests"]
    manifest = document(zstd, entry["digest"])
    frame = layer_matches(ocilab.diff(image.reference, f"oci:{zstd}:1"))
    expected = [
        [short(a), short(b["digest"]), "same content, gzip -> zstd"]
        for a, b in zip(image.layers, manifest["layers"], strict=True)
    ]
    assert frame.values.tolist() == expected


def test_compressed_sizes_are_the_blob_files_sizes_beside_the_same_diff_id(
    recompressed: tuple[RandomImage, Path],
) -> None:
    image, zstd = recompressed
    [entry] = json.loads((zstd / "index.json").read_text())["manifests"]
    manifest = document(zstd, entry["digest"])
    diff_ids = document(zstd, manifest["config"]["digest"])["rootfs"]["diff_ids"]
    frame = compressed_sizes(ocilab.open(image.reference), ocilab.open(f"oci:{zstd}:1"))
    for row, a, b, diff_id in zip(frame.to_dict("records"), image.layers, manifest["layers"], diff_ids, strict=True):
        size_a = (image.layout / "blobs" / "sha256" / a.removeprefix("sha256:")).stat().st_size
        size_b = (zstd / "blobs" / "sha256" / b["digest"].removeprefix("sha256:")).stat().st_size
        assert row == {
            "diff_id": short(diff_id),
            "A": "oci.layer.gzip",
            "size A": human_size(size_a),
            "B": "oci.layer.zstd",
            "size B": human_size(size_b),
            "B / A": round(size_b / size_a, 2),
        }


@pytest.fixture
def versions(tmp_path: Path) -> tuple[str, str, Path]:
    base = write_random_image(tmp_path / "base", seed=22, layers=2)
    start = ocilab.Builder.from_image(base.reference).config(cmd=["/bin/sh", "/app/run.sh"])
    apps = tmp_path / "apps"
    start.add_files({"/app/run.sh": b"echo 1\n", "/app/a.conf": b"a=1\n"}).config(
        env={"GREETING": "hello", "KEEP": "x"}, labels={"version": "1", "team": "t"}, user="1"
    ).write(f"oci:{apps}:v1")
    start.add_files({"/app/run.sh": b"echo 2\n", "/app/a.conf": b"a=1\n"}).config(
        env={"GREETING": "hi", "KEEP": "x"}, labels={"version": "2", "team": "t"}, user="2"
    ).write(f"oci:{apps}:v2")
    return f"oci:{apps}:v1", f"oci:{apps}:v2", apps


def test_two_versions_share_the_base_layers_and_differ_in_their_own(versions: tuple[str, str, Path]) -> None:
    v1, v2, apps = versions
    entries = {
        e["annotations"]["org.opencontainers.image.ref.name"]: e["digest"]
        for e in json.loads((apps / "index.json").read_text())["manifests"]
    }
    layers_1 = [layer["digest"] for layer in document(apps, entries["v1"])["layers"]]
    layers_2 = [layer["digest"] for layer in document(apps, entries["v2"])["layers"]]
    frame = layer_matches(ocilab.diff(v1, v2))
    assert frame.values.tolist() == [
        [short(layers_1[0]), short(layers_1[0]), "same blob"],
        [short(layers_1[1]), short(layers_1[1]), "same blob"],
        [short(layers_1[2]), "", "only in A"],
        ["", short(layers_2[2]), "only in B"],
    ]


def test_config_changes_show_only_the_items_that_differ(versions: tuple[str, str, Path]) -> None:
    v1, v2, _ = versions
    frame = config_changes(ocilab.diff(v1, v2))
    assert frame.loc["Env"].tolist() == ["GREETING=hello", "GREETING=hi"]
    assert frame.loc["Labels"].tolist() == ["version=1", "version=2"]
    assert frame.loc["User"].tolist() == ["1", "2"]
    assert "Cmd" not in frame.index
    only_a, only_b = frame.loc["history"].tolist()
    assert "GREETING=hello" in only_a and "GREETING=hi" in only_b and "CMD" not in only_a


def test_a_long_value_is_cut_to_the_width(versions: tuple[str, str, Path]) -> None:
    v1, v2, _ = versions
    frame = config_changes(ocilab.diff(v1, v2), width=12)
    assert all(len(value) <= 12 for value in frame.to_numpy().ravel())


def test_a_key_only_one_side_has_shows_an_empty_side(tmp_path: Path) -> None:
    base = write_random_image(tmp_path / "base", seed=23, layers=1)
    ocilab.Builder.from_image(base.reference).config(workdir="/srv").write(f"oci:{tmp_path}/w:1")
    frame = config_changes(ocilab.diff(base.reference, f"oci:{tmp_path}/w:1"))
    assert frame.loc["WorkingDir"].tolist() == ["", "/srv"]
