"""One parser from skopeo-style transport strings to stores.

=================================  ==========================================
``oci:DIR[:TAG]``                  OCI image layout directory
``oci-archive:FILE[:TAG]``         tarred OCI image layout
``docker-archive:FILE[:NAME:TAG]`` ``docker save`` output (``@N`` picks the N-th image)
``docker-daemon:NAME:TAG``         local Docker engine (also ``sha256:<id>``)
``containers-storage:NAME:TAG``    Podman's local storage, through its API
``docker://HOST[:PORT]/REPO...``   registry, ``[:TAG][@DIGEST]``
=================================  ==========================================

As in skopeo, a path ends at the first ``:``; what follows names the image.
``oci:`` naming a file, and ``docker-daemon:`` or ``containers-storage:``
without a tag, are refused with the fix, before anything is opened.
"""

from __future__ import annotations

from pathlib import Path

from ocilab.errors import InvalidInputError, ReferenceFormatError
from ocilab.model import Reference
from ocilab.stores.base import Store, Writer

TRANSPORTS = ("oci", "oci-archive", "docker-archive", "docker-daemon", "containers-storage", "docker")
ENGINE_TRANSPORTS = {"docker-daemon": "docker", "containers-storage": "podman"}
"""Transports that name an engine's image store, and the engine (``ocilab.stores.daemon.ENGINES``)."""
SYNTAX = (
    "oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG],"
    " docker-daemon:NAME:TAG, containers-storage:NAME:TAG or docker://HOST/REPO[:TAG]"
)


def split_transport(text: str) -> tuple[str, str]:
    """``(transport, rest)``, with ``rest`` checked for its transport; ReferenceFormatError listing the transports."""
    if text.startswith("docker://"):
        return "docker", text[len("docker://") :]
    transport, colon, rest = text.partition(":")
    if not colon or transport not in TRANSPORTS or transport == "docker":
        raise ReferenceFormatError(f"{text!r} has no known transport; write one of {SYNTAX}")
    if not rest:
        raise ReferenceFormatError(f"{text!r}: nothing after '{transport}:'")
    if transport == "oci" and Path(rest.partition(":")[0]).is_file():
        raise InvalidInputError(
            f"{text!r}: {rest.partition(':')[0]} is a file, and oci: names a layout directory;"
            f" for a tarred layout write oci-archive:{rest}"
        )
    if transport in ENGINE_TRANSPORTS and not _daemon_name_is_pinned(rest):
        raise ReferenceFormatError(
            f"{text!r}: {transport}: reference {rest} has neither a tag nor a digest;"
            f" name one image: {transport}:{rest}:TAG (e.g. :latest) or {transport}:sha256:ID"
        )
    return transport, rest


def _daemon_name_is_pinned(name: str) -> bool:
    """True for ``sha256:<id>``, ``NAME:TAG`` or ``NAME@DIGEST`` (the engine's answer to each is one image).

    A ``:`` after the last ``/`` is a tag's (before it, a registry port's), as in the reference grammar.
    """
    remainder, at, _ = name.partition("@")
    return name.startswith("sha256:") or bool(at) or ":" in remainder.rpartition("/")[2]


def open_store(text: str, tls_verify: bool = True) -> Store:
    """The store named by a transport string. Nothing is written anywhere."""
    transport, rest = split_transport(text)
    if transport in ("oci", "oci-archive"):
        from ocilab.stores.layout import open_layout, open_oci_archive

        path, _, tag = rest.partition(":")
        opener = open_layout if transport == "oci" else open_oci_archive
        return opener(Path(path), tag or None)
    if transport == "docker-archive":
        from ocilab.stores.docker_archive import open_docker_archive

        path, _, name = rest.partition(":")
        return open_docker_archive(Path(path), name or None)
    if transport in ENGINE_TRANSPORTS:
        from ocilab.stores.daemon import open_engine_image

        return open_engine_image(rest, ENGINE_TRANSPORTS[transport])
    from ocilab.stores.registry import RegistryStore

    return RegistryStore(Reference.parse(rest), tls_verify=tls_verify)


def open_destination(text: str, tls_verify: bool = True) -> Writer:
    """A writer for the place a transport string names; nothing is written before the first put.

    ``oci:DIR[:TAG]`` may be a new directory or an existing layout (its other
    images are kept); ``oci-archive:`` and ``docker-archive:`` files are
    written whole and renamed into place; ``docker-daemon:NAME:TAG`` loads
    into the Docker engine and ``containers-storage:NAME:TAG`` into Podman;
    ``docker://`` pushes.
    """
    transport, rest = split_transport(text)
    if transport == "oci":
        from ocilab.stores.layout_writer import open_layout_writer

        path, _, tag = rest.partition(":")
        return open_layout_writer(Path(path), tag or None)
    if transport == "oci-archive":
        from ocilab.stores.archive_writer import OciArchiveWriter

        path, _, tag = rest.partition(":")
        return OciArchiveWriter(Path(path), tag or None)
    if transport == "docker-archive":
        from ocilab.stores.docker_archive_writer import DockerArchiveWriter

        path, _, name = rest.partition(":")
        return DockerArchiveWriter(Path(path), name or None)
    if transport in ENGINE_TRANSPORTS:
        from ocilab.stores.daemon import DaemonWriter

        return DaemonWriter(rest, ENGINE_TRANSPORTS[transport])
    from ocilab.stores.registry import RegistryStore

    return RegistryStore(Reference.parse(rest), tls_verify=tls_verify)
