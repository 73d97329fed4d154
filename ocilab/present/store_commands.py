"""The commands that change stores: ``copy``, ``rm`` and ``gc`` (of an OCI layout)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocilab.errors import InvalidInputError
from ocilab.present.text import human_size, print_json, table

EXIT_OK = 0
REFERENCE_HELP = (
    "oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG"
    " or docker://HOST[:PORT]/REPO[:TAG][@DIGEST]"
)


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``copy``, ``rm`` and ``gc`` to the CLI's subparsers."""
    copy = commands.add_parser(
        "copy",
        help="copy an image between any two stores, keeping its digests",
        description=f"Copy an image from SRC to DST. Both are {REFERENCE_HELP}. Digests are kept unless"
        " --format or --dest-compress asks for a conversion, or DST cannot hold the media type as it is.",
    )
    copy.add_argument("source", metavar="SRC")
    copy.add_argument("destination", metavar="DST")
    copy.add_argument("--all-platforms", action="store_true", help="copy a whole index, not only one platform")
    copy.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="the image to take from an index")
    copy.add_argument("--format", choices=["oci", "docker"], help="convert manifests to this format")
    copy.add_argument("--dest-compress", choices=["gzip", "zstd", "none"], help="recompress layers")
    copy.add_argument("--quiet", action="store_true", help="no progress bars")
    copy.add_argument("--dest-tls-verify", default="true", choices=["true", "false"], help="for a docker:// DST")
    common(copy)
    copy.set_defaults(handler=_copy)

    rm = commands.add_parser(
        "rm",
        help="remove a tag or manifest from a registry, a tag from an OCI layout, or an image from the engine",
        description="Remove what REF names. Nothing is freed on disk until garbage collection"
        " (`ocilab registry gc`, `ocilab gc oci:DIR`).",
    )
    rm.add_argument(
        "reference", metavar="REF", help="docker://HOST/REPO:TAG or @DIGEST, oci:DIR:TAG, docker-daemon:NAME:TAG"
    )
    common(rm)
    rm.set_defaults(handler=_rm)

    gc = commands.add_parser(
        "gc",
        help="remove the blobs of an OCI layout that no tag reaches",
        description="Mark every blob reachable from the layout's index.json, sweep the rest.",
    )
    gc.add_argument("reference", metavar="oci:DIR")
    gc.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.set_defaults(handler=_gc)


def _copy(args: argparse.Namespace) -> int:
    from ocilab.api import copy

    report = copy(
        args.source,
        args.destination,
        platform=args.platform,
        all_platforms=args.all_platforms,
        image_format=args.format,
        compression=args.dest_compress,
        quiet=args.quiet or args.json,
        src_tls_verify=args.tls_verify == "true",
        dest_tls_verify=args.dest_tls_verify == "true",
    )
    document = report.to_json()
    if args.json:
        print_json(document)
        return EXIT_OK
    counts = {outcome: len(digests) for outcome, digests in document["blobs"].items()}
    print(document["digest"])
    print(
        f"blobs: {counts['copied']} copied, {counts['skipped']} already there, {counts['mounted']} mounted;"
        f" {human_size(document['bytes_sent'])} sent; {document['manifests']} manifest(s)"
    )
    for note in document["notes"]:
        print(f"note: {note}")
    return EXIT_OK


def _rm(args: argparse.Namespace) -> int:
    from ocilab.operations.remove import remove

    removal = remove(args.reference, tls_verify=args.tls_verify == "true")
    if args.json:
        print_json(removal.to_json())
        return EXIT_OK
    for line in removal.removed:
        print(line)
    if removal.note:
        print(f"note: {removal.note}")
    return EXIT_OK


def _gc(args: argparse.Namespace) -> int:
    from ocilab.operations.layout_gc import collect_layout

    transport, _, path = args.reference.partition(":")
    if transport != "oci" or not path:
        raise InvalidInputError(
            f"{args.reference!r}: gc works on an OCI layout, oci:DIR; for the kit's registry use `ocilab registry gc`"
        )
    report = collect_layout(Path(path.partition(":")[0]), dry_run=args.dry_run)
    document = report.to_json()
    if args.json:
        print_json(document)
        return EXIT_OK
    verb = "would remove" if args.dry_run else "removed"
    removed = document["removed"]
    print(
        f"{verb} {len(removed)} blob(s), {human_size(sum(blob['size'] for blob in removed))};"
        f" blobs {document['blobs_before']} -> {document['blobs_after']},"
        f" {human_size(document['bytes_before'])} -> {human_size(document['bytes_after'])}"
    )
    if removed:
        print(table(["digest", "size"], [(blob["digest"], human_size(blob["size"])) for blob in removed], 80))
    return EXIT_OK
