"""The local registry from the command line: ``ocilab registry up|down|status|ls|gc``, with the real binary."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from ocilab.engines.registry_server import RegistryServer, find_registry_binary
from tests.conftest import require


@pytest.fixture
def server(tmp_path: Path) -> RegistryServer:
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    return RegistryServer(tmp_path / "data")


def test_an_upload_begun_before_a_restart_finishes_after_it(server: RegistryServer) -> None:
    """distribution: "http.secret ... is used to sign state that may be stored with the client to protect
    against tampering" -- the same secret after a restart keeps the upload's signed state valid."""
    first, second = b"first chunk ", b"second chunk"
    digest = "sha256:" + hashlib.sha256(first + second).hexdigest()
    with server:
        begun = requests.post(f"{server.url}/v2/ocilab/resumed/blobs/uploads/", timeout=5)
        assert begun.status_code == 202
        patched = requests.patch(urljoin(server.url, begun.headers["Location"]), data=first, timeout=5)
        assert patched.status_code == 202
    secret = server.secret_path.read_text()
    assert stat.S_IMODE(server.secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    with server:
        location = urljoin(server.url, patched.headers["Location"])
        put = requests.put(location, params={"digest": digest}, data=second, timeout=5)
        assert put.status_code == 201, put.text
        assert requests.head(f"{server.url}/v2/ocilab/resumed/blobs/{digest}", timeout=5).status_code == 200
    assert server.secret_path.read_text() == secret
    assert secret in server.config_path.read_text()
