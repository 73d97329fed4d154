"""The ``ocilab docker-build`` command, and where a Docker build's live log goes by default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocilab.present.progress import in_kernel
from ocilab.present.text import human_size, print_json, table

if TYPE_CHECKING:
    from ocilab.engines.docker_build import DockerBuild, Log, Step

EXIT_OK = 0


def register(commands: Any) -> None:
    """Add ``docker-build`` to the CLI's subparsers."""
    build = commands.add_parser(
        "docker-build",
        help="build with Docker or Podman and show which Dockerfile step made which layer",
        description="Build CONTEXT with the engine's builder (Docker's classic builder, or Podman's), its log live"
        " on stderr, then a table:"
        " each step's instruction, the layer it made (or 'no layer'), its size, whether it came from the cache"
        " and how long it took.",
    )
    build.add_argument("context", metavar="CONTEXT", help="the build context directory")
    build.add_argument("--tag", "-t", required=True, metavar="NAME:TAG", help="the tag to give the image")
    build.add_argument(
        "--file",
        "-f",
        metavar="Dockerfile",
        help="relative to the current directory (default CONTEXT/Dockerfile)",
    )
    build.add_argument(
        "--engine",
        choices=["docker", "podman", "auto"],
        help="the engine to build with (default: OCILAB_ENGINE, else auto: Docker when it answers, else Podman)",
    )
    build.add_argument("--no-cache", action="store_true", help="run every step again")
    build.add_argument("--quiet", "-q", action="store_true", help="no live log")
    build.add_argument("--json", action="store_true", help="print JSON")
    build.set_defaults(handler=_docker_build)


def live_log() -> Log:
    """Each line printed as it arrives: on stdout in a notebook (the cell's output), on stderr elsewhere.

    In a notebook the kernel sends what arrived every fraction of a second, so
    lines that come together land in one output block, not one block per line.
    """

    def write(line: str) -> None:
        if in_kernel():
            print(line)
        else:
            print(line, file=sys.stderr, flush=True)

    return write


def _docker_build(args: argparse.Namespace) -> int:
    from ocilab.api import docker_build

    dockerfile = Path(args.file).resolve() if args.file is not None else None
    result = docker_build(
        args.context,
        args.tag,
        dockerfile=dockerfile,
        nocache=args.no_cache,
        log=_stderr_log,
        quiet=args.quiet,
        engine=args.engine,
    )
    if args.json:
        print_json(result.to_json())
        return EXIT_OK
    rows = [
        (step.number, step.instruction, _layer(step, result), _size(step), _cached(step), f"{step.seconds:.2f}")
        for step in result.records
    ]
    print(table(["step", "instruction", "layer", "size", "cached", "seconds"], rows, max_width=60))
    print(f"\nimage  {result.image}\ntagged {result.tag}  (open it as {result.reference})")
    return EXIT_OK


def _stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _layer(step: Step, result: DockerBuild) -> str:
    if step.layer is not None:
        return str(step.layer)
    if step.is_from:
        return f"base, {result.base_layers} layers" if step.image else "scratch"
    return "no layer"


def _size(step: Step) -> str:
    return "-" if step.size is None else human_size(step.size)


def _cached(step: Step) -> str:
    return "-" if step.cached is None else ("yes" if step.cached else "no")
