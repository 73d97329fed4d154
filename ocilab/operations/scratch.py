"""A small image made offline, with no engine: the host's static busybox on ``scratch``.

Two layers, as a Dockerfile ``COPY busybox /bin/busybox`` + ``RUN busybox
--install -s /bin`` would make them: the binary, then one symlink per applet.
Built by ``ocilab.Builder``, so it is reproducible the same way: every
timestamp is ``SOURCE_DATE_EPOCH`` (default 0), entries are sorted, and the
compression is deterministic, so the same busybox binary always gives the same digests.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ocilab.errors import ComponentUnavailableError
from ocilab.operations.builder import Builder
from ocilab.tar.tarwriter import Symlink

HOST_BUSYBOX = Path("/bin/busybox")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def busybox_layout(destination: Path, tag: str = "latest", busybox: Path = HOST_BUSYBOX) -> Path:
    """Write a two-layer busybox image, tagged ``tag``, to the OCI layout at ``destination``; its path.

    ``destination`` is a new path, an empty directory, or a layout (whose other images are kept).
    """
    if not busybox.is_file():
        raise ComponentUnavailableError(
            f"{busybox}: no static busybox here; install it with apt-get install busybox-static"
        )
    links = {f"/bin/{name}": Symlink("/bin/busybox") for name in _applets(busybox)}
    image = (
        Builder.scratch()
        .add(busybox, "/bin/busybox", created_by="COPY busybox /bin/busybox")
        .add_files(links, created_by="RUN /bin/busybox --install -s /bin")
        .config(env={"PATH": _PATH}, cmd=["/bin/sh"], workdir="/", created_by='CMD ["/bin/sh"]')
    )
    image.write(f"oci:{destination}:{tag}")
    return Path(destination)


def _applets(busybox: Path) -> list[str]:
    try:
        listing = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise ComponentUnavailableError(f"{busybox} --list failed ({error}); is it a working busybox?") from None
    return sorted({name for name in listing.stdout.split() if name and "/" not in name and name != "busybox"})
