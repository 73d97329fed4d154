"""Plain-text rendering for the command line: human sizes and compact tables."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", re.IGNORECASE)


def human_size(size: int | float) -> str:
    """``1536`` -> ``1.5 KiB``; bytes stay exact below 1 KiB."""
    value = float(size)
    unit = 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    """Left-aligned columns separated by two spaces; cells longer than ``max_width`` are cut with '…'."""
    cells = [[_cell(value, max_width) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any, max_width: int) -> str:
    return shorten(" ".join(("" if value is None else str(value)).split()), max_width)


def shorten(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` characters, else its start and '…'."""
    return text if len(text) <= width else text[: width - 1] + "…"


def parse_size(text: str) -> int:
    """``"20MB"`` -> 20000000, ``"5MiB"`` -> 5242880, ``"512"`` -> 512; ValueError naming the units otherwise."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a size: write a number with one of the units B, kB, MB, GB, TB (powers of 1000)"
            " or KiB, MiB, GiB, TiB (powers of 1024), e.g. 512, 20MB or 5MiB"
        )
    number, prefix, binary = match.groups()
    power = "KMGT".find(prefix.upper()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def print_json(value: Any) -> None:
    """``value`` as JSON on stdout, newline-terminated: indented for a terminal, compact for a pipe.

    The compact form goes through the C encoder, several times faster on large results.
    """
    sys.stdout.write(json.dumps(value, indent=2 if sys.stdout.isatty() else None))
    sys.stdout.write("\n")
