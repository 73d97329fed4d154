"""Images in a container engine, through the docker SDK: Docker (``docker-daemon:``), Podman (``containers-storage:``).

``docker-daemon:NAME:TAG`` (or ``:sha256:<id>``) is the Docker engine at
``DOCKER_HOST``; ``containers-storage:NAME:TAG`` is Podman's local storage,
through Podman's Docker-compatible API (``ocilab.stores.podman_service`` finds
or starts it). Where an engine is a choice (builds, runs), ``connect_engine``
takes ``docker``, ``podman`` or ``auto`` (whichever answers, Docker first), and
``OCILAB_ENGINE`` sets the default.

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
from dataclasses import dataclass
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
from ocilab.stores.podman_service import ensure_service, podman_host

if TYPE_CHECKING:
    import docker

DEFAULT_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the engine to answer its first request."""
TRANSFER_TIMEOUT = 300.0
"""Seconds a later request (an image export) may stay silent before it is abandoned."""


ENGINE_CHOICES = ("docker", "podman", "auto")


@dataclass(frozen=True)
class Engine:
    """One engine the kit drives through the docker SDK: its name, how errors call it, its transport and CLI."""

    name: str
    title: str
    transport: str
    cli: str

    @property
    def subject(self) -> str:
        """The title as a sentence starts it: "The Docker engine", "Podman"."""
        return self.title[0].upper() + self.title[1:]


ENGINES = {
    "docker": Engine("docker", "the Docker engine", "docker-daemon", "docker"),
    "podman": Engine("podman", "Podman", "containers-storage", "podman"),
}


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


def engine_host(engine: str = "docker") -> str:
    """Where an engine is looked for: Docker at ``DOCKER_HOST`` or the default socket, Podman at ``podman_host()``."""
    if engine == "podman":
        return podman_host()
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def choose_engine(engine: str | None = None) -> str:
    """``docker``, ``podman`` or ``auto`` checked; None means ``OCILAB_ENGINE``, else ``auto``.

    InvalidInputError names the bad value and where it came from.
    """
    chosen = engine if engine is not None else os.environ.get("OCILAB_ENGINE") or "auto"
    if chosen not in ENGINE_CHOICES:
        where = "engine" if engine is not None else "OCILAB_ENGINE"
        raise InvalidInputError(f"{where}={chosen!r} is not an engine: use docker, podman or auto")
    return chosen


def connect_engine(engine: str | None = None) -> docker.DockerClient:
    """A docker SDK client for an engine that answered a ping; ``engine`` as in ``choose_engine``.

    ``docker`` honours ``DOCKER_HOST``; ``podman`` finds or starts the private
    Podman service; ``auto`` takes Docker when it answers, else Podman. The
    client's ``ocilab_engine`` attribute names the engine it reached. Raises
    ComponentUnavailableError, in one sentence, when the SDK is missing or no
    engine answers within CONNECT_TIMEOUT seconds.
    """
    chosen = choose_engine(engine)
    if chosen != "auto":
        return _connect(ENGINES[chosen])
    try:
        return _connect(ENGINES["docker"])
    except ComponentUnavailableError as no_docker:
        try:
            return _connect(ENGINES["podman"])
        except ComponentUnavailableError as no_podman:
            raise ComponentUnavailableError(
                f"No engine answers: {_lower(no_docker)}; and {_lower(no_podman)}"
            ) from None


def _connect(engine: Engine) -> docker.DockerClient:
    try:
        import docker
    except ImportError:
        raise ComponentUnavailableError(
            "The docker Python package is not installed: pip install docker, or use a daemonless transport"
        ) from None
    import requests

    host = ensure_service() if engine.name == "podman" else engine_host()
    try:
        if engine.name == "podman":
            client = docker.DockerClient(base_url=host, timeout=CONNECT_TIMEOUT)
        else:
            client = docker.from_env(timeout=CONNECT_TIMEOUT)  # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as error:
        raise ComponentUnavailableError(
            f"No Docker engine answers at {host}: start dockerd (make test starts it) or set DOCKER_HOST"
            if engine.name == "docker"
            else f"No Podman service answers at {host}: {error}"
        ) from error
    client.api.timeout = TRANSFER_TIMEOUT
    client.ocilab_engine = engine.name
    return client


def _lower(error: Exception) -> str:
    text = str(error)
    return text[:1].lower() + text[1:]


def engine_of(client: docker.DockerClient) -> Engine:
    """The engine a client from ``connect_engine`` reached (Docker for a client made elsewhere)."""
    return ENGINES[getattr(client, "ocilab_engine", "docker")]


def open_engine_image(name: str, engine: str = "docker", client: docker.DockerClient | None = None) -> Store:
    """The image ``name`` (``NAME:TAG`` or ``sha256:<id>``) of ``engine`` (``docker`` or ``podman``).

    ``client`` is a client to reuse; by default one is connected. Raises
    ReferenceFormatError or DigestFormatError for a bad name, NotFoundError when
    the engine has no such image, ComponentUnavailableError when it cannot be reached.
    """
    kind = ENGINES[engine]
    wanted = _engine_name(name, kind)
    client = client or connect_engine(engine)
    _check_exists(client, wanted, name, kind)
    workdir = Path(tempfile.mkdtemp(prefix="ocilab-daemon-"))
    try:
        archive = workdir / "image.tar"
        _export(client, wanted, archive, kind)
        return DaemonStore(open_docker_archive(archive), workdir, f"{kind.transport}:{name}")
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _engine_name(name: str, engine: Engine) -> str:
    """What to ask the engine for: an image ID as given, else the reference with its tag made explicit.

    An untagged name would make the engine export every tag of the repository.
    """
    if name.startswith("sha256:"):
        return str(Digest.parse(name))
    reference = Reference.parse(name)
    if reference.digest is not None:
        raise ReferenceFormatError(
            f"{engine.transport}:{name}: name the image by NAME:TAG or sha256:<id>, not by digest"
        )
    return str(reference)


def _not_found(name: str, engine: Engine) -> NotFoundError:
    return NotFoundError(f"no image {name} in {engine.title} ({engine.cli} image ls lists what it has)")


def _check_exists(client: docker.DockerClient, wanted: str, name: str, engine: Engine) -> None:
    import docker
    import requests

    try:
        client.images.get(wanted)
    except docker.errors.NotFound:
        raise _not_found(name, engine) from None
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"looking up {name}", engine) from error


def _export(client: docker.DockerClient, wanted: str, archive: Path, engine: Engine) -> None:
    """Stream the engine's export of ``wanted`` into ``archive``, one chunk at a time."""
    import docker
    import requests

    try:
        with open(archive, "xb") as out:
            for chunk in client.api.get_image(wanted):
                out.write(chunk)
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"exporting {wanted}", engine) from error


class DaemonWriter(Writer):
    """A Writer for ``docker-daemon:NAME:TAG`` or ``containers-storage:NAME:TAG``: a docker-archive spooled
    privately, loaded into the engine on commit.

    Docker 20.10 and Podman's compat ``load`` keep no manifest of ours, only the
    config and the uncompressed layers, so what ``commit`` checks is that the
    engine's image ID is the config digest and that it carries NAME:TAG (Podman
    reports ``docker.io/NAME:TAG``, the same reference). ``loaded`` holds the IDs
    and tags the engine reported.
    """

    def __init__(self, name: str, engine: str = "docker") -> None:
        self.engine = ENGINES[engine]
        self.reference = f"{self.engine.transport}:{name}"
        if name.startswith("sha256:"):
            raise ReferenceFormatError(f"{self.reference}: an image loaded into the engine needs NAME:TAG, not an ID")
        _engine_name(name, self.engine)  # refuses a malformed name or a digest before anything is written
        self.name = name
        self.loaded: list[tuple[str, list[str]]] = []
        self._client = connect_engine(engine)  # no engine: one clear error now, not after spooling the image
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
        self.loaded = _load(self._client, self._workdir / "image.tar", self.reference, self.engine)
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


def _load(client: docker.DockerClient, archive: Path, reference: str, engine: Engine) -> list[tuple[str, list[str]]]:
    """``docker load`` of ``archive``: the (ID, tags) of each image the engine reports."""
    import docker
    import requests

    try:
        with archive.open("rb") as stream:
            return [(image.id, list(image.tags)) for image in client.images.load(stream)]
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"loading {reference}", engine) from error


def remove_engine_image(name: str, engine: str = "docker") -> list[str]:
    """Remove ``name`` (NAME:TAG or sha256:<id>) from ``engine``; the lines the engine reports, in its order.

    Docker: ``["Untagged: busybox:1", "Deleted: sha256:..."]``; Podman lists its
    deletions (bare IDs, intermediate build images too) before ``Untagged``.
    Untagging removes the image only when no other tag or container holds it.
    NotFoundError when the engine has no such image; InvalidInputError when the
    engine refuses (a container uses it).
    """
    import docker
    import requests

    kind = ENGINES[engine]
    wanted = _engine_name(name, kind)
    client = connect_engine(engine)
    try:
        answer = client.api.remove_image(wanted)
    except docker.errors.NotFound:  # Podman says "image not known", which the SDK does not call ImageNotFound
        raise _not_found(name, kind) from None
    except docker.errors.APIError as error:
        if error.status_code == 409:
            raise InvalidInputError(f"{kind.subject} will not remove {name}: {error.explanation}") from None
        raise engine_unavailable(error, f"removing {name}", kind) from error
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"removing {name}", kind) from error
    return [f"{action}: {value}" for item in answer for action, value in item.items()]


def engine_unavailable(error: Exception, doing: str, engine: Engine = ENGINES["docker"]) -> ComponentUnavailableError:
    """The error for an engine call that failed while ``doing`` something, with the engine's own explanation."""
    explanation = getattr(error, "explanation", None) or str(error) or error.__class__.__name__
    return ComponentUnavailableError(f"{engine.subject} failed while {doing}: {explanation}")
