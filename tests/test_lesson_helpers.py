"""The lesson helpers of notebooks 02-03 (ocilab.present.lesson), the request table's query column, the storage plot's
labels, and the wasted_bytes check, against real tar, a real registry and the files on disk."""

from __future__ import annotations

import os
import stat
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

import ocilab
from ocilab.errors import InvalidInputError, NotFoundError
from ocilab.lab import noise, tar_members, upload_blobs, write_files
from ocilab.operations.registry_storage import storage_map
from ocilab.present.http import requests_table
from ocilab.stores.registry.recording import RecordingTransport


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> ocilab.Image:
    return ocilab.open(f"oci:{ocilab.busybox_layout(tmp_path_factory.mktemp('lesson') / 'busybox', tag='1')}:1")


def test_write_files_writes_text_bytes_and_copies_with_modes(tmp_path: Path) -> None:
    program = tmp_path / "program"
    program.write_bytes(b"#!/bin/sh\necho hi\n")
    program.chmod(0o755)
    tree = write_files(tmp_path / "tree", {"a/page.html": "<h1>hi</h1>\n", "raw": b"\x00\x01"})
    made = write_files(tmp_path / "context", {"Dockerfile": "FROM scratch\n", "bin": program, "tree": tree})
    assert made == tmp_path / "context"
    assert (made / "tree" / "a" / "page.html").read_text() == "<h1>hi</h1>\n"
    assert (made / "tree" / "raw").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(os.stat(made / "bin").st_mode) == 0o755
    assert subprocess.run([made / "bin"], capture_output=True, text=True, check=True).stdout == "hi\n"


@pytest.mark.parametrize("name", ["/etc/passwd", "../out", "a/../../out", ""])
def test_write_files_refuses_names_outside_and_writes_nothing(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="must be a relative name inside"):
        write_files(tmp_path / "site", {"ok.txt": "fine", name: "bad"})
    assert not (tmp_path / "site").exists() and not (tmp_path / "out").exists()


def test_write_files_refuses_a_missing_source_before_writing(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        write_files(tmp_path / "site", {"ok.txt": "fine", "gone": tmp_path / "nothing"})
    assert not (tmp_path / "site").exists()


def test_noise_is_seeded_and_does_not_compress() -> None:
    data = noise(1 << 20, seed="build tools")
    assert len(data) == 1 << 20 and data == noise(1 << 20, seed="build tools") != noise(1 << 20, seed="other")
    assert len(zlib.compress(data, 9)) > len(data)
    with pytest.raises(InvalidInputError, match="negative"):
        noise(-1)


def test_tar_members_shows_the_whiteout_as_tar_lists_it(busybox: ocilab.Image, tmp_path: Path) -> None:
    start = ocilab.Builder.from_image(busybox.reference)
    start.add_files({"/tmp/tools.bin": noise(4096)}).delete("/tmp/tools.bin").write(f"oci:{tmp_path}/out:1")
    image = ocilab.open(f"oci:{tmp_path}/out:1")
    members = tar_members(image, 3)
    assert list(members["name"]) == ["tmp", "tmp/.wh.tools.bin"] and list(members["type"]) == ["dir", "file"]
    blob = tmp_path / "out" / "blobs" / "sha256" / image.layers[3].descriptor.digest.encoded
    listed = subprocess.run(["tar", "-tzf", blob], capture_output=True, text=True, check=True).stdout.split()
    assert [name.rstrip("/") for name in listed] == list(members["name"])
    assert tar_members(image, 2)["size"].tolist()[-1] == 4096
    with pytest.raises(NotFoundError, match="no layer 4"):
        tar_members(image, 4)


def test_upload_blobs_then_the_table_shows_the_query_uncut(registry: Any, busybox: ocilab.Image) -> None:
    recorder = RecordingTransport()
    store = recorder.open(f"docker://{registry.host}/lesson/busybox:1")
    upload_blobs(store, busybox, *(layer.descriptor for layer in busybox.layers), busybox.manifest.config)
    assert all(store.has_blob(layer.descriptor) for layer in busybox.layers) and store.has_blob(busybox.manifest.config)
    table = requests_table(recorder.take())
    puts = table[table["method"] == "PUT"]
    assert len(puts) == 3
    for query, layer in zip(puts["query"], [*busybox.layers, None], strict=True):
        digest = (layer.descriptor if layer else busybox.manifest.config).digest
        assert query == f"_state=…&digest=sha256:{digest.encoded[:12]}…"
    assert all(len(path) < 50 and path.endswith("…") for path in puts["path"])  # upload IDs cut, as Location's
    assert "query" not in requests_table(recorder.take()).columns  # no request, no query


def test_the_storage_plot_labels_each_repositorys_own_and_shared_bytes(registry: Any, busybox: ocilab.Image) -> None:
    ocilab.copy(busybox.reference, f"docker://{registry.host}/lesson/a:1", quiet=True)
    hello = ocilab.Builder.from_image(busybox.reference).add_files({"/hello.txt": b"hello\n"})
    hello.write(f"docker://{registry.host}/lesson/b:1")
    storage = storage_map(registry.data_dir)
    ax = ocilab.plots.registry_storage(storage)
    labels = [text.get_text() for text in ax.texts]
    own_and_shared = storage.repository_bytes()
    for name, (own, shared) in own_and_shared.items():
        assert f"{ocilab.plots.human_size(own)} own + {ocilab.plots.human_size(shared)} shared" in labels, name
    assert "\n" in ax.get_title() and "\n" not in repr(ax)


def test_wasted_bytes_is_right_only_for_the_exact_count(busybox: ocilab.Image, tmp_path: Path) -> None:
    start = ocilab.Builder.from_image(busybox.reference)
    start.add_files({"/big": noise(10_000)}).add_files({"/big": b"small"}).write(f"oci:{tmp_path}/w:1")
    assert ocilab.check.wasted_bytes(10_000, f"oci:{tmp_path}/w:1")
    miss = ocilab.check.wasted_bytes(5, f"oci:{tmp_path}/w:1")
    assert not miss and "there are more" in miss.message
    assert "whole number" in ocilab.check.wasted_bytes("10000", f"oci:{tmp_path}/w:1").message
