"""The layer commands of the CLI: ``layers``, ``changes``, ``diff`` and ``efficiency``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ocilab.model import mediatype as mt
from ocilab.present.compare import difference
from ocilab.present.rows import SIZED_TYPES, change_rows, diff_document, efficiency_document, summary_rows
from ocilab.present.text import human_size, parse_size, print_json, shorten, table

EXIT_OK, EXIT_THRESHOLD = 0, 1
DEFAULT_LOWEST_EFFICIENCY = 0.9
DEFAULT_TOP = 20
CONFIG_VALUE_WIDTH = 160
JSON_SLICE = 10_000
MARKS = {"added": "A", "modified": "M", "removed": "D"}
CHANGE_LETTERS = (
    "change letters:\n"
    "  A  added: the path is new (in diff: only in B)\n"
    "  M  modified: content, type, mode, owner or link target differ (with --strict, the mtime too)\n"
    "  D  deleted: the path is gone (in a layer: a whiteout, .wh.NAME or .wh..wh..opq; in diff: only in A)"
)
T = TypeVar("T")


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the four commands to the CLI's subparsers; ``common`` adds --json and --tls-verify."""

    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--platform", metavar="OS/ARCH[/VARIANT]", help="the image for this platform, from an index (linux/amd64)"
        )
        common(parser)

    layers = commands.add_parser("layers", help="each layer: descriptor, build step, and counts of its changes")
    layers.add_argument("reference", metavar="REF")
    options(layers)
    layers.set_defaults(handler=_layers)

    changes = commands.add_parser("changes", help="what each layer adds, modifies and removes", epilog=CHANGE_LETTERS)
    changes.add_argument("reference", metavar="REF")
    changes.add_argument("--layer", type=int, metavar="N", help="only layer N (0 is the base)")
    changes.add_argument("--strict", action="store_true", help="a different mtime alone counts as a modification")
    options(changes)
    changes.set_defaults(handler=_changes)

    diff = commands.add_parser(
        "diff", help="files, config and layers that differ between two images", epilog=CHANGE_LETTERS
    )
    diff.add_argument("reference_a", metavar="REF_A")
    diff.add_argument("reference_b", metavar="REF_B")
    diff.add_argument("--strict", action="store_true", help="a different mtime alone counts as a modification")
    options(diff)
    diff.set_defaults(handler=_diff)

    efficiency = commands.add_parser("efficiency", help="bytes shipped in layers but hidden in the final filesystem")
    efficiency.add_argument("reference", metavar="REF")
    efficiency.add_argument("--ci", action="store_true", help="exit 1 when a threshold is crossed")
    efficiency.add_argument(
        "--lowest-efficiency",
        type=_ratio,
        metavar="RATIO",
        help=f"0-1, with --ci (default {DEFAULT_LOWEST_EFFICIENCY})",
    )
    efficiency.add_argument(
        "--highest-wasted-bytes", type=_size_argument, metavar="SIZE", help="with --ci; e.g. 20MB, 5MiB"
    )
    efficiency.add_argument("--highest-wasted-percent", type=_percent, metavar="PERCENT", help="0-100, with --ci")
    efficiency.add_argument(
        "--top", type=_positive, metavar="N", help=f"list only the N most wasteful paths (table default {DEFAULT_TOP})"
    )
    options(efficiency)
    efficiency.set_defaults(handler=_efficiency, parser=efficiency)


def _open(reference: str, args: argparse.Namespace) -> Any:
    from ocilab.api import open as open_image

    return open_image(reference, args.platform, tls_verify=args.tls_verify == "true")


def _ratio(text: str) -> float:
    """argparse type: a number from 0 to 1 (an efficiency)."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a ratio from 0 to 1 (0.9 means 90%)")
    return value


def _percent(text: str) -> float:
    """argparse type: a number from 0 to 100."""
    value = _number(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not a percentage from 0 to 100")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value:  # NaN compares false with every bound
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return value


def _size_argument(text: str) -> int:
    """argparse type: ``parse_size``, its message kept (argparse drops a ValueError's)."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _layers(args: argparse.Namespace) -> int:
    from ocilab.operations.analysis import layer_summaries

    with _open(args.reference, args) as image:
        summaries = layer_summaries(image)
    if args.json:
        print_json(summary_rows(summaries))
        return EXIT_OK
    rows = [
        (s.index, str(s.digest)[:19], human_size(s.size), mt.short_name(s.media_type), s.added, s.modified, s.removed,
         s.created_by)
        for s in summaries
    ]  # fmt: skip
    print(table(["#", "digest", "size", "type", "added", "modified", "removed", "created by"], rows))
    return EXIT_OK


def _changes(args: argparse.Namespace) -> int:
    from ocilab.operations.analysis import changes

    with _open(args.reference, args) as image:
        found = changes(image, args.layer, args.strict)
    if args.json:
        _print_json_list(found, change_rows)
        return EXIT_OK
    print(table(["layer", "", "type", "size", "path"], [
        (r["layer"], MARKS[r["change"]], r["type"], human_size(r["size"]) if r["type"] in SIZED_TYPES else "",
         r["path"])
        for r in change_rows(found)
    ], max_width=120))  # fmt: skip
    return EXIT_OK


def _print_json_list(items: list[T], rows: Callable[[list[T]], list[dict[str, Any]]]) -> None:
    """``print_json(rows(items))``, written a slice at a time when piped, so a long list is never one string."""
    if sys.stdout.isatty():
        print_json(rows(items))
        return
    sys.stdout.write("[")
    for start in range(0, len(items), JSON_SLICE):
        text = json.dumps(rows(items[start : start + JSON_SLICE]))
        sys.stdout.write((", " if start else "") + text[1:-1])
    sys.stdout.write("]\n")


def _diff(args: argparse.Namespace) -> int:
    from ocilab.operations.analysis import diff_images

    with _open(args.reference_a, args) as a, _open(args.reference_b, args) as b:
        document = diff_document(diff_images(a, b, args.strict))
    if args.json:
        print_json(document)
        return EXIT_OK
    print(table(["", "type", "size a", "size b", "path"], [
        (MARKS[f["change"]], f["type"], _size(f["size_a"]), _size(f["size_b"]), f["path"]) for f in document["files"]
    ], max_width=120))  # fmt: skip
    if document["config"]:
        print("\nconfig (what only A has -> what only B has):")
        for key, values in document["config"].items():
            sides = difference(values["a"], values["b"])
            before, after = (shorten(side, CONFIG_VALUE_WIDTH) or "(none)" for side in sides)
            print(f"  {key}: {before} -> {after}")
    layers = document["layers"]
    counts = (len(layers["shared"]), len(layers["only_a"]), len(layers["only_b"]))
    print("\nlayers: {} shared, {} only in A, {} only in B".format(*counts))
    for layer in layers["recompressed"]:
        a, b = layer["a"], layer["b"]
        print(
            f"  same content {layer['diff_id'][:19]}, only the compression differs:"
            f" {a['digest'][:19]} ({mt.short_name(a['media_type'])}) in A,"
            f" {b['digest'][:19]} ({mt.short_name(b['media_type'])}) in B"
        )
    return EXIT_OK


def _size(value: int | None) -> str:
    return "" if value is None else human_size(value)


def _efficiency(args: argparse.Namespace) -> int:
    from ocilab.operations.analysis import efficiency

    thresholds = ("lowest_efficiency", "highest_wasted_bytes", "highest_wasted_percent")
    given = [f"--{name.replace('_', '-')}" for name in thresholds if getattr(args, name) is not None]
    if given and not args.ci:
        args.parser.error(f"{', '.join(given)}: thresholds are checked in CI mode only; add --ci (exit 1 when crossed)")

    with _open(args.reference, args) as image:
        document = efficiency_document(efficiency(image), args.top)
    failures = _threshold_failures(document, args) if args.ci else []
    if args.ci:
        document["ci"] = {"passed": not failures, "failures": failures}
    if args.json:
        print_json(document)
    else:
        print(
            f"efficiency {document['efficiency']:.3%}   total {human_size(document['total_bytes'])}   final"
            f" {human_size(document['final_bytes'])}   wasted {human_size(document['wasted_bytes'])}"
            f" ({document['wasted_percent']:.2f}%)\n"
        )
        rows = [
            (f["occurrences"], human_size(f["wasted_bytes"]), "yes" if f["visible"] else "no", f["path"])
            for f in document["files"][: args.top or DEFAULT_TOP]
        ]
        print(table(["copies", "wasted", "visible", "path"], rows, max_width=120))
        for failure in failures:
            print(f"FAIL {failure}")
    return EXIT_THRESHOLD if failures else EXIT_OK


def _threshold_failures(document: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """Each threshold crossed, in words; efficiency defaults to 0.9 as dive's CI mode does."""
    failures = []
    lowest = DEFAULT_LOWEST_EFFICIENCY if args.lowest_efficiency is None else args.lowest_efficiency
    if document["efficiency"] < lowest:
        failures.append(f"efficiency {document['efficiency']:.6g} is below the lowest allowed {lowest}")
    if args.highest_wasted_bytes is not None and document["wasted_bytes"] > args.highest_wasted_bytes:
        failures.append(
            f"{document['wasted_bytes']} wasted bytes is above the highest allowed {args.highest_wasted_bytes}"
        )
    if args.highest_wasted_percent is not None and document["wasted_percent"] > args.highest_wasted_percent:
        failures.append(
            f"{document['wasted_percent']:.2f}% wasted is above the highest allowed {args.highest_wasted_percent}%"
        )
    return failures
