"""The oci: writer: new and existing layouts, all or nothing, tags replaced or kept; removal of a tag.

image-spec image-layout.md: "The index.json file ... the entry point for
references and descriptors of the image-layout"; blobs live at
``blobs/<alg>/<encoded>``. The helpers here (a minimal image walk, file
hashing) are shared by the other writer tests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import InvalidInputError, NotFoundError, VerificationError
from ocilab.model import Descriptor, Digest, Index, parse_root
from ocilab.stores.base import Store, Writer
from ocilab.stores.layout import REF_NAME, open_layout
from ocilab.stores.layout_writer import TEMP_PREFIX, open_layout_writer, remove_layout_tag
from ocilab.stores.transports import open_destination
from tests.conftest import BUSYBOX, require, require_tool, run
from tests.random_image import RandomImage, write_random_image

# With this machine's busybox (notebook 00 shows them). The manifest changed when busybox_layout moved onto
# ocilab.Builder (its gzip is compressor.py's zlib-ng level 6); the tar bytes (diff_ids) and the config did not.
BUSYBOX_SHA256 = "3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6"
BUSYBOX_MANIFEST = "sha256:f406589e51fe049a3f8122ebb955a1982a79edec87f663d1abdd43f450199516"
BUSYBOX_CONFIG = "sha256:1d10763b4f38136400b918bc4be2d9a756cf3d08b802ffb543d4b0c049146e51"


# ------------------------------------------------------------------------------------------ helpers (shared)


def copy_image(store: Store, writer: Writer) -> Descriptor:
    """Put the store's root image into ``writer`` (children before parents) and name it; the root."""
    root = store.root()

    def put(descriptor: Descriptor) -> None:
        raw = store.read_document(descriptor, "document")
        document = parse_root(raw, str(descriptor.digest), descriptor.media_type)
        if isinstance(document, Index):
            for child in document.manifests:
                put(child)
        else:
            for blob in (document.config, *document.layers):
                if not writer.has_blob(blob):
                    with store.open_blob(blob) as reader:
                        writer.put_blob(blob, reader)
        writer.put_manifest(descriptor, raw)

    put(root)
    writer.set_root(root)
    return root


def copy_to(image: RandomImage, destination: str) -> Descriptor:
    """Copy a random image to a transport string, committing; the root descriptor."""
    with open_layout(image.layout, image.tag) as store, open_destination(destination) as writer:
        return copy_image(store, writer)


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of ``path`` itself), by relative name; {} when absent."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    if not path.exists():
        return {}
    return {
        str(item.relative_to(path)): hashlib.sha256(item.read_bytes()).hexdigest() if item.is_file() else "dir"
        for item in sorted(path.rglob("*"))
    }


def fail_midway(image: RandomImage, destination: str) -> None:
    """Start writing ``image`` to ``destination``, then put a layer whose bytes do not match: VerificationError."""
    with open_layout(image.layout, image.tag) as store, open_destination(destination) as writer:
        manifest = parse_root(store.read_document(store.root(), "manifest"), "manifest")
        assert not isinstance(manifest, Index)
        good, bad = manifest.layers[0], manifest.layers[1]
        with store.open_blob(good) as reader:
            writer.put_blob(good, reader)
        with pytest.raises(VerificationError, match=str(bad.digest)):
            writer.put_blob(bad, io.BytesIO(os.urandom(bad.size)))  # right size, wrong bytes
        with pytest.raises(VerificationError, match="more than the expected"):
            writer.put_blob(bad, io.BytesIO(os.urandom(bad.size + 1)))
        raise VerificationError("the copy gives up")


def skopeo_digest(reference: str) -> str:
    require_tool("skopeo")
    return str(json.loads(run("skopeo", "inspect", reference).stdout)["Digest"])


def index_entries(layout: Path) -> list[dict[str, object]]:
    return list(json.loads((layout / "index.json").read_text())["manifests"])


@pytest.fixture
def source(tmp_path: Path) -> RandomImage:
    return write_random_image(tmp_path / "source", seed=11, tag="src")


# ------------------------------------------------------------------------------------------ the busybox builder


def test_busybox_layout_keeps_its_digests(tmp_path: Path) -> None:
    """LayoutWriter.put_image builds through ocilab.model.build, byte for byte what it wrote before."""
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    layout = ocilab.busybox_layout(tmp_path / "busybox", tag="1")
    with ocilab.open(f"oci:{layout}:1") as image:
        layers = [layer.digest for layer in image.manifest.layers]
        config = json.loads(image.config.raw)
        manifest_raw, config_raw = image.manifest.raw, image.config.raw
        manifest_digest, config_digest = image.manifest_digest, image.config_digest
    # The old serialisation, by hand: compact json.dumps of the config and of the manifest dict.
    assert config_raw == json.dumps(config, separators=(",", ":")).encode()
    oci = "application/vnd.oci.image"
    sizes = {d: (layout / "blobs" / "sha256" / d.encoded).stat().st_size for d in layers}
    old_manifest = {
        "schemaVersion": 2,
        "mediaType": f"{oci}.manifest.v1+json",
        "config": {"mediaType": f"{oci}.config.v1+json", "digest": str(config_digest), "size": len(config_raw)},
        "layers": [{"mediaType": f"{oci}.layer.v1.tar+gzip", "digest": str(d), "size": sizes[d]} for d in layers],
    }
    assert manifest_raw == json.dumps(old_manifest, separators=(",", ":")).encode()
    if hashlib.sha256(BUSYBOX.read_bytes()).hexdigest() == BUSYBOX_SHA256 and os.uname().machine == "x86_64":
        assert (str(manifest_digest), str(config_digest)) == (BUSYBOX_MANIFEST, BUSYBOX_CONFIG)


# ------------------------------------------------------------------------------------------ round trips


def test_new_layout_round_trip_agrees_with_skopeo(source: RandomImage, tmp_path: Path) -> None:
    destination = tmp_path / "new" / "layout"
    root = copy_to(source, f"oci:{destination}:v1")
    assert str(root.digest) == source.digest
    assert ocilab.validate(f"oci:{destination}:v1").ok
    assert skopeo_digest(f"oci:{destination}:v1") == source.digest
    assert {f"sha256:{p.name}" for p in (destination / "blobs" / "sha256").iterdir()} == source.blobs
    assert [entry["annotations"] for entry in index_entries(destination)] == [{REF_NAME: "v1"}]
    assert not [p for p in destination.parent.iterdir() if p.name != "layout"], "temporary directory left behind"
    require_tool("umoci")
    run("umoci", "stat", "--image", f"{destination}:v1")


def test_empty_directory_becomes_a_layout(source: RandomImage, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    copy_to(source, f"oci:{tmp_path / 'empty'}:v1")
    assert skopeo_digest(f"oci:{tmp_path / 'empty'}:v1") == source.digest


def test_existing_layout_keeps_its_other_images(tmp_path: Path) -> None:
    layout = tmp_path / "shared"
    first = write_random_image(layout, seed=1, tag="a")
    first_entry = index_entries(layout)[0]
    second = write_random_image(tmp_path / "second", seed=2, tag="b")
    copy_to(second, f"oci:{layout}:b")
    assert index_entries(layout)[0] == first_entry
    assert skopeo_digest(f"oci:{layout}:a") == first.digest
    assert skopeo_digest(f"oci:{layout}:b") == second.digest
    assert ocilab.validate(f"oci:{layout}:a").ok and ocilab.validate(f"oci:{layout}:b").ok
    assert not [p.name for p in layout.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_same_tag_is_replaced_and_untagged_entries_are_added(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_random_image(layout, seed=1, tag="a")
    write_random_image(layout, seed=2, tag="b")
    third = write_random_image(tmp_path / "third", seed=3, tag="c")
    copy_to(third, f"oci:{layout}:a")
    entries = index_entries(layout)
    assert [(e["annotations"][REF_NAME], e["digest"]) for e in entries][-1] == ("a", third.digest)  # type: ignore[index]
    assert sorted(e["annotations"][REF_NAME] for e in entries) == ["a", "b"]  # type: ignore[index]
    copy_to(third, f"oci:{layout}")
    copy_to(third, f"oci:{layout}")  # the same untagged entry is not listed twice
    untagged = [e for e in index_entries(layout) if "annotations" not in e]
    assert [e["digest"] for e in untagged] == [third.digest]
    with open_layout(layout) as store:
        assert store.tags() == ["b", "a"]


def test_an_index_and_its_children_are_written(tmp_path: Path) -> None:
    multi = write_random_image(tmp_path / "multi", seed=5, tag="m", platforms=("linux/amd64", "linux/arm64"))
    copy_to(multi, f"oci:{tmp_path / 'out'}:m")
    assert {f"sha256:{p.name}" for p in (tmp_path / "out" / "blobs" / "sha256").iterdir()} == multi.blobs
    require_tool("skopeo")
    raw = run("skopeo", "inspect", "--raw", f"oci:{tmp_path / 'out'}:m").stdout.encode()
    assert str(Digest.of_bytes(raw)) == multi.digest


# ------------------------------------------------------------------------------------------ all or nothing


def test_failed_write_to_a_new_layout_leaves_nothing(source: RandomImage, tmp_path: Path) -> None:
    (tmp_path / "parent").mkdir()
    with pytest.raises(VerificationError, match="gives up"):
        fail_midway(source, f"oci:{tmp_path / 'parent' / 'layout'}:v1")
    assert list((tmp_path / "parent").iterdir()) == []


def test_failed_write_to_an_existing_layout_leaves_it_byte_identical(source: RandomImage, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_random_image(layout, seed=1, tag="a")
    before = snapshot(layout)
    with pytest.raises(VerificationError, match="gives up"):
        fail_midway(source, f"oci:{layout}:a")
    assert snapshot(layout) == before


def test_abort_removes_only_the_blobs_it_added(source: RandomImage, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    existing = write_random_image(layout, seed=1, tag="a")
    before = snapshot(layout)
    writer = open_layout_writer(layout, "b")
    with open_layout(existing.layout, "a") as store:
        shared = parse_root(store.read_document(store.root(), "m"), "m")
        assert not isinstance(shared, Index)
        with store.open_blob(shared.config) as reader:
            writer.put_blob(shared.config, reader)  # already there: not the writer's to remove
    data = b"a blob only this writer adds"
    writer.put_blob(Descriptor("application/octet-stream", Digest.of_bytes(data), len(data)), io.BytesIO(data))
    assert len(snapshot(layout)) == len(before) + 1
    writer.abort()
    writer.abort()
    assert snapshot(layout) == before


def test_nothing_is_written_before_the_first_put(tmp_path: Path) -> None:
    writer = open_layout_writer(tmp_path / "later", "v1")
    writer.close()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ bad input


def test_a_file_is_refused_before_any_write(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a layout")
    with pytest.raises(InvalidInputError, match=r"file: already exists and is not a directory"):
        open_layout_writer(tmp_path / "file", "v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_directory_that_is_not_a_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "precious").write_text("keep me")
    with pytest.raises(InvalidInputError, match=r"dir: already exists and is neither an OCI image layout"):
        open_destination(f"oci:{tmp_path / 'dir'}:v1")
    assert snapshot(tmp_path) == {"dir": "dir", "dir/precious": hashlib.sha256(b"keep me").hexdigest()}


def test_an_unwritable_place_is_one_clear_error(source: RandomImage, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    for destination in (f"oci:{tmp_path / 'file' / 'layout'}", f"oci-archive:{tmp_path / 'file' / 'image.tar'}"):
        with pytest.raises(InvalidInputError, match=r"file/(layout|image.tar): cannot write there \(File exists\)"):
            copy_to(source, destination)
    assert (tmp_path / "file").read_text() == "a file, not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "source"]


def test_tagging_a_manifest_that_was_not_put_is_refused(tmp_path: Path) -> None:
    writer = open_layout_writer(tmp_path / "layout", "v1")
    with pytest.raises(NotFoundError, match="was not put"):
        writer.set_root(Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of_bytes(b"x"), 1))
    writer.abort()


# ------------------------------------------------------------------------------------------ removing a tag


def test_remove_layout_tag_drops_the_entry_and_keeps_the_blobs(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    first = write_random_image(layout, seed=1, tag="a")
    second = write_random_image(layout, seed=2, tag="b")
    blobs = snapshot(layout / "blobs")
    removed = remove_layout_tag(layout, "a")
    assert (str(removed.digest), removed.annotations[REF_NAME]) == (first.digest, "a")
    assert [e["annotations"] for e in index_entries(layout)] == [{REF_NAME: "b"}]
    assert snapshot(layout / "blobs") == blobs
    assert skopeo_digest(f"oci:{layout}:b") == second.digest
    assert "no descriptor found for reference" in run_failing("skopeo", "inspect", f"oci:{layout}:a")


def test_removing_an_unknown_tag_lists_the_tags(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_random_image(layout, seed=1, tag="a")
    write_random_image(layout, seed=2, tag="b")
    before = snapshot(layout)
    with pytest.raises(NotFoundError, match=r"no image tagged 'c' \(tags: a, b\)"):
        remove_layout_tag(layout, "c")
    assert snapshot(layout) == before


def run_failing(*command: str) -> str:
    """Run a peer command that must fail; its stderr."""
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0, f"{' '.join(command)} unexpectedly succeeded"
    return result.stderr
