"""An image written by hand (notebook 01): the tar, the blob, the layout, read back by GNU tar, gzip and skopeo."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import InvalidInputError, NotFoundError
from ocilab.model import Digest, Platform, build, mediatype
from ocilab.operations import handmade
from ocilab.present.jsonview import show_json
from ocilab.tar.tarwriter import File
from tests.conftest import require_tool, run

HELLO = {"/hello.txt": b"hello\n"}


def image_parts(files: dict[str, bytes], architecture: str = "amd64") -> tuple[ocilab.model.Manifest, bytes, bytes]:
    tar = handmade.layer_tar(files)
    blob = handmade.compress(tar)
    config = handmade.config([Digest.of_bytes(tar)], architecture=architecture)
    manifest = handmade.manifest(config, [handmade.descriptor_of(blob, mediatype.OCI_LAYER_GZIP)])
    return manifest, blob, config


def test_a_layer_tar_is_reproducible_and_gnu_tar_reads_it(tmp_path: Path) -> None:
    tar = handmade.layer_tar({"/etc/motd": b"hi\n", "/a": b""})
    assert tar == handmade.layer_tar({"/a": b"", "/etc/motd": b"hi\n"})
    (tmp_path / "layer.tar").write_bytes(tar)
    listing = run("tar", "-tvf", tmp_path / "layer.tar").stdout.splitlines()
    assert [line.split()[-1] for line in listing] == ["a", "etc/", "etc/motd"]
    assert all("root/root" in line and "1970-01-01 00:00" in line for line in listing)


def test_the_hand_made_busybox_layer_is_the_builders_layer_0(tmp_path: Path) -> None:
    tar = handmade.layer_tar({"/bin/busybox": handmade.host_file("/bin/busybox")})
    image = ocilab.open(f"oci:{ocilab.busybox_layout(tmp_path / 'busybox', tag='1')}:1")
    assert image.layers[0].diff_id == Digest.of_bytes(tar)
    assert image.layers[0].digest == Digest.of_bytes(handmade.compress(tar))


def test_the_gzip_blob_is_gzip_of_the_tar_with_no_name_and_no_mtime() -> None:
    tar = handmade.layer_tar(HELLO)
    blob = handmade.compress(tar, "gzip")
    peer = subprocess.run(["gzip", "-dc"], input=blob, capture_output=True, check=True).stdout
    assert peer == tar == gzip.decompress(blob)
    assert blob[4:8] == b"\0\0\0\0" and blob[3] & 0x08 == 0  # MTIME 0, no FNAME flag (RFC 1952)
    assert handmade.compress(tar, "none") == tar
    with pytest.raises(ocilab.OcilabError, match="gzip, zstd or none"):
        handmade.compress(tar, "bzip2")


def test_a_host_file_keeps_its_bytes_and_mode_and_a_missing_one_is_named(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\n")
    script.chmod(0o750)
    assert handmade.host_file(script) == File(b"#!/bin/sh\n", mode=0o750)
    (tmp_path / "layer.tar").write_bytes(handmade.layer_tar({"/run.sh": handmade.host_file(script)}))
    assert run("tar", "-tvf", tmp_path / "layer.tar").stdout.startswith("-rwxr-x---")
    with pytest.raises(InvalidInputError, match="absent: cannot read it"):
        handmade.host_file(tmp_path / "absent")


def test_config_and_manifest_are_the_documents_build_writes() -> None:
    tar = handmade.layer_tar(HELLO)
    blob = handmade.compress(tar)
    config = handmade.config([Digest.of_bytes(tar)], architecture="arm64", cmd=["/bin/cat", "/hello.txt"])
    assert config == build.encode(
        build.config_document(
            architecture="arm64",
            os="linux",
            diff_ids=[str(Digest.of_bytes(tar))],
            config={"Cmd": ["/bin/cat", "/hello.txt"]},
        )
    )
    assert "config" not in json.loads(handmade.config([]))  # no cmd, no config object
    layer = handmade.descriptor_of(blob, mediatype.OCI_LAYER_GZIP)
    manifest = handmade.manifest(config, [layer])
    assert manifest.config == handmade.descriptor_of(config, mediatype.OCI_CONFIG) and manifest.layers == (layer,)
    with pytest.raises(ocilab.OcilabError, match="linux-amd64"):
        handmade.index({"linux-amd64": manifest})


def test_a_descriptor_names_the_bytes() -> None:
    descriptor = handmade.descriptor_of(b"{}", mediatype.OCI_EMPTY, platform=Platform("linux", "arm64"))
    assert descriptor.to_json()["digest"] == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert (descriptor.size, descriptor.platform) == (2, Platform("linux", "arm64"))


def test_write_image_makes_a_layout_skopeo_reads_and_validate_accepts(tmp_path: Path) -> None:
    manifest, blob, config = image_parts(HELLO)
    reference = handmade.write_image(f"oci:{tmp_path / 'hello'}:1", manifest, blob, config)
    assert ocilab.validate(reference).ok
    for path in (tmp_path / "hello" / "blobs" / "sha256").iterdir():
        assert str(Digest.of_bytes(path.read_bytes())) == f"sha256:{path.name}"
    raw = run(require_tool("skopeo"), "inspect", "--raw", reference).stdout
    assert raw.encode() == manifest.raw


def test_an_index_with_a_shared_layer_stores_it_once(tmp_path: Path) -> None:
    amd, blob, amd_config = image_parts(HELLO)
    arm, _, arm_config = image_parts(HELLO, "arm64")
    index = handmade.index({"linux/amd64": amd, "linux/arm64": arm})
    assert [(entry.digest, entry.platform) for entry in index.manifests] == [
        (amd.digest, Platform("linux", "amd64")),
        (arm.digest, Platform("linux", "arm64")),
    ]
    amd64_parts, arm64_parts = [amd, amd_config, blob], [arm, arm_config, blob]  # the notebook's way: blob given twice
    reference = handmade.write_image(f"oci:{tmp_path / 'multi'}:1", index, *amd64_parts, *arm64_parts)
    assert len(list((tmp_path / "multi" / "blobs" / "sha256").iterdir())) == 6  # 1 layer, 2 configs, 2 manifests, index
    assert ocilab.open(reference, platform="linux/arm64").manifest_digest == arm.digest
    assert ocilab.validate(reference).ok


def test_a_wrong_diff_id_is_written_and_validation_names_the_layer(tmp_path: Path) -> None:
    manifest, blob, _ = image_parts(HELLO)
    wrong = handmade.config([Digest.of_bytes(blob)])
    broken = handmade.manifest(wrong, manifest.layers)
    reference = handmade.write_image(f"oci:{tmp_path / 'broken'}:1", broken, blob, wrong)
    problems = ocilab.validate(reference).problems
    assert len(problems) == 1 and problems[0].startswith("layers[0]:") and "diff_id" in problems[0]
    verdict = ocilab.check.valid_image(reference)
    assert not verdict and "layers[0]" in verdict.message


def test_a_missing_part_writes_nothing_and_bad_destinations_are_refused(tmp_path: Path) -> None:
    manifest, blob, config = image_parts(HELLO)
    with pytest.raises(NotFoundError, match=f"points at {manifest.config.digest}, which is not among the parts"):
        handmade.write_image(f"oci:{tmp_path / 'missing'}:1", manifest, blob)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file, and oci: names a layout directory"):
        handmade.write_image(f"oci:{tmp_path / 'file'}:1", manifest, blob, config)
    assert (tmp_path / "file").read_text() == "x"


def test_show_json_shows_the_stored_bytes_digest_and_the_document_indented(tmp_path: Path) -> None:
    manifest, _, config = image_parts(HELLO)
    view = show_json(manifest)
    header, body = repr(view).split("\n", 1)
    assert header == f"manifest: {len(manifest.raw)} bytes stored, {manifest.digest}"
    assert json.loads(body) == json.loads(manifest.raw) and body.startswith("{\n  ")
    assert show_json(build.config_document(architecture="amd64", os="linux", diff_ids=[])).raw == build.encode(
        build.config_document(architecture="amd64", os="linux", diff_ids=[])
    )
    assert repr(show_json(config, "config")).startswith(
        f"config: {len(config)} bytes stored, {Digest.of_bytes(config)}"
    )
    (tmp_path / "bad.json").write_bytes(b"{not json")
    with pytest.raises(InvalidInputError, match="bad.json: not JSON"):
        show_json(tmp_path / "bad.json")
    with pytest.raises(InvalidInputError, match="absent.json: cannot read it"):
        show_json(tmp_path / "absent.json")


def test_the_new_checks_hint_at_the_usual_mistakes(tmp_path: Path) -> None:
    manifest, blob, config = image_parts(HELLO)
    reference = handmade.write_image(f"oci:{tmp_path / 'hello'}:1", manifest, blob, config)
    verdict = ocilab.check.diff_id(str(Digest.of_bytes(blob)), reference, 0)
    assert not verdict and "compressed blob" in verdict.message
    assert ocilab.check.diff_id(str(Digest.of_bytes(handmade.layer_tar(HELLO))), reference, 0)
    assert ocilab.check.blob_count(3, reference) and ocilab.check.blob_count(3, tmp_path / "hello")
    assert "fewer" in ocilab.check.blob_count(4, tmp_path / "hello").message
    assert "no blobs/ directory" in ocilab.check.blob_count(3, tmp_path).message
    assert "'oci:DIR:TAG'" in ocilab.check.valid_image(3).message
