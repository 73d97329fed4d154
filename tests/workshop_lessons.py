"""What a learner does in the workshop test and bench: notebook 00, then the daemonless path of the later lessons.

Both run in the learner's own kernel (``ocilab.workshop.kernels.LearnerKernel``):
notebook 00's code cells one by one, as JupyterLab would send them, then
``DAEMONLESS`` -- build (busybox plus a file), push to the learner's own
registry, ``skopeo inspect`` it (a peer, with the learner's default auth
file), unpack with ``--rootless``, run with rootless runc, delete the tag,
garbage-collect -- which prints one JSON line of facts to check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocilab.workshop.kernels import LearnerKernel

NOTEBOOK_00 = Path(__file__).resolve().parent.parent / "notebooks" / "00-welcome.ipynb"
PAGE = b"hello from the workshop\n"
DAEMONLESS = f"""
import json, subprocess, ocilab
from ocilab.operations.registry_server import RegistryServer
lab = ocilab.workspace("workshop-daemonless")
registry = RegistryServer(lab / "registry").start()
reference = f"docker://{{registry.host}}/lesson/web:1"
base = ocilab.busybox_layout(lab / "busybox", tag="1")
built = ocilab.Builder.from_image(f"oci:{{base}}:1").add_files({{"/srv/index.html": {PAGE!r}}})
built.write(reference)
peer = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{{{.Digest}}}}", reference],
                      capture_output=True, text=True)
bundle = lab / "bundle"
ocilab.unpack(reference, bundle, rootless=True)
ran = ocilab.run(bundle, ["/bin/cat", "/srv/index.html"])
blobs = lambda: len(list((registry.data_dir / "docker/registry/v2/blobs/sha256").glob("*/*")))
before = blobs()
ocilab.remove(reference)
registry.garbage_collect()
print(json.dumps({{"digest": str(built.digest), "skopeo": peer.stdout.strip() or peer.stderr.strip(),
                  "exit_code": ran.exit_code, "stdout": ran.stdout, "port": registry.port, "workspace": str(lab),
                  "registry": str(registry.data_dir), "blobs_before": before, "blobs_after": blobs()}}))
"""


def notebook_cells(notebook: Path = NOTEBOOK_00) -> list[str]:
    """The notebook's code cells, as sources."""
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


@dataclass
class Lessons:
    """What one learner's kernel answered: errors per notebook-00 cell, the digest it built, the daemonless facts."""

    errors: list[str] = field(default_factory=list)
    busybox_digest: str = ""
    daemonless: dict[str, Any] = field(default_factory=dict)


def run_lessons(kernel: LearnerKernel) -> Lessons:
    """Notebook 00, cell by cell, then the daemonless path; every failure is collected, not raised."""
    lessons = Lessons()
    for source in notebook_cells():
        execution = kernel.execute(source)
        if not execution.ok:
            lessons.errors.append(f"{source[:60]!r}: {execution.error}")
    lessons.busybox_digest = kernel.execute("print(image.manifest_digest)").stdout.strip()
    execution = kernel.execute(DAEMONLESS)
    if not execution.ok:
        lessons.errors.append(f"daemonless: {execution.error} {execution.stderr[-1500:]}")
    else:
        lessons.daemonless = json.loads(execution.stdout.strip().splitlines()[-1])
    return lessons
