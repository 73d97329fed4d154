"""Small hand-made layer tars for the presentation tests (not tests themselves)."""

from __future__ import annotations

import io
import tarfile


def tar_of(*members: tuple[str, bytes]) -> bytes:
    """An uncompressed tar of regular files (name, content), mtime 0."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return plain.getvalue()
