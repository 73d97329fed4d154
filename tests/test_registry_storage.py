"""The registry's storage on disk, mapped running or not, and its GC; checked against skopeo and the files."""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from ocilab.operations.registry_server import find_registry_binary
from ocilab.operations.registry_storage import collect_garbage, storage_map
from ocilab.present import plots
from tests.conftest import require, require_tool, run
from tests.random_image import RandomImage, random_layer, write_random_image
from tests.test_registry_cli import kill_registries, ocilab_json

SHARED_LAYER = random_layer(random.Random(99), files=4, size=8192)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RandomImage]:
    """Three seeded images in one layout: ``a`` and ``b`` share their first layer, ``c`` shares nothing."""
    layout = tmp_path_factory.mktemp("images") / "layout"
    return {
        "a": write_random_image(layout, 1, tag="a", shared_layers=[SHARED_LAYER]),
        "b": write_random_image(layout, 2, tag="b", shared_layers=[SHARED_LAYER]),
        "c": write_random_image(layout, 3, tag="c"),
    }


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``ocilab registry up`` on a data dir in tmp_path (its ``--json`` answer); killed at teardown whatever happens."""
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    require_tool("skopeo")
    data = tmp_path / "data"
    try:
        yield ocilab_json("registry", "up", "--data", data)
    finally:
        kill_registries(data)


def push(image: RandomImage, registry: dict[str, Any], target: str) -> None:
    run(
        "skopeo", "copy", "--quiet", "--dest-tls-verify=false", image.reference, f"docker://{registry['host']}/{target}"
    )


def skopeo_digest(registry: dict[str, Any], target: str) -> str:
    raw = run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry['host']}/{target}").stdout
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def blob_files(data_dir: Path) -> dict[str, int]:
    """``sha256:<hex>`` -> size of every blob data file on disk."""
    root = data_dir / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{data.parent.name}": data.stat().st_size for data in root.glob("*/*/data")}


def ls(registry: dict[str, Any]) -> dict[str, Any]:
    return ocilab_json("registry", "ls", "--data", registry["data_dir"])


def test_ls_lists_exactly_the_tags_skopeo_reports_and_the_blob_files(
    registry: dict[str, Any], images: dict[str, RandomImage]
) -> None:
    push(images["a"], registry, "ocilab/a:1")
    push(images["a"], registry, "ocilab/a:latest")
    push(images["b"], registry, "team/tools/b:1")
    push(images["c"], registry, "c:1")
    listed = ls(registry)

    expected_tags = {}
    for name in ("ocilab/a", "team/tools/b", "c"):
        tags = json.loads(
            run("skopeo", "list-tags", "--tls-verify=false", f"docker://{registry['host']}/{name}").stdout
        )
        expected_tags[name] = {tag: skopeo_digest(registry, f"{name}:{tag}") for tag in tags["Tags"]}
    assert {r["name"]: r["tags"] for r in listed["repositories"]} == expected_tags
    assert expected_tags["ocilab/a"] == {"1": images["a"].digest, "latest": images["a"].digest}

    on_disk = blob_files(Path(registry["data_dir"]))
    assert {b["digest"]: b["size"] for b in listed["blobs"]} == on_disk
    assert set(on_disk) == images["a"].blobs | images["b"].blobs | images["c"].blobs
    by_name = {r["name"]: r for r in listed["repositories"]}
    for name, image in (("ocilab/a", images["a"]), ("team/tools/b", images["b"]), ("c", images["c"])):
        assert by_name[name]["manifests"] == [image.digest]
        assert set(by_name[name]["layers"]) == image.blobs - {image.digest}  # the layers and the config
    assert all(b["referenced"] and b["tagged"] for b in listed["blobs"])
    assert listed["dangling_links"] == []


def test_a_blob_shared_by_two_repositories_is_stored_and_counted_once(
    registry: dict[str, Any], images: dict[str, RandomImage]
) -> None:
    push(images["a"], registry, "one/a:1")
    push(images["b"], registry, "two/b:1")
    shared = images["a"].layers[0]
    assert shared == images["b"].layers[0]
    listed = ls(registry)
    on_disk = blob_files(Path(registry["data_dir"]))
    [entry] = [b for b in listed["blobs"] if b["digest"] == shared]
    assert entry["repositories"] == ["one/a", "two/b"] and entry["shared"] is True
    assert entry["media_type"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    totals = listed["totals"]
    assert totals["blobs"] == len(on_disk) and totals["bytes"] == sum(on_disk.values())
    assert totals["shared_blobs"] == 1 and totals["shared_bytes"] == on_disk[shared]
    assert totals["repository_bytes_sum"] == totals["bytes"] + on_disk[shared]

    storage = storage_map(Path(registry["data_dir"]))
    own_a = sum(on_disk[d] for d in images["a"].blobs - {shared})
    assert storage.repository_bytes() == {
        "one/a": (own_a, on_disk[shared]),
        "two/b": (sum(on_disk[d] for d in images["b"].blobs - {shared}), on_disk[shared]),
    }
    frames = storage.frames()
    assert list(frames["tags"].itertuples(index=False, name=None)) == [
        ("one/a", "1", images["a"].digest),
        ("two/b", "1", images["b"].digest),
    ]
    assert frames["blobs"]["size"].sum() == totals["bytes"]
    assert frames["repositories"]["own_bytes"].tolist() == [own_a, storage.repository_bytes()["two/b"][0]]


def test_gc_removes_exactly_the_blobs_no_remaining_manifest_references(
    registry: dict[str, Any], images: dict[str, RandomImage], tmp_path: Path
) -> None:
    """distribution's garbage-collect: "any blobs which are not referenced by a manifest are removed"."""
    a, b = images["a"], images["b"]
    push(a, registry, "lab/a:1")
    push(b, registry, "lab/b:1")
    data = Path(registry["data_dir"])
    response = requests.delete(f"{registry['url']}/v2/lab/a/manifests/{a.digest}", timeout=5)
    assert response.status_code == 202
    before = blob_files(data)
    doomed = a.blobs - b.blobs  # a's manifest, config and own layers; not the layer b shares
    assert {blob.digest for blob in storage_map(data).blobs if not blob.referenced} == doomed

    dry = ocilab_json("registry", "gc", "--dry-run", "--data", data)
    assert {r["digest"] for r in dry["removed"]} == doomed and dry["dry_run"] is True and dry["restarted"] is False
    assert blob_files(data) == before

    collected = ocilab_json("registry", "gc", "--data", data)
    after = blob_files(data)
    assert set(after) == set(before) - doomed
    assert {r["digest"] for r in collected["removed"]} == doomed
    assert collected["removed_bytes"] == sum(before[d] for d in doomed)
    assert collected["before"] == {"blobs": len(before), "bytes": sum(before.values())}
    assert collected["after"] == {"blobs": len(after), "bytes": sum(after.values())}
    assert a.layers[0] in after  # shared with b, which is still tagged

    # The registry was stopped for the collector and is back, serving b whole.
    assert collected["restarted"] is True
    status = ocilab_json("registry", "status", "--data", data)
    assert status["answers"] is True and status["url"] == registry["url"] and status["pid"] != registry["pid"]
    run(
        "skopeo",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{registry['host']}/lab/b:1",
        f"oci:{tmp_path / 'pulled'}:b",
    )
    # The collector removes blobs, not the repository's links to them.
    assert {d["digest"] for d in ls(registry)["dangling_links"]} == doomed - {a.digest}


def test_delete_untagged_removes_the_manifests_a_tag_moved_away_from(
    registry: dict[str, Any], images: dict[str, RandomImage]
) -> None:
    a, c = images["a"], images["c"]
    push(a, registry, "moving/x:1")
    push(c, registry, "moving/x:1")  # the tag now names c; a's manifest stays, untagged
    data = Path(registry["data_dir"])
    storage = storage_map(data)
    states = {blob.digest: (blob.referenced, blob.tagged) for blob in storage.blobs}
    assert {d for d, state in states.items() if state == (True, False)} == a.blobs
    assert {d for d, state in states.items() if state == (True, True)} == c.blobs

    kept = collect_garbage(data)
    assert kept.removed == () and set(blob_files(data)) == a.blobs | c.blobs
    untagged = collect_garbage(data, delete_untagged=True)
    assert {blob.digest for blob in untagged.removed} == a.blobs
    assert set(blob_files(data)) == c.blobs
    assert untagged.restarted and requests.get(f"{registry['url']}/v2/", timeout=5).status_code == 200


def test_an_upload_in_progress_is_counted_apart(registry: dict[str, Any]) -> None:
    begun = requests.post(f"{registry['url']}/v2/deep/er/name/blobs/uploads/", timeout=5)
    chunk = b"x" * 1000
    patched = requests.patch(urljoin(registry["url"], begun.headers["Location"]), data=chunk, timeout=5)
    assert patched.status_code == 202
    listed = ls(registry)
    assert listed["repositories"] == [
        {"name": "deep/er/name", "tags": {}, "manifests": [], "layers": [], "uploads": 1, "upload_bytes": len(chunk)}
    ]
    assert listed["blobs"] == [] and listed["totals"]["upload_bytes"] == len(chunk)


def test_a_damaged_tree_is_mapped_without_trusting_it(tmp_path: Path) -> None:
    """Links that hold no digest, or the wrong one, are ignored; a manifest that fails its digest lists nothing."""
    root = tmp_path / "docker/registry/v2"
    layer = b"not really a layer"
    layer_digest = hashlib.sha256(layer).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "layers": [{"digest": f"sha256:{layer_digest}"}]}).encode()
    lying = "0" * 64  # a manifest stored under a digest it does not have
    for hex_digest, content in ((layer_digest, layer), (lying, manifest)):
        (root / "blobs/sha256" / hex_digest[:2] / hex_digest).mkdir(parents=True)
        (root / "blobs/sha256" / hex_digest[:2] / hex_digest / "data").write_bytes(content)
    repository = root / "repositories/broken"
    for path, text in (
        ("_manifests/revisions/sha256/" + lying + "/link", f"sha256:{lying}"),
        ("_manifests/tags/1/current/link", "garbage"),
        ("_layers/sha256/" + layer_digest + "/link", f"sha256:{'1' * 64}"),
    ):
        (repository / path).parent.mkdir(parents=True)
        (repository / path).write_text(text)
    storage = storage_map(tmp_path)
    [mapped] = storage.repositories
    assert mapped.tags == {} and mapped.manifests == (f"sha256:{lying}",) and mapped.layers == ()
    blobs = {blob.digest: blob for blob in storage.blobs}
    assert blobs[f"sha256:{layer_digest}"].referenced is False
    assert blobs[f"sha256:{lying}"].referenced is True and blobs[f"sha256:{lying}"].media_type is None


def test_plots_render_headless_and_return_their_axes(registry: dict[str, Any], images: dict[str, RandomImage]) -> None:
    from matplotlib.figure import Figure

    push(images["a"], registry, "p/a:1")
    push(images["b"], registry, "p/b:1")
    data = Path(registry["data_dir"])
    storage = storage_map(data)
    ax = plots.registry_storage(storage)
    widths = [patch.get_width() for patch in ax.patches]  # the "only here" bars, then the "shared" bars
    assert list(zip(widths[:2], widths[2:], strict=True)) == list(storage.repository_bytes().values())
    assert [label.get_text() for label in ax.get_yticklabels()] == ["p/a", "p/b"]
    assert ax.get_title().startswith("How much does each repository store?")
    ax.figure.savefig(io.BytesIO(), format="png")

    requests.delete(f"{registry['url']}/v2/p/a/manifests/{images['a'].digest}", timeout=5)
    collection = collect_garbage(data)
    mine = Figure().add_subplot()
    assert plots.gc_before_after(collection.before, collection.after, ax=mine) is mine
    heights = [patch.get_height() for patch in mine.patches]  # referenced before/after, then unreferenced
    assert heights[0] + heights[2] == collection.before.bytes and heights[1] + heights[3] == collection.after.bytes
    assert heights[3] == 0 and heights[2] == collection.removed_bytes
    mine.figure.savefig(io.BytesIO(), format="png")
