"""Images in a Docker engine (``docker-daemon:NAME:TAG`` or ``docker-daemon:sha256:<id>``), through the docker SDK.

Reading: the engine exports the image as ``docker save`` would; the archive is
streamed chunk by chunk into a private temporary directory, served by the
docker-archive store, and removed by ``close()``. Writing: ``DaemonWriter``
spools a docker-archive into a private temporary directory and loads it on
``commit``. The ``docker`` package is imported only here, inside functions, so
the rest of ocilab works without it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ocilab.errors import (
    ComponentUnavailableError,
    InvalidInputError,
    NotFoundError,
    ReferenceFormatError,
    VerificationError,
)
from ocilab.model import Descriptor, Digest, Reference
from ocilab.stores.base import Store, Writer
from ocilab.stores.docker_archive import open_docker_archive
from ocilab.stores.docker_archive_writer import DockerArchiveWriter

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
        raise engine_unavailable(error, f"looking up {name}") from error


def _export(client: docker.DockerClient, wanted: str, archive: Path) -> None:
    """Stream the engine's export of ``wanted`` into ``archive``, one chunk at a time."""
    import docker
    import requests

    try:
        with open(archive, "xb") as out:
            for chunk in client.api.get_image(wanted):
                out.write(chunk)
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"exporting {wanted}") from error


class DaemonWriter(Writer):
    """A Writer for ``docker-daemon:NAME:TAG``: a docker-archive spooled privately, loaded into the engine on commit.

    The engine (Docker 20.10) keeps no manifest, only the config and the
    uncompressed layers, so what ``commit`` checks is that the engine's image ID
    is the config digest and that it carries NAME:TAG. ``loaded`` holds the IDs
    and tags the engine reported.
    """

    def __init__(self, name: str) -> None:
        self.reference = f"docker-daemon:{name}"
        if name.startswith("sha256:"):
            raise ReferenceFormatError(f"{self.reference}: an image loaded into the engine needs NAME:TAG, not an ID")
        _engine_name(name)  # refuses a malformed name or a digest before anything is written
        self.name = name
        self.loaded: list[tuple[str, list[str]]] = []
        self._client = connect_engine()  # no engine: one clear error now, not after spooling the image
        self._workdir = Path(tempfile.mkdtemp(prefix="ocilab-daemon-"))
        self._archive = DockerArchiveWriter(self._workdir / "image.tar", self.name)
        self._finished = False

    def accepts(self, media_type: str) -> bool:
        return self._archive.accepts(media_type)

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self._archive.has_blob(descriptor)

    def put_blob(self, descriptor: Descriptor, stream: BinaryIO) -> None:
        self._archive.put_blob(descriptor, stream)

    def put_manifest(self, descriptor: Descriptor, raw: bytes) -> None:
        self._archive.put_manifest(descriptor, raw)

    def set_root(self, descriptor: Descriptor) -> None:
        self._archive.set_root(descriptor)

    def commit(self) -> None:
        if self._finished:
            return
        self._archive.commit()
        assert self._archive.manifest is not None
        config = str(self._archive.manifest.config.digest)
        self.loaded = _load(self._client, self._workdir / "image.tar", self.reference)
        wanted = Reference.parse(self.name)
        if not any(image == config and wanted in map(Reference.parse, tags) for image, tags in self.loaded):
            reported = self.loaded or "nothing"
            raise VerificationError(
                f"{self.reference}: the engine reported {reported}, not {config} tagged {self.name}"
            )
        self.abort()  # the spooled archive is no longer needed

    def abort(self) -> None:
        self._archive.abort()
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._finished = True

    def close(self) -> None:
        self.abort()


def _load(client: docker.DockerClient, archive: Path, reference: str) -> list[tuple[str, list[str]]]:
    """``docker load`` of ``archive``: the (ID, tags) of each image the engine reports."""
    import docker
    import requests

    try:
        with archive.open("rb") as stream:
            return [(image.id, list(image.tags)) for image in client.images.load(stream)]
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"loading {reference}") from error


def remove_daemon_image(name: str) -> list[str]:
    """Remove ``name`` (NAME:TAG or sha256:<id>) from the engine; the lines ``docker image rm`` prints.

    ``["Untagged: busybox:1", "Deleted: sha256:..."]``: untagging removes the
    image only when no other tag or container holds it. NotFoundError when the
    engine has no such image; InvalidInputError when the engine refuses (a
    container uses it).
    """
    import docker
    import requests

    wanted = _engine_name(name)
    client = connect_engine()
    try:
        answer = client.api.remove_image(wanted)
    except docker.errors.ImageNotFound:
        raise NotFoundError(f"no image {name} in the Docker engine (docker image ls lists what it has)") from None
    except docker.errors.APIError as error:
        if error.status_code == 409:
            raise InvalidInputError(f"The Docker engine will not remove {name}: {error.explanation}") from None
        raise engine_unavailable(error, f"removing {name}") from error
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"removing {name}") from error
    return [f"{action}: {value}" for item in answer for action, value in item.items()]


def engine_unavailable(error: Exception, doing: str) -> ComponentUnavailableError:
    """The error for an engine call that failed while ``doing`` something, with the engine's own explanation."""
    explanation = getattr(error, "explanation", None) or str(error) or error.__class__.__name__
    return ComponentUnavailableError(f"The Docker engine failed while {doing}: {explanation}")
