"""The local CNCF registry's lifecycle and garbage collection, with the real binary."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ocilab.errors import ComponentUnavailableError
from ocilab.model import Reference
from ocilab.operations.registry_server import RegistryServer, find_registry_binary
from ocilab.stores.image import load_image
from ocilab.stores.registry import RegistryStore
from tests.conftest import require, run


@pytest.fixture
def server(tmp_path: Path) -> RegistryServer:
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    return RegistryServer(tmp_path / "data")


def blob_files(data_dir: Path) -> set[str]:
    """``sha256:<hex>`` of every blob whose data file is in the registry's storage."""
    root = data_dir / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{data.parent.name}" for data in root.glob("*/*/data")}


def test_find_registry_binary() -> None:
    binary = find_registry_binary()
    require(binary is not None, "the CNCF registry binary (Debian package docker-registry)")
    assert binary is not None and os.access(binary, os.X_OK)


def test_start_serves_v2_and_stop_ends_it(server: RegistryServer) -> None:
    with server:
        assert server.running
        assert server.host == f"127.0.0.1:{server.port}" and server.url == f"http://{server.host}"
        response = requests.get(f"{server.url}/v2/", timeout=5)
        assert response.status_code == 200
        assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        config = server.config_path.read_text()
        assert "delete:\n    enabled: true" in config and str(server.data_dir) in config
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/v2/", timeout=5)
    assert "listening on" in server.log_path.read_text()
    server.stop()  # idempotent


def test_restart_keeps_the_port(server: RegistryServer) -> None:
    with server:
        port = server.port
    with server:
        assert server.port == port
        assert requests.get(f"{server.url}/v2/", timeout=5).status_code == 200


def test_a_forgotten_server_stops_when_python_exits(server: RegistryServer) -> None:
    script = (
        "import sys; from pathlib import Path; from ocilab.operations.registry_server import RegistryServer;"
        f" print(RegistryServer(Path(sys.argv[1]), port={server.port}).start().url)"
    )
    url = subprocess.run(
        [sys.executable, "-c", script, str(server.data_dir)], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert url == server.url
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v2/", timeout=5)


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ComponentUnavailableError, match=f"127.0.0.1:{port} is already in use"):
            RegistryServer(tmp_path / "data", port=port).start()


def test_a_registry_that_dies_reports_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "registry"
    fake.write_text("#!/bin/sh\necho 'configuration error: something is wrong' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    server = RegistryServer(tmp_path / "data")
    with pytest.raises(ComponentUnavailableError, match=r"exited with code 3(.|\n)*configuration error: something"):
        server.start()
    assert not server.running


def test_missing_binary_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("ocilab.operations.registry_server.DEBIAN_BINARY", tmp_path / "docker-registry")
    assert find_registry_binary() is None
    with pytest.raises(ComponentUnavailableError, match="docker-registry"):
        RegistryServer(tmp_path / "data")


def test_garbage_collect_on_an_empty_registry(server: RegistryServer) -> None:
    with server:
        output = server.garbage_collect()
        assert "0 blobs marked" in output
        assert server.running


def test_garbage_collect_removes_the_blobs_of_a_deleted_manifest(server: RegistryServer, oci_layout: Path) -> None:
    with server:
        run(
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{oci_layout}:v1",
            f"docker://{server.host}/ocilab/doomed:1",
        )
        with RegistryStore(Reference.parse(f"{server.host}/ocilab/doomed:1")) as store:
            image = load_image(store)
        owned = {str(image.manifest_digest), str(image.config_digest), *(str(layer.digest) for layer in image.layers)}
        assert owned <= blob_files(server.data_dir)

        kept = server.garbage_collect()
        assert server.running
        assert owned <= blob_files(server.data_dir), kept

        url = f"{server.url}/v2/ocilab/doomed/manifests/{image.manifest_digest}"
        assert requests.delete(url, timeout=5).status_code == 202
        assert owned <= blob_files(server.data_dir)  # deleting a manifest only unlinks it

        output = server.garbage_collect(delete_untagged=True)
        assert server.running
        assert not owned & blob_files(server.data_dir), output
        assert "blob eligible for deletion" in output
        assert requests.get(url, timeout=5).status_code == 404
