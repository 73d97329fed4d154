"""OCI layouts and oci-archives written by skopeo, read by ocilab, cross-checked with skopeo; bad layouts refused.

The refusals need any valid layout, so they damage a seeded random one (tests/random_image.py): no engine needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import NotFoundError, UnsafePathError, ValidationError, VerificationError
from ocilab.stores.layout import open_layout
from tests.conftest import require_tool, run
from tests.random_image import write_random_image


def skopeo_inspect(reference: str) -> dict:
    require_tool("skopeo")
    return json.loads(run("skopeo", "inspect", reference).stdout)


@pytest.fixture
def layout_copy(tmp_path: Path) -> Path:
    """A valid two-layer layout, tagged ``v1``, that a test may damage (written by hand, not by ocilab)."""
    return write_random_image(tmp_path / "layout", seed=6, tag="v1").layout


def blob_file(layout: Path, digest: str) -> Path:
    algorithm, encoded = digest.split(":")
    return layout / "blobs" / algorithm / encoded


def test_layout_agrees_with_skopeo(oci_layout: Path) -> None:
    peer = skopeo_inspect(f"oci:{oci_layout}:v1")
    with ocilab.open(f"oci:{oci_layout}:v1") as image:
        assert str(image.manifest_digest) == peer["Digest"]
        assert [str(layer.digest) for layer in image.layers] == peer["Layers"]
        assert image.config.container_config["Env"] == peer["Env"]
        assert str(image.platform) == f"{peer['Os']}/{peer['Architecture']}"


def test_layout_agrees_with_docker(oci_layout: Path, docker_inspect: dict) -> None:
    """skopeo rewrote the config as an OCI config (new digest), but the layers' diff_ids are docker's."""
    config_bytes = run("skopeo", "inspect", "--raw", "--config", f"oci:{oci_layout}:v1").stdout.encode()
    with ocilab.open(f"oci:{oci_layout}:v1") as image:
        assert image.config.raw == config_bytes
        assert str(image.config_digest) == "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        assert [str(d) for d in image.config.diff_ids] == docker_inspect["RootFS"]["Layers"]


def test_oci_archive_agrees_with_skopeo(oci_layout: Path, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    run("skopeo", "copy", "--quiet", f"oci:{oci_layout}:v1", f"oci-archive:{archive}:v1")
    peer = skopeo_inspect(f"oci-archive:{archive}:v1")
    with ocilab.open(f"oci-archive:{archive}:v1") as image:
        assert str(image.manifest_digest) == peer["Digest"]
        assert [str(layer.digest) for layer in image.layers] == peer["Layers"]
    assert ocilab.validate(f"oci-archive:{archive}").ok


def test_whole_image_validates(oci_layout: Path) -> None:
    report = ocilab.validate(f"oci:{oci_layout}:v1")
    assert report.ok, report.problems
    assert sum("diff_id" in line for line in report.checked) == 2


def test_layer_table_and_history(oci_layout: Path, docker_inspect: dict) -> None:
    with ocilab.open(f"oci:{oci_layout}:v1") as image:
        layers = ocilab.layer_table(image)
        history = ocilab.history(image)
    assert list(layers["diff_id"]) == docker_inspect["RootFS"]["Layers"]
    assert list(layers["media_type"]) == ["oci.layer.gzip"] * 2
    assert layers["size"].gt(0).all()
    assert "COPY" in layers.loc[0, "created_by"]
    assert list(history["created_by"]) == [step["CreatedBy"] for step in docker_history(docker_inspect["Id"])]
    assert list(history["layer"].dropna().astype(int)) == [0, 1]
    assert history["empty_layer"].sum() == len(history) - 2
    assert ocilab.layer_table(f"oci:{oci_layout}:v1").equals(layers)


def docker_history(image_id: str) -> list[dict]:
    """``docker history`` of an image, oldest step first (docker prints the newest first)."""
    lines = run("docker", "history", "--no-trunc", "--format", "{{json .}}", image_id).stdout.splitlines()
    return [json.loads(line) for line in reversed(lines)]


def test_unknown_tag_lists_the_tags(layout_copy: Path) -> None:
    with pytest.raises(NotFoundError, match="no image tagged 'nope' \\(tags: v1\\)"):
        ocilab.open(f"oci:{layout_copy}:nope")


def test_missing_oci_layout_file(layout_copy: Path) -> None:
    (layout_copy / "oci-layout").unlink()
    with pytest.raises(NotFoundError, match="not an OCI image layout \\(no oci-layout file\\)"):
        ocilab.open(f"oci:{layout_copy}:v1")


def test_missing_index(layout_copy: Path) -> None:
    (layout_copy / "index.json").unlink()
    with pytest.raises(NotFoundError, match="without index.json"):
        ocilab.open(f"oci:{layout_copy}:v1")


def test_malformed_index(layout_copy: Path) -> None:
    (layout_copy / "index.json").write_text('{"schemaVersion": 2, "manifests": [')
    with pytest.raises(ValidationError, match="index.json: malformed JSON"):
        ocilab.open(f"oci:{layout_copy}:v1")


def test_wrong_layout_version(layout_copy: Path) -> None:
    (layout_copy / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(ValidationError, match="unsupported layout version '2.0.0'"):
        ocilab.open(f"oci:{layout_copy}:v1")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such directory"):
        ocilab.open(f"oci:{tmp_path / 'absent'}:v1")


def test_blob_that_is_a_symlink_is_refused(layout_copy: Path, tmp_path: Path) -> None:
    with ocilab.open(f"oci:{layout_copy}:v1") as image:
        config_path = blob_file(layout_copy, str(image.config_digest))
    outside = tmp_path / "outside-config"
    config_path.rename(outside)
    config_path.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symlink"):
        ocilab.open(f"oci:{layout_copy}:v1")


def test_blobs_directory_that_is_a_symlink_is_refused(layout_copy: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (layout_copy / "blobs").rename(elsewhere)
    (layout_copy / "blobs").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="goes through a symlink"):
        ocilab.open(f"oci:{layout_copy}:v1")


def test_truncated_layer_is_refused(layout_copy: Path) -> None:
    with ocilab.open(f"oci:{layout_copy}:v1") as image:
        layer = image.layers[0]
    path = blob_file(layout_copy, str(layer.digest))
    os.truncate(path, layer.size - 10)
    report = ocilab.validate(f"oci:{layout_copy}:v1")
    assert not report.ok
    assert any("layer 0" in p and "truncated" in p for p in report.problems), report.problems
    with ocilab.open(f"oci:{layout_copy}:v1") as image, pytest.raises(VerificationError, match="truncated"):
        image.open_layer(0).drain()


def test_altered_config_is_refused(layout_copy: Path) -> None:
    with ocilab.open(f"oci:{layout_copy}:v1") as image:
        config_path = blob_file(layout_copy, str(image.config_digest))
    data = bytearray(config_path.read_bytes())
    data[data.index(b"amd64")] = ord("A")
    config_path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="config sha256:.*does not match its digest"):
        ocilab.open(f"oci:{layout_copy}:v1")


def test_missing_blob(layout_copy: Path) -> None:
    with ocilab.open(f"oci:{layout_copy}:v1") as image:
        layer = image.layers[1]
    blob_file(layout_copy, str(layer.digest)).unlink()
    report = ocilab.validate(f"oci:{layout_copy}:v1")
    assert any(f"blob {layer.digest} is missing" in p for p in report.problems), report.problems


def test_digest_that_would_escape_is_refused_by_the_grammar(layout_copy: Path) -> None:
    index = json.loads((layout_copy / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    (layout_copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValidationError, match=r"manifests\[0\].digest"):
        ocilab.open(f"oci:{layout_copy}:v1")


def test_ambiguous_layout_without_tag(layout_copy: Path) -> None:
    index = json.loads((layout_copy / "index.json").read_text())
    second = dict(index["manifests"][0], annotations={"org.opencontainers.image.ref.name": "v2"})
    index["manifests"].append(second)
    (layout_copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValidationError, match="holds 2 entries; add a tag to choose \\(tags: v1, v2\\)"):
        ocilab.open(f"oci:{layout_copy}")
    with open_layout(layout_copy, "v2") as store:
        assert store.tags() == ["v1", "v2"]


def test_archive_member_symlink_leaving_the_archive_is_refused(layout_copy: Path, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout_copy, arcname=".")
        link = tarfile.TarInfo("index.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../../etc/hostname"
        tar.addfile(link)
    with pytest.raises(UnsafePathError, match="symlink that leaves the archive"):
        ocilab.open(f"oci-archive:{archive}:v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar", "layout"]
