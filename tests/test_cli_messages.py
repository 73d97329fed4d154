"""What the command line says when a learner gets something wrong: one line on stderr, the right exit code,
no traceback, and the words needed to fix it. Run as a real subprocess on images written by hand (no engine)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.random_image import RandomImage, write_random_image

EXIT_INVALID, EXIT_USAGE = 1, 2
REFERENCE_COMMANDS = ["inspect", "validate", "layers", "changes", "diff", "efficiency", "copy", "rm", "gc", "build"]
TRANSPORT_SYNTAX = [
    "oci:DIR[:TAG]",
    "oci-archive:FILE[:TAG]",
    "docker-archive:FILE[:NAME:TAG]",
    "docker-daemon:NAME:TAG",
    "docker://HOST[:PORT]/REPO[:TAG][@DIGEST]",
]


def ocilab(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocilab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def refused(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line ``result`` printed on stderr, after checking the exit code and that nothing else went wrong."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def image(tmp_path: Path) -> RandomImage:
    return write_random_image(tmp_path / "layout", seed=11)


# ---------------------------------------------------------------------------------------------
# --version, --help


def test_version_is_the_installed_distributions() -> None:
    result = ocilab("--version")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == f"ocilab {version('ocilab')}\n"


@pytest.mark.parametrize("command", REFERENCE_COMMANDS)
def test_help_of_every_command_that_takes_an_image_explains_the_transports(command: str) -> None:
    result = ocilab(command, "--help")
    assert result.returncode == 0, result.stderr
    for syntax in TRANSPORT_SYNTAX:
        assert syntax in result.stdout, (command, syntax)


@pytest.mark.parametrize("command", ["doctor", "registry"])
def test_help_without_images_has_no_transport_list(command: str) -> None:
    assert "image references" not in ocilab(command, "--help").stdout


@pytest.mark.parametrize("command", ["changes", "diff"])
def test_help_of_changes_and_diff_explains_the_letters(command: str) -> None:
    lines = ocilab(command, "--help").stdout.splitlines()
    for letter, word in (("A", "added"), ("M", "modified"), ("D", "deleted")):
        assert any(line.strip().startswith(f"{letter}  {word}:") for line in lines), (letter, lines)


def test_the_letters_in_the_help_are_the_ones_the_table_prints(tmp_path: Path) -> None:
    """A layer that adds, rewrites and whites out: the table marks them with the letters --help explains."""
    first = tar_of({"etc/a": b"one", "etc/b": b"two"})
    second = tar_of({"etc/a": b"changed", "etc/c": b"new", "etc/.wh.b": b""})
    built = write_random_image(tmp_path / "marks", seed=2, layers=0, shared_layers=[first, second])
    rows = [line.split() for line in ocilab("changes", built.reference, "--layer", "1").stdout.splitlines()[1:]]
    assert sorted((row[1], row[-1]) for row in rows) == [("A", "/etc/c"), ("D", "/etc/b"), ("M", "/etc/a")]


# ---------------------------------------------------------------------------------------------
# Usage errors: one line, exit 2


def test_missing_command_is_one_line() -> None:
    line = refused(ocilab(), EXIT_USAGE)
    assert "COMMAND" in line and "ocilab --help" in line


def test_missing_reference_is_one_line() -> None:
    line = refused(ocilab("layers"), EXIT_USAGE)
    assert line.startswith("ocilab layers: ") and "REF" in line


@pytest.mark.parametrize("size", ["20XB", "MB", "1.5.2MB", "-3", "20 M B"])
def test_a_size_that_does_not_parse_names_the_units(image: RandomImage, size: str) -> None:
    line = refused(ocilab("efficiency", image.reference, "--ci", "--highest-wasted-bytes", size), EXIT_USAGE)
    assert f"'{size}' is not a size" in line
    for unit in ("B", "kB", "MB", "GB", "KiB", "MiB", "GiB"):
        assert f" {unit}," in line or f" {unit} " in line, unit


@pytest.mark.parametrize("size", ["512", "20MB", "5MiB", "1.5kB", "0"])
def test_sizes_in_any_listed_unit_are_accepted(image: RandomImage, size: str) -> None:
    result = ocilab("efficiency", image.reference, "--ci", "--highest-wasted-bytes", size)
    assert result.returncode in (0, 1), result.stderr  # passed or failed the threshold: either way it parsed


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--lowest-efficiency", "1.5", "not a ratio from 0 to 1"),
        ("--lowest-efficiency", "-0.1", "not a ratio from 0 to 1"),
        ("--lowest-efficiency", "nan", "is not a number"),
        ("--lowest-efficiency", "high", "is not a number"),
        ("--highest-wasted-percent", "101", "not a percentage from 0 to 100"),
        ("--highest-wasted-percent", "-1", "not a percentage from 0 to 100"),
    ],
)
def test_thresholds_out_of_range_are_refused(image: RandomImage, option: str, value: str, words: str) -> None:
    line = refused(ocilab("efficiency", image.reference, "--ci", option, value), EXIT_USAGE)
    assert option in line and words in line


@pytest.mark.parametrize(
    ("option", "value"),
    [("--lowest-efficiency", "0"), ("--lowest-efficiency", "1"), ("--highest-wasted-percent", "100")],
)
def test_thresholds_at_the_ends_of_their_range_are_accepted(image: RandomImage, option: str, value: str) -> None:
    result = ocilab("efficiency", image.reference, "--ci", option, value, "--json")
    assert result.returncode in (0, 1), result.stderr
    assert json.loads(result.stdout)["ci"]["passed"] is (result.returncode == 0)


@pytest.mark.parametrize(
    "options",
    [
        ["--lowest-efficiency", "0.5"],
        ["--highest-wasted-bytes", "1MB"],
        ["--highest-wasted-percent", "10", "--highest-wasted-bytes", "1MB"],
    ],
)
def test_thresholds_without_ci_are_refused_with_a_hint(image: RandomImage, options: list[str]) -> None:
    line = refused(ocilab("efficiency", image.reference, *options), EXIT_USAGE)
    assert "add --ci" in line
    for option in options[::2]:
        assert option in line


# ---------------------------------------------------------------------------------------------
# References that name the wrong kind of thing


def test_oci_naming_a_file_suggests_oci_archive_and_the_suggestion_works(image: RandomImage, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(image.layout, arcname=".")
    line = refused(ocilab("inspect", f"oci:{archive}:1"), EXIT_INVALID)
    assert f"{archive} is a file" in line and "layout directory" in line
    suggestion = f"oci-archive:{archive}:1"
    assert suggestion in line
    result = ocilab("inspect", suggestion, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["manifest_digest"] == image.digest


def test_copy_to_oci_naming_a_file_writes_nothing(image: RandomImage, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_bytes(b"keep me")
    line = refused(ocilab("copy", "--quiet", image.reference, f"oci:{target}:1"), EXIT_INVALID)
    assert f"oci-archive:{target}:1" in line
    assert target.read_bytes() == b"keep me"


@pytest.mark.parametrize("name", ["busybox", "ocilab-test/busybox", "localhost:5000/busybox"])
def test_docker_daemon_without_a_tag_is_refused_as_skopeo_does(name: str) -> None:
    """Refused before any engine is asked (DOCKER_HOST points nowhere), with skopeo's own words."""
    line = refused(ocilab("inspect", f"docker-daemon:{name}", env={"DOCKER_HOST": "unix:///nonexistent"}), EXIT_INVALID)
    assert f"docker-daemon: reference {name} has neither a tag nor a digest" in line
    assert f"docker-daemon:{name}:TAG" in line and "docker-daemon:sha256:ID" in line
    require_tool("skopeo")
    peer = subprocess.run(["skopeo", "inspect", f"docker-daemon:{name}"], capture_output=True, text=True, timeout=60)
    assert peer.returncode != 0
    assert f"docker-daemon: reference {name} has neither a tag nor a digest" in peer.stderr


def test_docker_daemon_as_a_destination_without_a_tag_is_refused(image: RandomImage) -> None:
    result = ocilab("copy", "--quiet", image.reference, "docker-daemon:ocilab-test/untagged")
    assert "has neither a tag nor a digest" in refused(result, EXIT_INVALID)


@pytest.mark.parametrize("name", ["localhost:5000/busybox:1", "busybox:latest"])
def test_docker_daemon_with_a_tag_goes_to_the_engine(name: str) -> None:
    """A registry port is not a tag, a tag is: with a tag, the engine is asked (and here it does not answer)."""
    line = refused(ocilab("inspect", f"docker-daemon:{name}", env={"DOCKER_HOST": "unix:///nonexistent"}), EXIT_INVALID)
    assert "No Docker engine answers at unix:///nonexistent" in line


def test_containers_storage_without_a_tag_says_how_to_name_one() -> None:
    """Refused before Podman is asked (or started), as docker-daemon: is."""
    line = refused(ocilab("inspect", "containers-storage:busybox"), EXIT_INVALID)
    assert "neither a tag nor a digest" in line and "containers-storage:busybox:TAG" in line


# ---------------------------------------------------------------------------------------------
# What the tables and errors say about layers


def test_a_hard_links_size_shows_in_changes_as_in_diff(tmp_path: Path) -> None:
    data = b"x" * 3000
    linked = tar_of({"bin/tool": data}, hardlinks={"bin/alias": "bin/tool"})
    before = write_random_image(tmp_path / "a", seed=4, layers=1, files=1)
    after = write_random_image(tmp_path / "b", seed=4, layers=1, files=1, shared_layers=[linked])
    changes = row_of(ocilab("changes", after.reference, "--layer", "0").stdout, "/bin/alias")
    diff = row_of(ocilab("diff", before.reference, after.reference).stdout, "/bin/alias")
    assert changes[1:4] == ["A", "hardlink", "2.9"] and changes[4] == "KiB"
    assert diff[:5] == ["A", "hardlink", "2.9", "KiB", "/bin/alias"]
    as_json = json.loads(ocilab("changes", after.reference, "--layer", "0", "--json").stdout)
    assert {"layer": 0, "path": "/bin/alias", "change": "added", "type": "hardlink", "size": 3000} in as_json


def test_a_layer_labelled_gzip_holding_a_plain_tar_is_explained(tmp_path: Path) -> None:
    built = write_random_image(tmp_path / "mislabelled", seed=5, layers=1)
    replace_layer_bytes(built, gzip.decompress)
    line = refused(ocilab("changes", built.reference), EXIT_INVALID)
    assert "layer 0" in line
    assert "the layer is labelled gzip but its bytes are not compressed" in line
    assert "media type must say how its bytes are compressed" in line


def test_a_layer_labelled_gzip_holding_zstd_is_explained(tmp_path: Path) -> None:
    zstd = pytest.importorskip("compression.zstd" if sys.version_info >= (3, 14) else "backports.zstd")
    built = write_random_image(tmp_path / "zstd", seed=5, layers=1)
    replace_layer_bytes(built, lambda data: zstd.compress(gzip.decompress(data)))
    line = refused(ocilab("layers", built.reference), EXIT_INVALID)
    assert "the layer is labelled gzip but its bytes are zstd-compressed" in line


# ---------------------------------------------------------------------------------------------
# Helpers: layers and layouts written with tarfile and json, not with ocilab.


def tar_of(files: dict[str, bytes], hardlinks: dict[str, str] | None = None) -> bytes:
    """An uncompressed tar of ``files`` (mtime 0), then ``hardlinks`` (name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (hardlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.LNKTYPE, target, 0o644
            tar.addfile(info)
    return buffer.getvalue()


def row_of(table: str, path: str) -> list[str]:
    """The whitespace-split row of a table whose last cell is ``path``."""
    (row,) = [line.split() for line in table.splitlines() if line.split() and line.split()[-1] == path]
    return row


def replace_layer_bytes(built: RandomImage, change: object) -> None:
    """Give layer 0 of ``built`` new bytes (``change(old)``), its descriptor's digest and size following, its
    media type kept: the manifest and index.json are rewritten by hand so every digest still matches."""
    assert callable(change)
    blobs = built.layout / "blobs" / "sha256"

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    manifest = json.loads((blobs / built.digest.split(":")[1]).read_bytes())
    layer = manifest["layers"][0]
    data = change((blobs / layer["digest"].split(":")[1]).read_bytes())
    layer.update(digest=put(data), size=len(data))
    raw = json.dumps(manifest).encode()
    index = json.loads((built.layout / "index.json").read_text())
    index["manifests"][0].update(digest=put(raw), size=len(raw))
    (built.layout / "index.json").write_text(json.dumps(index))
