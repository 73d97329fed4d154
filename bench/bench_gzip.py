"""Gzip decoders side by side on a real layer: the standard library's zlib, zlib-ng and ISA-L.

ocilab decodes gzip layers with the fastest decoder installed (``GZIP_BACKEND``).
This prints each decoder's throughput on the largest layer of the ``debian``
benchmark image (built by ``bench/images.py`` when missing), best of three, and its ratio
to zlib. Decoders that are not installed are reported as such.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import BinaryIO

import images

from ocilab.tar.compression import GZIP_BACKEND

DECODERS = {
    "zlib": ("gzip", "GzipFile"),
    "zlib-ng": ("zlib_ng.gzip_ng", "GzipNGFile"),
    "isal": ("isal.igzip", "IGzipFile"),
}
REPEAT = 3


def largest_layer(layout: Path) -> Path:
    """The blob of the largest layer of the layout's only image."""
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    layer = max(manifest["layers"], key=lambda descriptor: descriptor["size"])
    return layout / "blobs" / "sha256" / layer["digest"].split(":")[1]


def decode_seconds(opener: type[BinaryIO], blob: Path) -> tuple[float, int]:
    """Best wall time of decoding ``blob`` to the end, and the decoded size."""
    best, size = float("inf"), 0
    for _ in range(REPEAT):
        start = time.perf_counter()
        with blob.open("rb") as raw, opener(fileobj=raw) as stream:  # type: ignore[call-arg]
            size = sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 20), b""))
        best = min(best, time.perf_counter() - start)
    return best, size


def main() -> int:
    (debian,) = images.ensure(["debian"])
    blob = largest_layer(debian.layout)
    print(
        f"gzip decoders on {blob.name[:12]} ({blob.stat().st_size / 1e6:.1f} MB compressed); ocilab uses {GZIP_BACKEND}"
    )
    baseline = None
    print(f"{'decoder':<9} {'seconds':>8} {'MB/s out':>9} {'vs zlib':>8}")
    for name, (module, attribute) in DECODERS.items():
        try:
            opener = getattr(importlib.import_module(module), attribute)
        except ImportError:
            print(f"{name:<9} not installed")
            continue
        seconds, size = decode_seconds(opener, blob)
        baseline = baseline or seconds
        print(f"{name:<9} {seconds:>8.2f} {size / 1e6 / seconds:>9.0f} {baseline / seconds:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
