"""Shared fixtures: real components (Docker engine, CNCF registry, skopeo) and real images built here.

Outside CI a missing component skips the tests that need it; with CI=true it fails them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
BUSYBOX = Path("/bin/busybox")
TEST_REPO = "ocilab-test/busybox"


def require(available: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) when a component the test needs is missing."""
    if available:
        return
    message = f"{what} is not available"
    if IN_CI:
        pytest.fail(f"{message}; in CI every component must be present", pytrace=False)
    pytest.skip(message)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"the {name} command")
    assert path is not None
    return path


def run(*command: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its stderr when it fails."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} failed ({result.returncode}): {result.stderr.strip()}", pytrace=False
        )
    return result


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    """A docker SDK client talking to a live engine."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as error:  # noqa: BLE001 - any failure means "no engine"
        require(False, f"a Docker engine ({error.__class__.__name__}: {error})")
    return client


@pytest.fixture(scope="session")
def busybox_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build context: the host's static busybox in a two-layer scratch image."""
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    context = tmp_path_factory.mktemp("busybox-context")
    shutil.copy2(BUSYBOX, context / "busybox")
    (context / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        'ENV GREETING="hello from ocilab"\n'
        'LABEL org.opencontainers.image.title="ocilab test busybox"\n'
        'CMD ["/bin/sh"]\n'
    )
    return context


@pytest.fixture(scope="session")
def busybox_image(docker_client, busybox_context: Path) -> str:  # type: ignore[no-untyped-def]
    """Tag of a busybox scratch image built with the real engine (two layers)."""
    tag = f"{TEST_REPO}:1"
    docker_client.images.build(path=str(busybox_context), tag=tag, rm=True)
    return tag


@pytest.fixture(scope="session")
def docker_inspect(docker_client, busybox_image: str) -> dict:  # type: ignore[no-untyped-def]
    """``docker image inspect`` of the test image, from the CLI (a peer, not our code)."""
    require_tool("docker")
    return json.loads(run("docker", "image", "inspect", busybox_image).stdout)[0]


@pytest.fixture(scope="session")
def docker_save_tar(busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``docker save`` of the test image, as written by the engine."""
    require_tool("docker")
    path = tmp_path_factory.mktemp("docker-save") / "busybox.tar"
    run("docker", "save", "-o", path, busybox_image)
    return path


@pytest.fixture(scope="session")
def oci_layout(docker_save_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI image layout written by skopeo from the saved image, tagged ``v1``."""
    require_tool("skopeo")
    layout = tmp_path_factory.mktemp("layout") / "busybox"
    run("skopeo", "copy", "--quiet", f"docker-archive:{docker_save_tar}", f"oci:{layout}:v1")
    return layout


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real CNCF distribution registry on 127.0.0.1, delete enabled, data in a temp dir."""
    from ocilab.operations.registry_server import RegistryServer, find_registry_binary

    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    with RegistryServer(tmp_path_factory.mktemp("registry-data")) as server:
        yield server


@pytest.fixture(scope="session")
def pushed_image(registry, oci_layout: Path) -> str:  # type: ignore[no-untyped-def]
    """``docker://`` reference of the test image pushed to the registry by skopeo."""
    reference = f"{registry.host}/ocilab/busybox:1"
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{oci_layout}:v1", f"docker://{reference}")
    return f"docker://{reference}"
