"""An image written by hand, part by part, as the image-spec describes it (notebook 01).

The documents come from ``ocilab.model.build``; these helpers do the steps
that would otherwise take a loop in a notebook cell: a reproducible layer tar
from in-memory files, its compressed blob, the descriptor of some bytes, and
writing the parts to any store through its Writer (every blob verified on the way).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ocilab.errors import InvalidInputError, NotFoundError
from ocilab.model import Descriptor, Digest, Index, Manifest, Platform
from ocilab.model import mediatype as mt
from ocilab.model.build import build_index, build_manifest, config_document, describe, encode
from ocilab.stores.transports import open_destination
from ocilab.tar.compressor import compress_stream
from ocilab.tar.tarwriter import Content, File, Memory, Stamp, plan_entries, write_entries

BLOB = "application/octet-stream"


def layer_tar(files: Mapping[str, Content]) -> bytes:
    """An uncompressed layer tar holding ``files`` (``{"/hello.txt": b"hi"}``), parents included.

    Reproducible: entries sorted, owner 0:0, every mtime 0, so the same files
    always give the same bytes (and the same diff_id).
    """
    out = io.BytesIO()
    write_entries(plan_entries([Memory(files)], Stamp(), lambda path: None), out)
    return out.getvalue()


def host_file(path: str | Path) -> File:
    """The file at ``path`` on this machine, with its permission bits, ready for ``layer_tar``."""
    try:
        file = Path(path)
        return File(file.read_bytes(), mode=file.stat().st_mode & 0o7777)
    except OSError as error:
        raise InvalidInputError(f"{path}: cannot read it ({error.strerror})") from None


def compress(data: bytes, compression: str = "gzip") -> bytes:
    """``data`` compressed as ``"gzip"``, ``"zstd"`` or ``"none"``, deterministically (no name, no mtime)."""
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, compression)
    return out.getvalue()


def descriptor_of(data: bytes, media_type: str, **extras: Any) -> Descriptor:
    """The descriptor that points at ``data``: ``media_type``, its sha256 digest and its size.

    ``extras`` are further Descriptor fields, such as ``platform=``.
    """
    return Descriptor(media_type, Digest.of_bytes(data), len(data), **extras)


def config(
    diff_ids: Sequence[Digest | str], *, architecture: str = "amd64", os: str = "linux", cmd: Sequence[str] = ()
) -> bytes:
    """The stored bytes of an image config: the layers' ``diff_ids`` bottom first, the platform, ``cmd`` if given."""
    document = config_document(
        architecture=architecture,
        os=os,
        diff_ids=[str(diff_id) for diff_id in diff_ids],
        config={"Cmd": list(cmd)} if cmd else None,
    )
    return encode(document)


def manifest(config: bytes, layers: Sequence[Descriptor]) -> Manifest:
    """The OCI manifest of an image: ``config`` (its stored bytes) and the ``layers``' descriptors, bottom first."""
    return build_manifest(descriptor_of(config, mt.OCI_CONFIG), layers)


def index(platforms: Mapping[str, Manifest]) -> Index:
    """An OCI index listing each manifest under its platform (``{"linux/amd64": manifest, ...}``), in that order."""
    return build_index([describe(document, platform=Platform.parse(name)) for name, document in platforms.items()])


def write_image(destination: str, root: Manifest | Index, *parts: bytes | Manifest | Index) -> str:
    """Write ``parts`` (blobs as bytes, and the manifests an index lists), then ``root``, to ``destination``.

    ``destination`` is any writable reference (``oci:DIR:TAG``, ``docker://...``);
    ``root`` is what its tag names. Parts are written in the order given, before
    ``root``. A descriptor in ``root`` or in a part that no part matches is a
    NotFoundError, before anything is written; what the bytes hold (a config's
    diff_ids, say) is not checked here: ``ocilab.validate`` does that. Returns
    ``destination``; on an error nothing is tagged.
    """
    _check_complete(destination, root, parts)
    with open_destination(destination) as writer:
        for part in parts:
            if isinstance(part, bytes):
                writer.put_blob(descriptor_of(part, BLOB), io.BytesIO(part))
            else:
                writer.put_manifest(describe(part), part.raw)
        writer.put_manifest(describe(root), root.raw)
        writer.set_root(describe(root))
    return destination


def _check_complete(destination: str, root: Manifest | Index, parts: tuple[bytes | Manifest | Index, ...]) -> None:
    """NotFoundError naming the first descriptor, in ``root`` or a part, that no part (by digest) matches."""
    given = {Digest.of_bytes(part) if isinstance(part, bytes) else part.digest for part in parts}
    for document in (*(part for part in parts if not isinstance(part, bytes)), root):
        kind = "index" if isinstance(document, Index) else "manifest"
        children = document.manifests if isinstance(document, Index) else (document.config, *document.layers)
        for child in children:
            if child.digest not in given:
                raise NotFoundError(
                    f"{destination}: the {kind} {document.digest.short} points at {child.digest},"
                    " which is not among the parts given; add it (nothing was written)"
                )
