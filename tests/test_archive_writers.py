"""oci-archive and docker-archive writers: round trips checked by skopeo, reproducible bytes, all or nothing."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import InvalidInputError, NotFoundError, UnsupportedError, VerificationError
from ocilab.model import mediatype as mt
from ocilab.stores.docker_archive import OciArchiveStore, open_docker_archive
from ocilab.stores.docker_archive_writer import DockerArchiveWriter
from ocilab.stores.image import load_image
from ocilab.stores.layout import open_layout
from ocilab.stores.transports import open_destination
from tests.conftest import require_tool, run
from tests.random_image import RandomImage, write_random_image
from tests.test_layout_writer import copy_to, fail_midway, skopeo_digest, snapshot


@pytest.fixture
def source(tmp_path: Path) -> RandomImage:
    return write_random_image(tmp_path / "source", seed=21, tag="src")


def members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return tar.getmembers()


def manifest_json(archive: Path) -> list[dict[str, object]]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return list(json.loads(member.read()))


# ------------------------------------------------------------------------------------------ oci-archive


def test_oci_archive_round_trip_agrees_with_skopeo(source: RandomImage, tmp_path: Path) -> None:
    archive = tmp_path / "out" / "image.tar"
    copy_to(source, f"oci-archive:{archive}:v1")
    assert skopeo_digest(f"oci-archive:{archive}:v1") == source.digest
    assert ocilab.validate(f"oci-archive:{archive}:v1").ok
    assert sorted(p.name for p in archive.parent.iterdir()) == ["image.tar"]


def test_oci_archive_is_reproducible(source: RandomImage, tmp_path: Path) -> None:
    """Sorted members, uid/gid 0, mtime 0: the same image gives the same bytes, whenever it is written."""
    copy_to(source, f"oci-archive:{tmp_path / 'one.tar'}:v1")
    copy_to(source, f"oci-archive:{tmp_path / 'two.tar'}:v1")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    infos = members(tmp_path / "one.tar")
    assert [info.name for info in infos] == sorted(info.name for info in infos)
    assert {(info.mtime, info.uid, info.gid, info.uname, info.gname) for info in infos} == {(0, 0, 0, "", "")}


def test_write_oci_archive_ignores_the_files_times(source: RandomImage, tmp_path: Path) -> None:
    """write_oci_archive promised a reproducible archive, but kept the files' own mtimes; no longer."""
    first = ocilab.write_oci_archive(source.layout, tmp_path / "first.tar")
    for path in source.layout.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = ocilab.write_oci_archive(source.layout, tmp_path / "second.tar")
    assert first.read_bytes() == second.read_bytes()
    assert skopeo_digest(f"oci-archive:{first}:src") == source.digest


def test_existing_oci_archive_keeps_its_images(source: RandomImage, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    copy_to(source, f"oci-archive:{archive}:a")
    other = write_random_image(tmp_path / "other", seed=22, tag="b")
    copy_to(other, f"oci-archive:{archive}:b")
    assert skopeo_digest(f"oci-archive:{archive}:a") == source.digest
    assert skopeo_digest(f"oci-archive:{archive}:b") == other.digest
    with ocilab.open(f"oci-archive:{archive}:b") as image:
        assert str(image.manifest_digest) == other.digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tar", "other", "source"]


def test_failed_write_to_a_new_oci_archive_leaves_nothing(source: RandomImage, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(VerificationError, match="gives up"):
        fail_midway(source, f"oci-archive:{tmp_path / 'out' / 'image.tar'}:v1")
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_write_to_an_existing_oci_archive_leaves_it_byte_identical(source: RandomImage, tmp_path: Path) -> None:
    archive = tmp_path / "out" / "image.tar"
    copy_to(write_random_image(tmp_path / "first", seed=23, tag="a"), f"oci-archive:{archive}:a")
    before = snapshot(archive.parent)
    with pytest.raises(VerificationError, match="gives up"):
        fail_midway(source, f"oci-archive:{archive}:b")
    assert snapshot(archive.parent) == before


def test_oci_archive_destination_must_be_an_oci_archive(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(InvalidInputError, match="dir: already exists and is not a file"):
        open_destination(f"oci-archive:{tmp_path / 'dir'}:v1")
    (tmp_path / "notes.txt").write_text("not a tar")
    with pytest.raises(InvalidInputError, match="notes.txt: not a readable tar archive"):
        open_destination(f"oci-archive:{tmp_path / 'notes.txt'}:v1")
    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        tar.addfile(tarfile.TarInfo("hello"), io.BytesIO())
    with pytest.raises(NotFoundError, match="other.tar: not an OCI image layout"):
        open_destination(f"oci-archive:{tmp_path / 'other.tar'}:v1")
    assert (tmp_path / "notes.txt").read_text() == "not a tar"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "notes.txt", "other.tar"]


# ------------------------------------------------------------------------------------------ docker-archive


def test_docker_archive_keeps_the_manifest_and_reads_back(source: RandomImage, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    copy_to(source, f"docker-archive:{archive}:ocilab-test/random:1")
    with open_docker_archive(archive, "ocilab-test/random:1") as store:
        assert isinstance(store, OciArchiveStore)
        image = load_image(store)
        assert str(image.manifest_digest) == source.digest
        config_digest, diff_ids = str(image.config_digest), [str(d) for d in image.config.diff_ids]
    assert ocilab.validate(f"docker-archive:{archive}").ok
    entry = manifest_json(archive)
    assert entry[0]["RepoTags"] == ["ocilab-test/random:1"]
    assert entry[0]["Config"] == f"blobs/sha256/{config_digest.removeprefix('sha256:')}"
    # skopeo reads only manifest.json (it makes up its own manifest): the config and the diff_ids agree.
    require_tool("skopeo")
    peer = json.loads(run("skopeo", "inspect", "--raw", f"docker-archive:{archive}").stdout)
    assert peer["config"]["digest"] == config_digest
    assert json.loads(run("skopeo", "inspect", f"docker-archive:{archive}").stdout)["Layers"] == diff_ids


def test_docker_archive_without_a_name_is_untagged(source: RandomImage, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    copy_to(source, f"docker-archive:{archive}")
    entry = manifest_json(archive)
    assert entry[0]["RepoTags"] is None
    with ocilab.open(f"docker-archive:{archive}") as image:
        assert str(image.manifest_digest) == source.digest


def test_docker_archive_is_reproducible(source: RandomImage, tmp_path: Path) -> None:
    for name in ("one.tar", "two.tar"):
        copy_to(source, f"docker-archive:{tmp_path / name}:ocilab-test/random:1")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()


def test_failed_write_to_a_docker_archive_leaves_nothing(source: RandomImage, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(VerificationError, match="gives up"):
        fail_midway(source, f"docker-archive:{tmp_path / 'out' / 'image.tar'}:ocilab-test/random:1")
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_docker_archive_is_refused(source: RandomImage, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    copy_to(source, f"docker-archive:{archive}:ocilab-test/random:1")
    before = snapshot(tmp_path)
    with pytest.raises(InvalidInputError, match="image.tar: already exists"):
        open_destination(f"docker-archive:{archive}:ocilab-test/random:2")
    assert snapshot(tmp_path) == before


def test_docker_archive_takes_one_image_not_an_index(tmp_path: Path) -> None:
    multi = write_random_image(tmp_path / "multi", seed=24, tag="m", platforms=("linux/amd64", "linux/arm64"))
    writer = DockerArchiveWriter(tmp_path / "image.tar", "ocilab-test/multi:1")
    assert not writer.accepts(mt.OCI_INDEX) and not writer.accepts(mt.DOCKER_MANIFEST_LIST)
    assert writer.accepts(mt.OCI_MANIFEST) and writer.accepts(mt.DOCKER_MANIFEST)
    with open_layout(multi.layout, "m") as store, pytest.raises(UnsupportedError, match="one image, not an index"):
        writer.put_manifest(store.root(), store.read_document(store.root(), "index"))
    with pytest.raises(InvalidInputError, match="no image was written"):
        writer.commit()
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi"]


def test_docker_archive_name_must_be_a_tag(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not by digest"):
        open_destination(f"docker-archive:{tmp_path / 'x.tar'}:busybox@sha256:{'a' * 64}")
    with pytest.raises(InvalidInputError, match="repository component 'Bad' is not valid"):
        open_destination(f"docker-archive:{tmp_path / 'x.tar'}:Bad:1")
    assert list(tmp_path.iterdir()) == []
