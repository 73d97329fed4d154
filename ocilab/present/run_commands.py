"""The ``ocilab unpack`` and ``ocilab run`` commands: an image as a runtime bundle, and a bundle or image run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ocilab.present.text import print_json

EXIT_OK = 0


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``unpack`` and ``run`` to the CLI's subparsers."""
    unpack = commands.add_parser(
        "unpack",
        help="unpack an image into an OCI runtime bundle (rootfs and config.json)",
        description="Apply the image's layers to BUNDLE/rootfs (safely: nothing outside the bundle is ever"
        " touched) and write BUNDLE/config.json from the image config. BUNDLE must be absent or empty.",
    )
    unpack.add_argument("reference", metavar="REF", help="e.g. oci:DIR:TAG, docker-archive:FILE, docker://HOST/REPO")
    unpack.add_argument("bundle", metavar="BUNDLE", help="the bundle directory to create")
    unpack.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="choose from an index")
    unpack.add_argument("--rootless", action="store_true", help="a user-namespace config, device nodes left out")
    common(unpack)
    unpack.set_defaults(handler=_unpack)

    run = commands.add_parser(
        "run",
        help="run an image or a bundle with runc (or Docker) and print its output",
        description="Run REF (unpacked into a temporary bundle) or BUNDLE with runc, or REF with the Docker"
        " engine. A command after -- replaces the image's Cmd. Exits with the container's exit code.",
    )
    run.add_argument("target", metavar="REF|BUNDLE", help="an image reference or a bundle directory")
    run.add_argument("command", nargs="*", metavar="CMD", help="the command to run instead of Cmd (after --)")
    run.add_argument("--engine", choices=["runc", "docker", "podman"], default="runc")
    run.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="choose from an index")
    run.add_argument("--rootless", action="store_true", help="run in a user namespace (runc)")
    common(run)
    run.set_defaults(handler=_run)


def _unpack(args: argparse.Namespace) -> int:
    from ocilab.api import unpack

    report = unpack(
        args.reference,
        args.bundle,
        platform=args.platform,
        rootless=args.rootless,
        tls_verify=args.tls_verify == "true",
    )
    if args.json:
        print_json(report.to_json())
        return EXIT_OK
    print(f"bundle      {report.bundle}")
    print(f"image       {report.reference}  ({report.manifest_digest})")
    print(f"layers      {report.layers}, {report.entries} entries, {report.bytes_written} bytes written")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from ocilab.api import run

    result = run(args.target, args.command or None, engine=args.engine, platform=args.platform, rootless=args.rootless)
    if args.json:
        print_json(result.to_json())
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
    return result.exit_code
