"""The offline busybox image and the layout / oci-archive writers, checked by skopeo and umoci."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import ComponentUnavailableError, InvalidInputError, NotFoundError
from tests.conftest import BUSYBOX, require, require_tool, run


@pytest.fixture(scope="module")
def scratch_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    return ocilab.busybox_layout(tmp_path_factory.mktemp("scratch") / "busybox", tag="1")


def test_skopeo_reads_what_we_wrote(scratch_layout: Path) -> None:
    require_tool("skopeo")
    peer = json.loads(run("skopeo", "inspect", f"oci:{scratch_layout}:1").stdout)
    with ocilab.open(f"oci:{scratch_layout}:1") as image:
        assert str(image.manifest_digest) == peer["Digest"]
        assert [str(layer.digest) for layer in image.layers] == peer["Layers"]
    assert ocilab.validate(f"oci:{scratch_layout}:1").ok


def test_umoci_unpacks_a_working_rootfs(scratch_layout: Path, tmp_path: Path) -> None:
    require_tool("umoci")
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{scratch_layout}:1", bundle)
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin" / "busybox").read_bytes() == BUSYBOX.read_bytes()
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/busybox"
    applets = run(BUSYBOX, "--list").stdout.split()
    assert sorted(p.name for p in (rootfs / "bin").iterdir()) == sorted({*applets, "busybox"})


def test_builds_are_reproducible(scratch_layout: Path, tmp_path: Path) -> None:
    again = ocilab.busybox_layout(tmp_path / "again", tag="1")
    with ocilab.open(f"oci:{scratch_layout}:1") as first, ocilab.open(f"oci:{again}:1") as second:
        assert first.manifest_digest == second.manifest_digest


def test_source_date_epoch_sets_the_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    with ocilab.open(f"oci:{ocilab.busybox_layout(tmp_path / 'dated', tag='1')}:1") as image:
        assert image.config.created == "2023-11-14T22:13:20Z"


def test_existing_destination_is_refused_and_kept(tmp_path: Path) -> None:
    destination = tmp_path / "taken"
    destination.mkdir()
    (destination / "precious").write_text("keep me")
    with pytest.raises(InvalidInputError, match="already exists"):
        ocilab.busybox_layout(destination)
    assert (destination / "precious").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_missing_busybox_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ComponentUnavailableError, match="apt-get install busybox-static"):
        ocilab.busybox_layout(tmp_path / "image", busybox=tmp_path / "no-busybox")
    assert list(tmp_path.iterdir()) == []


def test_oci_archive_round_trip(scratch_layout: Path, tmp_path: Path) -> None:
    archive = ocilab.write_oci_archive(scratch_layout, tmp_path / "image.tar")
    require_tool("skopeo")
    peer = json.loads(run("skopeo", "inspect", f"oci-archive:{archive}:1").stdout)
    with ocilab.open(f"oci-archive:{archive}:1") as image:
        assert str(image.manifest_digest) == peer["Digest"]
    with pytest.raises(InvalidInputError, match="already exists"):
        ocilab.write_oci_archive(scratch_layout, archive)


def test_archive_of_a_non_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "not-a-layout").mkdir()
    with pytest.raises(NotFoundError, match="no oci-layout file"):
        ocilab.write_oci_archive(tmp_path / "not-a-layout", tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()
