"""Writing into an engine (Docker and Podman alike): load of our docker-archive, DaemonWriter, remove_engine_image.

Neither Docker 20.10 nor Podman's compat load keeps our manifest: the image ID
is the config digest and ``RootFS.Layers`` are the diff_ids, which is what
these tests compare, against each engine's own ``image inspect``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ocilab
from ocilab.errors import NotFoundError, ReferenceFormatError, UnsupportedError
from ocilab.stores.daemon import ENGINES, DaemonWriter, remove_engine_image
from ocilab.stores.layout import open_layout
from tests.conftest import require_tool, run
from tests.engines import cli_has, cli_inspect, engine, engine_client, image_id, transport
from tests.random_image import RandomImage, write_random_image
from tests.test_layout_writer import copy_image, copy_to

__all__ = ["engine", "engine_client"]  # fixtures

REPO = "ocilab-test/writer"


@pytest.fixture
def source(tmp_path: Path, engine_client: Any) -> RandomImage:
    return write_random_image(tmp_path / "source", seed=31, tag="src")


@pytest.fixture
def engine_name(request: pytest.FixtureRequest, engine: str) -> Iterator[str]:
    """A tag no other test uses, removed from the engine afterwards whatever happened."""
    name = f"{REPO}:{request.node.originalname.removeprefix('test_')[:60]}"
    yield name
    subprocess.run([ENGINES[engine].cli, "image", "rm", "--force", name], capture_output=True)


def config_and_diff_ids(image: RandomImage) -> tuple[str, list[str]]:
    with ocilab.open(image.reference) as opened:
        return str(opened.config_digest), [str(d) for d in opened.config.diff_ids]


def test_the_engine_loads_our_docker_archive(
    engine: str, source: RandomImage, engine_name: str, tmp_path: Path
) -> None:
    """``docker load`` (20.10) and ``podman load`` read manifest.json, and decompress the gzip layers it names."""
    archive = tmp_path / "image.tar"
    copy_to(source, f"docker-archive:{archive}:{engine_name}")
    cli = require_tool(ENGINES[engine].cli)
    assert f"Loaded image: {engine_name}" in run(cli, "load", "--input", archive).stdout.replace("docker.io/", "")
    config, diff_ids = config_and_diff_ids(source)
    inspected = cli_inspect(engine, engine_name)
    assert image_id(inspected) == config
    assert inspected["RootFS"]["Layers"] == diff_ids


def test_daemon_writer_loads_the_image(engine: str, source: RandomImage, engine_name: str) -> None:
    copy_to(source, f"{transport(engine)}:{engine_name}")
    config, diff_ids = config_and_diff_ids(source)
    inspected = cli_inspect(engine, engine_name)
    assert image_id(inspected) == config
    assert inspected["RootFS"]["Layers"] == diff_ids
    with ocilab.open(f"{transport(engine)}:{engine_name}") as image:
        assert str(image.config_digest) == config


def test_save_and_load_round_trip_keeps_the_image(engine: str, source: RandomImage, engine_name: str) -> None:
    """Layout -> engine -> layout: the engine keeps the config and diff_ids byte for byte (not the gzip layers)."""
    copy_to(source, f"{transport(engine)}:{engine_name}")
    back = source.layout.parent / "back"
    ocilab.copy(f"{transport(engine)}:{engine_name}", f"oci:{back}:1")
    with ocilab.open(f"oci:{back}:1") as image:
        assert (str(image.config_digest), [str(d) for d in image.config.diff_ids]) == config_and_diff_ids(source)


def test_daemon_writer_records_what_the_engine_reported(engine: str, source: RandomImage, engine_name: str) -> None:
    with open_layout(source.layout, source.tag) as store, DaemonWriter(engine_name, engine) as writer:
        copy_image(store, writer)
        workdir = writer._workdir
        assert workdir.is_dir()
    config, _ = config_and_diff_ids(source)
    tag = engine_name if engine == "docker" else f"docker.io/{engine_name}"  # Podman reports the full name
    assert writer.loaded == [(config, [tag])]
    assert not workdir.exists(), "the spooled archive was left behind"


def test_remove_engine_image_prints_what_the_engine_reports(engine: str, source: RandomImage, engine_name: str) -> None:
    """Docker untags first, then deletes ``sha256:`` IDs; Podman deletes (bare IDs) first, then untags."""
    copy_to(source, f"{transport(engine)}:{engine_name}")
    config = image_id(cli_inspect(engine, engine_name))
    lines = remove_engine_image(engine_name, engine)
    if engine == "docker":
        assert lines[0] == f"Untagged: {engine_name}"
        assert f"Deleted: {config}" in lines
        assert all(line.startswith(("Untagged: ", "Deleted: sha256:")) for line in lines)
    else:
        assert lines[-1] == f"Untagged: docker.io/{engine_name}"
        assert f"Deleted: {config.removeprefix('sha256:')}" in lines
    assert not cli_has(engine, engine_name)


def test_removing_an_absent_image_is_not_found(engine: str, engine_client: Any) -> None:
    with pytest.raises(NotFoundError, match=f"no image {REPO}:absent in {ENGINES[engine].title}"):
        remove_engine_image(f"{REPO}:absent", engine)


def test_daemon_writer_refuses_ids_digests_and_indexes(engine: str, tmp_path: Path, engine_client: Any) -> None:
    with pytest.raises(ReferenceFormatError, match=f"{transport(engine)}:sha256:a+: .*needs NAME:TAG, not an ID"):
        DaemonWriter(f"sha256:{'a' * 64}", engine)
    with pytest.raises(ReferenceFormatError, match="not by digest"):
        DaemonWriter(f"{REPO}@sha256:{'a' * 64}", engine)
    multi = write_random_image(tmp_path / "multi", seed=32, tag="m", platforms=("linux/amd64", "linux/arm64"))
    with open_layout(multi.layout, "m") as store, DaemonWriter(f"{REPO}:multi", engine) as writer:
        assert not writer.accepts(store.root().media_type)
        with pytest.raises(UnsupportedError, match="one image, not an index"):
            writer.set_root(store.root())
        writer.abort()
    assert not cli_has(engine, f"{REPO}:multi")
