"""A small image made offline, with no engine: the host's static busybox on ``scratch``.

Two layers, as a Dockerfile ``COPY busybox /bin/busybox`` + ``RUN busybox
--install -s /bin`` would make them: the binary, then one symlink per applet.
The build is reproducible: every timestamp is ``SOURCE_DATE_EPOCH`` (default
0), entries are sorted, and gzip headers carry no name or time, so the same
busybox binary always gives the same digests.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ocilab.errors import ComponentUnavailableError
from ocilab.model import Descriptor, Digest
from ocilab.model import mediatype as mt
from ocilab.model.digest import CHUNK_SIZE
from ocilab.stores.layout_writer import LayoutWriter

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
    applets = _applets(busybox)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    steps = [
        ("COPY busybox /bin/busybox", lambda tar: _add_busybox(tar, busybox, epoch)),
        ("RUN /bin/busybox --install -s /bin", lambda tar: _add_applet_links(tar, applets, epoch)),
    ]
    with LayoutWriter(destination) as writer:
        layers: list[Descriptor] = []
        diff_ids: list[str] = []
        for _, fill in steps:
            layer, diff_id = _write_layer(writer, fill)
            layers.append(layer)
            diff_ids.append(str(diff_id))
        config = {
            "created": created,
            "architecture": _architecture(),
            "os": "linux",
            "config": {"Env": [f"PATH={_PATH}"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": created, "created_by": command} for command, _ in steps]
            + [{"created": created, "created_by": 'CMD ["/bin/sh"]', "empty_layer": True}],
        }
        writer.put_image(config, layers, tag)
        return writer.commit()


def _architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def _applets(busybox: Path) -> list[str]:
    try:
        listing = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise ComponentUnavailableError(f"{busybox} --list failed ({error}); is it a working busybox?") from None
    return sorted({name for name in listing.stdout.split() if name and "/" not in name and name != "busybox"})


def _entry(name: str, kind: bytes, epoch: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = kind, epoch, mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _add_busybox(tar: tarfile.TarFile, busybox: Path, epoch: int) -> None:
    tar.addfile(_entry("bin/", tarfile.DIRTYPE, epoch, 0o755))
    info = _entry("bin/busybox", tarfile.REGTYPE, epoch, 0o755)
    info.size = busybox.stat().st_size
    with busybox.open("rb") as stream:
        tar.addfile(info, stream)


def _add_applet_links(tar: tarfile.TarFile, applets: list[str], epoch: int) -> None:
    tar.addfile(_entry("bin/", tarfile.DIRTYPE, epoch, 0o755))
    for name in applets:
        link = _entry(f"bin/{name}", tarfile.SYMTYPE, epoch, 0o777)
        link.linkname = "/bin/busybox"
        tar.addfile(link)


def _write_layer(writer: LayoutWriter, fill: Callable[[tarfile.TarFile], None]) -> tuple[Descriptor, Digest]:
    """Write one gzip layer blob from a tar filled by ``fill``; its descriptor and diff_id."""
    with tempfile.TemporaryFile() as plain, tempfile.TemporaryFile() as compressed:
        with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
            fill(tar)
        plain.seek(0)
        diff_id, _ = Digest.of_stream(plain)
        plain.seek(0)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as zipped:
            shutil.copyfileobj(plain, zipped, CHUNK_SIZE)
        compressed.seek(0)
        return writer.put_stream(compressed, mt.OCI_LAYER_GZIP), diff_id
