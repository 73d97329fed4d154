"""04 · Runtime bundle: the answers to "Your turn", for instructors.

Each entry is the check a learner's cell calls and the arguments of a right
answer (the answer first); tests/test_check.py runs each one, expects ✓, and
expects ✗ for a wrong answer. The images and bundles are made here the way the
notebook makes them, on the notebook's busybox image, in a temporary directory
(rootless, so the solutions run as any user).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ocilab import Builder, Image, check, unpack
from ocilab.operations.raw_layer import RawEntry, raw_layer_image

FILES = {
    "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:web server:/srv/www:/bin/sh\n",
    "/etc/group": b"root:x:0:\nwww:x:33:\n",
    "/srv/www/index.html": b"<h1>Hello from busybox</h1>\n",
}


def solutions(image: Image) -> list[tuple[Any, tuple[Any, ...]]]:
    """(check, arguments) per exercise, in the notebook's order; ``image`` is the notebook's busybox image."""
    lab = Path(tempfile.mkdtemp(prefix="ocilab-04-"))
    app = Builder.from_image(image.reference).add_files(FILES).config(workdir="/srv/www", user="www")
    app.write(f"oci:{lab}/images:app")
    unpack(f"oci:{lab}/images:app", lab / "bundle", rootless=True)
    # 2. etc -> / is followed inside the rootfs: '/' there is the rootfs's own root, so etc/passwd is /passwd.
    rooted = [RawEntry("etc", "symlink", link="/"), RawEntry("etc/passwd", data=b"evil::0:0::/:/bin/sh\n")]
    unpack(raw_layer_image(f"oci:{lab}/hostile:rooted", rooted), lab / "rooted", rootless=True)
    # 3. The app as root in /tmp: two config fields, no layer; unpacked into a bundle of its own.
    app.config(user="root", workdir="/tmp").write(f"oci:{lab}/images:mine")
    unpack(f"oci:{lab}/images:mine", lab / "mine", rootless=True)
    return [
        # 1. User www is uid 33 in the image's own /etc/passwd.
        (check.process_uid, (33, lab / "bundle")),
        (check.landed_at, ("/passwd", lab / "rooted", "passwd")),
        (check.runs_as, (str(lab / "mine"), 0, "/tmp")),
    ]
