"""An image of one layer written entry by entry, exactly as given: how a hostile layer looks (notebook 04).

Nothing here cleans names or checks links: that is the point. The tar is
written with ``tarfile`` from the entries, the config and manifest by
``ocilab.model.build``, and the parts by ``handmade.write_image``, so the
image itself is well formed (valid digests, sizes and diff_ids) and only its
layer's content is hostile. Unpackers must refuse it or keep it inside the rootfs.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from ocilab.errors import InvalidInputError
from ocilab.model import Digest
from ocilab.model import mediatype as mt
from ocilab.model.build import build_manifest, config_document, encode
from ocilab.operations.builder import host_architecture
from ocilab.operations.handmade import compress, descriptor_of, write_image

_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}


@dataclass(frozen=True)
class RawEntry:
    """One tar entry: ``name`` as written, ``kind`` file, dir, symlink or hardlink, ``data`` or ``link``."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""


def raw_tar(entries: Sequence[RawEntry]) -> bytes:
    """An uncompressed tar of ``entries`` in the order given (owner 0:0, mtime 0, mode 0644 or 0755 for dirs)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if entry.kind not in _TYPES:
                raise InvalidInputError(f"entry {entry.name!r}: kind {entry.kind!r} is not one of {', '.join(_TYPES)}")
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mode = 0o755 if entry.kind == "dir" else 0o644
            info.linkname = entry.link
            info.size = len(entry.data) if entry.kind == "file" else 0
            tar.addfile(info, io.BytesIO(entry.data) if info.size else None)
    return out.getvalue()


def raw_layer_image(destination: str, entries: Sequence[RawEntry], created_by: str = "ADD hostile.tar /") -> str:
    """Write an image whose one (gzip) layer holds ``entries`` verbatim to ``destination`` (``oci:DIR:TAG`` ...).

    Returns ``destination``. InvalidInputError for no entries or an unknown kind.
    """
    if not entries:
        raise InvalidInputError(f"{destination}: no entries given for the layer")
    tar = raw_tar(entries)
    blob = compress(tar, "gzip")
    config = encode(
        config_document(
            architecture=host_architecture(),
            os="linux",
            created="1970-01-01T00:00:00Z",
            diff_ids=[str(Digest.of_bytes(tar))],
            config={"Cmd": ["/bin/sh"]},
            history=[{"created": "1970-01-01T00:00:00Z", "created_by": created_by}],
        )
    )
    manifest = build_manifest(descriptor_of(config, mt.OCI_CONFIG), [descriptor_of(blob, mt.OCI_LAYER_GZIP)])
    return write_image(destination, manifest, blob, config)
