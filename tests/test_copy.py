"""The copy engine: every pair of stores, digests kept (checked by skopeo), conversions said, failures leave nothing.

Images come from tests/random_image.py (seeded, written by hand), so most of
these tests need no engine; the docker-daemon pairs need the real one.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import NotFoundError, UnsupportedError, VerificationError
from ocilab.model import Descriptor
from ocilab.model import mediatype as mt
from ocilab.operations.copy import CopyObserver, copy_image
from ocilab.stores.transports import open_destination, open_store
from tests.conftest import require_tool, run
from tests.random_image import RandomImage, random_layer, write_random_image


@pytest.fixture
def image(tmp_path: Path) -> RandomImage:
    return write_random_image(tmp_path / "source", seed=7, layers=2, files=4)


def skopeo_digest(reference: str) -> str:
    """The manifest digest skopeo computes for a reference (a peer, not our code)."""
    require_tool("skopeo")
    raw = run("skopeo", "inspect", "--raw", "--tls-verify=false", reference).stdout.encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def skopeo_config_digest(reference: str) -> str:
    raw = run("skopeo", "inspect", "--config", "--raw", reference).stdout.encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def diff_ids(reference: str) -> list[str]:
    with ocilab.open(reference) as opened:
        return [str(d) for d in opened.config.diff_ids]


def tree_hash(path: Path) -> dict[str, str]:
    """Every file under ``path`` with the sha256 of its bytes."""
    return {
        str(file.relative_to(path)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def test_a_copy_into_a_new_layout_keeps_every_digest(image: RandomImage, tmp_path: Path) -> None:
    """Copying without conversion moves bytes, not documents: the manifest digest is the same at both ends."""
    destination = f"oci:{tmp_path / 'copy'}:v1"
    report = ocilab.copy(image.reference, destination, quiet=True)
    assert str(report.root.digest) == image.digest
    assert skopeo_digest(destination) == image.digest
    assert sorted(str(d) for d in report.blobs["copied"]) == sorted(image.blobs - {image.digest})
    assert report.notes == []
    assert ocilab.validate(destination).ok


def test_a_copy_into_an_existing_layout_keeps_its_other_images(image: RandomImage, tmp_path: Path) -> None:
    """An OCI layout holds many images; adding one leaves the others (and their tags) alone."""
    other = write_random_image(tmp_path / "existing", seed=99, tag="other")
    ocilab.copy(image.reference, f"oci:{other.layout}:new", quiet=True)
    assert skopeo_digest(f"oci:{other.layout}:other") == other.digest
    assert skopeo_digest(f"oci:{other.layout}:new") == image.digest


def test_blobs_the_destination_has_are_not_sent_again(image: RandomImage, tmp_path: Path) -> None:
    """A second copy of the same image finds every blob there and sends no byte."""
    destination = f"oci:{tmp_path / 'copy'}"
    ocilab.copy(image.reference, f"{destination}:1", quiet=True)
    again = ocilab.copy(image.reference, f"{destination}:2", quiet=True)
    assert again.blobs["copied"] == [] and again.bytes_sent == 0
    assert len(again.blobs["skipped"]) == len(image.blobs) - 1


def test_from_an_index_only_the_platform_asked_for_is_copied(tmp_path: Path) -> None:
    """Without --all-platforms, a copy takes one image out of an index (as skopeo does) and says so."""
    index = write_random_image(tmp_path / "multi", seed=3, platforms=["linux/amd64", "linux/arm64"])
    report = ocilab.copy(index.reference, f"oci:{tmp_path / 'one'}:1", platform="linux/arm64", quiet=True)
    assert report.root.media_type == mt.OCI_MANIFEST
    assert any("linux/arm64" in note for note in report.notes)
    with ocilab.open(f"oci:{tmp_path / 'one'}:1") as copied:
        assert str(copied.platform) == "linux/arm64"
    whole = ocilab.copy(index.reference, f"oci:{tmp_path / 'all'}:1", all_platforms=True, quiet=True)
    assert str(whole.root.digest) == index.digest == skopeo_digest(f"oci:{tmp_path / 'all'}:1")


def test_a_platform_missing_from_the_index_is_named(tmp_path: Path) -> None:
    index = write_random_image(tmp_path / "multi", seed=3, platforms=["linux/amd64"])
    with pytest.raises(NotFoundError, match=r"linux/s390x.*available: linux/amd64"):
        ocilab.copy(index.reference, f"oci:{tmp_path / 'one'}:1", platform="linux/s390x", quiet=True)
    assert not (tmp_path / "one").exists()


def test_recompressing_changes_layer_digests_but_never_diff_ids(image: RandomImage, tmp_path: Path) -> None:
    """Layer blobs are named by their compressed bytes; the config names layers by their tar (diff_id)."""
    destination = f"oci:{tmp_path / 'zstd'}:1"
    report = ocilab.copy(image.reference, destination, compression="zstd", quiet=True)
    with ocilab.open(destination) as copied:
        assert [layer.media_type for layer in copied.layers] == [mt.OCI_LAYER_ZSTD] * len(image.layers)
        assert not set(str(layer.digest) for layer in copied.layers) & set(image.layers)
    assert diff_ids(destination) == diff_ids(image.reference)
    assert sum("recompressed gzip -> zstd" in note for note in report.notes) == len(image.layers)
    assert ocilab.validate(destination).ok
    assert skopeo_digest(destination) == str(report.root.digest)
    frame_a, frame_b = ocilab.changes(image.reference), ocilab.changes(destination)
    assert frame_a.equals(frame_b)


def test_converting_to_docker_rewrites_manifest_and_config_media_types(image: RandomImage, registry: object) -> None:
    """skopeo reads Docker manifests from a registry (not from an OCI layout), so the check goes through one."""
    destination = registry_reference(registry, "docker-format")
    report = ocilab.copy(image.reference, destination, image_format="docker", quiet=True)
    with ocilab.open(destination) as copied:
        assert copied.media_type == mt.DOCKER_MANIFEST
        assert copied.manifest.config.media_type == mt.DOCKER_CONFIG
        assert {layer.media_type for layer in copied.layers} == {mt.DOCKER_LAYER_GZIP}
        assert (
            str(copied.config_digest)
            == json.loads((image.layout / "blobs/sha256" / image.digest.split(":")[1]).read_text())["config"]["digest"]
        )
    assert report.blobs["copied"] and any("rewritten" in note for note in report.notes)
    assert skopeo_digest(destination) == str(report.root.digest)


def test_docker_manifests_have_no_zstd_layers(image: RandomImage, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="no zstd layer type"):
        ocilab.copy(image.reference, f"oci:{tmp_path / 'x'}:1", image_format="docker", compression="zstd", quiet=True)
    assert not (tmp_path / "x").exists()


def test_a_corrupt_source_blob_fails_the_copy_and_leaves_nothing(image: RandomImage, tmp_path: Path) -> None:
    """Every blob is verified as it streams; the destination layout is not created."""
    victim = image.layout / "blobs/sha256" / image.layers[1].split(":")[1]
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=image.layers[1]):
        ocilab.copy(image.reference, f"oci:{tmp_path / 'copy'}:1", quiet=True)
    assert list(tmp_path.iterdir()) == [image.layout]


def test_a_failed_copy_into_an_existing_layout_leaves_it_as_it_was(image: RandomImage, tmp_path: Path) -> None:
    existing = write_random_image(tmp_path / "existing", seed=5, tag="keep")
    before = tree_hash(existing.layout)
    victim = image.layout / "blobs/sha256" / image.layers[0].split(":")[1]
    victim.write_bytes(victim.read_bytes()[:-1])
    with pytest.raises(VerificationError):
        ocilab.copy(image.reference, f"oci:{existing.layout}:new", quiet=True)
    assert tree_hash(existing.layout) == before


def test_the_observer_sees_every_blob_once(image: RandomImage, tmp_path: Path) -> None:
    """Progress bars are fed by the observer: bytes read add up to the blobs' sizes."""

    class Recorder(CopyObserver):
        def __init__(self) -> None:
            self.planned_sizes: dict[str, int] = {}
            self.read: dict[str, int] = {}
            self.outcomes: dict[str, str] = {}

        def planned(self, blobs: list[Descriptor]) -> None:  # type: ignore[override]
            self.planned_sizes = {str(blob.digest): blob.size for blob in blobs}

        def advanced(self, descriptor: Descriptor, count: int) -> None:
            self.read[str(descriptor.digest)] = self.read.get(str(descriptor.digest), 0) + count

        def finished(self, descriptor: Descriptor, outcome: str) -> None:
            self.outcomes[str(descriptor.digest)] = outcome

    recorder = Recorder()
    with open_store(image.reference) as source, open_destination(f"oci:{tmp_path / 'copy'}:1") as destination:
        copy_image(source, destination, observer=recorder)
    assert recorder.read == recorder.planned_sizes
    assert set(recorder.outcomes.values()) == {"copied"}
    assert set(recorder.outcomes) == image.blobs - {image.digest}


def test_shared_layers_are_sent_once_for_a_whole_index(tmp_path: Path) -> None:
    """Two platform images sharing a base layer: the layer travels once."""
    import random

    base = random_layer(random.Random(1), files=3, size=2048)
    index = write_random_image(
        tmp_path / "multi", seed=4, platforms=["linux/amd64", "linux/arm64"], shared_layers=[base]
    )
    report = ocilab.copy(index.reference, f"oci:{tmp_path / 'all'}:1", all_platforms=True, quiet=True)
    copied = [str(d) for d in report.blobs["copied"]]
    assert len(copied) == len(set(copied)) == len(index.blobs) - 3  # the index and two manifests are documents


# --- Every pair of stores ---------------------------------------------------------------------------------------


def registry_reference(registry: object, name: str) -> str:
    return f"docker://{registry.host}/ocilab-copy/{name}:1"  # type: ignore[attr-defined]


def test_a_round_trip_through_a_registry_keeps_digests(image: RandomImage, registry: object, tmp_path: Path) -> None:
    """Push, then pull back into a fresh layout: the same manifest digest at every stop, as skopeo computes it."""
    remote = registry_reference(registry, "round-trip")
    pushed = ocilab.copy(image.reference, remote, quiet=True)
    assert str(pushed.root.digest) == image.digest == skopeo_digest(remote)
    again = ocilab.copy(image.reference, remote, quiet=True)
    assert again.blobs["copied"] == [] and again.bytes_sent == 0
    pulled = ocilab.copy(remote, f"oci:{tmp_path / 'pulled'}:1", quiet=True)
    assert str(pulled.root.digest) == image.digest == skopeo_digest(f"oci:{tmp_path / 'pulled'}:1")


def test_within_one_registry_blobs_are_mounted_not_sent(image: RandomImage, registry: object) -> None:
    """Cross-repository mount: the registry links the blob into the new repository; no byte travels."""
    first = registry_reference(registry, "mount-a")
    ocilab.copy(image.reference, first, quiet=True)
    report = ocilab.copy(first, registry_reference(registry, "mount-b"), quiet=True)
    assert report.bytes_sent == 0
    assert len(report.blobs["mounted"]) == len(image.blobs) - 1
    assert skopeo_digest(registry_reference(registry, "mount-b")) == image.digest


def test_an_index_pushed_whole_keeps_its_digest(tmp_path: Path, registry: object) -> None:
    index = write_random_image(tmp_path / "multi", seed=8, platforms=["linux/amd64", "linux/arm64"])
    remote = registry_reference(registry, "index")
    report = ocilab.copy(index.reference, remote, all_platforms=True, quiet=True)
    assert str(report.root.digest) == index.digest == skopeo_digest(remote)


def archive_kinds(tmp_path: Path, registry: object) -> dict[str, str]:
    return {
        "oci": f"oci:{tmp_path / 'layout'}:1",
        "oci-archive": f"oci-archive:{tmp_path / 'image.tar'}:1",
        "docker-archive": f"docker-archive:{tmp_path / 'docker.tar'}:ocilab-copy/pair:1",
        "docker": registry_reference(registry, "pair"),
    }


@pytest.mark.parametrize("kind", ["oci", "oci-archive", "docker-archive", "docker"])
def test_every_store_takes_an_image_and_gives_it_back(
    kind: str, image: RandomImage, registry: object, tmp_path: Path
) -> None:
    """Into each store and back out into a fresh layout: manifest digest and diff_ids unchanged, skopeo agrees."""
    middle = archive_kinds(tmp_path, registry)[kind]
    report = ocilab.copy(image.reference, middle, quiet=True)
    assert str(report.root.digest) == image.digest
    if kind == "docker-archive":  # skopeo builds its own manifest from manifest.json; the config is the same
        with ocilab.open(image.reference) as original:
            assert skopeo_config_digest(middle) == str(original.config_digest)
    else:
        assert skopeo_digest(middle) == image.digest
    back = f"oci:{tmp_path / 'back'}:1"
    ocilab.copy(middle, back, quiet=True)
    assert skopeo_digest(back) == image.digest
    assert diff_ids(back) == diff_ids(image.reference)


def test_the_docker_engine_takes_an_image_and_gives_it_back(
    image: RandomImage, docker_client: object, tmp_path: Path
) -> None:
    """Docker 20.10 keeps no manifest: what comes back has the same config (the image ID) and diff_ids."""
    name = "ocilab-copy/daemon:1"
    report = ocilab.copy(image.reference, f"docker-daemon:{name}", quiet=True)
    with ocilab.open(image.reference) as original:
        config_digest = str(original.config_digest)
    inspected = json.loads(run("docker", "image", "inspect", name).stdout)[0]
    assert inspected["Id"] == config_digest
    assert inspected["RootFS"]["Layers"] == diff_ids(image.reference)
    assert report.root is not None
    back = f"oci:{tmp_path / 'back'}:1"
    ocilab.copy(f"docker-daemon:{name}", back, quiet=True)
    assert diff_ids(back) == diff_ids(image.reference)
    run("docker", "image", "rm", name)


def test_copy_on_the_command_line_prints_the_digest_and_what_it_did(image: RandomImage, tmp_path: Path) -> None:
    result = run(sys.executable, "-m", "ocilab", "copy", "--json", image.reference, f"oci:{tmp_path / 'cli'}:1")
    document = json.loads(result.stdout)
    assert document["digest"] == image.digest
    assert len(document["blobs"]["copied"]) == len(image.blobs) - 1
    assert result.stderr == ""
    human = run(sys.executable, "-m", "ocilab", "copy", image.reference, f"oci:{tmp_path / 'cli'}:2")
    assert human.stdout.splitlines()[0] == image.digest
    assert "0 copied" in human.stdout


def test_an_artifact_copied_into_a_layout_is_listed_with_its_type(image: RandomImage, tmp_path: Path) -> None:
    """image-spec descriptor.md: artifactType is the type of an artifact when the descriptor points to one."""
    from ocilab.operations.artifact import attach

    attached = attach(image.reference, {"sbom": []}, artifact_type="application/spdx+json", tag="sbom")
    destination = tmp_path / "copy"
    ocilab.copy(f"oci:{image.layout}:sbom", f"oci:{destination}:sbom", quiet=True)
    (entry,) = json.loads((destination / "index.json").read_text())["manifests"]
    assert entry["digest"] == str(attached.digest)
    assert entry["artifactType"] == "application/spdx+json"


@pytest.mark.parametrize("compressed", [False, True], ids=["tar", "tar.gz"])
def test_archive_members_read_by_many_threads_at_once_stay_intact(tmp_path: Path, compressed: bool) -> None:
    """The copy engine reads blobs in parallel: every member of an archive must read whole and right."""
    import tarfile
    from concurrent.futures import ThreadPoolExecutor

    from ocilab.stores.tree import TarTree

    contents = {f"blob-{n}": bytes([n]) * (300_000 + n) for n in range(8)}
    archive = tmp_path / ("members.tar.gz" if compressed else "members.tar")
    with tarfile.open(archive, "w:gz" if compressed else "w") as tar:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tree = TarTree(archive)

    def read(name: str) -> bool:
        with tree.open(name) as stream:
            chunks = iter(lambda: stream.read(4096), b"")
            return b"".join(chunks) == contents[name]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read, list(contents) * 6))
    tree.close()
