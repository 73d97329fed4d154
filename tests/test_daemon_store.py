"""docker-daemon: images exported by the real engine, cross-checked with ``docker image inspect``;
unknown images, bad names, a missing SDK and unreachable engines refused in one sentence."""

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
from ocilab.stores.daemon import DaemonStore, connect_engine, open_docker_daemon
from ocilab.stores.docker_archive import open_docker_archive
from ocilab.stores.image import load_image


def test_daemon_agrees_with_docker(docker_client: Any, busybox_image: str, docker_inspect: dict) -> None:
    with open_docker_daemon(busybox_image) as store:
        assert isinstance(store, DaemonStore)
        assert store.reference == f"docker-daemon:{busybox_image}"
        assert store.workdir.is_dir()
        image = load_image(store)
        assert str(image.config_digest) == docker_inspect["Id"]
        assert [str(d) for d in image.config.diff_ids] == docker_inspect["RootFS"]["Layers"]
        assert [str(layer.digest) for layer in image.layers] == docker_inspect["RootFS"]["Layers"]
        with image.open_layer(0) as reader:
            reader.drain()
            assert reader.verified
    assert not store.workdir.exists()


def test_daemon_by_image_id(docker_client: Any, docker_inspect: dict) -> None:
    with open_docker_daemon(docker_inspect["Id"], engine=docker_client) as store:
        assert store.reference == f"docker-daemon:{docker_inspect['Id']}"
        assert str(load_image(store).config_digest) == docker_inspect["Id"]


def test_daemon_matches_docker_save(docker_client: Any, busybox_image: str, docker_save_tar: Path) -> None:
    """The engine's export and the CLI's ``docker save`` give the same image, down to the manifest digest."""
    with open_docker_daemon(busybox_image, engine=docker_client) as daemon, open_docker_archive(docker_save_tar) as cli:
        assert daemon.root() == cli.root()


def test_unknown_image(docker_client: Any) -> None:
    with pytest.raises(NotFoundError, match="no image ocilab-test/absent:0 in the Docker engine"):
        open_docker_daemon("ocilab-test/absent:0")
    with pytest.raises(NotFoundError, match="no image sha256:0{64} in the Docker engine"):
        open_docker_daemon("sha256:" + "0" * 64, engine=docker_client)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("busybox@sha256:" + "0" * 64, ReferenceFormatError),
        ("sha256:abc", DigestFormatError),
        ("Not A Name", ReferenceFormatError),
    ],
)
def test_bad_names_are_refused_before_connecting(name: str, error: type[InvalidInputError]) -> None:
    with pytest.raises(error):
        open_docker_daemon(name, engine=SimpleNamespace())


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("host", ["unix:///nonexistent.sock", f"tcp://127.0.0.1:{unused_port()}"])
def test_unreachable_engine(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(ComponentUnavailableError, match=f"No Docker engine answers at {host}: start dockerd"):
        connect_engine()
    with pytest.raises(ComponentUnavailableError, match=host):
        open_docker_daemon("ocilab-test/busybox:1")


def test_silent_engine_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Something listens but never answers: the short connect timeout ends the wait (CONNECT_TIMEOUT seconds)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        host = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setenv("DOCKER_HOST", host)
        with pytest.raises(ComponentUnavailableError, match=f"No Docker engine answers at {host}"):
            connect_engine()


def test_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(ComponentUnavailableError, match="docker Python package is not installed"):
        connect_engine()


def test_failed_export_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An engine that sends something that is not an archive: refused, and the temporary directory is gone."""
    engine = SimpleNamespace(
        images=SimpleNamespace(get=lambda name: None),
        api=SimpleNamespace(get_image=lambda name: iter([b"not ", b"a tar"])),
    )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(InvalidInputError, match="not a readable tar archive"):
        open_docker_daemon("ocilab-test/busybox:1", engine=engine)
    assert list(tmp_path.iterdir()) == []
