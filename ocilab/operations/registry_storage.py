"""The CNCF registry's storage on disk, read without the registry running, and its garbage collection.

The filesystem driver keeps, under ``<data>/docker/registry/v2``::

    blobs/sha256/<xx>/<hex>/data                               every blob, once, whoever pushed it
    repositories/<name>/_manifests/tags/<tag>/current/link     tag -> manifest digest
    repositories/<name>/_manifests/revisions/sha256/<hex>/link manifests the repository holds
    repositories/<name>/_layers/sha256/<hex>/link              blobs (layers, configs) pushed to it
    repositories/<name>/_uploads/<id>/data                     uploads in progress

A link is a small file holding a digest. ``<name>`` may be nested (``a/b/c``):
a repository is a directory with ``_manifests``, ``_layers`` or ``_uploads``
in it. ``storage_map`` turns that tree into a ``RegistryStorage``;
``collect_garbage`` runs the registry's collector and reports what it removed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocilab.errors import NotFoundError
from ocilab.model import MAX_DOCUMENT_BYTES, Digest
from ocilab.model import mediatype as mt
from ocilab.operations.registry_server import RegistryServer

if TYPE_CHECKING:
    import pandas

STORAGE_ROOT = "docker/registry/v2"
_REPOSITORY_MARKERS = ("_manifests", "_layers", "_uploads")
_ELIGIBLE = re.compile(r"blob eligible for deletion: (sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Repository:
    """One repository: its tags (tag -> manifest digest), manifest revisions, blob links and open uploads."""

    name: str
    tags: dict[str, str]
    manifests: tuple[str, ...]
    layers: tuple[str, ...]
    uploads: int
    upload_bytes: int

    @property
    def links(self) -> frozenset[str]:
        """Every blob digest the repository links: its manifests and its layer links (configs included)."""
        return frozenset((*self.manifests, *self.layers))


@dataclass(frozen=True)
class Blob:
    """One blob file: its size, the repositories linking it and what still points at it.

    ``media_type`` comes from a manifest that names it (None when none does).
    ``referenced``: a manifest revision still linked in some repository is it,
    or lists it -- what ``registry garbage-collect`` keeps. ``tagged``: it is
    reachable from a tag -- what ``--delete-untagged`` keeps (for an image
    index, this counts the platforms' manifests, which the collector itself
    does not; see the report of ``collect_garbage``).
    """

    digest: str
    size: int
    repositories: tuple[str, ...]
    media_type: str | None
    referenced: bool
    tagged: bool

    @property
    def shared(self) -> bool:
        """Linked by more than one repository, and stored once."""
        return len(self.repositories) > 1


@dataclass(frozen=True)
class RegistryStorage:
    """What one registry data directory holds: repositories, blobs and the links between them."""

    data_dir: Path
    repositories: tuple[Repository, ...]
    blobs: tuple[Blob, ...]
    dangling: tuple[tuple[str, str], ...]  # (repository, digest): a link to a blob whose file is gone

    @property
    def bytes(self) -> int:
        """Bytes of blob data on disk; a blob shared by many repositories is one file, counted once."""
        return sum(blob.size for blob in self.blobs)

    @property
    def digests(self) -> frozenset[str]:
        return frozenset(blob.digest for blob in self.blobs)

    def repository_bytes(self) -> dict[str, tuple[int, int]]:
        """Per repository: (bytes of blobs only it links, bytes of blobs it shares with other repositories)."""
        sizes = {blob.digest: blob for blob in self.blobs}
        result = {}
        for repository in self.repositories:
            linked = [sizes[digest] for digest in repository.links if digest in sizes]
            own = sum(blob.size for blob in linked if not blob.shared)
            result[repository.name] = (own, sum(blob.size for blob in linked if blob.shared))
        return result

    def totals(self) -> dict[str, int]:
        """Counts and bytes: blobs on disk, shared, unreferenced, untagged, uploads, and the per-repository sum.

        ``repository_bytes_sum`` adds each repository's linked bytes as if
        nothing were shared; the difference to ``bytes`` is what sharing saves.
        """
        shared = [blob for blob in self.blobs if blob.shared]
        unreferenced = [blob for blob in self.blobs if not blob.referenced]
        untagged = [blob for blob in self.blobs if not blob.tagged]
        return {
            "repositories": len(self.repositories),
            "blobs": len(self.blobs),
            "bytes": self.bytes,
            "shared_blobs": len(shared),
            "shared_bytes": sum(blob.size for blob in shared),
            "unreferenced_blobs": len(unreferenced),
            "unreferenced_bytes": sum(blob.size for blob in unreferenced),
            "untagged_blobs": len(untagged),
            "untagged_bytes": sum(blob.size for blob in untagged),
            "upload_bytes": sum(repository.upload_bytes for repository in self.repositories),
            "repository_bytes_sum": sum(own + shared for own, shared in self.repository_bytes().values()),
        }

    def to_json(self) -> dict[str, Any]:
        """``{data_dir, totals, repositories: [...], blobs: [...], dangling_links: [...]}``."""
        return {
            "data_dir": str(self.data_dir),
            "totals": self.totals(),
            "repositories": [
                {
                    "name": r.name,
                    "tags": r.tags,
                    "manifests": list(r.manifests),
                    "layers": list(r.layers),
                    "uploads": r.uploads,
                    "upload_bytes": r.upload_bytes,
                }
                for r in self.repositories
            ],
            "blobs": [
                {
                    "digest": b.digest,
                    "size": b.size,
                    "media_type": b.media_type,
                    "repositories": list(b.repositories),
                    "shared": b.shared,
                    "referenced": b.referenced,
                    "tagged": b.tagged,
                }
                for b in self.blobs
            ],
            "dangling_links": [{"repository": name, "digest": digest} for name, digest in self.dangling],
        }

    def frames(self) -> dict[str, pandas.DataFrame]:
        """DataFrames ``repositories`` (bytes only it links vs. shared), ``tags`` and ``blobs``."""
        import pandas

        per_repository = self.repository_bytes()
        repositories = pandas.DataFrame(
            [
                {
                    "repository": r.name,
                    "tags": len(r.tags),
                    "manifests": len(r.manifests),
                    "layer_links": len(r.layers),
                    "own_bytes": per_repository[r.name][0],
                    "shared_bytes": per_repository[r.name][1],
                    "upload_bytes": r.upload_bytes,
                }
                for r in self.repositories
            ],
            columns=["repository", "tags", "manifests", "layer_links", "own_bytes", "shared_bytes", "upload_bytes"],
        )
        tags = pandas.DataFrame(
            [
                {"repository": r.name, "tag": tag, "digest": digest}
                for r in self.repositories
                for tag, digest in r.tags.items()
            ],
            columns=["repository", "tag", "digest"],
        )
        blob_columns = ["digest", "size", "media_type", "repositories", "shared", "referenced", "tagged"]
        blobs = pandas.DataFrame(
            [
                {
                    "digest": b.digest,
                    "size": b.size,
                    "media_type": mt.short_name(b.media_type) if b.media_type else None,
                    "repositories": ", ".join(b.repositories),
                    "shared": b.shared,
                    "referenced": b.referenced,
                    "tagged": b.tagged,
                }
                for b in self.blobs
            ],
            columns=blob_columns,
        )
        return {"repositories": repositories, "tags": tags, "blobs": blobs}


def storage_map(data_dir: Path) -> RegistryStorage:
    """Read the registry's tree under ``data_dir`` (running or not); an empty map when nothing was pushed.

    Manifests are read from their blob files, checked against their digest
    and capped at the model's document size; one that fails is kept as a blob
    that references nothing. Layer blobs are sized, not read. NotFoundError
    when ``data_dir`` is not a directory.
    """
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise NotFoundError(f"{data_dir}: no registry data directory here (`ocilab registry up --data DIR` makes one)")
    root = data_dir / STORAGE_ROOT
    sizes = _blob_sizes(root / "blobs")
    repositories = tuple(_repository(directory, name) for name, directory in _repository_dirs(root / "repositories"))
    children: dict[str, list[tuple[str, str]]] = {}  # manifest -> [(digest, media type)] it lists
    media_types: dict[str, str] = {}
    for digest in {m for r in repositories for m in r.manifests} & sizes.keys():
        document = _manifest(root / "blobs", digest)
        media_types.setdefault(digest, str(document.get("mediaType") or ""))
        children[digest] = _descriptors(document)
        for child, media_type in children[digest]:
            media_types.setdefault(child, media_type)
    referenced = set(children) | {child for listed in children.values() for child, _ in listed}
    tagged = _reachable({d for r in repositories for d in r.tags.values()}, children)
    linked_by: dict[str, list[str]] = {}
    dangling = []
    for repository in repositories:
        for digest in sorted(repository.links):
            if digest in sizes:
                linked_by.setdefault(digest, []).append(repository.name)
            else:
                dangling.append((repository.name, digest))
    blobs = tuple(
        Blob(
            digest=digest,
            size=size,
            repositories=tuple(linked_by.get(digest, ())),
            media_type=media_types.get(digest) or None,
            referenced=digest in referenced,
            tagged=digest in tagged,
        )
        for digest, size in sorted(sizes.items())
    )
    return RegistryStorage(data_dir, repositories, blobs, tuple(dangling))


def _blob_sizes(blobs: Path) -> dict[str, int]:
    """``sha256:<hex>`` -> bytes of its ``data`` file."""
    return {
        f"sha256:{data.parent.name}": data.stat().st_size
        for data in blobs.glob("sha256/*/*/data")
        if data.is_file() and data.parent.parent.name == data.parent.name[:2]
    }


def _repository_dirs(top: Path) -> list[tuple[str, Path]]:
    """``(name, directory)`` of every repository under ``repositories/``, nested names included, sorted."""
    found = []
    pending = [top] if top.is_dir() else []
    while pending:
        directory = pending.pop()
        subdirectories = [entry for entry in directory.iterdir() if entry.is_dir() and not entry.is_symlink()]
        if directory != top and any(entry.name in _REPOSITORY_MARKERS for entry in subdirectories):
            found.append((directory.relative_to(top).as_posix(), directory))
        pending += [entry for entry in subdirectories if not entry.name.startswith("_")]
    return sorted(found)


def _repository(directory: Path, name: str) -> Repository:
    manifests = directory / "_manifests"
    tags = {}
    for link in sorted(manifests.glob("tags/*/current/link")):
        digest = _read_link(link)
        if digest is not None:
            tags[link.parent.parent.name] = digest
    uploads = [entry for entry in (directory / "_uploads").glob("*") if entry.is_dir()]
    upload_bytes = sum(data.stat().st_size for data in (entry / "data" for entry in uploads) if data.is_file())
    return Repository(
        name=name,
        tags=tags,
        manifests=_linked(manifests / "revisions"),
        layers=_linked(directory / "_layers"),
        uploads=len(uploads),
        upload_bytes=upload_bytes,
    )


def _linked(directory: Path) -> tuple[str, ...]:
    """The digests of ``<directory>/sha256/<hex>/link`` files that hold the digest their path names.

    The registry deletes a manifest by removing its link file and leaves the
    directory, so only present links count.
    """
    found = []
    for link in directory.glob("sha256/*/link"):
        digest = _read_link(link)
        if digest == f"sha256:{link.parent.name}":
            found.append(digest)
    return tuple(sorted(found))


def _read_link(link: Path) -> str | None:
    """The digest in a link file, None when it is unreadable or not a well-formed digest."""
    try:
        text = link.read_text(encoding="ascii").strip()
        return str(Digest.parse(text))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _manifest(blobs: Path, digest: str) -> dict[str, Any]:
    """The manifest or index in blob ``digest``, parsed; {} when it is too large, not JSON or fails its digest."""
    hex_part = digest.removeprefix("sha256:")
    path = blobs / "sha256" / hex_part[:2] / hex_part / "data"
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES or str(Digest.of_bytes(raw)) != digest:
            return {}
        document = json.loads(raw)
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _descriptors(document: dict[str, Any]) -> list[tuple[str, str]]:
    """``(digest, media type)`` of everything a manifest or index points at: config, layers, manifests, subject."""
    listed = [document.get("config"), *_list(document.get("layers")), *_list(document.get("manifests"))]
    listed.append(document.get("subject"))
    return [
        (str(entry["digest"]), str(entry.get("mediaType") or ""))
        for entry in listed
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str)
    ]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _reachable(roots: set[str], children: dict[str, list[tuple[str, str]]]) -> set[str]:
    """Every digest reachable from ``roots`` through the manifests' descriptors."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        digest = pending.pop()
        if digest not in seen:
            seen.add(digest)
            pending += [child for child, _ in children.get(digest, ())]
    return seen


@dataclass(frozen=True)
class Collection:
    """One run of the collector: the storage before and after, and the blobs it removed (or, dry, would remove)."""

    before: RegistryStorage
    after: RegistryStorage
    removed: tuple[Blob, ...]  # as they were before
    dry_run: bool
    delete_untagged: bool
    restarted: bool
    output: str

    @property
    def removed_bytes(self) -> int:
        return sum(blob.size for blob in self.removed)

    def to_json(self) -> dict[str, Any]:
        """``{dry_run, delete_untagged, restarted, before, after, removed: [{digest, size, media_type}], ...}``."""
        return {
            "dry_run": self.dry_run,
            "delete_untagged": self.delete_untagged,
            "restarted": self.restarted,
            "before": {"blobs": len(self.before.blobs), "bytes": self.before.bytes},
            "after": {"blobs": len(self.after.blobs), "bytes": self.after.bytes},
            "removed": [
                {"digest": blob.digest, "size": blob.size, "media_type": blob.media_type} for blob in self.removed
            ],
            "removed_bytes": self.removed_bytes,
        }


def collect_garbage(data_dir: Path, *, dry_run: bool = False, delete_untagged: bool = False) -> Collection:
    """Run ``registry garbage-collect`` on ``data_dir`` and say what it removed.

    A registry serving the directory (from any process) is stopped while the
    collector runs and started again, detached as before, on the same port;
    a dry run leaves it serving. ``removed`` is read from the disk (before
    minus after); for a dry run, from the collector's "blob eligible for
    deletion" lines. With ``delete_untagged`` the collector (distribution
    2.8) also deletes the untagged platform manifests of a tagged index, and
    then their layers: keep multi-platform images tagged by digest or collect
    without it.
    """
    server = RegistryServer.find(data_dir)
    restarted = server is not None and not dry_run
    if server is None:
        server = RegistryServer(data_dir)
    before = storage_map(server.data_dir)
    output = server.garbage_collect(delete_untagged=delete_untagged, dry_run=dry_run)
    after = storage_map(server.data_dir)
    gone = set(_ELIGIBLE.findall(output)) if dry_run else before.digests - after.digests
    removed = tuple(blob for blob in before.blobs if blob.digest in gone)
    return Collection(before, after, removed, dry_run, delete_untagged, restarted, output)
