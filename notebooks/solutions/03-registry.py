"""03 · The registry: the answers to "Your turn", for instructors.

Each entry is the check a learner's cell calls and the arguments of a right
answer (the answer first); tests/test_check.py runs each one, expects ✓, and
expects ✗ for a near miss. The registry and its images are made here as the
notebook makes them (the registry stops when the process exits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ocilab
from ocilab import Image, check
from ocilab.lab import RegistryServer

_RUNNING: list[RegistryServer] = []  # kept alive until the checks have run


def solutions(image: Image) -> list[tuple[Any, tuple[Any, ...]]]:
    """(check, arguments) per exercise, in the notebook's order; ``image`` is 00's busybox (in a layout)."""
    layout = image.reference.removeprefix("oci:").rpartition(":")[0]
    server = RegistryServer(Path(layout).parent / "03-registry").start()
    _RUNNING.append(server)
    busybox = f"docker://{server.host}/busybox"
    ocilab.copy(f"oci:{layout}:1", f"{busybox}:1", quiet=True)
    hello = ocilab.Builder.from_image(f"oci:{layout}:1").add_files({"/hello.txt": b"Hello\n"})
    pushed = hello.write(f"docker://{server.host}/hello:1")
    ocilab.copy(f"docker://{server.host}/hello:1", f"{busybox}:1", quiet=True)  # the tag moves, as in the notebook
    ocilab.copy(f"docker://{server.host}/hello:1", f"docker://{server.host}/greetings:1", quiet=True)  # exercise 2
    # 3. A second tag for the original digest: copy by digest, to a tag; the registry has every blob already.
    ocilab.copy(f"{busybox}@{image.manifest_digest}", f"{busybox}:stable", quiet=True)
    return [
        # 1. hello:1's manifest digest: Docker-Content-Digest of its tag PUT, or ocilab.open(...).manifest_digest.
        (check.manifest_digest, (str(pushed.digest), f"docker://{server.host}/hello:1")),
        # 2. Still 7 blobs after the copy to greetings: busybox's 2 layers, config and manifest; hello's new layer,
        # config and manifest. A copy within the registry mounts; it adds links, not blobs.
        (check.registry_blobs, (7, server.data_dir)),
        (check.same_image, (f"{busybox}:stable", f"{busybox}@{image.manifest_digest}")),
    ]
