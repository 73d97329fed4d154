"""The ``ocilab build`` command: a daemonless, reproducible build from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ocilab.errors import InvalidInputError
from ocilab.present.text import print_json

EXIT_OK = 0


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``build`` to the CLI's subparsers."""
    build = commands.add_parser(
        "build",
        help="build an image from files, with no engine, reproducibly",
        description="Build FROM a base (or scratch): one layer per --add (a Dockerfile COPY: a file lands at DEST,"
        " a directory's contents under DEST), one layer of whiteouts for the --rm paths, then the config."
        " Times come from SOURCE_DATE_EPOCH (default 0) unless --timestamp now. Prints the manifest digest.",
    )
    build.add_argument("--from", dest="base", default="scratch", metavar="REF|scratch", help="the base image")
    build.add_argument("--add", action="append", default=[], metavar="SRC:DEST", help="add a file or directory")
    build.add_argument("--rm", action="append", default=[], metavar="PATH", help="delete a path (a whiteout)")
    build.add_argument("--cmd", metavar="JSON", help='e.g. \'["/bin/sh", "-c", "echo hi"]\'')
    build.add_argument("--entrypoint", metavar="JSON", help="e.g. '[\"/bin/busybox\"]'")
    build.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable (merged by name)")
    build.add_argument("--workdir", metavar="DIR")
    build.add_argument("--user", metavar="USER[:GROUP]")
    build.add_argument("--label", action="append", default=[], metavar="K=V")
    build.add_argument("--expose", action="append", default=[], metavar="PORT[/PROTO]")
    build.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="pick the base from an index, or declare it")
    build.add_argument("--compress", choices=["gzip", "zstd"], default="gzip", help="layer compression")
    build.add_argument("--timestamp", choices=["now"], help="date the image now and keep file mtimes")
    build.add_argument("--tag", required=True, metavar="DEST_REF", help="where to write: oci:DIR:TAG, docker://...")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    common(build)
    build.set_defaults(handler=_build)


def _build(args: argparse.Namespace) -> int:
    from ocilab.operations.builder import assemble
    from ocilab.present.progress import observer

    config: dict[str, Any] = {}
    if args.cmd is not None:
        config["cmd"] = _json_argv(args.cmd, "--cmd")
    if args.entrypoint is not None:
        config["entrypoint"] = _json_argv(args.entrypoint, "--entrypoint")
    if args.env:
        config["env"] = args.env
    if args.workdir is not None:
        config["workdir"] = args.workdir
    if args.user is not None:
        config["user"] = args.user
    if args.label:
        config["labels"] = dict(_pair(item, "--label") for item in args.label)
    if args.expose:
        config["expose"] = args.expose
    tls_verify = args.tls_verify == "true"
    image = assemble(
        args.base,
        add=[_source_and_dest(item) for item in args.add],
        delete=args.rm,
        config=config,
        platform=args.platform,
        compression=args.compress,
        timestamp=args.timestamp,
        tls_verify=tls_verify,
    )
    root = image.write(args.tag, tls_verify=tls_verify, observer=observer(args.quiet or args.json))
    if args.json:
        print_json(
            {
                "reference": args.tag,
                "digest": str(root.digest),
                "media_type": root.media_type,
                "size": root.size,
                "layers": [str(layer.digest) for layer in image.layers],
                "notes": list(image.notes),
            }
        )
        return EXIT_OK
    print(root.digest)
    for note in image.notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def _source_and_dest(item: str) -> tuple[str, str]:
    source, colon, dest = item.rpartition(":")
    if not colon or not source or not dest:
        raise InvalidInputError(f"--add {item!r}: write SRC:DEST, e.g. --add ./app:/app")
    return source, dest


def _pair(item: str, flag: str) -> tuple[str, str]:
    key, equals, value = item.partition("=")
    if not equals or not key:
        raise InvalidInputError(f"{flag} {item!r}: write KEY=VALUE")
    return key, value


def _json_argv(text: str, flag: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{flag} {text!r} is not valid JSON ({error.msg})") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInputError(f'{flag} {text!r}: must be a JSON list of strings, e.g. \'["/bin/sh", "-c"]\'')
    return value
