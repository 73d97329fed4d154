"""Writing into the Docker engine: docker load of our docker-archive, DaemonWriter, remove_daemon_image.

Docker 20.10 keeps no manifest: the image ID is the config digest and
``RootFS.Layers`` are the diff_ids, which is what these tests compare.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import NotFoundError, ReferenceFormatError, UnsupportedError
from ocilab.stores.daemon import DaemonWriter, remove_daemon_image
from ocilab.stores.layout import open_layout
from tests.conftest import require_tool, run
from tests.random_image import RandomImage, write_random_image
from tests.test_layout_writer import copy_image, copy_to

REPO = "ocilab-test/writer"


@pytest.fixture
def source(tmp_path: Path, docker_client) -> RandomImage:  # type: ignore[no-untyped-def]
    return write_random_image(tmp_path / "source", seed=31, tag="src")


@pytest.fixture
def engine_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A tag no other test uses, removed from the engine afterwards whatever happened."""
    name = f"{REPO}:{request.node.name.removeprefix('test_')[:60]}"
    yield name
    subprocess.run(["docker", "image", "rm", "--force", name], capture_output=True)


def docker_inspect(name: str) -> dict:  # type: ignore[type-arg]
    require_tool("docker")
    return json.loads(run("docker", "image", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def config_and_diff_ids(image: RandomImage) -> tuple[str, list[str]]:
    with ocilab.open(image.reference) as opened:
        return str(opened.config_digest), [str(d) for d in opened.config.diff_ids]


def test_docker_loads_our_docker_archive(source: RandomImage, engine_name: str, tmp_path: Path) -> None:
    """docker load (20.10) reads manifest.json only, and decompresses the gzip layers it names."""
    archive = tmp_path / "image.tar"
    copy_to(source, f"docker-archive:{archive}:{engine_name}")
    require_tool("docker")
    assert f"Loaded image: {engine_name}" in run("docker", "load", "--input", archive).stdout
    config, diff_ids = config_and_diff_ids(source)
    inspected = docker_inspect(engine_name)
    assert inspected["Id"] == config
    assert inspected["RootFS"]["Layers"] == diff_ids


def test_daemon_writer_loads_the_image(source: RandomImage, engine_name: str) -> None:
    copy_to(source, f"docker-daemon:{engine_name}")
    config, diff_ids = config_and_diff_ids(source)
    inspected = docker_inspect(engine_name)
    assert inspected["Id"] == config
    assert inspected["RootFS"]["Layers"] == diff_ids
    with ocilab.open(f"docker-daemon:{engine_name}") as image:
        assert str(image.config_digest) == config


def test_daemon_writer_records_what_the_engine_reported(source: RandomImage, engine_name: str) -> None:
    with open_layout(source.layout, source.tag) as store, DaemonWriter(engine_name) as writer:
        copy_image(store, writer)
        workdir = writer._workdir
        assert workdir.is_dir()
    config, _ = config_and_diff_ids(source)
    assert writer.loaded == [(config, [engine_name])]
    assert not workdir.exists(), "the spooled archive was left behind"


def test_remove_daemon_image_prints_what_docker_rmi_would(source: RandomImage, engine_name: str) -> None:
    copy_to(source, f"docker-daemon:{engine_name}")
    image_id = docker_inspect(engine_name)["Id"]
    lines = remove_daemon_image(engine_name)
    assert lines[0] == f"Untagged: {engine_name}"
    assert f"Deleted: {image_id}" in lines
    assert all(line.startswith(("Untagged: ", "Deleted: sha256:")) for line in lines)
    result = subprocess.run(["docker", "image", "inspect", engine_name], capture_output=True, text=True)
    assert result.returncode != 0 and "No such image" in result.stderr


def test_removing_an_absent_image_is_not_found(docker_client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError, match=f"no image {REPO}:absent in the Docker engine"):
        remove_daemon_image(f"{REPO}:absent")


def test_daemon_writer_refuses_ids_digests_and_indexes(tmp_path: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ReferenceFormatError, match="needs NAME:TAG, not an ID"):
        DaemonWriter(f"sha256:{'a' * 64}")
    with pytest.raises(ReferenceFormatError, match="not by digest"):
        DaemonWriter(f"{REPO}@sha256:{'a' * 64}")
    multi = write_random_image(tmp_path / "multi", seed=32, tag="m", platforms=("linux/amd64", "linux/arm64"))
    with open_layout(multi.layout, "m") as store, DaemonWriter(f"{REPO}:multi") as writer:
        assert not writer.accepts(store.root().media_type)
        with pytest.raises(UnsupportedError, match="one image, not an index"):
            writer.set_root(store.root())
        writer.abort()
    assert subprocess.run(["docker", "image", "inspect", f"{REPO}:multi"], capture_output=True).returncode != 0
