"""Buildah's daemonless ``bud`` as a third builder, and one Dockerfile built by every builder, side by side.

``buildah_build`` runs ``buildah bud`` (no service: the binary builds into the
user's containers-storage, the store Podman reads) with the flags this kind of
machine needs (``--runtime runc``, ``nofile``/``nproc`` ulimits of 1024, as
``ocilab.stores.podman_service``). Its log has Podman's shape (``STEP N/M:``,
``--> <id>``), so the docker_build transcript reads it, and the steps are
mapped to layers through the Podman API: the same steps view as
``docker_build``, with ``builder`` "buildah".

``compare_builders`` builds one Dockerfile with Docker, Podman, Buildah and
``ocilab.Builder`` (which runs no commands: it takes FROM, COPY/ADD of local
files, ENV, LABEL, CMD, ENTRYPOINT, WORKDIR, USER and EXPOSE) and returns one
table: a row per builder with its config and manifest digests, layer count,
layer sizes and diff_ids, or, for a builder that is not here, why.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocilab.engines.docker_build import (
    DockerBuild,
    DockerBuildError,
    Log,
    Transcript,
    dockerfile_path,
    failure_message,
    map_layers,
)
from ocilab.engines.docker_build import docker_build as engine_build
from ocilab.errors import ComponentUnavailableError, InvalidInputError, OcilabError, UnsupportedError
from ocilab.model import Reference
from ocilab.operations.builder import Builder
from ocilab.stores.daemon import ENGINES, connect_engine
from ocilab.stores.image import load_image
from ocilab.stores.podman_service import ULIMITS
from ocilab.stores.transports import open_store

if TYPE_CHECKING:
    import pandas

BUILDERS = ("docker", "podman", "buildah", "ocilab")
COMPARISON_COLUMNS = ["builder", "reference", "config", "manifest", "layers", "size", "layer_sizes", "diff_ids", "note"]


def buildah_build(
    context: str | Path,
    tag: str,
    *,
    dockerfile: str | Path | None = None,
    nocache: bool = False,
    log: Log | None = None,
) -> DockerBuild:
    """``buildah bud`` of ``context`` tagged ``tag``, its steps mapped to layers as ``docker_build`` maps them.

    Raises InvalidInputError for a missing context or Dockerfile or a bad tag,
    ComponentUnavailableError when buildah is not installed (or Podman's API,
    which maps the layers, does not answer), DockerBuildError when a step fails.
    """
    directory, file = dockerfile_path(context, dockerfile)
    full = str(Reference.parse(tag))  # Buildah would file a short name under localhost/, Podman's API under docker.io/
    buildah = shutil.which("buildah")
    if buildah is None:
        raise ComponentUnavailableError("Buildah is not installed (apt-get install buildah), so it cannot build")
    argv = [buildah, "bud", "--runtime", "runc", "--layers", "--pull-never", "-f", str(file.resolve()), "-t", full]
    argv += [f"--ulimit={limit}" for limit in ULIMITS] + (["--no-cache"] if nocache else []) + [str(directory)]
    transcript = Transcript(log or (lambda line: None))
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        transcript.read(({"stream": line} for line in process.stdout), str(directory), ENGINES["podman"])
    build = DockerBuild(
        str(directory), str(file), tag, None, transcript.steps, transcript.lines, 0, "podman", "buildah"
    )
    if process.returncode != 0:
        last = next((line for line in reversed(transcript.lines) if line.strip()), "no output")
        raise DockerBuildError(failure_message(f"buildah bud exited with {process.returncode}: {last}", build), build)
    map_layers(connect_engine("podman"), build)
    return build


def kit_build(context: str | Path, tag: str, *, dockerfile: str | Path | None = None) -> Builder:
    """The Dockerfile as ``ocilab.Builder`` steps (nothing written); UnsupportedError names a step it cannot take.

    Taken: FROM, COPY/ADD of context files (no URLs, no ``--from``), ENV, LABEL,
    CMD, ENTRYPOINT, WORKDIR, USER, EXPOSE. RUN is refused: the kit runs no commands.
    """
    directory, file = dockerfile_path(context, dockerfile)
    Reference.parse(tag)
    builder: Builder | None = None
    for number, (verb, argument) in enumerate(_instructions(file.read_text()), start=1):
        where = f"{file} step {number} ({verb} {argument})"
        if verb == "FROM":
            base = argument.split()[0]
            builder = Builder.scratch() if base == "scratch" else Builder.from_image(f"containers-storage:{base}")
            continue
        if builder is None:
            raise InvalidInputError(f"{where}: a Dockerfile starts with FROM")
        builder = _step(builder, directory, verb, argument, where)
    if builder is None:
        raise InvalidInputError(f"{file}: no FROM, so there is nothing to build")
    return builder


def _step(builder: Builder, directory: Path, verb: str, argument: str, where: str) -> Builder:
    created_by = f"/bin/sh -c #(nop) {verb} {argument}"
    if verb in ("COPY", "ADD") and not argument.startswith("--"):
        *sources, dest = _words(argument)
        for source in sources:
            if "://" in source:
                raise UnsupportedError(f"{where}: ocilab.Builder adds local files only, not URLs")
            builder = builder.add(directory / source, dest, created_by=created_by)
        return builder
    if verb in ("ENV", "LABEL"):
        words = _words(argument)
        if not all("=" in word for word in words):
            raise UnsupportedError(f"{where}: ocilab.Builder takes {verb} in its KEY=VALUE form")
        pairs = dict(word.split("=", 1) for word in words)
        if verb == "ENV":
            return builder.config(env=pairs, created_by=created_by)
        return builder.config(labels=pairs, created_by=created_by)
    if verb in ("CMD", "ENTRYPOINT"):
        argv = [str(word) for word in json.loads(argument)] if argument.startswith("[") else ["/bin/sh", "-c", argument]
        if verb == "CMD":
            return builder.config(cmd=argv, created_by=created_by)
        return builder.config(entrypoint=argv, created_by=created_by)
    if verb == "WORKDIR":
        return builder.config(workdir=argument, created_by=created_by)
    if verb == "USER":
        return builder.config(user=argument, created_by=created_by)
    if verb == "EXPOSE":
        return builder.config(expose=argument.split(), created_by=created_by)
    raise UnsupportedError(f"{where}: ocilab.Builder runs no commands and takes no {verb} of this form")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(VERB, argument) per instruction: comments dropped, backslash continuations joined."""
    joined = text.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (verb.upper(), rest.strip())
        for verb, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def _words(argument: str) -> list[str]:
    """Shell-like words, with ``KEY="a b"`` kept as ``KEY=a b``; JSON arrays as lists."""
    return list(json.loads(argument)) if argument.startswith("[") else shlex.split(argument)


def compare_builders(
    context: str | Path,
    name: str = "ocilab-compare/image",
    *,
    dockerfile: str | Path | None = None,
    builders: tuple[str, ...] = BUILDERS,
) -> pandas.DataFrame:
    """One Dockerfile built by each of ``builders``, one row each: where it is, digests, layers and sizes.

    Each builder tags ``NAME:BUILDER``; ocilab.Builder writes it into
    containers-storage when Podman answers, else into ``oci:CONTEXT/.ocilab-compare``.
    ``size`` is the sum of the layers as each store holds them (uncompressed in
    the engines, gzip from ocilab.Builder). A builder that is not here, or that
    cannot take the Dockerfile, gets a row with empty digests and its reason in
    ``note``. InvalidInputError for an unknown builder.
    """
    import pandas

    unknown = [builder for builder in builders if builder not in BUILDERS]
    if unknown:
        raise InvalidInputError(f"unknown builder {unknown[0]!r}: use {', '.join(BUILDERS)}")
    build: dict[str, Callable[[str], str]] = {
        "docker": lambda tag: engine_build(context, tag, dockerfile=dockerfile, engine="docker").reference,
        "podman": lambda tag: engine_build(context, tag, dockerfile=dockerfile, engine="podman").reference,
        "buildah": lambda tag: buildah_build(context, tag, dockerfile=dockerfile).reference,
        "ocilab": lambda tag: _write_kit_build(context, tag, dockerfile),
    }
    rows = []
    for builder in builders:
        started = time.monotonic()
        try:
            reference = build[builder](f"{name}:{builder}")
            row = _describe(reference)
        except OcilabError as error:
            row = {"reference": None, "note": str(error)}
        rows.append({"builder": builder, **row, "seconds": round(time.monotonic() - started, 3)})
    frame = pandas.DataFrame(rows, columns=[*COMPARISON_COLUMNS, "seconds"])
    return frame.astype({"layers": "Int64", "size": "Int64"})


def _write_kit_build(context: str | Path, tag: str, dockerfile: str | Path | None) -> str:
    image = kit_build(context, tag, dockerfile=dockerfile)
    try:
        connect_engine("podman")
        reference = f"containers-storage:{tag}"
    except ComponentUnavailableError:
        reference = f"oci:{Path(context) / '.ocilab-compare'}:{tag.rpartition(':')[2]}"
    image.write(reference)
    return reference


def _describe(reference: str) -> dict[str, Any]:
    with open_store(reference) as store:
        image = load_image(store)
        sizes = [layer.size for layer in image.layers]
        return {
            "reference": reference,
            "config": str(image.config_digest),
            "manifest": str(image.manifest_digest),
            "layers": len(sizes),
            "size": sum(sizes),
            "layer_sizes": sizes,
            "diff_ids": [str(diff_id) for diff_id in image.config.diff_ids],
            "note": "",
        }
