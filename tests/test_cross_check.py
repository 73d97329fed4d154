"""``ocilab inspect --json`` against skopeo and docker, for the same image in every store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool, run


def inspect(reference: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "ocilab", "inspect", reference, "--json"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def skopeo(reference: str) -> dict:
    require_tool("skopeo")
    return json.loads(run("skopeo", "inspect", "--tls-verify=false", reference).stdout)


@pytest.fixture(scope="module")
def docker_pushed(registry, busybox_image: str, docker_client) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The test image pushed by the Docker engine itself; its ``docker://`` reference and RepoDigest digest."""
    target = f"{registry.host}/ocilab/docker-pushed:1"
    run("docker", "tag", busybox_image, target)
    run("docker", "push", target)
    repo_digests = json.loads(run("docker", "image", "inspect", target).stdout)[0]["RepoDigests"]
    run("docker", "rmi", target)
    digest = next(d.split("@", 1)[1] for d in repo_digests if d.startswith(f"{registry.host}/ocilab/docker-pushed@"))
    return f"docker://{target}", digest


def test_registry_image_pushed_by_docker(docker_pushed: tuple[str, str], docker_inspect: dict) -> None:
    reference, repo_digest = docker_pushed
    ours = inspect(reference)
    peer = skopeo(reference)
    assert ours["manifest_digest"] == repo_digest == peer["Digest"]
    assert [layer["digest"] for layer in ours["layers"]] == peer["Layers"]
    assert ours["config_digest"] == docker_inspect["Id"]
    assert [layer["diff_id"] for layer in ours["layers"]] == docker_inspect["RootFS"]["Layers"]
    assert ours["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"


def test_registry_image_pushed_by_skopeo(pushed_image: str, oci_layout: Path) -> None:
    ours = inspect(pushed_image)
    assert (
        ours["manifest_digest"] == skopeo(pushed_image)["Digest"] == inspect(f"oci:{oci_layout}:v1")["manifest_digest"]
    )


def test_docker_archive_and_daemon_agree_with_docker(
    docker_save_tar: Path, busybox_image: str, docker_inspect: dict
) -> None:
    for reference in (f"docker-archive:{docker_save_tar}", f"docker-daemon:{busybox_image}"):
        ours = inspect(reference)
        assert ours["config_digest"] == docker_inspect["Id"], reference
        assert [layer["diff_id"] for layer in ours["layers"]] == docker_inspect["RootFS"]["Layers"], reference
        assert ours["config"]["Env"] == docker_inspect["Config"]["Env"], reference
        assert ours["platform"]["architecture"] == docker_inspect["Architecture"], reference


def test_every_store_names_the_same_layers(
    docker_save_tar: Path, busybox_image: str, oci_layout: Path, pushed_image: str
) -> None:
    """diff_ids name the uncompressed layers, so every store of the same image lists the same ones."""
    references = [
        f"docker-archive:{docker_save_tar}",
        f"docker-daemon:{busybox_image}",
        f"oci:{oci_layout}:v1",
        pushed_image,
    ]
    diff_ids = {reference: [layer["diff_id"] for layer in inspect(reference)["layers"]] for reference in references}
    assert len({tuple(ids) for ids in diff_ids.values()}) == 1, diff_ids
