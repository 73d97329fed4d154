"""Images in a Docker engine (``docker-daemon:NAME:TAG`` or ``docker-daemon:sha256:<id>``), through the docker SDK.

The engine exports the image as ``docker save`` would; the archive is streamed
chunk by chunk into a private temporary directory, served by the docker-archive
store, and removed by ``close()``. The ``docker`` package is imported only here,
inside functions, so the rest of ocilab works without it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ocilab.errors import ComponentUnavailableError, NotFoundError, ReferenceFormatError
from ocilab.model import Descriptor, Digest, Reference
from ocilab.stores.base import Store
from ocilab.stores.docker_archive import open_docker_archive

if TYPE_CHECKING:
    import docker

DEFAULT_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the engine to answer its first request."""
TRANSFER_TIMEOUT = 300.0
"""Seconds a later request (an image export) may stay silent before it is abandoned."""


class DaemonStore(Store):
    """An engine's image, held as a temporary ``docker save`` archive in ``workdir`` until ``close()``."""

    def __init__(self, archive: Store, workdir: Path, reference: str) -> None:
        self.archive = archive
        self.workdir = workdir
        self.reference = reference

    def root(self) -> Descriptor:
        return self.archive.root()

    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        return self.archive.open_raw(descriptor)

    def close(self) -> None:
        self.archive.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def engine_host() -> str:
    """Where the engine is looked for: ``DOCKER_HOST``, else the default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def connect_engine() -> docker.DockerClient:
    """A docker SDK client for an engine that answered a ping (``DOCKER_HOST`` honoured).

    Raises ComponentUnavailableError, in one sentence, when the SDK is missing or
    no engine answers within CONNECT_TIMEOUT seconds.
    """
    try:
        import docker
    except ImportError:
        raise ComponentUnavailableError(
            "The docker Python package is not installed: pip install docker, or use a daemonless transport"
        ) from None
    import requests

    try:
        client = docker.from_env(timeout=CONNECT_TIMEOUT)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as error:
        raise ComponentUnavailableError(
            f"No Docker engine answers at {engine_host()}: start dockerd (make test starts it) or set DOCKER_HOST"
        ) from error
    client.api.timeout = TRANSFER_TIMEOUT
    return client


def open_docker_daemon(name: str, engine: docker.DockerClient | None = None) -> Store:
    """The image ``name`` (``NAME[:TAG]``, ``latest`` by default, or ``sha256:<id>``) of the engine.

    ``engine`` is a client to reuse; by default one is connected. Raises
    ReferenceFormatError or DigestFormatError for a bad name, NotFoundError when
    the engine has no such image, ComponentUnavailableError when it cannot be reached.
    """
    wanted = _engine_name(name)
    client = engine or connect_engine()
    _check_exists(client, wanted, name)
    workdir = Path(tempfile.mkdtemp(prefix="ocilab-daemon-"))
    try:
        archive = workdir / "image.tar"
        _export(client, wanted, archive)
        return DaemonStore(open_docker_archive(archive), workdir, f"docker-daemon:{name}")
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _engine_name(name: str) -> str:
    """What to ask the engine for: an image ID as given, else the reference with its tag made explicit.

    An untagged name would make the engine export every tag of the repository.
    """
    if name.startswith("sha256:"):
        return str(Digest.parse(name))
    reference = Reference.parse(name)
    if reference.digest is not None:
        raise ReferenceFormatError(f"docker-daemon:{name}: name the image by NAME:TAG or sha256:<id>, not by digest")
    return str(reference)


def _check_exists(client: docker.DockerClient, wanted: str, name: str) -> None:
    import docker
    import requests

    try:
        client.images.get(wanted)
    except docker.errors.ImageNotFound:
        raise NotFoundError(f"no image {name} in the Docker engine (docker image ls lists what it has)") from None
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise _unavailable(error, f"looking up {name}") from error


def _export(client: docker.DockerClient, wanted: str, archive: Path) -> None:
    """Stream the engine's export of ``wanted`` into ``archive``, one chunk at a time."""
    import docker
    import requests

    try:
        with open(archive, "xb") as out:
            for chunk in client.api.get_image(wanted):
                out.write(chunk)
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise _unavailable(error, f"exporting {wanted}") from error


def _unavailable(error: Exception, doing: str) -> ComponentUnavailableError:
    explanation = getattr(error, "explanation", None) or error.__class__.__name__
    return ComponentUnavailableError(f"The Docker engine failed while {doing}: {explanation}")
