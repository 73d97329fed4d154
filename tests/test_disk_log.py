"""DiskLog: deleting a tag or a manifest leaves every blob file on disk; only the collectors remove them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ocilab
from ocilab.operations.layout_gc import collect_layout
from ocilab.operations.registry_server import RegistryServer, find_registry_binary
from ocilab.operations.registry_storage import collect_garbage, storage_map
from ocilab.present.disk import DiskLog, blobs, layout_usage
from tests.conftest import require


def files(top: Path) -> dict[str, int]:
    """Every regular file under ``top`` named ``data`` (registry) or any name (layout blobs): path -> size."""
    return {entry: os.path.getsize(entry) for entry in map(str, top.rglob("*")) if os.path.isfile(entry)}


@pytest.fixture()
def two_images(tmp_path: Path) -> Path:
    """busybox as tag 1 and an image FROM it (one more layer) as tag app, in one layout."""
    layout = ocilab.busybox_layout(tmp_path / "layout", tag="1")
    app = ocilab.Builder.from_image(f"oci:{layout}:1").add_files({"/srv/index.html": b"<h1>hi</h1>\n"})
    app.write(f"oci:{layout}:app")
    return layout


def test_a_removed_layout_tag_frees_nothing_until_the_collector_runs(two_images: Path) -> None:
    log = DiskLog.layout(two_images)
    log.note("two tags")
    on_disk = files(two_images / "blobs")
    ocilab.remove(f"oci:{two_images}:1")
    log.note("tag removed")
    assert files(two_images / "blobs") == on_disk
    report = collect_layout(two_images)
    frame = log.note("collected")
    after = files(two_images / "blobs")
    assert list(frame.index) == ["two tags", "tag removed", "collected"]
    assert list(frame["blobs"]) == [len(on_disk), len(on_disk), len(after)] == [7, 7, 5]
    assert list(frame["a tag reaches"]) == [7, 5, 5] and list(frame["GC keeps"]) == [7, 5, 5]
    assert frame["on disk"].iloc[1] == frame["on disk"].iloc[0]
    assert layout_usage(two_images).bytes == sum(after.values()) == report.bytes_after


def test_a_deleted_registry_manifest_stays_on_disk_and_its_shared_layers_survive_gc(
    two_images: Path, tmp_path: Path
) -> None:
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    with RegistryServer(tmp_path / "registry") as registry:
        ocilab.copy(f"oci:{two_images}:1", f"docker://{registry.host}/demo/busybox:1", quiet=True)
        ocilab.copy(f"oci:{two_images}:app", f"docker://{registry.host}/demo/app:1", quiet=True)
        log = DiskLog.registry(registry.data_dir)
        log.note("pushed")
        before = files(registry.data_dir / "docker/registry/v2/blobs")
        ocilab.remove(f"docker://{registry.host}/demo/busybox:1")
        frame = log.note("deleted")
        assert files(registry.data_dir / "docker/registry/v2/blobs") == before
        table = blobs(storage_map(registry.data_dir))
        unreferenced = set(table.index[~table["referenced"]])
        busybox = ocilab.open(f"oci:{two_images}:1")
        assert unreferenced == {str(busybox.manifest_digest)[:19], str(busybox.config_digest)[:19]}
        assert table.loc[str(busybox.manifest_digest)[:19], "type"] == "-"
        collection = collect_garbage(registry.data_dir)
        frame = log.note("collected")
    assert list(frame["blobs"]) == [7, 7, 5] and list(frame["GC keeps"]) == [7, 5, 5]
    assert {blob.digest[:19] for blob in collection.removed} == unreferenced
    survivors = {blob.digest for blob in collection.after.blobs}
    assert {str(layer.digest) for layer in busybox.layers} <= survivors
    assert len(files(registry.data_dir / "docker/registry/v2/blobs")) == 5


def test_a_place_that_is_not_a_layout_or_registry_is_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ocilab.OcilabError):
        DiskLog.layout(tmp_path / "missing").note("x")
    with pytest.raises(ocilab.OcilabError, match="no registry data directory"):
        DiskLog.registry(tmp_path / "missing").note("x")
