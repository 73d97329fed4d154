"""Engine images (docker-daemon: and containers-storage:) exported by the real engines, cross-checked with each
engine's own ``image inspect`` and ``save``; unknown images, bad names, a missing SDK and unreachable engines
refused in one sentence. Every engine test runs against Docker and Podman alike."""

from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ocilab.errors import (
    ComponentUnavailableError,
    DigestFormatError,
    InvalidInputError,
    NotFoundError,
    ReferenceFormatError,
)
from ocilab.stores.daemon import ENGINES, DaemonStore, connect_engine, open_engine_image
from ocilab.stores.docker_archive import open_docker_archive
from ocilab.stores.image import load_image
from tests.conftest import require_tool, run
from tests.engines import ENGINE_NAMES, cli_inspect, engine, engine_client, engine_image, image_id, transport

__all__ = ["engine", "engine_client", "engine_image"]  # fixtures


@pytest.fixture(scope="module")
def inspected(engine: str, engine_image: str) -> dict[str, Any]:
    """``docker image inspect`` / ``podman image inspect`` of the test image, from the engine's CLI (a peer)."""
    return cli_inspect(engine, engine_image)


def test_engine_image_agrees_with_the_engines_inspect(engine: str, engine_image: str, inspected: dict) -> None:
    with open_engine_image(engine_image, engine) as store:
        assert isinstance(store, DaemonStore)
        assert store.reference == f"{transport(engine)}:{engine_image}"
        assert store.workdir.is_dir()
        image = load_image(store)
        assert str(image.config_digest) == image_id(inspected)
        assert [str(d) for d in image.config.diff_ids] == inspected["RootFS"]["Layers"]
        assert [str(layer.digest) for layer in image.layers] == inspected["RootFS"]["Layers"]
        with image.open_layer(0) as reader:
            reader.drain()
            assert reader.verified
    assert not store.workdir.exists()


def test_engine_image_by_image_id(engine: str, engine_client: Any, inspected: dict) -> None:
    with open_engine_image(image_id(inspected), engine, client=engine_client) as store:
        assert store.reference == f"{transport(engine)}:{image_id(inspected)}"
        assert str(load_image(store).config_digest) == image_id(inspected)


def test_engine_image_matches_the_clis_save(engine: str, engine_client: Any, engine_image: str, tmp_path: Path) -> None:
    """The API's export and the CLI's ``save`` (docker-archive) give the same image, down to the manifest digest."""
    cli = require_tool(ENGINES[engine].cli)
    saved = tmp_path / "saved.tar"
    run(cli, "save", "-o", saved, engine_image)
    with open_engine_image(engine_image, engine, client=engine_client) as exported, open_docker_archive(saved) as cli:
        assert exported.root() == cli.root()


def test_unknown_image(engine: str, engine_client: Any) -> None:
    title = ENGINES[engine].title
    with pytest.raises(NotFoundError, match=f"no image ocilab-test/absent:0 in {title}"):
        open_engine_image("ocilab-test/absent:0", engine)
    with pytest.raises(NotFoundError, match=f"no image sha256:0{{64}} in {title} \\({engine} image ls"):
        open_engine_image("sha256:" + "0" * 64, engine, client=engine_client)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("busybox@sha256:" + "0" * 64, ReferenceFormatError),
        ("sha256:abc", DigestFormatError),
        ("Not A Name", ReferenceFormatError),
    ],
)
@pytest.mark.parametrize("kind", ENGINE_NAMES)
def test_bad_names_are_refused_before_connecting(kind: str, name: str, error: type[InvalidInputError]) -> None:
    with pytest.raises(error):
        open_engine_image(name, kind, client=SimpleNamespace())


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


UNREACHABLE = {
    "docker": ("DOCKER_HOST", "No Docker engine answers at {host}: start dockerd"),
    "podman": ("CONTAINER_HOST", "No Podman service answers at CONTAINER_HOST={host}: start it there"),
}


@pytest.mark.parametrize("host", ["unix:///nonexistent.sock", f"tcp://127.0.0.1:{unused_port()}"])
@pytest.mark.parametrize("kind", ENGINE_NAMES)
def test_unreachable_engine(monkeypatch: pytest.MonkeyPatch, kind: str, host: str) -> None:
    """An engine named by its variable that does not answer: one sentence naming it (Podman is not started)."""
    variable, message = UNREACHABLE[kind]
    monkeypatch.setenv(variable, host)
    with pytest.raises(ComponentUnavailableError, match=message.format(host=host)):
        connect_engine(kind)
    with pytest.raises(ComponentUnavailableError, match=host):
        open_engine_image("ocilab-test/busybox:1", kind)


@pytest.mark.parametrize("kind", ENGINE_NAMES)
def test_silent_engine_times_out(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Something listens but never answers: the short connect timeout ends the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        host = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setenv(UNREACHABLE[kind][0], host)
        with pytest.raises(ComponentUnavailableError, match=f"answers at (CONTAINER_HOST=)?{host}"):
            connect_engine(kind)


def test_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    for kind in ENGINE_NAMES:
        with pytest.raises(ComponentUnavailableError, match="docker Python package is not installed"):
            connect_engine(kind)


def test_failed_export_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An engine that sends something that is not an archive: refused, and the temporary directory is gone."""
    engine = SimpleNamespace(
        images=SimpleNamespace(get=lambda name: None),
        api=SimpleNamespace(get_image=lambda name: iter([b"not ", b"a tar"])),
    )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(InvalidInputError, match="not a readable tar archive"):
        open_engine_image("ocilab-test/busybox:1", client=engine)
    assert list(tmp_path.iterdir()) == []
