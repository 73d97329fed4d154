"""The ``ocilab`` command line.

Exit codes: 0 success, 1 the input or image is bad (reason on stderr, no
traceback), 2 usage errors. ``--json`` prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ocilab import __version__
from ocilab.errors import OcilabError
from ocilab.model import MAX_DOCUMENT_BYTES, parse_config, parse_descriptor, parse_index, parse_manifest
from ocilab.model.digest import read_capped
from ocilab.model.jsondoc import Finding
from ocilab.present.build_commands import register as register_build_commands
from ocilab.present.docker_build_commands import register as register_docker_build_commands
from ocilab.present.layer_commands import register as register_layer_commands
from ocilab.present.registry_commands import register as register_registry_commands
from ocilab.present.rows import inspect_document
from ocilab.present.run_commands import register as register_run_commands
from ocilab.present.store_commands import register as register_store_commands
from ocilab.present.text import human_size, print_json, table
from ocilab.present.workshop_commands import register as register_workshop_commands

EXIT_OK, EXIT_INVALID = 0, 1  # argparse exits 2 on usage errors
DOCUMENT_PARSERS: dict[str, Callable[[bytes, str], Any]] = {
    "descriptor": parse_descriptor,
    "manifest": parse_manifest,
    "index": parse_index,
    "config": parse_config,
}
REFERENCES = """\
image references (skopeo's transports):
  oci:DIR[:TAG]                    an OCI image layout directory
  oci-archive:FILE[:TAG]           a tarred OCI image layout
  docker-archive:FILE[:NAME:TAG]   `docker save` output (FILE:@N: its N-th image)
  docker-daemon:NAME:TAG           an image in the local Docker engine (or docker-daemon:sha256:ID)
  docker://HOST[:PORT]/REPO[:TAG][@DIGEST]
                                   a registry (plain HTTP for 127.0.0.1 and localhost, TLS elsewhere)"""
REFERENCE_METAVARS = ("REF", "SRC", "DST", "oci:DIR")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except OcilabError as error:
        print(f"ocilab: {error}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("ocilab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line on stderr, and a pointer to ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ocilab", description="Explore OCI container images.")
    parser.add_argument("--version", action="version", version=f"ocilab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser("inspect", help="show an image's manifest, config and layers")
    inspect.add_argument(
        "reference", metavar="REF", help="e.g. oci:DIR:TAG, docker-archive:FILE, docker://HOST/REPO:TAG"
    )
    inspect.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="choose from an index")
    _common(inspect)
    inspect.set_defaults(handler=_inspect)

    validate = commands.add_parser("validate", help="check a document or a whole image against the spec")
    validate.add_argument(
        "target", metavar="REF|FILE", help="an image reference, or with --type a file ('-' for stdin)"
    )
    validate.add_argument(
        "--type",
        choices=[*DOCUMENT_PARSERS, "layout"],
        help="validate one document of this kind (layout: the layout directory or its oci-layout file)",
    )
    _common(validate)
    validate.set_defaults(handler=_validate)

    register_layer_commands(commands, _common)
    register_registry_commands(commands)
    register_store_commands(commands, _common)
    register_build_commands(commands, _common)
    register_docker_build_commands(commands)
    register_run_commands(commands, _common)
    register_workshop_commands(commands)

    doctor = commands.add_parser("doctor", help="which components are present and working")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(handler=_doctor)
    for command in commands.choices.values():
        _explain_references(command)
    return parser


def _explain_references(command: argparse.ArgumentParser) -> None:
    """Add the transports to the ``--help`` of a command that takes an image reference."""
    metavars = [str(action.metavar or "") for action in command._actions]
    if any(word in metavar for metavar in metavars for word in REFERENCE_METAVARS):
        command.epilog = f"{command.epilog}\n\n{REFERENCES}" if command.epilog else REFERENCES
        command.formatter_class = argparse.RawDescriptionHelpFormatter


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--tls-verify",
        default="true",
        choices=["true", "false"],
        help="verify registry TLS certificates (default true)",
    )


def _inspect(args: argparse.Namespace) -> int:
    from ocilab.api import open as open_image
    from ocilab.api import resolve

    tls_verify = args.tls_verify == "true"
    node = (
        open_image(args.reference, args.platform, tls_verify) if args.platform else resolve(args.reference, tls_verify)
    )
    try:
        document = inspect_document(node)
    finally:
        node.store.close()
    if args.json:
        print_json(document)
    elif "manifests" in document:
        print(f"{document['reference']}\n{document['media_type']}  {document['manifest_digest']}\n")
        rows = [
            (_platform(m["platform"]), m["digest"], human_size(m["size"]), m["media_type"])
            for m in document["manifests"]
        ]
        print(table(["platform", "digest", "size", "media type"], rows, max_width=80))
    else:
        _print_image(document)
    return EXIT_OK


def _platform(value: dict[str, str] | None) -> str:
    if not value:
        return "-"
    return "/".join(value[key] for key in ("os", "architecture", "variant") if value.get(key))


def _print_image(document: dict[str, Any]) -> None:
    config = document["config"]
    facts = [
        ("reference", document["reference"]),
        ("manifest", f"{document['manifest_digest']}  ({document['media_type']})"),
        ("config", document["config_digest"]),
        ("platform", _platform(document["platform"])),
        ("created", document["created"] or "-"),
        ("entrypoint", json.dumps(config.get("Entrypoint")) if config.get("Entrypoint") else "-"),
        ("cmd", json.dumps(config.get("Cmd")) if config.get("Cmd") else "-"),
        ("env", "\n            ".join(config.get("Env") or []) or "-"),
    ]
    for key, value in facts:
        print(f"{key:<11} {value}")
    print()
    rows = [
        (i, layer["digest"][:19], human_size(layer["size"]), layer["media_type"])
        for i, layer in enumerate(document["layers"])
    ]
    print(table(["#", "digest", "size", "media type"], rows, max_width=80))


def _validate(args: argparse.Namespace) -> int:
    if args.type is None:
        from ocilab.api import validate

        report = validate(args.target, tls_verify=args.tls_verify == "true")
    elif args.type == "layout":
        from ocilab.operations.validate import validate_layout_path

        report = validate_layout_path(Path(args.target))
    else:
        return _validate_document(args)
    if args.json:
        print_json(report.to_json())
    else:
        for line in report.checked:
            print(f"ok       {line}")
        _print_warnings(report.warnings)
    for problem in report.problems:
        print(f"ocilab: {problem}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_INVALID


def _print_warnings(warnings: Sequence[Finding]) -> None:
    for warning in warnings:
        print(f"warning  {warning}")


def _validate_document(args: argparse.Namespace) -> int:
    source = "<stdin>" if args.target == "-" else args.target
    if args.target == "-":
        raw = read_capped(sys.stdin.buffer, MAX_DOCUMENT_BYTES, source)
    else:
        try:
            with open(args.target, "rb") as stream:
                raw = read_capped(stream, MAX_DOCUMENT_BYTES, source)
        except OSError as error:
            print(f"ocilab: {args.target}: cannot read: {error.strerror}", file=sys.stderr)
            return EXIT_INVALID
    document = DOCUMENT_PARSERS[args.type](raw, source)
    digest = getattr(document, "digest", None)
    if args.json:
        print_json(
            {
                "valid": True,
                "type": args.type,
                "digest": str(digest) if digest else None,
                "warnings": [warning.to_json() for warning in document.warnings],
            }
        )
    else:
        print(f"valid {args.type}" + (f" {digest}" if digest and args.type != "descriptor" else ""))
        _print_warnings(document.warnings)
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from ocilab.operations.components import doctor, doctor_json

    statuses = doctor()
    if args.json:
        print_json(doctor_json(statuses))
    else:
        rows = [
            (
                s.name,
                "ok" if s.working else ("present" if s.present else "missing"),
                s.version or "-",
                s.detail if s.working else s.how_to_get,
            )
            for s in statuses
        ]
        print(table(["component", "status", "version", "detail"], rows, max_width=70))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
