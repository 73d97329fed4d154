"""Fixtures for the engine tests that run against Docker and Podman alike (import the fixtures you use).

``engine`` is parametrised over both engines; ``engine_client`` connects to it
(Podman's private service is started when none answers); ``engine_image`` is
the conftest's busybox build context built by that engine; ``cli_inspect`` asks
the engine's own command line (``docker`` / ``podman image inspect``), a peer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ocilab.errors import ComponentUnavailableError
from ocilab.stores.daemon import ENGINES, connect_engine
from tests.conftest import TEST_REPO, require, run

ENGINE_NAMES = list(ENGINES)


def connect_or_skip(engine: str) -> Any:
    """A client for ``engine``; skipped locally (failed in CI) when its CLI or the engine is missing."""
    pytest.importorskip("docker")
    require(shutil.which(ENGINES[engine].cli) is not None, f"the {ENGINES[engine].cli} command")
    try:
        return connect_engine(engine)
    except ComponentUnavailableError as error:
        require(False, f"{ENGINES[engine].title} ({error})")


@pytest.fixture(scope="session", params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def engine_client(engine: str) -> Any:
    return connect_or_skip(engine)


@pytest.fixture(scope="session")
def engine_image(engine_client: Any, busybox_context: Path) -> str:
    """``NAME:TAG`` of the two-layer busybox image, built by the parametrised engine."""
    tag = f"{TEST_REPO}:1"
    engine_client.images.build(path=str(busybox_context), tag=tag, rm=True)
    return tag


def cli_inspect(engine: str, name: str) -> dict[str, Any]:
    """``<cli> image inspect NAME`` from the engine's own command line."""
    return json.loads(run(ENGINES[engine].cli, "image", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def cli_has(engine: str, name: str) -> bool:
    """Whether the engine's command line finds the image."""
    return subprocess.run([ENGINES[engine].cli, "image", "inspect", name], capture_output=True).returncode == 0


def image_id(inspected: dict[str, Any]) -> str:
    """The ``Id`` of an inspect document as a digest: Podman's CLI prints it without ``sha256:``."""
    value = str(inspected["Id"])
    return value if value.startswith("sha256:") else f"sha256:{value}"


def transport(engine: str) -> str:
    return ENGINES[engine].transport
