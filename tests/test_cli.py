"""The ``ocilab`` command line, run as a real subprocess: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import write_index_layout
from tests.conftest import run
from tests.random_image import write_random_image
from tests.test_model import SPEC_CONFIG, SPEC_INDEX, SPEC_MANIFEST, encode, mutated


def ocilab(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "ocilab", *map(str, args)],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_inspect_json_fields(oci_layout: Path) -> None:
    result = ocilab("inspect", f"oci:{oci_layout}:v1", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    peer = json.loads(run("skopeo", "inspect", f"oci:{oci_layout}:v1").stdout)
    assert document["manifest_digest"] == peer["Digest"]
    assert [layer["digest"] for layer in document["layers"]] == peer["Layers"]
    assert document["platform"] == {"os": "linux", "architecture": "amd64"}
    assert {"reference", "media_type", "config_digest", "history", "config"} <= document.keys()
    assert set(document["layers"][0]) >= {"digest", "diff_id", "size", "media_type"}
    assert document["config"]["Env"] == peer["Env"]


def test_inspect_human_output(oci_layout: Path) -> None:
    result = ocilab("inspect", f"oci:{oci_layout}:v1")
    assert result.returncode == 0, result.stderr
    assert "platform    linux/amd64" in result.stdout
    assert "MEDIA TYPE" in result.stdout and "MiB" in result.stdout


def test_inspect_index_and_platform(oci_layout: Path, tmp_path: Path) -> None:
    """An index wrapping the image: listed without --platform, chosen with it, refused for a missing one."""
    layout = write_index_layout(oci_layout, tmp_path / "multi")
    listing = json.loads(ocilab("inspect", f"oci:{layout}:multi", "--json").stdout)
    assert listing["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"]["architecture"] for m in listing["manifests"]] == ["amd64"]
    chosen = ocilab("inspect", f"oci:{layout}:multi", "--platform", "linux/amd64", "--json")
    assert json.loads(chosen.stdout)["manifest_digest"] == listing["manifests"][0]["digest"]
    missing = ocilab("inspect", f"oci:{layout}:multi", "--platform", "linux/riscv64")
    assert missing.returncode == 1
    assert "no image for platform linux/riscv64 (available: linux/amd64)" in missing.stderr


@pytest.mark.parametrize(
    ("kind", "document"),
    [
        ("manifest", SPEC_MANIFEST),
        ("index", SPEC_INDEX),
        ("config", SPEC_CONFIG),
        ("descriptor", SPEC_INDEX["manifests"][0]),
    ],
)
def test_validate_documents(kind: str, document: dict, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.json"
    path.write_bytes(encode(document))
    assert ocilab("validate", "--type", kind, path).returncode == 0
    assert ocilab("validate", "--type", kind, "-", stdin=encode(document)).returncode == 0


def test_validate_reports_the_field(tmp_path: Path) -> None:
    bad = mutated(SPEC_MANIFEST, "layers.2.digest", "sha256:" + "A" * 64)
    result = ocilab("validate", "--type", "manifest", "-", stdin=bad)
    assert result.returncode == 1
    assert result.stderr.strip() == "ocilab: <stdin>: layers[2].digest: uppercase hex is not allowed"


def test_validate_usage_errors_exit_2(tmp_path: Path) -> None:
    assert ocilab("validate", "--type", "nonsense", "x").returncode == 2
    assert ocilab("validate").returncode == 2
    assert ocilab().returncode == 2


def test_validate_unreadable_file(tmp_path: Path) -> None:
    result = ocilab("validate", "--type", "manifest", tmp_path / "absent.json")
    assert result.returncode == 1 and "absent.json: cannot read" in result.stderr


def test_validate_image_and_layout(oci_layout: Path) -> None:
    assert ocilab("validate", f"oci:{oci_layout}:v1").returncode == 0
    result = ocilab("validate", "--type", "layout", oci_layout, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["valid"] is True


def test_validate_damaged_image_exits_1(tmp_path: Path) -> None:
    copy = write_random_image(tmp_path / "damaged", seed=3, tag="v1").layout
    index = json.loads((copy / "index.json").read_text())
    manifest = json.loads((copy / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    layer = copy / "blobs/sha256" / manifest["layers"][1]["digest"].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    result = ocilab("validate", f"oci:{copy}:v1")
    assert result.returncode == 1
    assert "layer 1" in result.stderr and "does not match its digest" in result.stderr


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("busybox", "has no known transport"),
        ("oci:", "nothing after 'oci:'"),
        ("docker://Bad/Name", "repository component"),
        ("oci-archive:/nonexistent/archive.tar", "no such file"),
    ],
)
def test_inspect_bad_references(reference: str, message: str) -> None:
    result = ocilab("inspect", reference)
    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.parametrize("layer", ["2", "-1"])
def test_changes_of_a_layer_that_does_not_exist(tmp_path: Path, layer: str) -> None:
    image = write_random_image(tmp_path / "layout", seed=3)
    result = ocilab("changes", image.reference, "--layer", layer)
    assert result.returncode == 1
    assert f"has 2 layers (0 to 1); there is no layer {layer}" in result.stderr
