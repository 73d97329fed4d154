"""docker-archive: real ``docker save`` output (legacy) and Docker 25's OCI-in-tar shape, cross-checked with
docker and skopeo; damaged archives refused with errors that name the entry.

The refusals need any legacy archive, so they damage one skopeo writes from a seeded random image: no engine.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import (
    DocumentTooLargeError,
    NotFoundError,
    UnsafePathError,
    ValidationError,
    VerificationError,
)
from ocilab.model import Digest, Reference
from ocilab.model import mediatype as mt
from ocilab.stores.docker_archive import LegacyArchiveStore, OciArchiveStore, open_docker_archive
from ocilab.stores.image import Image, load_image
from tests.conftest import require_tool, run
from tests.random_image import write_random_image

PLATFORM = {"architecture": "amd64", "os": "linux"}


# ---------------------------------------------------------------------------------------------
# Archive builders: tar files written with Python's tarfile from real docker/skopeo output.


def read_members(archive: Path) -> dict[str, bytes]:
    """The regular files of ``archive`` by name (symlinks and directories left out)."""
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def saved_entry(archive: Path) -> dict:
    """The only item of a ``docker save`` archive's manifest.json."""
    (entry,) = json.loads(read_members(archive)["manifest.json"])
    return entry


def write_tar(destination: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """An uncompressed tar holding ``files`` (with their parent directories) and ``symlinks`` (name -> target)."""
    with tarfile.open(destination, "w") as tar:
        directories = sorted({str(Path(name).parent) for name in [*files, *(symlinks or {})]} - {"."})
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return destination


def rewrite(
    source: Path,
    destination: Path,
    drop: tuple[str, ...] = (),
    replace: dict[str, bytes] | None = None,
    symlinks: dict[str, str] | None = None,
) -> Path:
    """A copy of the archive ``source`` with members dropped, given new bytes, or turned into symlinks."""
    removed = {*drop, *(symlinks or {})}
    files = {name: data for name, data in read_members(source).items() if name not in removed}
    files.update(replace or {})
    return write_tar(destination, files, symlinks)


def with_manifest(source: Path, destination: Path, items: list[dict]) -> Path:
    """A copy of ``source`` whose manifest.json is ``items``, written as Docker's encoder writes it."""
    return rewrite(source, destination, replace={"manifest.json": json.dumps(items).encode() + b"\n"})


def docker25_archive(
    destination: Path, blobs: dict[str, bytes], manifest: str | None, config: str, layers: list[str], tags: list[str]
) -> Path:
    """An archive in the shape ``docker save`` writes from Docker 25 on (moby image/tarexport/save.go).

    ``blobs`` maps digests to content; ``manifest`` is the digest of the OCI manifest among them. index.json
    names it once per tag (annotations io.containerd.image.name = the full name, ref.name = the tag) and is
    ``null`` for an image saved by ID; manifest.json points at the config and layer blobs.
    """

    def blob(digest: str) -> str:
        return "blobs/" + digest.replace(":", "/")

    entries = [
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": manifest,
            "size": len(blobs[manifest]),
            "annotations": {
                "io.containerd.image.name": str(Reference.parse(tag)),
                "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1],
            },
            "platform": PLATFORM,
        }
        for tag in tags
        if manifest is not None
    ]
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries or None}
    items = [{"Config": blob(config), "RepoTags": tags or None, "Layers": [blob(d) for d in layers]}]
    files = {blob(digest): data for digest, data in blobs.items()}
    files["index.json"] = json.dumps(index, separators=(",", ":")).encode()
    files["manifest.json"] = json.dumps(items, separators=(",", ":")).encode() + b"\n"
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    if tags:
        repositories = {tag.rsplit(":", 1)[0]: {tag.rsplit(":", 1)[1]: layers[-1].split(":")[1]} for tag in tags}
        files["repositories"] = json.dumps(repositories, separators=(",", ":")).encode() + b"\n"
    return write_tar(destination, files)


def docker25_from_save(save: Path, destination: Path, tags: list[str]) -> tuple[Path, bytes]:
    """Docker 25's archive of the image in a legacy ``docker save``: same config and uncompressed layers, plus
    the OCI manifest Docker 25 writes (config typed OCI, with the platform; layers typed tar). Returns the archive
    and that manifest."""
    members = read_members(save)
    entry = saved_entry(save)
    config = members[entry["Config"]]
    layers = [members[path] for path in entry["Layers"]]
    blobs = {str(Digest.of_bytes(data)): data for data in [config, *layers]}
    config_digest, layer_digests = str(Digest.of_bytes(config)), [str(Digest.of_bytes(d)) for d in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config), "platform": PLATFORM},
        "layers": [{"mediaType": mt.OCI_LAYER_TAR, "digest": d, "size": len(blobs[d])} for d in layer_digests],
    }
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = str(Digest.of_bytes(raw))
    blobs[manifest_digest] = raw
    return docker25_archive(destination, blobs, manifest_digest, config_digest, layer_digests, tags), raw


def docker25_from_layout(layout: Path, destination: Path, tags: list[str]) -> Path:
    """Docker 25's archive shape around the real OCI layout skopeo wrote (gzip layers, where Docker's are tars)."""
    (descriptor,) = json.loads((layout / "index.json").read_text())["manifests"]
    blobs = {f"sha256:{path.name}": path.read_bytes() for path in (layout / "blobs" / "sha256").iterdir()}
    manifest = json.loads(blobs[descriptor["digest"]])
    layers = [layer["digest"] for layer in manifest["layers"]]
    return docker25_archive(destination, blobs, descriptor["digest"], manifest["config"]["digest"], layers, tags)


def skopeo_inspect(reference: str, *flags: str) -> str:
    require_tool("skopeo")
    return run("skopeo", "inspect", *flags, reference).stdout


@contextmanager
def opened(archive: Path, name: str | None = None) -> Iterator[Image]:
    """The image ``name`` of ``archive``, its store closed on leaving."""
    with open_docker_archive(archive, name) as store:
        yield load_image(store)


# ---------------------------------------------------------------------------------------------
# Legacy docker save (Docker < 25, this engine)


def test_legacy_agrees_with_docker(docker_save_tar: Path, busybox_image: str, docker_inspect: dict) -> None:
    with open_docker_archive(docker_save_tar, busybox_image) as store:
        assert isinstance(store, LegacyArchiveStore)
        assert store.reference == f"docker-archive:{docker_save_tar}:{busybox_image}"
        image = load_image(store)
        assert image.media_type == mt.DOCKER_MANIFEST
        assert str(image.config_digest) == docker_inspect["Id"]
        assert [str(d) for d in image.config.diff_ids] == docker_inspect["RootFS"]["Layers"]
        assert [str(layer.digest) for layer in image.layers] == docker_inspect["RootFS"]["Layers"]
        assert {layer.media_type for layer in image.layers} == {mt.DOCKER_LAYER_TAR}
        assert image.manifest.config.media_type == mt.DOCKER_CONFIG
        for layer in image.layers:
            with image.open_layer(layer.index) as reader:
                reader.drain()
                assert reader.verified


def test_legacy_agrees_with_skopeo(docker_save_tar: Path) -> None:
    """skopeo's manifest differs from ours only in the layers' media type: it labels the plain tars gzip."""
    peer_raw = skopeo_inspect(f"docker-archive:{docker_save_tar}", "--raw").encode()
    with opened(docker_save_tar) as image:
        ours, peer = json.loads(image.manifest.raw), json.loads(peer_raw)
        assert peer["config"]["digest"] == str(image.config_digest)
        assert [layer["digest"] for layer in peer["layers"]] == [str(layer.digest) for layer in image.layers]
        assert peer_raw.replace(mt.DOCKER_LAYER_GZIP.encode(), mt.DOCKER_LAYER_TAR.encode()) == image.manifest.raw
    assert {layer.pop("mediaType") for layer in peer["layers"]} == {mt.DOCKER_LAYER_GZIP}
    assert {layer.pop("mediaType") for layer in ours["layers"]} == {mt.DOCKER_LAYER_TAR}
    assert ours == peer


@pytest.mark.parametrize("name", [None, "ocilab-test/busybox:1", "docker.io/ocilab-test/busybox:1", "@0"])
def test_names_select_the_image(docker_save_tar: Path, docker_inspect: dict, name: str | None) -> None:
    with open_docker_archive(docker_save_tar, name) as store:
        assert store.reference == f"docker-archive:{docker_save_tar}" + (f":{name}" if name else "")
        assert str(load_image(store).config_digest) == docker_inspect["Id"]


def test_docker_hub_names_are_normalised(docker_save_tar: Path, tmp_path: Path, docker_inspect: dict) -> None:
    entry = saved_entry(docker_save_tar) | {"RepoTags": ["busybox:1"]}
    archive = with_manifest(docker_save_tar, tmp_path / "hub.tar", [entry])
    for name in ("busybox:1", "library/busybox:1", "docker.io/library/busybox:1"):
        with opened(archive, name) as image:
            assert str(image.config_digest) == docker_inspect["Id"]
    with pytest.raises(NotFoundError, match="busybox:1"):
        open_docker_archive(archive, "busybox")  # means busybox:latest


def test_layer_symlinked_inside_the_archive(docker_save_tar: Path, tmp_path: Path, docker_inspect: dict) -> None:
    """docker save writes a repeated layer as a symlink to an earlier layer.tar; it is followed inside the archive."""
    top = saved_entry(docker_save_tar)["Layers"][1]
    replace = {"shared/layer.tar": read_members(docker_save_tar)[top]}
    archive = rewrite(docker_save_tar, tmp_path / "linked.tar", replace=replace, symlinks={top: "../shared/layer.tar"})
    with opened(archive) as image:
        assert [str(layer.digest) for layer in image.layers] == docker_inspect["RootFS"]["Layers"]


def test_choosing_among_several_images(docker_save_tar: Path, tmp_path: Path, docker_inspect: dict) -> None:
    entry = saved_entry(docker_save_tar)
    other = entry | {"RepoTags": ["ocilab-test/other:2", "localhost:5000/other:2"]}
    archive = with_manifest(docker_save_tar, tmp_path / "two.tar", [entry, other])
    with pytest.raises(ValidationError, match=r"holds 2 images.*ocilab-test/busybox:1.*ocilab-test/other:2"):
        open_docker_archive(archive)
    for name in ("ocilab-test/other:2", "localhost:5000/other:2", "@1"):
        with open_docker_archive(archive, name) as store:
            assert str(load_image(store).config_digest) == docker_inspect["Id"]
    with pytest.raises(NotFoundError, match=r"no image ocilab-test/absent:3 .*ocilab-test/busybox:1.*other:2"):
        open_docker_archive(archive, "ocilab-test/absent:3")
    with pytest.raises(NotFoundError, match="@2"):
        open_docker_archive(archive, "@2")


# ---------------------------------------------------------------------------------------------
# OCI-in-tar (Docker 25+), built faithfully: this engine (20.10) cannot write it.


def test_oci_in_tar_from_skopeo_layout(oci_layout: Path, tmp_path: Path, docker_inspect: dict) -> None:
    peer = json.loads(skopeo_inspect(f"oci:{oci_layout}:v1"))
    archive = docker25_from_layout(oci_layout, tmp_path / "oci.tar", ["ocilab-test/busybox:1"])
    for name in (None, "ocilab-test/busybox:1", "docker.io/ocilab-test/busybox:1", "@0"):
        with open_docker_archive(archive, name) as store:
            assert isinstance(store, OciArchiveStore)
            image = load_image(store)
            assert str(image.manifest_digest) == peer["Digest"]
            assert image.media_type == mt.OCI_MANIFEST
            assert [str(layer.digest) for layer in image.layers] == peer["Layers"]
            assert [str(d) for d in image.config.diff_ids] == docker_inspect["RootFS"]["Layers"]
            with image.open_layer(1) as reader:
                reader.drain()


def test_oci_in_tar_as_docker_25_writes_it(docker_save_tar: Path, tmp_path: Path, docker_inspect: dict) -> None:
    archive, manifest = docker25_from_save(docker_save_tar, tmp_path / "d25.tar", ["ocilab-test/busybox:1"])
    with open_docker_archive(archive, "ocilab-test/busybox:1") as store:
        assert isinstance(store, OciArchiveStore)
        image = load_image(store)
        assert image.manifest.raw == manifest
        assert str(image.config_digest) == docker_inspect["Id"]
        assert [str(layer.digest) for layer in image.layers] == docker_inspect["RootFS"]["Layers"]


def test_oci_in_tar_found_by_config_digest(oci_layout: Path, tmp_path: Path) -> None:
    """Without name annotations (ref.name a bare tag), the entry whose manifest has manifest.json's config wins."""
    archive = docker25_from_layout(oci_layout, tmp_path / "oci.tar", ["ocilab-test/busybox:1"])
    index = json.loads(read_members(archive)["index.json"])
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    rewritten = rewrite(archive, tmp_path / "bare.tar", replace={"index.json": json.dumps(index).encode()})
    with open_docker_archive(rewritten) as store:
        assert isinstance(store, OciArchiveStore)
        assert store.root().digest == Digest.parse(index["manifests"][0]["digest"])


def test_oci_in_tar_saved_by_id(docker_save_tar: Path, tmp_path: Path, docker_inspect: dict) -> None:
    """Docker 25 saving an image by ID writes a null index; the layer blobs are read as a legacy archive's."""
    archive, _ = docker25_from_save(docker_save_tar, tmp_path / "by-id.tar", [])
    with open_docker_archive(archive) as store:
        assert isinstance(store, LegacyArchiveStore)
        image = load_image(store)
        assert str(image.config_digest) == docker_inspect["Id"]
        assert [str(layer.digest) for layer in image.layers] == docker_inspect["RootFS"]["Layers"]


def test_oci_in_tar_whose_named_manifest_has_another_config(oci_layout: Path, tmp_path: Path) -> None:
    archive = docker25_from_layout(oci_layout, tmp_path / "oci.tar", ["ocilab-test/busybox:1"])
    (item,) = json.loads(read_members(archive)["manifest.json"])
    item["Config"] = item["Layers"][0]
    damaged = with_manifest(archive, tmp_path / "other-config.tar", [item])
    with pytest.raises(ValidationError, match=r"config\.digest.*manifest\.json\[0\]\.Config"):
        open_docker_archive(damaged)


# ---------------------------------------------------------------------------------------------
# Damaged archives: refused, the entry named, nothing written.


@pytest.fixture(scope="module")
def saved_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A legacy two-layer docker-archive written by skopeo from a random image (no Docker engine needed)."""
    require_tool("skopeo")
    directory = tmp_path_factory.mktemp("skopeo-save")
    image = write_random_image(directory / "layout", seed=8)
    archive = directory / "random.tar"
    run("skopeo", "copy", "--quiet", image.reference, f"docker-archive:{archive}:ocilab-test/random:1")
    return archive


def test_the_archive_to_damage_is_valid(saved_tar: Path) -> None:
    with opened(saved_tar) as image:
        assert len(image.layers) == 2
    assert ocilab.validate(f"docker-archive:{saved_tar}").ok


def damage(kind: str, save: Path, destination: Path) -> tuple[Path, str]:
    """A damaged copy of ``save`` and the text its error must contain."""
    entry = saved_entry(save)
    first, top = entry["Layers"]
    if kind == "manifest missing":
        return rewrite(save, destination, drop=("manifest.json",)), "manifest.json"
    if kind == "manifest malformed":
        return rewrite(save, destination, replace={"manifest.json": b'[{"Config": '}), "manifest.json"
    if kind == "manifest not an array":
        return with_manifest(save, destination, entry), "manifest.json"  # type: ignore[arg-type]
    if kind == "layer climbs out":
        return with_manifest(save, destination, [entry | {"Layers": ["../../etc/passwd", top]}]), "Layers[0]"
    if kind == "layer absolute":
        return with_manifest(save, destination, [entry | {"Layers": [first, "/etc/passwd"]}]), "Layers[1]"
    if kind == "config climbs out":
        return with_manifest(save, destination, [entry | {"Config": "a/../../x.json"}]), "Config"
    if kind == "symlink leaves":
        return rewrite(save, destination, symlinks={first: "../../../etc/passwd"}), first
    if kind == "layer altered":
        data = bytearray(read_members(save)[top])
        data[600] ^= 0xFF
        return rewrite(save, destination, replace={top: bytes(data)}), top
    if kind == "layer missing":
        return rewrite(save, destination, drop=(top,)), top
    if kind == "config missing":
        return rewrite(save, destination, drop=(entry["Config"],)), entry["Config"]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("manifest missing", NotFoundError),
        ("manifest malformed", ValidationError),
        ("manifest not an array", ValidationError),
        ("layer climbs out", UnsafePathError),
        ("layer absolute", UnsafePathError),
        ("config climbs out", UnsafePathError),
        ("symlink leaves", UnsafePathError),
        ("layer missing", NotFoundError),
        ("config missing", NotFoundError),
    ],
)
def test_damaged_archive_is_refused(saved_tar: Path, tmp_path: Path, kind: str, error: type[Exception]) -> None:
    archive, entry = damage(kind, saved_tar, tmp_path / "damaged.tar")
    with pytest.raises(error) as raised:
        open_docker_archive(archive)
    assert str(archive) in str(raised.value)
    assert entry in str(raised.value)
    assert list(tmp_path.iterdir()) == [archive]


def test_altered_layer_fails_when_read(saved_tar: Path, tmp_path: Path) -> None:
    """Opening reads no layer; validating (or reading) the altered one fails, naming the layer."""
    archive, _ = damage("layer altered", saved_tar, tmp_path / "damaged.tar")
    report = ocilab.validate(f"docker-archive:{archive}")
    assert not report.ok
    assert any("layer 1" in problem and "does not match its digest" in problem for problem in report.problems)
    with open_docker_archive(archive) as store:
        image = load_image(store)
        image.open_layer(0).drain()
        with pytest.raises(VerificationError, match=f"{archive}: layer 1 sha256:"):
            image.open_layer(1).drain()
    assert list(tmp_path.iterdir()) == [archive]


def test_oversized_manifest_is_refused(saved_tar: Path, tmp_path: Path) -> None:
    archive = rewrite(saved_tar, tmp_path / "big.tar", replace={"manifest.json": b" " * (4 * 1024 * 1024 + 1)})
    with pytest.raises(DocumentTooLargeError, match=r"big\.tar: manifest\.json: more than the 4194304-byte limit"):
        open_docker_archive(archive)


def test_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="absent.tar"):
        open_docker_archive(tmp_path / "absent.tar")
