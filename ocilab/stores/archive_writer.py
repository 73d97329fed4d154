"""Writing an ``oci-archive``: a tar of an OCI image layout, made all or nothing."""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from ocilab.errors import InvalidInputError
from ocilab.stores.layout import open_layout


def write_oci_archive(layout: Path, archive: Path) -> Path:
    """Tar the layout directory ``layout`` into ``archive`` (which must not exist); its path.

    The layout is opened first, so a directory that is not a layout is refused
    before anything is written. Members are sorted and owned by root for a
    reproducible archive; the tar is written to a temporary name and renamed.
    """
    open_layout(layout).close()
    if archive.exists():
        raise InvalidInputError(f"{archive}: already exists; choose a new path")
    archive.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{archive.name}.", dir=archive.parent)
    try:
        with (
            os.fdopen(handle, "wb") as stream,
            tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in sorted(layout.rglob("*")):
                if path.is_symlink():
                    raise InvalidInputError(f"{path}: symlinks have no place in an OCI layout")
                info = tar.gettarinfo(str(path), arcname=path.relative_to(layout).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if info.isreg():
                    with path.open("rb") as member:
                        tar.addfile(info, member)
                else:
                    tar.addfile(info)
        os.rename(temporary, archive)
    except BaseException:
        os.unlink(temporary)
        raise
    return archive
