"""``ocilab rm``: remove what a reference names, from a registry, an OCI layout or an engine (Docker, Podman).

Removing a name never frees bytes by itself: a registry keeps the blobs until
its garbage collector runs, a layout until ``ocilab gc oci:DIR``, and the
engine until nothing uses the layers. The report says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocilab.errors import InvalidInputError, UnsupportedError
from ocilab.model import Digest, Reference
from ocilab.stores.transports import ENGINE_TRANSPORTS, split_transport


@dataclass
class Removal:
    """What ``rm`` removed: the manifest digest (when known) and one line per name or object removed."""

    reference: str
    digest: Digest | None = None
    removed: list[str] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": str(self.digest) if self.digest else None,
            "removed": self.removed,
            "note": self.note,
        }


def remove(reference: str, tls_verify: bool = True) -> Removal:
    """Remove the tag or manifest ``reference`` names; UnsupportedError for archives (rewrite them instead)."""
    transport, rest = split_transport(reference)
    if transport == "oci":
        return _remove_from_layout(reference, rest)
    if transport == "docker":
        return _remove_from_registry(reference, Reference.parse(rest), tls_verify)
    if transport in ENGINE_TRANSPORTS:
        from ocilab.stores.daemon import remove_engine_image

        lines = remove_engine_image(rest, ENGINE_TRANSPORTS[transport])
        return Removal(reference, None, lines, "the engine frees a layer once no image or container uses it")
    raise UnsupportedError(
        f"{reference}: an {transport} file is written whole; to drop an image, copy the ones to keep into a new"
        " archive (ocilab copy)"
    )


def _remove_from_layout(reference: str, rest: str) -> Removal:
    from ocilab.stores.layout_writer import remove_layout_tag

    path, _, tag = rest.partition(":")
    if not tag:
        raise InvalidInputError(f"{reference}: name the tag to remove, as oci:{path}:TAG")
    descriptor = remove_layout_tag(Path(path), tag)
    return Removal(
        reference,
        descriptor.digest,
        [f"untagged {tag} ({descriptor.digest})"],
        f"the blobs stay in {path} until `ocilab gc oci:{path}` removes what no tag reaches",
    )


def _remove_from_registry(reference: str, ref: Reference, tls_verify: bool) -> Removal:
    from ocilab.stores.registry import RegistryStore

    with RegistryStore(ref, tls_verify=tls_verify) as store:
        if ref.digest is not None:
            store.delete_manifest(ref.digest)
            digest, tags = ref.digest, list[str]()
        else:
            digest, tags = store.delete_tag(ref.identifier)
    removed = [f"deleted manifest {digest}"] + [f"untagged {ref.host}/{ref.repository}:{tag}" for tag in tags]
    note = "the registry keeps the blobs until its garbage collector runs (ocilab registry gc)"
    return Removal(reference, digest, removed, note)
