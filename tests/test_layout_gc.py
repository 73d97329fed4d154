"""Layout GC: what index.json reaches stays (nested indexes, referrers), the rest goes; checked on disk and by umoci."""

from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import pytest

from ocilab.errors import NotFoundError, VerificationError
from ocilab.model import Descriptor, Digest
from ocilab.model import mediatype as mt
from ocilab.model.build import build_manifest, describe
from ocilab.operations.layout_gc import collect_layout
from ocilab.stores.layout_writer import TEMP_PREFIX, remove_layout_tag
from tests.conftest import require_tool, run
from tests.random_image import RandomImage, random_layer, write_random_image
from tests.test_layout_writer import skopeo_digest, snapshot

TwoImages = tuple[Path, RandomImage, RandomImage, str]


def blob_files(layout: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (layout / "blobs" / "sha256").iterdir()}


def put(layout: Path, data: bytes, media_type: str) -> Descriptor:
    """Write a blob by hand, as another tool would; its descriptor."""
    descriptor = Descriptor(media_type, Digest.of_bytes(data), len(data))
    (layout / "blobs" / "sha256" / descriptor.digest.encoded).write_bytes(data)
    return descriptor


def referrer(layout: Path, subject: RandomImage, note: bytes) -> tuple[Descriptor, set[str]]:
    """An artifact manifest (not in index.json) whose subject is ``subject``; its descriptor and every blob it uses."""
    config = put(layout, b"{}", mt.OCI_EMPTY)
    payload = put(layout, note, "text/plain")
    size = (layout / "blobs" / "sha256" / subject.digest.removeprefix("sha256:")).stat().st_size
    subject_descriptor = Descriptor(mt.OCI_MANIFEST, Digest.parse(subject.digest), size)
    manifest = build_manifest(config, [payload], subject=subject_descriptor, artifact_type="application/x-ocilab-note")
    descriptor = put(layout, manifest.raw, mt.OCI_MANIFEST)
    assert descriptor == describe(manifest)
    return descriptor, {str(config.digest), str(payload.digest), str(descriptor.digest)}


@pytest.fixture
def two_images(tmp_path: Path) -> TwoImages:
    """A layout with two images sharing their base layer; the shared layer's digest."""
    shared = random_layer(random.Random(7), files=3, size=2048)
    layout = tmp_path / "layout"
    first = write_random_image(layout, seed=1, tag="a", shared_layers=[shared])
    second = write_random_image(layout, seed=2, tag="b", shared_layers=[shared])
    shared_digest = str(Digest.of_bytes(gzip.compress(shared, mtime=0)))
    assert first.layers[0] == second.layers[0] == shared_digest
    return layout, first, second, shared_digest


def test_nothing_to_collect_in_a_tidy_layout(two_images: TwoImages) -> None:
    layout, first, second, _ = two_images
    before = snapshot(layout)
    report = collect_layout(layout)
    assert report.removed == () and report.blobs_before == report.blobs_after == len(first.blobs | second.blobs)
    assert snapshot(layout) == before


def test_removing_a_tag_frees_exactly_the_unshared_blobs(
    two_images: TwoImages,
) -> None:
    layout, first, second, shared = two_images
    remove_layout_tag(layout, "a")
    unshared = first.blobs - second.blobs
    assert shared not in unshared and len(unshared) == 4  # manifest, config, two own layers

    before = snapshot(layout)
    dry = collect_layout(layout, dry_run=True)
    assert snapshot(layout) == before, "a dry run removed something"
    assert {str(digest) for digest, _ in dry.removed} == unshared

    sizes = {f"sha256:{p.name}": p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir()}
    report = collect_layout(layout)
    assert {str(digest) for digest, _ in report.removed} == unshared
    assert blob_files(layout) == second.blobs
    assert shared in blob_files(layout)
    assert report.bytes_before == sum(sizes.values())
    assert report.bytes_after == sum(sizes[d] for d in second.blobs)
    assert (report.blobs_before, report.blobs_after) == (len(sizes), len(second.blobs))
    assert skopeo_digest(f"oci:{layout}:b") == second.digest
    document = report.to_json()
    assert document["removed"] == [{"digest": str(d), "size": s} for d, s in report.removed]
    assert (document["blobs_after"], document["bytes_after"]) == (report.blobs_after, report.bytes_after)


def test_agrees_with_umoci_gc(two_images: TwoImages, tmp_path: Path) -> None:
    layout, *_ = two_images
    remove_layout_tag(layout, "a")
    peer = tmp_path / "peer"
    shutil.copytree(layout, peer)
    require_tool("umoci")
    run("umoci", "gc", "--layout", peer)
    collect_layout(layout)
    assert blob_files(layout) == blob_files(peer)


def test_a_referrer_and_what_it_reaches_are_kept(two_images: TwoImages) -> None:
    """image-spec manifest.md: subject "specifies a descriptor of another manifest ... This value defines a weak
    association to a separate Merkle Directed Acyclic Graph (DAG) structure"; kept while its subject is."""
    layout, first, second, _ = two_images
    kept_note, kept_blobs = referrer(layout, second, b"signed b")
    _, orphan_blobs = referrer(layout, first, b"signed a")
    remove_layout_tag(layout, "a")
    collect_layout(layout)
    on_disk = blob_files(layout)
    assert kept_blobs <= on_disk
    assert not (orphan_blobs - kept_blobs) & on_disk  # the empty config is shared with the kept note
    assert on_disk == second.blobs | kept_blobs
    assert str(kept_note.digest) in on_disk


def test_a_nested_index_keeps_its_children(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    multi = write_random_image(layout, seed=3, tag="m", platforms=("linux/amd64", "linux/arm64"))
    single = write_random_image(layout, seed=4, tag="s")
    remove_layout_tag(layout, "s")
    report = collect_layout(layout)
    assert blob_files(layout) == multi.blobs
    assert {str(d) for d, _ in report.removed} == single.blobs - multi.blobs


def test_leftover_temporary_files_are_removed(two_images: TwoImages) -> None:
    layout, *_ = two_images
    (layout / f"{TEMP_PREFIX}abc123").write_bytes(b"half a layer")
    (layout / "notes.txt").write_text("not ours to remove")
    assert collect_layout(layout, dry_run=True).temporary_files == (f"{TEMP_PREFIX}abc123",)
    assert (layout / f"{TEMP_PREFIX}abc123").exists()
    report = collect_layout(layout)
    assert report.temporary_files == (f"{TEMP_PREFIX}abc123",) and report.removed == ()
    assert not (layout / f"{TEMP_PREFIX}abc123").exists() and (layout / "notes.txt").exists()


def test_a_corrupt_kept_manifest_stops_the_collection(two_images: TwoImages) -> None:
    layout, first, *_ = two_images
    remove_layout_tag(layout, "b")
    manifest = layout / "blobs" / "sha256" / first.digest.removeprefix("sha256:")
    manifest.write_bytes(manifest.read_bytes().replace(b'"layers"', b'"layerz"'))
    before = snapshot(layout)
    with pytest.raises(VerificationError, match=first.digest):
        collect_layout(layout)
    assert snapshot(layout) == before


def test_not_a_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(NotFoundError, match="not an OCI image layout"):
        collect_layout(tmp_path / "dir")
    with pytest.raises(NotFoundError, match="no such directory"):
        collect_layout(tmp_path / "absent")
