"""06 · Beyond: the answers to "Your turn", for instructors.

Each entry is the check a learner's cell calls and the arguments of a right
answer (the answer first); tests/test_check.py runs each one, expects ✓, and
expects ✗ for a near miss. The registry, the layout and the app versions are
made here as the notebook makes them (the registry stops when the process exits).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ocilab
from ocilab import Builder, Image, check
from ocilab.operations.artifact import attach
from ocilab.operations.registry_server import RegistryServer

_RUNNING: list[RegistryServer] = []  # kept alive until the checks have run
SBOM = {
    "spdxVersion": "SPDX-2.3",
    "name": "busybox:1",
    "packages": [{"name": "busybox", "SPDXID": "SPDXRef-busybox", "filesAnalyzed": False}],
}
SPDX = "application/spdx+json"


def solutions(image: Image) -> list[tuple[Any, tuple[Any, ...]]]:
    """(check, arguments) per exercise, in the notebook's order; ``image`` is 00's busybox (in a layout)."""
    work = Path(tempfile.mkdtemp(prefix="ocilab-06-"))
    server = RegistryServer(work / "registry").start()
    _RUNNING.append(server)
    busybox = f"docker://{server.host}/demo/busybox:1"
    ocilab.copy(image.reference, busybox, quiet=True)
    attach(busybox, SBOM, artifact_type=SPDX, media_type=SPDX)

    layout = ocilab.busybox_layout(work / "busybox", tag="1")
    attach(f"oci:{layout}:1", SBOM, artifact_type=SPDX, media_type=SPDX, tag="sbom")
    apps = work / "apps"
    start = Builder.from_image(f"oci:{layout}:1").config(cmd=["/bin/sh", "/app/run.sh"])
    start.add_files(
        {"/app/run.sh": b'echo "$GREETING from app version 2"\n', "/app/app.conf": b"port=8080\nlog=debug\n"}
    ).config(env={"GREETING": "hi"}, labels={"version": "2"}).write(f"oci:{apps}:v2")
    ocilab.remove(f"oci:{layout}:sbom")
    ocilab.remove(f"oci:{layout}:1")

    # 3. Version 3 from version 2: one new layer holding a new app.conf, every layer of v2 kept.
    Builder.from_image(f"oci:{apps}:v2").add_files({"/app/app.conf": b"port=8080\nlog=warn\n"}).write(f"oci:{apps}:v3")
    return [
        # 1. The subject's digest with '-' for ':': the tag the kit keeps the referrers index under.
        (check.referrers_tag, (f"sha256-{image.manifest_digest.encoded}", busybox)),
        # 2. busybox's manifest, config and two layers (4), and the artifact's manifest, empty config and SBOM (3):
        #    the referrer goes with its subject.
        (check.layout_gc_removes, (7, layout)),
        (check.changes_only, (f"oci:{apps}:v3", f"oci:{apps}:v2", "/app/app.conf")),
    ]
