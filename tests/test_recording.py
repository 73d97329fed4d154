"""The recording transport and its table (notebook 03), against a real CNCF registry; the directory tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ocilab
from ocilab.errors import InvalidInputError, NotFoundError
from ocilab.present.dirtree import directory_tree
from ocilab.present.http import requests_table
from ocilab.stores.registry.recording import RecordingTransport


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ocilab.Image:
    return ocilab.open(f"oci:{ocilab.busybox_layout(tmp_path_factory.mktemp('rec') / 'busybox', tag='1')}:1")


def test_a_push_step_by_step_is_recorded_request_by_request(registry: Any, image: ocilab.Image) -> None:
    recorder = RecordingTransport()
    store = recorder.open(f"docker://{registry.host}/recorded/busybox:1")
    layer = image.layers[0].descriptor
    assert not store.has_blob(layer)
    [head] = recorder.take()
    assert (head.method, head.path, head.status) == ("HEAD", f"/v2/recorded/busybox/blobs/{layer.digest}", 404)
    store.put_blob(layer, image.store.open_blob(layer))
    post, put = recorder.take()
    assert (post.method, post.status, post.headers["Range"]) == ("POST", 202, "0-0")
    assert post.headers["Location"].split("?")[0].endswith(put.path.split("?")[0])
    assert (put.method, put.status, put.sent) == ("PUT", 201, layer.size)
    assert put.headers["Docker-Content-Digest"] == str(layer.digest) and f"digest={layer.digest}" in put.path
    assert recorder.exchanges == []
    table = requests_table([head, post, put])
    assert list(table["method"]) == ["HEAD", "POST", "PUT"] and list(table["status"]) == [404, 202, 201]
    assert list(table["sent"]) == ["", "", "1.0 MiB"]
    assert table["Location"][1].startswith("/v2/recorded/busybox/blobs/uploads/") and "_state=…" in table["Location"][1]
    assert table["path"][0] == f"/v2/recorded/busybox/blobs/sha256:{layer.digest.encoded[:12]}…"


def test_a_mount_is_one_post_and_what_skopeo_reads_is_unchanged(registry: Any, image: ocilab.Image) -> None:
    source = f"docker://{registry.host}/recorded/source:1"
    ocilab.copy(f"{image.reference}", source, quiet=True)
    recorder = RecordingTransport()
    target = recorder.open(f"docker://{registry.host}/recorded/mounted:1")
    layer = image.layers[0].descriptor
    assert target.mount_blob(layer, ocilab.open(source).store)
    [mount] = recorder.take()
    assert (mount.method, mount.status, mount.sent) == ("POST", 201, 0)
    assert mount.path.endswith(f"?mount={layer.digest}&from=recorded/source")
    assert "Range" not in requests_table([mount]).columns  # columns no exchange has are left out


def test_only_the_kits_loopback_registry_is_recorded() -> None:
    with pytest.raises(InvalidInputError, match="recording is for the kit's registry on 127.0.0.1"):
        RecordingTransport().open("docker://registry.example.com/busybox:1")


def test_the_directory_tree_cuts_hex_names_and_shows_links(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    link = tmp_path / "repo" / "_layers" / "sha256" / ("ab" * 32) / "link"
    link.parent.mkdir(parents=True)
    link.write_text(digest)
    (tmp_path / "repo" / "big").write_bytes(b"x" * 2048)
    assert repr(directory_tree(tmp_path / "repo")).splitlines() == [
        "repo/",
        "  _layers/",
        "    sha256/",
        "      abababababab…/",
        f"        link -> {digest}",
        "  big  2.0 KiB",
    ]
    with pytest.raises(NotFoundError, match="no such directory"):
        directory_tree(tmp_path / "absent")
