"""02 · Building: the answers to "Your turn", for instructors.

Each entry is the check a learner's cell calls and the arguments of a right
answer (the answer first); tests/test_check.py runs each one, expects ✓, and
expects ✗ for a wrong answer. The images are built here the way the notebook
builds them, on the notebook's busybox image, in a temporary directory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ocilab import Builder, Image, check
from ocilab.lab import noise

PAGE = b"<h1>Hello from busybox</h1>\n"


def solutions(image: Image) -> list[tuple[Any, tuple[Any, ...]]]:
    """(check, arguments) per exercise, in the notebook's order; ``image`` is the notebook's busybox image."""
    layout = Path(tempfile.mkdtemp(prefix="ocilab-02-")) / "images"
    start = Builder.from_image(image.reference)
    tools = noise(4 * 2**20, seed="build tools")
    careless = start.add_files({"/tmp/tools.bin": tools, "/srv/www/index.html": PAGE}).delete("/tmp/tools.bin")
    careless.write(f"oci:{layout}:careless")
    overwritten = start.add_files({"/tmp/tools.bin": tools}).add_files({"/tmp/tools.bin": b"small\n"})
    overwritten.write(f"oci:{layout}:overwritten")
    # 3. Any image on busybox that ships only what it keeps: here, the page and a second file, one layer each.
    start.add_files({"/srv/www/index.html": PAGE}).add_files({"/etc/motd": b"hi\n"}).write(f"oci:{layout}:mine")
    return [
        # 1. The careless image has 4 layers: busybox's 2, the tools and the page, then the whiteout.
        (check.layer_count, (4, f"oci:{layout}:careless")),
        # 2. The whole 4 MiB: the first layer still ships the tools, which the second layer's small file hides.
        (check.wasted_bytes, (4 * 2**20, f"oci:{layout}:overwritten")),
        (check.wastes_nothing, (f"oci:{layout}:mine", image)),
    ]
