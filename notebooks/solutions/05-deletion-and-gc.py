"""05 · Deletion and garbage collection: the answers to "Your turn", for instructors.

Each entry is the check a learner's cell calls and the arguments of a right
answer (the answer first); tests/test_check.py runs each one, expects ✓, and
expects ✗ for a wrong answer. The layout of exercise 2 is made here the way
the notebook makes it, in a temporary directory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ocilab import Builder, Image, busybox_layout, check, remove
from ocilab.operations.layout_gc import collect_layout


def lesson_layout() -> Path:
    """The notebook's layout when exercise 2 starts: busybox:1 removed and collected, ``app`` and ``app2`` tagged."""
    layout = busybox_layout(Path(tempfile.mkdtemp(prefix="ocilab-05-")) / "busybox", tag="1")
    base = Builder.from_image(f"oci:{layout}:1").config(labels={"org.ocilab.lesson": "05-deletion-and-gc"})
    base.add_files({"/srv/www/index.html": b"<h1>version 1</h1>\n"}).write(f"oci:{layout}:app")
    base.add_files({"/srv/www/index.html": b"<h1>version 2</h1>\n"}).write(f"oci:{layout}:app2")
    remove(f"oci:{layout}:1")
    collect_layout(layout)
    remove(f"oci:{layout}:app")
    return layout


def solutions(image: Image) -> list[tuple[Any, tuple[Any, ...]]]:
    """(check, arguments) per exercise, in the notebook's order; ``image`` is the notebook's busybox image."""
    return [
        # 1. The layer that survived the registry's collector: busybox's layer 0 (the binary), which app:1 shares.
        (check.layer_digest, (str(image.layers[0].digest), image, 0)),
        # 2. After `app` is untagged: its manifest, its config and its own layer go (3); busybox's two layers
        #    stay, because app2 lists them too.
        (check.layout_gc_removes, (3, lesson_layout())),
    ]
